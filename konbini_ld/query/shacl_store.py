"""The data graph as pySHACL reads it: a lean rdflib store built once from the engine.

rdflib's in-memory store keeps three indexes and, for every triple, the contexts it is in, and
tells listeners of each addition: for a graph read once from Oxigraph and then only read, that is
most of what building it costs, and most of its memory (a week's store of a collector: 976 MiB
for validation against 412 MiB with this one). :class:`TripleIndex` keeps what pySHACL's lookups
use, subject → predicate → objects and predicate → object → subjects, and an object index built
on the first lookup by object alone; only the pattern that names nothing is a scan. It is a
complete rdflib store for one graph (additions, removals, any pattern, contexts as rdflib's own
store answers them, paths and SPARQL through rdflib's own evaluation), so shapes of a user's own
run on it as on rdflib's.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

from rdflib.store import Store
from rdflib.term import BNode

__all__ = ["TripleIndex"]

#: Objects of one subject and predicate past which membership is kept in a set beside the list.
_LISTED = 16


def _key(context: Any) -> str:
    """A context as rdflib's in-memory store tells contexts apart: by its identifier's kind and text."""
    identifier = getattr(context, "identifier", context)
    return f"{type(identifier).__name__}:{identifier}"


class TripleIndex(Store):
    """One graph's triples, indexed by subject and by predicate. Every triple is in the one graph
    the store backs (:meth:`graph`, or the first graph that adds to it): asked about another
    context, it holds nothing, as rdflib's in-memory store would say of a graph it was not given."""

    context_aware = True  # (pySHACL wraps the graph in a Dataset, which asks for these)
    graph_aware = True
    formula_aware = False
    transaction_aware = False

    def __init__(self, configuration: Any = None, identifier: Any = None) -> None:
        super().__init__(configuration, identifier)
        self._spo: dict[Any, dict[Any, list[Any]]] = {}
        self._pos: dict[Any, dict[Any, list[Any]]] = {}
        self._sets: dict[tuple[Any, Any], set[Any]] = {}
        #: object → (subject, predicate) pairs: built on the first lookup by object alone (pySHACL
        #: makes one for each result whose value is a blank node), kept up to date after
        self._osp: dict[Any, list[tuple[Any, Any]]] | None = None
        #: blank nodes ever added as objects (what :meth:`mentions` needs without the object index)
        self._blank_objects: set[Any] = set()
        self._count = 0
        #: the graph every triple is in, and how contexts asked about are matched to it
        self._graph: Any = None
        self._graph_key: str | None = None
        self._graphs: dict[str, Any] = {}  # every graph made known (``add_graph``), for ``contexts()``
        self._prefixes: dict[str, Any] = {}
        self._namespaces: dict[Any, str] = {}

    @classmethod
    def graph(cls) -> Any:
        """A new rdflib ``Graph`` on a new store of this kind (fill it with :meth:`add_triple`)."""
        from rdflib import Graph

        store = cls()
        graph = Graph(store=store)
        store._hold(graph)
        return graph

    def _hold(self, graph: Any) -> None:
        self._graph, self._graph_key = graph, _key(graph)

    def _ours(self, context: Any) -> bool:
        """Whether triples asked for in ``context`` are this store's (``None``: every context)."""
        return context is None or (self._graph_key is not None and _key(context) == self._graph_key)

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
            held = self._sets.get((s, p))
            if held is None and len(objects) < _LISTED:
                if o in objects:
                    return False
            else:  # (once kept, the set is kept up to date whatever the list's length)
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
        if self._osp is not None:
            self._osp.setdefault(o, []).append((s, p))
        if type(o) is BNode:
            self._blank_objects.add(o)
        if not self._count and self._graph_key is not None:  # (a graph is known once it has held a triple)
            self._graphs.setdefault(self._graph_key, self._graph)
        self._count += 1
        return True

    def add(self, triple: Any, context: Any, quoted: bool = False) -> None:
        if quoted:
            raise TypeError("a TripleIndex holds no formulas")
        if self._graph is None and context is not None:
            self._hold(context)
        elif not self._ours(context):
            raise ValueError("a TripleIndex holds the triples of one graph")
        s, p, o = triple
        self.add_triple(s, p, o)

    def remove(self, triple: Any, context: Any = None) -> None:
        if not self._ours(context):
            return
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
            if self._osp is not None:
                pairs = self._osp[o]
                pairs.remove((s, p))
                if not pairs:
                    del self._osp[o]
            by_o = self._pos[p]
            subjects = by_o[o]
            subjects.remove(s)
            if not subjects:
                del by_o[o]
                if not by_o:
                    del self._pos[p]
            self._count -= 1

    # -- reading ----------------------------------------------------------------

    def mentions(self, node: Any) -> bool:
        """Whether ``node`` is a subject of the graph, or a blank node it has held as an object."""
        return node in self._spo or node in self._blank_objects

    def triples(self, triple_pattern: Any, context: Any = None) -> Iterator[tuple[tuple[Any, Any, Any], Any]]:
        # (lists are copied before they are walked: a caller may change the graph as it reads)
        if not self._ours(context):
            return
        s, p, o = triple_pattern
        within: tuple[Any, ...] = () if self._graph is None else (self._graph,)  # (each triple's contexts)
        if s is not None:
            by_p = self._spo.get(s)
            if by_p is None:
                return
            if p is not None:
                objects = by_p.get(p)
                if objects is None:
                    return
                if o is not None:
                    if self._has(s, p, objects, o):
                        yield (s, p, o), iter(within)
                    return
                for x in list(objects):
                    yield (s, p, x), iter(within)
                return
            for pp, objects in list(by_p.items()):
                if o is None:
                    for x in list(objects):
                        yield (s, pp, x), iter(within)
                elif self._has(s, pp, objects, o):
                    yield (s, pp, o), iter(within)
            return
        if p is not None:
            by_o = self._pos.get(p)
            if by_o is None:
                return
            if o is not None:
                for x in list(by_o.get(o, ())):
                    yield (x, p, o), iter(within)
                return
            for oo, subjects in list(by_o.items()):
                for x in list(subjects):
                    yield (x, p, oo), iter(within)
            return
        if o is not None:
            for ss, pp in list(self._by_object().get(o, ())):
                yield (ss, pp, o), iter(within)
            return
        for ss, by_p in list(self._spo.items()):
            for pp, objects in list(by_p.items()):
                for x in list(objects):
                    yield (ss, pp, x), iter(within)

    def _has(self, s: Any, p: Any, objects: list[Any], o: Any) -> bool:
        """Whether ``o`` is among ``objects``, the values of ``s`` for ``p`` (through their set, once kept)."""
        held = self._sets.get((s, p))
        return o in held if held is not None else o in objects

    def _by_object(self) -> dict[Any, list[tuple[Any, Any]]]:
        if self._osp is None:
            osp: dict[Any, list[tuple[Any, Any]]] = {}
            for ss, by_p in self._spo.items():
                for pp, objects in by_p.items():
                    for x in objects:
                        osp.setdefault(x, []).append((ss, pp))
            self._osp = osp
        return self._osp

    def __len__(self, context: Any = None) -> int:
        return self._count if self._ours(context) else 0

    def contexts(self, triple: Any = None) -> Generator[Any, None, None]:
        if triple is None:
            yield from list(self._graphs.values())
        elif self._graph is not None and any(True for _ in self.triples(triple)):
            yield self._graph

    def add_graph(self, graph: Any) -> None:
        self._graphs.setdefault(_key(graph), graph)

    def remove_graph(self, graph: Any) -> None:
        self.remove((None, None, None), graph)
        self._graphs.pop(_key(graph), None)

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
