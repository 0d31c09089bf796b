"""The upsert rule, planned on N-Triples text.

For every entity (a subject with a real IRI) and every property a batch carries
for it, the stored values are replaced by the new ones; properties it does not
carry keep their values; skolemised objects hanging off a replaced value go
with it, so nothing is orphaned. Entities last written exactly as they are
observed again are skipped without reading the store; those whose counters
alone changed are read for their counters alone (:class:`~.memo.Written`).

Groups carry the time of their observation: per entity and property, the newest
wins, within the batch and against the store (:class:`~.history.Times`), so older
data never replaces newer and the result does not depend on the order of loading.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from itertools import chain
from typing import Any

import pyoxigraph as ox

from ..engines.base import Engine
from ..lexical import observation_time
from ..vocab import COUNTERS, GENID, RDF
from .history import Times
from .memo import MaybeHeld, Written, digest

__all__ = ["Planner", "entity_digests", "prov_groups"]

_GENID_NT = "<" + GENID
#: what an ``rdf:List`` cell says: a cell is named after the triple that points at it, not after
#: its content, so what it holds can change under the same name
_CELL_NT = frozenset({f"<{RDF}first>", f"<{RDF}rest>"})
_FIRST_IN_LINE = f" <{RDF}first> "
#: the properties that change from one observation to the next (literals: they own nothing)
_COUNTERS_NT = frozenset(f"<{iri}>" for iri in COUNTERS)


def _node(text: str) -> ox.NamedNode:
    return ox.NamedNode(text[1:-1])


class Planner:
    """Collects a batch's triple groups and turns them into the upsert's deletes and inserts.

    :param known: entities this store may hold in ``graph`` (embedded store: a filter kept in
        memory, so new entities cost no lookup), or ``None`` to ask the engine about every one.
    :param seen: entity → digest of what this process last wrote for it, and the properties it
        then held (an entity observed exactly so again needs no read).
    """

    def __init__(self, graph: ox.NamedNode, known: MaybeHeld | set[str] | None,
                 seen: Written | None = None) -> None:
        self.graph = graph
        self.known = known
        self.seen = seen
        self.final: dict[tuple[str, str], list[str]] = {}
        #: when each group in :attr:`final` was observed (groups added with a time)
        self.at: dict[tuple[str, str], str] = {}
        #: entity → the newest observation of it in this batch
        self.newest: dict[str, str] = {}
        #: entities the graph certainly did not hold before this batch (known from ``known``; see :meth:`plan`)
        self.new: set[str] = set()
        #: entity → (stored times, new times) where they change (see :meth:`plan`)
        self.times_changed: dict[str, tuple[Times | None, Times]] = {}
        self._written: dict[str, tuple[int, int, frozenset[str]]] = {}
        self._skipped: dict[str, frozenset[str]] = {}
        #: entities whose counters alone changed: the properties they held (only counters are read)
        self._counters_only: dict[str, frozenset[str]] = {}
        self._latest = ""  # the latest time added so far
        self._mixed: set[str] = set()  # entities observed at more than one time in this batch
        #: entity → the properties the plan writes for it (set by :meth:`plan`)
        self.entities: dict[str, list[str]] | None = None
        #: entity → its digests as :meth:`add` was given them (``None``: in more than one response)
        self._digests: dict[str, Digests | None] = {}
        self._digested = True  # every response added came with its digests

    def add(self, groups: dict[tuple[str, str], list[str]], at: str | None = None,
            digests: dict[str, Digests] | None = None) -> None:
        """Record one response's groups. Per entity and property the newest observation wins
        (of two at the same time, or without times, the later added).

        :param digests: :func:`entity_digests` of ``groups``, worked out already (by the process
            that prepared them): those of an entity no other response of the batch holds are taken.
        """
        if self.seen is not None:
            if digests is None:
                self._digested = False  # (one response without: all are worked out here)
            elif self._digested:
                ready = self._digests
                for entity, d in digests.items():
                    ready[entity] = None if entity in ready else d
        if at is None:
            self.final.update(groups)
            return
        final, times, newest = self.final, self.at, self.newest
        if at >= self._latest:  # in time order (the usual case): this one wins every group it has
            final.update(groups)
            times.update(dict.fromkeys(groups, at))
            self._latest = at
            for entity in {s for s, _ in groups}:
                if entity in newest and newest[entity] != at:
                    self._mixed.add(entity)
                newest[entity] = at
            return
        for key, lines in groups.items():
            previous = times.get(key)
            if previous is None or at >= previous:
                final[key] = lines
                times[key] = at
            entity = key[0]
            self._mixed.add(entity)
            if at > newest.get(entity, ""):
                newest[entity] = at

    def plan(self, engine: Engine, before_read: Callable[[Iterable[str]], None] | None = None,
             stored_times: dict[str, Times] | None = None) -> tuple[list[ox.Quad], list[str]]:
        """Quads to delete, and N-Triples lines to insert, for this graph.

        :param before_read: called with the entities about to be read from the store (so a
            write still in progress for any of them can be waited for).
        :param stored_times: when the stored values of the batch's entities were observed
            (groups added with times only): a group older than the stored value of its
            property is dropped, and :attr:`times_changed` says what to record instead.
        """
        final = self.final
        observed = _properties(final)  # (one pass over the batch's groups: a refresh day carries a million)
        # every group added with a time: an entity observed at one time has all its groups at it
        timed = len(self.at) == len(final)
        entities = self._skip_unchanged(observed) if self.seen is not None else observed
        self.entities = entities
        # an object without an id is named after its owner, its key and its content: a node of
        # that name already stored says exactly what this one says, so it needs no read (list
        # cells, named after what points at them, are read like entities)
        cells = {s for s, props_of in entities.items() if not _CELL_NT.isdisjoint(props_of)}
        named = [s for s in entities if not s.startswith(_GENID_NT) or s in cells]
        check = named if self.known is None else [s for s in named if s in self.known]
        if self.known is not None:
            self.new = set(named).difference(check)
        stored: list[tuple[tuple[str, str], ox.Quad]] = []
        props: dict[str, set[str]] = {}
        spelled: dict[ox.NamedNode, str] = {}  # a predicate's N-Triples text (a handful: spelled once)
        names: dict[Any, str] = {}
        if check:
            if before_read is not None:
                before_read(check)
            partial = self._counters_only
            by_counters: dict[tuple[str, ...], list[str]] = {}
            if partial:
                for s in check:
                    if s in partial:
                        props[s] = set(partial[s])
                        by_counters.setdefault(tuple(entities[s]), []).append(s)  # (sorted)
            # a quad's terms are slow to spell (a microsecond each): subjects are known by their
            # node, and the handful of predicates are spelled once
            names.update((_node(s), s) for s in check)
            entire = [node for node, s in names.items() if s not in partial]
            reads = [engine.quads_for_subjects(entire, self.graph)] if entire else []
            reads.extend(engine.quads_for_subjects([_node(s) for s in subjects_], self.graph, [_node(p) for p in preds])
                         for preds, subjects_ in by_counters.items())  # (counters alone: each is in the batch)
            for read in reads:
                for q in read:
                    s = names.get(q.subject) or str(q.subject)  # (a server's own spelling: as it says)
                    pred = q.predicate
                    p = spelled.get(pred) or spelled.setdefault(pred, str(pred))
                    held = props.get(s)
                    if held is None:
                        held = props[s] = set()
                    held.add(p)
                    if (s, p) in final:
                        stored.append(((s, p), q))
        if self.newest:
            dropped = self._resolve_times(stored_times or {}, props, observed if timed else None)
            if dropped:
                stored = [(key, q) for key, q in stored if key not in dropped]
                for e, p in dropped:
                    props_of = entities.get(e)
                    if props_of is not None and p in props_of:
                        props_of.remove(p)
                        if not props_of:
                            del entities[e]
        inserts: set[str] = set()
        for lines in final.values():
            inserts.update(lines)
        deletes: list[ox.Quad] = []
        unchanged: set[str] = set()
        old_owned: list[ox.NamedNode] = []
        pointed: list[ox.NamedNode] = []  # owned nodes a statement kept points at

        def consider(q: ox.Quad, s: str | None = None, p: str | None = None) -> None:
            line = f"{q.subject if s is None else s} {q.predicate if p is None else p} {q.object} .\n"
            if line in inserts:
                unchanged.add(line)  # (an owned node it names is the same node, named by its content,
                o = q.object  # but for a list's cells, named after the statement pointing at them)
                if type(o) is ox.NamedNode and o.value.startswith(GENID):
                    pointed.append(o)
                return
            deletes.append(q)
            o = q.object
            if isinstance(o, ox.NamedNode) and o.value.startswith(GENID):
                old_owned.append(o)  # no longer pointed at from here: what it says goes too

        for (s, p), q in stored:
            consider(q, s, p)
        self._stored_as_named(unchanged, cells, entities)
        done: set[ox.NamedNode] = set()
        new_cells: set[str] | None = None  # the list cells the batch writes (a cell holds rdf:first)
        while old_owned or pointed:
            batch = [n for n in dict.fromkeys(old_owned) if n not in done]
            if pointed:  # a cell still pointed at may list other items now: read, as what goes
                if new_cells is None:
                    new_cells = {line.split(" ", 1)[0] for line in inserts if _FIRST_IN_LINE in line}
                batch.extend(n for n in dict.fromkeys(pointed) if n not in done and f"<{n.value}>" in new_cells)
            old_owned, pointed = [], []
            done.update(batch)
            for q in engine.quads_for_subjects(batch, self.graph):
                consider(q)
        if self.known is not None:
            self.known.update(entities)
        written = self._written
        for entity, (whole, stable, _) in written.items():
            now = props.get(entity)
            carried = entities.get(entity, ())
            written[entity] = (whole, stable, frozenset(now.union(carried) if now else carried))
        return deletes, [line for line in inserts if line not in unchanged]

    def _stored_as_named(self, unchanged: set[str], cells: set[str], entities: dict[str, list[str]]) -> None:
        """Add to ``unchanged`` the lines of the nodes named by their content that a line already
        stored points at: the same name says the same thing, which is stored with it (so an
        entity observed again rewrites none of its images, variants or headers)."""
        if not unchanged:
            return
        todo = list(unchanged)
        done: set[str] = set()
        final = self.final
        while todo:
            line = todo.pop()
            s, p, node = line.split(" ", 2)  # (subject and predicate are IRIs: no spaces)
            node = node[:-3]
            if node in done or not node.startswith(_GENID_NT) or node in cells:
                continue
            done.add(node)
            # what it says is in its own groups, or (a node its owner holds) in the owner's group;
            # a list's cells are named after what points at them, not after what they say
            owned = [held for held in final.get((s, p), ()) if held.startswith(node + " ")]
            if any(_FIRST_IN_LINE in held for held in owned):
                continue
            for held in chain(owned, *(final[(node, q)] for q in entities.get(node, ()))):
                unchanged.add(held)
                todo.append(held)

    def _resolve_times(self, stored_times: dict[str, Times], props: dict[str, set[str]],
                       observed: dict[str, list[str]] | None) -> set[tuple[str, str]]:
        """Drop the groups older than the stored value of their property; work out each entity's
        new times. Returns the keys dropped.

        :param observed: entity → the properties the batch observed it with, when every group was
            added with a time (an entity observed at one time then has all of them at it), or
            ``None`` to read each group's time.
        """
        carried: dict[str, list[tuple[str, str]]] = {}
        slow = self._mixed if observed is not None else self._mixed | set(stored_times)
        if slow:
            for key, at in self.at.items():
                if key[0] in slow:
                    carried.setdefault(key[0], []).append((key[1], at))
        dropped: set[tuple[str, str]] = set()
        changed = self.times_changed
        for entity, newest in self.newest.items():
            old = stored_times.get(entity)
            if old is None and entity not in slow:  # first seen, once: all its values are from now
                changed[entity] = (None, Times(newest))
                continue
            held = self._skipped.get(entity) or props.get(entity, set())
            times: dict[str, str] = {}
            old_last = ""
            if old is not None:
                old_last = observation_time(old.last)
                times = dict.fromkeys(held, old_last)  # (each at the last observation, but the older ones)
                for p, at in reversed(old.older):  # (of a property listed twice, the first says, as Times.of)
                    if p in times:
                        times[p] = observation_time(at)
            if entity in slow:
                pairs: Iterable[tuple[str, str]] = carried.get(entity, ())
            else:
                assert observed is not None
                if newest >= max(times.values(), default=""):  # (the usual refresh: newer than all it holds)
                    times.update(dict.fromkeys(observed.get(entity, ()), newest))
                    pairs = ()
                else:
                    pairs = ((prop, newest) for prop in observed.get(entity, ()))
            for prop, at in pairs:
                previous = times.get(prop)
                if previous is not None and at < previous:
                    if self.final.pop((entity, prop), None) is not None:
                        dropped.add((entity, prop))
                    continue
                times[prop] = at
            last = max(old_last, newest) if old is not None else newest
            new = Times(last, tuple(sorted((p, t) for p, t in times.items() if t != last)))
            if new != old:
                changed[entity] = (old, new)
        for entity in {s for s, _ in dropped}:  # what it holds now depends on the store: remember nothing
            self._written.pop(entity, None)
            if self.seen is not None:
                self.seen.drop_state(entity)
        return dropped

    def _skip_unchanged(self, observed: dict[str, list[str]]) -> dict[str, list[str]]:
        """Drop entities observed exactly as last written: the upsert would change nothing. Of
        those whose counters alone changed, drop all but the counters: only they are read and
        written. Returns entity → the properties still to write."""
        seen = self.seen
        assert seen is not None
        final = self.final
        remaining: dict[str, list[str]] = {}
        ready = self._digests if self._digested else {}
        for entity, props_of in observed.items():
            props_of = sorted(props_of)
            counters = [p for p in props_of if p in _COUNTERS_NT]
            both = ready.get(entity) or _digests(entity, props_of, final)
            whole, stable, counts = both
            remembered = seen.state(entity)
            if remembered is not None and remembered[0] == whole:
                for p in props_of:
                    del final[(entity, p)]
                self._skipped[entity] = remembered[2]
                continue
            self._written[entity] = (whole, stable, frozenset())
            if remembered is not None and remembered[1] == stable and counts:  # (a group of no lines says nothing)
                for p in props_of:
                    if p not in _COUNTERS_NT:
                        del final[(entity, p)]
                self._counters_only[entity] = remembered[2]
                remaining[entity] = counters
            else:
                remaining[entity] = props_of
        return remaining

    def final_subjects(self) -> Collection[str]:
        """The entities the plan writes (after :meth:`plan`: what is left once those observed exactly
        as last written are skipped)."""
        if self.entities is not None:
            return self.entities.keys()
        return {s for s, _ in self.final}

    def committed(self) -> None:
        """Call once the plan is written: remember what each entity now holds."""
        if self.seen is not None:
            self.seen.set_states(self._written)


#: An entity's digests for the upsert: of all its lines, of all but its counters' lines, and
#: whether its counters hold any line.
Digests = tuple[int, int, bool]


def entity_digests(groups: dict[tuple[str, str], list[str]]) -> dict[str, Digests]:
    """Each entity's :data:`Digests` in ``groups`` (a response's), as :class:`Planner` works them
    out: what a worker preparing responses can do for the writer."""
    return {e: _digests(e, sorted(held), groups) for e, held in _properties(groups).items()}


def _properties(groups: dict[tuple[str, str], list[str]]) -> dict[str, list[str]]:
    """Entity → the properties ``groups`` hold for it, in one pass."""
    props: dict[str, list[str]] = {}
    for e, p in groups:
        held = props.get(e)
        if held is None:
            props[e] = [p]
        else:
            held.append(p)
    return props


def _digests(entity: str, props_of: list[str], final: dict[tuple[str, str], list[str]]) -> Digests:
    """:data:`Digests` of ``entity``, whose properties (sorted) are ``props_of``."""
    others: list[str] = [entity]
    counted: list[str] = []
    for p in props_of:
        lines = final[(entity, p)]
        text = lines[0] if len(lines) == 1 else "".join(sorted(lines))  # (a line names its property)
        if p in _COUNTERS_NT:
            counted.append(text)
        else:
            others.append(text)
    joined = "\x00".join(others)
    stable = digest(joined)
    counts = "\x00".join(counted)
    whole = digest(joined + "\x01" + counts) if counted else stable
    return whole, stable, bool(counts)


def prov_groups(triples: list[tuple[str, str, str]]) -> dict[tuple[str, str], list[str]]:
    """Provenance triples grouped for the upsert (they own no skolemised objects)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for s, p, o in triples:
        line = f"{s} {p} {o} .\n"
        lines = groups.get((s, p))
        if lines is None:
            groups[(s, p)] = [line]
        else:
            lines.append(line)
    return groups
