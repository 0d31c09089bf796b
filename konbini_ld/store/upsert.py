"""The upsert rule, planned on N-Triples text.

For every entity (a subject with a real IRI) and every property a batch carries
for it, the stored values are replaced by the new ones; properties it does not
carry keep their values; skolemised objects hanging off a replaced value go
with it, so nothing is orphaned. Entities this process already wrote exactly as
they are observed again are skipped without reading the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pyoxigraph as ox

from ..vocab import GENID

__all__ = ["Planner", "prov_groups"]

_GENID_NT = "<" + GENID


def _node(text: str) -> ox.NamedNode:
    return ox.NamedNode(text[1:-1])


class Planner:
    """Collects a batch's triple groups and turns them into the upsert's deletes and inserts.

    :param known: entities this store already holds in ``graph`` (embedded store: kept in memory,
        so new entities cost no lookup), or ``None`` to ask the engine about every one.
    """

    def __init__(self, graph: ox.NamedNode, known: set[str] | None, seen: dict[str, int] | None = None) -> None:
        self.graph = graph
        self.known = known
        self.seen = seen  # entity -> hash of what this process last wrote for it
        self.final: dict[tuple[str, str], list[str]] = {}
        self._written: dict[str, int] = {}

    def add(self, groups: dict[tuple[str, str], list[str]]) -> None:
        """Record one response's groups (later responses win per entity and property)."""
        self.final.update(groups)

    def plan(self, engine: Any, before_read: Callable[[Iterable[str]], None] | None = None) -> tuple[list[ox.Quad], list[str]]:
        """Quads to delete, and N-Triples lines to insert, for this graph.

        :param before_read: called with the entities about to be read from the store (so a
            write still in progress for any of them can be waited for).
        """
        if self.seen is not None:
            self._skip_unchanged()
        inserts: set[str] = set()
        for lines in self.final.values():
            inserts.update(lines)
        subjects = {s for s, _ in self.final}
        check = subjects if self.known is None else [s for s in subjects if s in self.known]
        deletes: list[ox.Quad] = []
        unchanged: set[str] = set()
        old_owned: list[ox.NamedNode] = []

        def consider(q: ox.Quad) -> None:
            line = f"{q.subject} {q.predicate} {q.object} .\n"
            if line in inserts:
                unchanged.add(line)
            else:
                deletes.append(q)
            o = q.object
            if isinstance(o, ox.NamedNode) and o.value.startswith(GENID):
                old_owned.append(o)

        if check:
            if before_read is not None:
                before_read(check)
            final = self.final
            for q in engine.quads_for_subjects([_node(s) for s in check], self.graph):
                if (str(q.subject), str(q.predicate)) in final:
                    consider(q)
        done: set[ox.NamedNode] = set()
        while old_owned:
            batch = [n for n in dict.fromkeys(old_owned) if n not in done]
            old_owned = []
            done.update(batch)
            for q in engine.quads_for_subjects(batch, self.graph):
                consider(q)
        if self.known is not None:
            self.known.update(subjects)
        return deletes, [line for line in inserts if line not in unchanged]

    def _skip_unchanged(self) -> None:
        """Drop entities observed exactly as this process last wrote them: the upsert would change nothing."""
        by_entity: dict[str, list[tuple[str, str]]] = {}
        for key in self.final:
            by_entity.setdefault(key[0], []).append(key)
        seen = self.seen
        assert seen is not None
        for entity, keys in by_entity.items():
            keys.sort()
            digest = hash(tuple((k[1], tuple(sorted(self.final[k]))) for k in keys))
            if seen.get(entity) == digest:
                for k in keys:
                    del self.final[k]
            else:
                self._written[entity] = digest

    def final_subjects(self) -> set[str]:
        return {s for s, _ in self.final}

    def committed(self) -> None:
        """Call once the plan is written: remember what each entity now holds."""
        if self.seen is not None:
            self.seen.update(self._written)


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
