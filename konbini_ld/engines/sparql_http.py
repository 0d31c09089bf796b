"""A remote SPARQL 1.1 server as the store: Query, Update and the Graph Store Protocol.

The URL given is the server's query endpoint; the update and Graph Store
endpoints are derived for known servers and can be given explicitly:

================  ==========================================  ===========================  ==============================
server            query endpoint (``--store``)                 update endpoint              Graph Store endpoint
================  ==========================================  ===========================  ==============================
Oxigraph          ``http://host:7878/query``                   ``…/update``                 ``…/store``
Apache Jena Fuseki ``http://host:3030/ds/sparql`` (or ``/query``) ``…/ds/update``            ``…/ds/data``
GraphDB / RDF4J   ``http://host:7200/repositories/repo``       ``…/repo/statements``        ``…/repo/rdf-graphs/service``
Virtuoso          ``http://host:8890/sparql``                  ``…/sparql`` (``/sparql-auth``) ``…/sparql-graph-crud``
================  ==========================================  ===========================  ==============================

konbini-ld writes only its own two named graphs, so it can share a server with
other data. The same upsert, provenance and no-blank-node rules apply as for the
embedded store: the planning happens here, the server receives plain
``DELETE DATA`` updates and Graph Store ``POST`` uploads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import pyoxigraph as ox
import requests

from ..errors import QueryError, StoreError, UsageError
from ..sparql import has_dataset_clause, query_form, where_braces
from ..urls import redact
from ..vocab import DATA_GRAPH, PROV_GRAPH
from .base import Capabilities, WriteRejected

__all__ = ["Endpoints", "SparqlHttpEngine", "bind_with_values", "derive_endpoints"]

OUR_GRAPHS = (ox.NamedNode(DATA_GRAPH), ox.NamedNode(PROV_GRAPH))
_CHUNK_SUBJECTS = 200
_CHUNK_QUADS = 20_000


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The three endpoints of a SPARQL server."""

    query: str
    update: str | None
    gsp: str | None


