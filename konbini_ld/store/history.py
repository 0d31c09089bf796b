"""The counter series: every counter of every observation, in the history graph.

An entity observed at a time is one observation node carrying every counter observed then
(:data:`~konbini_ld.vocab.COUNTERS`): a multi-measure observation in the manner of the W3C Data
Cube vocabulary, with SOSA's feature of interest and result time as its dimensions::

    <urn:konbini-ld:o:…> sosa:hasFeatureOfInterest <entity> ;
        sosa:resultTime "2026-11-01T12:00:00.000Z"^^xsd:dateTime ;
        ksh:followerCount 160300000 ;
        ksh:likedCount 2500000000 .

Each measure (``ksh:``, :data:`~konbini_ld.vocab.KSH`) is its counter's local name: the history
never says ``ks:followerCount`` of an observation, so a query of the union of the graphs that
asks who has followers finds persons only.

Each counter value is a *point* of its series; a video's five counters take seven quads, not
twenty. A node's IRI is a digest of the entity and the time, so the same response loaded again
for the same time adds nothing, and loaded for another time adds one node. Points are only ever
added: the series survives every upsert of the current-state graph.

The current-state graph is kept time-aware with :class:`Times`: when each stored value was
observed (``ks:lastObservedAt`` in the provenance graph, plus ``ks:propertyTimes`` for the few
values that come from an older observation). A value replaces a stored one only if it was
observed at the same time or later, so the current state is the same whatever order responses
load in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pyoxigraph as ox

from ..engines.base import Engine
from ..lexical import observation_time
from ..mapping.literals import nt_literal
from ..model import Observation
from ..vocab import COUNTERS, HISTORY_GRAPH, KS, KSH, LAST_OBSERVED, POINT, PROPERTY_TIMES, SOSA, XSD
from .events import Point
from .memo import MaybeHeld, Written
from .rounds import Rounds

__all__ = ["HISTORY_G", "SERIES", "ObservedTimes", "Point", "Rounds", "Times", "counted", "points", "series_points"]

HISTORY_G = ox.NamedNode(HISTORY_GRAPH)
_LAST = ox.NamedNode(LAST_OBSERVED)
_LAST_NT = f"<{LAST_OBSERVED}>"
_OLDER = ox.NamedNode(PROPERTY_TIMES)
_OLDER_NT = f"<{PROPERTY_TIMES}>"
_DATETIME = ox.NamedNode(XSD + "dateTime")
_FOI = f"<{SOSA}hasFeatureOfInterest>"
_TIME = f"<{SOSA}resultTime>"
_COUNTERS_NT = frozenset(f"<{iri}>" for iri in COUNTERS)
_KSH_NT = f"<{KSH}"


def points(o: Observation, firsts: set[tuple[str, str]] | None = None) -> list[str]:
    """The history graph's N-Triples lines for the counters ``o`` carries (those in ``firsts``
    only, when given: see :class:`Rounds`): per entity, its observation node's feature of
    interest and time, then one line per counter (a point)."""
    at = o.response.observed
    time = f"{_TIME} {nt_literal(at, XSD + 'dateTime')} .\n"
    nodes: dict[str, str] = {}
    out: list[str] = []
    for (s, p), lines in o.groups.items():
        if p not in _COUNTERS_NT or (firsts is not None and (s, p) not in firsts):
            continue
        value = _one_count(f"{s} {p} ", lines)
        if value is None:
            continue
        node = nodes.get(s)
        if node is None:
            node = nodes[s] = f"<{POINT}{hashlib.sha256(f'{s}{chr(0)}{at}'.encode()).hexdigest()[:24]}> "
            out.append(f"{node}{_FOI} {s} .\n")
            out.append(node + time)
        out.append(f"{node}<{KSH}{p[len(KS) + 1:-1]}> {value} .\n")
    return out


def counted(lines: Iterable[str]) -> int:
    """How many points (counter values) history lines hold."""
    return sum(1 for line in lines if line.split(" ", 2)[1].startswith(_KSH_NT))


#: The series the index beside the graph summarises (``trending``, ``rising-creators``).
SERIES: frozenset[str] = frozenset({KS + "videoCount", KS + "followerCount"})
_SERIES_NT = {f"<{iri}>": iri for iri in SERIES}


def series_points(o: Observation, firsts: set[tuple[str, str]] | None = None) -> list[Point]:
    """The points ``o`` adds to the series the index summarises (:data:`SERIES`)."""
    out: list[Point] = []
    for (s, p), lines in o.groups.items():
        prop = _SERIES_NT.get(p)
        if prop is None or (firsts is not None and (s, p) not in firsts):
            continue
        value = _one_count(f"{s} {p} ", lines)
        if value is not None and value.startswith('"'):
            out.append((s[1:-1], prop, o.response.observed, value[1 : value.index('"', 1)]))
    return out


def _one_count(head: str, lines: list[str]) -> str | None:
    """The value of a counter (N-Triples) in one response: the larger, should the response list
    the entity twice with two counts (one observation, one point)."""
    values = [line[len(head) : -3] for line in lines if line.startswith(head)]  # (lines end with " .\n")
    if len(values) > 1:
        def count(value: str) -> int:
            try:
                return int(value[1 : value.index('"', 1)])
            except ValueError:
                return 0

        return max(values, key=count)
    return values[0] if values else None


@dataclass(frozen=True, slots=True)
class Times:
    """When the stored values of an entity were observed.

    :ivar last: the newest observation of the entity (``ks:lastObservedAt``).
    :ivar older: the properties whose stored value comes from an older observation (the newest
        did not carry them, or an older one filled them in), each with that observation's time
        (``ks:propertyTimes``, one ``IRI TIME`` line each; usually there are none).
    """

    last: str
    older: tuple[tuple[str, str], ...] = ()
    #: ``last`` as the store spells it (deletes must name the stored literal)
    stored: str | None = field(default=None, compare=False)

    def of(self, prop: str) -> str:
        """The time of ``prop``'s stored value (N-Triples IRI)."""
        for p, at in self.older:
            if p == prop:
                return at
        return self.last

    def text(self) -> str:
        return "\n".join(f"{p[1:-1]} {at}" for p, at in self.older)

    @staticmethod
    def parse_older(text: str) -> tuple[tuple[str, str], ...]:
        out = []
        for line in text.splitlines():
            iri, _, at = line.rpartition(" ")
            if iri and at:
                out.append((f"<{iri}>", observation_time(at)))
        return tuple(sorted(out))


