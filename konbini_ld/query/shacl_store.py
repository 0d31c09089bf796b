"""The data graph as pySHACL reads it: a lean rdflib store built once from the engine.

rdflib's in-memory store keeps three indexes and, for every triple, the contexts it is in, and
tells listeners of each addition: for a graph read once from Oxigraph and then only read, that is
most of what building it costs, and most of its memory (a week's store of a collector: 976 MiB
for validation against 412 MiB with this one). :class:`TripleIndex` keeps what pySHACL's lookups
use, subject → predicate → objects and predicate → object → subjects; any other pattern is a
scan. It is a complete rdflib store for one graph (additions, removals, any pattern, paths and
SPARQL through rdflib's own evaluation), so shapes of a user's own run on it as on rdflib's.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

from rdflib.store import Store

__all__ = ["TripleIndex"]

#: Objects of one subject and predicate past which membership is kept in a set beside the list.
_LISTED = 16

_NO_CONTEXTS: tuple[Any, ...] = ()


class TripleIndex(Store):
    """One graph's triples, indexed by subject and by predicate; contexts are not kept (every
    triple is in the one graph the store backs)."""

    context_aware = True  # (pySHACL wraps the graph in a Dataset, which asks for these)
    graph_aware = True
    formula_aware = False
    transaction_aware = False

    def __init__(self, configuration: Any = None, identifier: Any = None) -> None:
        super().__init__(configuration, identifier)
        self._spo: dict[Any, dict[Any, list[Any]]] = {}
        self._pos: dict[Any, dict[Any, list[Any]]] = {}
        self._sets: dict[tuple[Any, Any], set[Any]] = {}
        self._count = 0
        self._prefixes: dict[str, Any] = {}
        self._namespaces: dict[Any, str] = {}

    # -- building ---------------------------------------------------------------

    def add_triple(self, s: Any, p: Any, o: Any) -> bool:
        """Add one triple (terms as rdflib's); whether it was new."""
        by_p = self._spo.get(s)
        if by_p is None:
            by_p = self._spo[s] = {}
        objects = by_p.get(p)
        if objects is None:
            by_p[p] = [o]
        else:
            if len(objects) < _LISTED:
                if o in objects:
                    return False
            else:
                held = self._sets.get((s, p))
                if held is None:
                    held = self._sets[(s, p)] = set(objects)
                if o in held:
                    return False
                held.add(o)
            objects.append(o)
        by_o = self._pos.get(p)
        if by_o is None:
            by_o = self._pos[p] = {}
        subjects = by_o.get(o)
        if subjects is None:
            by_o[o] = [s]
        else:
            subjects.append(s)
        self._count += 1
        return True

    def add(self, triple: Any, context: Any, quoted: bool = False) -> None:
        if quoted:
            raise TypeError("a TripleIndex holds no formulas")
        s, p, o = triple
        self.add_triple(s, p, o)

    def remove(self, triple: Any, context: Any = None) -> None:
        for (s, p, o), _ in list(self.triples(triple)):
            by_p = self._spo[s]
            objects = by_p[p]
            objects.remove(o)
            held = self._sets.get((s, p))
            if held is not None:
                held.discard(o)
            if not objects:
                del by_p[p]
                self._sets.pop((s, p), None)
                if not by_p:
                    del self._spo[s]
            by_o = self._pos[p]
            subjects = by_o[o]
            subjects.remove(s)
            if not subjects:
                del by_o[o]
                if not by_o:
                    del self._pos[p]
            self._count -= 1

    # -- reading ----------------------------------------------------------------

    def triples(self, triple_pattern: Any, context: Any = None) -> Iterator[tuple[tuple[Any, Any, Any], Any]]:
        # (lists are copied before they are walked: a caller may change the graph as it reads)
        s, p, o = triple_pattern
        none = iter(_NO_CONTEXTS)
        if s is not None:
            by_p = self._spo.get(s)
            if by_p is None:
                return
            if p is not None:
                objects = by_p.get(p)
                if objects is None:
                    return
                if o is not None:
                    held = self._sets.get((s, p))
                    if (o in held) if held is not None else (o in objects):
                        yield (s, p, o), none
                    return
                for x in list(objects):
                    yield (s, p, x), none
                return
            for pp, objects in list(by_p.items()):
                for x in list(objects):
                    if o is None or x == o:
                        yield (s, pp, x), none
            return
        if p is not None:
            by_o = self._pos.get(p)
            if by_o is None:
                return
            if o is not None:
                for x in list(by_o.get(o, ())):
                    yield (x, p, o), none
                return
            for oo, subjects in list(by_o.items()):
                for x in list(subjects):
                    yield (x, p, oo), none
            return
        for ss, by_p in list(self._spo.items()):
            for pp, objects in list(by_p.items()):
                for x in list(objects):
                    if o is None or x == o:
                        yield (ss, pp, x), none

    def __len__(self, context: Any = None) -> int:
        return self._count

    def contexts(self, triple: Any = None) -> Generator[Any, None, None]:
        yield from _NO_CONTEXTS

    def add_graph(self, graph: Any) -> None:
        pass  # (the one graph it backs)

    def remove_graph(self, graph: Any) -> None:
        self.remove((None, None, None), graph)

    # -- prefixes (what a graph's namespace manager binds) ------------------------

    def bind(self, prefix: str, namespace: Any, override: bool = True) -> None:
        if not override and (prefix in self._prefixes or namespace in self._namespaces):
            return
        old = self._prefixes.pop(prefix, None)
        if old is not None:
            self._namespaces.pop(old, None)
        old_prefix = self._namespaces.pop(namespace, None)
        if old_prefix is not None:
            self._prefixes.pop(old_prefix, None)
        self._prefixes[prefix] = namespace
        self._namespaces[namespace] = prefix

    def namespace(self, prefix: str) -> Any:
        return self._prefixes.get(prefix)

    def prefix(self, namespace: Any) -> str | None:
        return self._namespaces.get(namespace)

    def namespaces(self) -> Iterator[tuple[str, Any]]:
        yield from list(self._prefixes.items())
