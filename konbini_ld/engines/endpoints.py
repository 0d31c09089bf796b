"""A SPARQL server's endpoints, and parameters bound without server-side substitution.

The URL users give is the query endpoint; the update and Graph Store endpoints are derived
for known servers (Oxigraph, Fuseki, GraphDB/RDF4J, Virtuoso) and can be given explicitly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import QueryError, UsageError
from ..sparql import where_braces
from ..urls import redact

__all__ = ["GSP_OFF", "Endpoints", "bind_with_values", "derive_endpoints"]

#: ``--gsp-url`` for a server without the Graph Store Protocol.
GSP_OFF = "none"


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The three endpoints of a SPARQL server."""

    query: str
    update: str | None
    gsp: str | None


def derive_endpoints(query_url: str, *, update: str | None = None, gsp: str | None = None) -> Endpoints:
    """Derive the update and Graph Store endpoints of known servers from the query endpoint.
    ``gsp="none"`` turns the Graph Store Protocol off (servers without it: graphs are then
    written with SPARQL Update and read with ``CONSTRUCT``).

    >>> derive_endpoints("http://127.0.0.1:7878/query")
    Endpoints(query='http://127.0.0.1:7878/query', update='http://127.0.0.1:7878/update', gsp='http://127.0.0.1:7878/store')
    >>> derive_endpoints("http://h:3030/ds/sparql").gsp
    'http://h:3030/ds/data'
    >>> derive_endpoints("http://h:3030/ds/sparql", gsp="none").gsp is None
    True
    """
    parts = urlsplit(query_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--store {redact(query_url)!r} is not an http(s) SPARQL endpoint URL")
    path = parts.path.rstrip("/")

    def at(new_path: str) -> str:
        return urlunsplit(parts._replace(path=new_path, query="", fragment=""))

    d_update = d_gsp = None
    if path.endswith("/query") and path.count("/") == 1:  # Oxigraph
        d_update, d_gsp = at("/update"), at("/store")
    elif re.fullmatch(r"/[^/]+/(sparql|query)", path):  # Fuseki dataset
        base = path.rsplit("/", 1)[0]
        d_update, d_gsp = at(base + "/update"), at(base + "/data")
    elif re.fullmatch(r".*/repositories/[^/]+", path):  # GraphDB, RDF4J
        d_update, d_gsp = at(path + "/statements"), at(path + "/rdf-graphs/service")
    elif path == "/sparql":  # Virtuoso
        d_update, d_gsp = at("/sparql"), at("/sparql-graph-crud")
    if gsp is not None and gsp.strip().lower() == GSP_OFF:
        return Endpoints(query_url, update or d_update, None)
    return Endpoints(query_url, update or d_update, gsp or d_gsp)


def bind_with_values(sparql: str, substitutions: dict[str, Any]) -> str:
    """Bind variables for a server without parameter support: a ``VALUES`` block opening every WHERE group.

    The terms are written by Oxigraph's serialiser, so a value can never escape its term.

    >>> import pyoxigraph as ox
    >>> bind_with_values("SELECT ?a WHERE { ?a ?p ?o }", {"o": ox.Literal('x" } DROP ALL #')})
    'SELECT ?a WHERE { VALUES ?o { "x\\\\" } DROP ALL #" } ?a ?p ?o }'
    """
    positions = where_braces(sparql)
    if not positions:
        raise QueryError("cannot bind parameters: no WHERE group found in the query")
    block = " ".join(f"VALUES ?{name} {{ {term} }}" for name, term in substitutions.items())
    for at in sorted(positions, reverse=True):  # every group, subqueries included, sees the bound value
        sparql = f"{sparql[: at + 1]} {block}{sparql[at + 1 :]}"
    return sparql
