"""Copying a store's graphs to a remote SPARQL server (``konbini-ld push``)."""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING

from ..engines.remote_http import DEFAULT_TIMEOUT
from ..engines.sparql_http import OUR_GRAPHS, SparqlHttpEngine, derive_endpoints

if TYPE_CHECKING:
    from .store import Store

__all__ = ["push"]

_CHUNK_LINES = 20_000


def push(
    store: Store, to: str, *, update_url: str | None = None, gsp_url: str | None = None,
    remote_timeout: float | None = None,
) -> dict[str, int]:
    """Copy ``store``'s graphs into the SPARQL server whose query endpoint is ``to``.

    Each konbini-ld graph replaces the graph of the same name on the target (Graph Store
    ``PUT``; ``CLEAR`` then updates where there is no Graph Store endpoint, or where its
    loader reshapes literals, as Virtuoso's does), so a push is idempotent. Returns triples
    pushed per graph. ``remote_timeout`` bounds each request to the target (default 60 s).
    """
    target = SparqlHttpEngine(derive_endpoints(to, update=update_url, gsp=gsp_url),
                              timeout=DEFAULT_TIMEOUT if remote_timeout is None else remote_timeout)
    counts: dict[str, int] = {}
    try:
        for graph in OUR_GRAPHS:
            quads = store.engine.iter_quads(graph)
            with tempfile.TemporaryFile() as fh:
                n = 0
                for q in quads:
                    fh.write(f"{q.subject} {q.predicate} {q.object} .\n".encode())
                    n += 1
                fh.seek(0)
                if target.endpoints.gsp and not target.is_virtuoso:
                    target.replace_graph(graph, fh)
                else:  # no Graph Store, or one whose loader reshapes literals: updates, a chunk at a time
                    target.clear_graph(graph)
                    chunk: list[str] = []
                    for line in fh:
                        chunk.append(line.decode())
                        if len(chunk) >= _CHUNK_LINES:
                            target.apply([], {graph: chunk})
                            chunk = []
                    if chunk:
                        target.apply([], {graph: chunk})
            counts[graph.value] = n
    finally:
        target.close()
    return counts