def derive_endpoints(query_url: str, *, update: str | None = None, gsp: str | None = None) -> Endpoints:
    """Derive the update and Graph Store endpoints of known servers from the query endpoint.

    >>> derive_endpoints("http://127.0.0.1:7878/query")
    Endpoints(query='http://127.0.0.1:7878/query', update='http://127.0.0.1:7878/update', gsp='http://127.0.0.1:7878/store')
    >>> derive_endpoints("http://h:3030/ds/sparql").gsp
    'http://h:3030/ds/data'
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
    return Endpoints(query_url, update or d_update, gsp or d_gsp)


def _nt(quads: Sequence[ox.Quad]) -> str:
    return "".join(f"{q.subject} {q.predicate} {q.object} .\n" for q in quads)


class SparqlHttpEngine:
    """An :class:`~konbini_ld.engines.base.Engine` over the SPARQL 1.1 protocols.

    :param endpoints: where to send queries, updates and graph uploads.
    :param timeout: seconds for every request.
    :param session: an injectable ``requests.Session``.
    """

    capabilities = Capabilities(exclusive_writer=False, write_behind=False, substitution=False, transactions=False,
                                bulk_load=False, read_only_views=True, timeouts=True, persistent=True)

    def __init__(self, endpoints: Endpoints, *, timeout: float = 60.0, session: requests.Session | None = None) -> None:
        self.endpoints = endpoints
        self.description = redact(endpoints.query)
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.trust_env = False

    # -- HTTP ------------------------------------------------------------------

    def _post(self, url: str, *, what: str, **kw: Any) -> requests.Response:
        try:
            r = self.session.post(url, timeout=self.timeout, **kw)
        except requests.RequestException as exc:
            raise StoreError(f"{what} at {redact(url)} failed: {type(exc).__name__}") from None
        if r.status_code >= 400:
            detail = r.text.strip().splitlines()[0][:300] if r.text.strip() else ""
            message = f"{what} at {redact(url)} answered HTTP {r.status_code}: {detail}"
            if r.status_code == 400 and what == "query":
                raise QueryError(message)
            if r.status_code in (400, 415, 422) and what in ("update", "graph upload"):
                raise WriteRejected(message)  # the server refused what was sent, not the connection
            raise StoreError(message)
        return r

    def _select(self, sparql: str) -> ox.QuerySolutions:
        r = self._post(self.endpoints.query, what="query", data={"query": sparql},
                       headers={"Accept": "application/sparql-results+json"})
        results = ox.parse_query_results(r.content, ox.QueryResultsFormat.JSON)
        if not isinstance(results, ox.QuerySolutions):
            raise StoreError(f"{self.description} answered a SELECT with a boolean")
        return results

    def _update(self, sparql: str) -> None:
        if not self.endpoints.update:
            raise StoreError(f"no SPARQL update endpoint known for {self.description}: give --update-url")
        self._post(self.endpoints.update, what="update", data={"update": sparql})

    # -- Backend protocol --------------------------------------------------------

    def quads_for_subjects(self, subjects: Sequence[ox.NamedNode], graph: ox.NamedNode | None) -> Iterator[ox.Quad]:
        subjects = list(subjects)
        for i in range(0, len(subjects), _CHUNK_SUBJECTS):
            values = " ".join(str(s) for s in subjects[i : i + _CHUNK_SUBJECTS])
            g = str(graph) if graph is not None else "?g"
            proj = "" if graph is not None else " ?g"
            for row in self._select(f"SELECT ?s ?p ?o{proj} WHERE {{ GRAPH {g} {{ VALUES ?s {{ {values} }} ?s ?p ?o }} }}"):
                yield ox.Quad(row["s"], row["p"], row["o"], graph if graph is not None else row["g"])

    def apply(self, deletes: Sequence[ox.Quad], inserts: Mapping[ox.NamedNode, Sequence[str]]) -> None:
        try:
            self._apply(deletes, inserts)
        except UnicodeError as exc:
            raise WriteRejected(f"{type(exc).__name__}: {exc}") from exc

    def _apply(self, deletes: Sequence[ox.Quad], inserts: Mapping[ox.NamedNode, Sequence[str]]) -> None:
        for graph, quads in _by_graph(deletes).items():
            for i in range(0, len(quads), _CHUNK_QUADS):
                self._update(f"DELETE DATA {{ GRAPH {graph} {{\n{_nt(quads[i : i + _CHUNK_QUADS])}}} }}")
        for graph, lines in inserts.items():
            for i in range(0, len(lines), _CHUNK_QUADS * 5):
                text = "".join(lines[i : i + _CHUNK_QUADS * 5])
                if self.endpoints.gsp:
                    self._post(self.endpoints.gsp, what="graph upload", params={"graph": graph.value},
                               data=text.encode("utf-8"), headers={"Content-Type": "application/n-triples"})
                else:
                    self._update(f"INSERT DATA {{ GRAPH {graph} {{\n{text}}} }}")

    def replace_graph(self, graph: ox.NamedNode, ntriples: IO[bytes] | bytes) -> None:
        """Replace a whole graph with N-Triples (Graph Store ``PUT``): an idempotent copy."""
        if not self.endpoints.gsp:
            raise StoreError(f"no Graph Store endpoint known for {self.description}: give --gsp-url")
        try:
            r = self.session.put(self.endpoints.gsp, params={"graph": graph.value}, data=ntriples,
                                 headers={"Content-Type": "application/n-triples"}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise StoreError(f"graph upload to {redact(self.endpoints.gsp)} failed: {type(exc).__name__}") from None
        if r.status_code >= 400:
            raise StoreError(f"graph upload to {redact(self.endpoints.gsp)} answered HTTP {r.status_code}")

    def clear_graph(self, graph: ox.NamedNode) -> None:
        self._update(f"CLEAR SILENT GRAPH {graph}")

    def move_graphs(self, moves: Mapping[ox.NamedNode, ox.NamedNode]) -> None:
        """Replace each target graph with its source graph, in one update request."""
        self._update(" ;\n".join(f"MOVE SILENT GRAPH {src} TO GRAPH {dst}" for src, dst in moves.items()))

    def query(
        self, sparql: str, *, substitutions: dict[str, Any] | None = None, union: bool = True
    ) -> ox.QuerySolutions | ox.QueryBoolean | ox.QueryTriples:
        if substitutions:
            sparql = bind_with_values(sparql, substitutions)
        form = query_form(sparql)
        data: dict[str, Any] = {"query": sparql}
        if union and not has_dataset_clause(sparql):
            # the protocol's dataset: union of our graphs as default graph, and both as named graphs
            data["default-graph-uri"] = [g.value for g in OUR_GRAPHS]
            data["named-graph-uri"] = [g.value for g in OUR_GRAPHS]
        graph_result = form in ("CONSTRUCT", "DESCRIBE")
        accept = "application/n-triples" if graph_result else "application/sparql-results+json"
        r = self._post(self.endpoints.query, what="query", data=data, headers={"Accept": accept})
        if graph_result:
            return (q.triple for q in ox.parse(r.content, ox.RdfFormat.N_TRIPLES))  # type: ignore[return-value]  # iterated like QueryTriples
        try:
            return ox.parse_query_results(r.content, ox.QueryResultsFormat.JSON)
        except SyntaxError as exc:
            raise QueryError(f"unreadable results from {self.description}: {exc}") from None

    def iter_quads(self, graph: ox.NamedNode | None = None) -> Iterator[ox.Quad]:
        """Every quad of konbini-ld's graphs (or of ``graph``), streamed (Graph Store ``GET`` when there is one)."""
        for graph in OUR_GRAPHS if graph is None else (graph,):
            if self.endpoints.gsp:
                try:
                    r = self.session.get(self.endpoints.gsp, params={"graph": graph.value}, stream=True,
                                         headers={"Accept": "application/n-triples"}, timeout=self.timeout)
                except requests.RequestException as exc:
                    raise StoreError(f"reading {graph.value} from {self.description} failed: {type(exc).__name__}") from None
                if r.status_code == 404:
                    continue  # the graph does not exist yet
                if r.status_code >= 400:
                    raise StoreError(f"reading {graph.value} from {self.description} answered HTTP {r.status_code}")
                r.raw.decode_content = True
                for q in ox.parse(r.raw, ox.RdfFormat.N_TRIPLES):  # type: ignore[arg-type]  # a binary stream
                    yield ox.Quad(q.subject, q.predicate, q.object, graph)
            else:
                for row in self._select(f"SELECT ?s ?p ?o WHERE {{ GRAPH {graph} {{ ?s ?p ?o }} }}"):
                    yield ox.Quad(row["s"], row["p"], row["o"], graph)

    def dump(self, output: IO[bytes], fmt: ox.RdfFormat, *, prefixes: dict[str, str]) -> None:
        ox.serialize(self.iter_quads(), output, fmt, prefixes=prefixes)

    def count(self) -> int:
        values = " ".join(str(g) for g in OUR_GRAPHS)
        row = next(iter(self._select(f"SELECT (COUNT(*) AS ?c) WHERE {{ VALUES ?g {{ {values} }} GRAPH ?g {{ ?s ?p ?o }} }}")))
        return int(row["c"].value)

    def rdflib_store(self) -> Any:
        from rdflib.plugins.stores.sparqlstore import SPARQLUpdateStore

        return SPARQLUpdateStore(self.endpoints.query, self.endpoints.update or self.endpoints.query)

    def close(self) -> None:
        self.session.close()


def _by_graph(quads: Sequence[ox.Quad]) -> dict[Any, list[ox.Quad]]:
    out: dict[Any, list[ox.Quad]] = {}
    for q in quads:
        out.setdefault(q.graph_name, []).append(q)
    return out


def bind_with_values(sparql: str, substitutions: dict[str, Any]) -> str:
    """Bind variables for a server without parameter support: a ``VALUES`` block opening every WHERE group.

    The terms are written by Oxigraph's serialiser, so a value can never escape its term.

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
