"""Virtuoso 7, as a remote store: what it would lose, and how konbini-ld writes around it.

* Its Graph Store loader turns integers beyond 32 bits into decimals: those statements go
  through SPARQL Update.
* It compiles each update to SQL and refuses one past 10,000 lines of it: updates stay small.
* It cannot keep ``xsd:duration`` literals (``"PT23S"`` comes back as ``"23.23"``) and fails
  an update that contains one: durations go through the Graph Store and are deleted by
  pattern; :data:`LOSSY` declares them, so that validation reports them apart.

(Its silent cap on result sizes is handled for every server, by paging reads.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .endpoints import Endpoints

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pyoxigraph as ox

__all__ = ["LOSSY", "apply"]

#: Virtuoso compiles each update to SQL and refuses one past 10,000 lines of it: small updates.
UPDATE_QUADS = 500
_DURATION = "http://www.w3.org/2001/XMLSchema#duration"
_DURATION_NT = f"^^<{_DURATION}>"
#: What Virtuoso 7 cannot store faithfully: it rewrites ``"PT23S"^^xsd:duration`` as ``"23.23"``.
LOSSY = frozenset({_DURATION})


_INTEGER_LITERAL = re.compile(r'"([+-]?\d+)"\^\^<http://www\.w3\.org/2001/XMLSchema#integer> \.\n$')


def _big_integer(line: str) -> bool:
    """An N-Triples line whose object is an integer outside 32 bits."""
    m = _INTEGER_LITERAL.search(line)
    return m is not None and not -(2**31) <= int(m.group(1)) < 2**31



def _is_duration(term: Any) -> bool:
    return isinstance(term, ox.Literal) and term.datatype.value == _DURATION



class _Writes(Protocol):
    """What Virtuoso's writes need of the SPARQL HTTP engine they run on."""

    endpoints: Endpoints

    def _update(self, text: str) -> None: ...

    def _upload(self, graph: ox.NamedNode, lines: Sequence[str]) -> None: ...


def apply(engine: _Writes, deletes: Sequence[ox.Quad], inserts: Mapping[ox.NamedNode, Sequence[str]]) -> None:
    """Virtuoso 7 keeps integers beyond 32 bits only through SPARQL Update (its Graph Store
    loader turns them into decimals), but cannot parse ``xsd:duration`` literals in an update:
    those go through the Graph Store (where Virtuoso rewrites them, see ``lossy_datatypes``)
    and are deleted by pattern. Everything else goes through the (much faster) Graph Store."""
    for graph, quads in by_graph(deletes).items():
        plain = [q for q in quads if not _is_duration(q.object)]
        for i in range(0, len(plain), UPDATE_QUADS):
            engine._update(f"DELETE DATA {{ GRAPH {graph} {{\n{nt(plain[i : i + UPDATE_QUADS])}}} }}")
        pairs = sorted({f"({q.subject} {q.predicate})" for q in quads if _is_duration(q.object)})
        for i in range(0, len(pairs), UPDATE_QUADS // 5):
            engine._update(f"DELETE {{ GRAPH {graph} {{ ?s ?p ?o }} }} WHERE {{ GRAPH {graph} {{ "
                         f"VALUES (?s ?p) {{ {' '.join(pairs[i : i + UPDATE_QUADS // 5])} }} ?s ?p ?o "
                         f"FILTER(datatype(?o) = <{_DURATION}>) }} }}")
    for graph, lines in inserts.items():
        big = [line for line in lines if _big_integer(line)]
        loaded = [line for line in lines if not _big_integer(line)]
        for i in range(0, len(big), UPDATE_QUADS):
            engine._update(f"INSERT DATA {{ GRAPH {graph} {{\n{''.join(big[i : i + UPDATE_QUADS])}}} }}")
        if engine.endpoints.gsp:
            engine._upload(graph, loaded)
            continue
        for i in range(0, len(loaded), UPDATE_QUADS):  # (no Graph Store: updates as small as Virtuoso takes)
            engine._update(f"INSERT DATA {{ GRAPH {graph} {{\n{''.join(loaded[i : i + UPDATE_QUADS])}}} }}")



def by_graph(quads: Sequence[ox.Quad]) -> dict[Any, list[ox.Quad]]:
    out: dict[Any, list[ox.Quad]] = {}
    for q in quads:
        out.setdefault(q.graph_name, []).append(q)
    return out


def nt(quads: Sequence[ox.Quad]) -> str:
    return "".join(f"{q.subject} {q.predicate} {q.object} .\n" for q in quads)