class ObservedTimes:
    """Each entity's observation times, read from (and written to) the provenance graph.

    :param written: this process is the store's only writer: the times it wrote are remembered
        there (:class:`.memo.Written`), and which entities have times at all, so that only the
        others are read; ``None``: each batch reads its own entities' times.
    """

    def __init__(self, written: Written | None) -> None:
        self.written = written
        self._held: MaybeHeld | None = None
        #: last observation times read beside an entity's latest (a write cut short after writing
        #: the new one and before removing the old): removed with the next write
        self._stale: list[ox.Quad] = []

    def stored(self, engine: Engine, graph: ox.NamedNode, entities: Iterable[str],
               before_read: Callable[[list[str]], None] | None = None) -> dict[str, Times]:
        """The stored times of each of ``entities`` (N-Triples IRIs) that has them.

        :param before_read: called with the entities about to be read from the store.
        """
        written = self.written
        if written is None:
            wanted = list(entities)
        else:
            if self._held is None:
                empty = not engine.query(f"ASK {{ GRAPH {graph} {{ ?e {_LAST_NT} ?t }} }}", union=False)
                self._held = MaybeHeld(complete=bool(empty))
            found: dict[str, Times] = {}
            wanted = []
            for e in entities:
                at = written.time(e)
                if at is not None:
                    found[e] = Times(at)
                elif e in self._held:
                    wanted.append(e)
            if not wanted:
                return found
        if before_read is not None:
            before_read(wanted)
        rows = []
        # the two time properties only: an entity also holds a link to every observation of it
        for q in engine.quads_for_subjects([ox.NamedNode(e[1:-1]) for e in wanted], graph, (_LAST, _OLDER)):
            if q.predicate in (_LAST, _OLDER) and isinstance(q.object, ox.Literal):
                last = q.object.value if q.predicate == _LAST else None
                rows.append((str(q.subject), last, q.object.value if q.predicate == _OLDER else None))
        stale: list[tuple[str, str]] = []
        read = _collect(rows, stale)
        self._stale.extend(ox.Quad(ox.NamedNode(e[1:-1]), _LAST, ox.Literal(t, datatype=_DATETIME), graph)
                           for e, t in stale)
        if written is None:
            return read
        for e, times in read.items():
            written.set_time(e, None if times.older else times.last)
        found.update(read)
        return found

    def update(self, graph: ox.NamedNode, changes: dict[str, tuple[Times | None, Times]]
               ) -> tuple[list[ox.Quad], list[str], list[ox.Quad]]:
        """The provenance deletes and inserts that record ``changes`` (entity → old and new times),
        and the last observation times they replace, to remove once the inserts are written: a
        write cut short between its removes and its inserts (``kill -9``) then leaves an entity
        both times rather than none (and the next writer removes the older: :meth:`stored`)."""
        deletes, self._stale = self._stale, []
        inserts: list[str] = []
        replaced: list[ox.Quad] = []
        for entity, (old, new) in changes.items():
            subject = ox.NamedNode(entity[1:-1])
            if old is not None:
                if old.last != new.last:
                    spelled = old.stored or old.last
                    replaced.append(ox.Quad(subject, _LAST, ox.Literal(spelled, datatype=_DATETIME), graph))
                if old.older and old.older != new.older:
                    deletes.append(ox.Quad(subject, _OLDER, ox.Literal(old.text()), graph))
            if old is None or old.last != new.last:
                inserts.append(f"{entity} {_LAST_NT} {nt_literal(new.last, XSD + 'dateTime')} .\n")
            if new.older and (old is None or old.older != new.older):
                inserts.append(f"{entity} {_OLDER_NT} {nt_literal(new.text())} .\n")
            if self.written is not None:
                self.written.set_time(entity, None if new.older else new.last)
                if self._held is not None:
                    self._held.add(entity)
        return deletes, inserts, replaced


def _collect(rows: Iterable[tuple[str, str | None, str | None]], stale: list[tuple[str, str]]) -> dict[str, Times]:
    """Each entity's stored times; the last observation times beside its latest (a write cut
    short between its inserts and its removes) are added to ``stale`` (entity, as stored)."""
    last: dict[str, tuple[str, str]] = {}
    older: dict[str, str] = {}
    every: dict[str, list[str]] = {}
    for entity, t, text in rows:
        if t is not None:
            every.setdefault(entity, []).append(t)
            at = observation_time(t)
            if at > last.get(entity, ("", ""))[0]:
                last[entity] = (at, t)  # and as stored: deleted by that spelling
        if text is not None:
            older[entity] = text
    for entity, spellings in every.items():
        if len(spellings) > 1:
            stale.extend((entity, t) for t in spellings if t != last[entity][1])
    return {e: Times(t, Times.parse_older(older.get(e, "")), stored=raw) for e, (t, raw) in last.items()}
