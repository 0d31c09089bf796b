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

konbini-ld writes only its own named graphs, so it can share a server with
other data. The same upsert, provenance and no-blank-node rules apply as for the
embedded store: the planning happens here, the server receives plain
``DELETE DATA`` updates and Graph Store ``POST`` uploads.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import IO, Any

import pyoxigraph as ox
import requests

from ..errors import QueryError, StoreError
from ..lexical import canonical_lexical
from ..sparql import has_dataset_clause, query_form
from ..urls import redact
from ..vocab import GRAPHS
from . import virtuoso
from .base import Capabilities, Dataset, WriteRejected
from .endpoints import Endpoints, bind_with_values, derive_endpoints

__all__ = ["Endpoints", "SparqlHttpEngine", "bind_with_values", "derive_endpoints"]  # (endpoints re-exported)

OUR_GRAPHS = tuple(ox.NamedNode(g) for g in GRAPHS)
_CHUNK_SUBJECTS = 200
_CHUNK_QUADS = 20_000
#: Rows asked for per page: below every result cap seen in servers (Virtuoso: 10,000).
_PAGE_ROWS = 1_000


def _nt(quads: Sequence[ox.Quad]) -> str:
    return "".join(f"{q.subject} {q.predicate} {q.object} .\n" for q in quads)


class SparqlHttpEngine:
    """An :class:`~konbini_ld.engines.base.Engine` over the SPARQL 1.1 protocols.

    :param endpoints: where to send queries, updates and graph uploads.
    :param timeout: seconds for every request.
    :param session: an injectable ``requests.Session``.
    """

    _CAPABILITIES = Capabilities(exclusive_writer=False, write_behind=False, substitution=False, transactions=False,
                                 bulk_load=False, read_only_views=True, timeouts=True, persistent=True)

    def __init__(self, endpoints: Endpoints, *, timeout: float = 60.0, session: requests.Session | None = None) -> None:
        self.endpoints = endpoints
        self.description = redact(endpoints.query)
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.trust_env = False
        self._server: str | None = None

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

    def quads_for_subjects(self, subjects: Sequence[ox.NamedNode], graph: ox.NamedNode | None,
                           predicates: Sequence[ox.NamedNode] | None = None) -> Iterator[ox.Quad]:
        subjects = list(subjects)
        only = f"VALUES ?p {{ {' '.join(str(p) for p in predicates)} }} " if predicates is not None else ""
        for i in range(0, len(subjects), _CHUNK_SUBJECTS):
            values = " ".join(str(s) for s in subjects[i : i + _CHUNK_SUBJECTS])
            g = str(graph) if graph is not None else "?g"
            variables = "?s ?p ?o" if graph is not None else "?s ?p ?o ?g"
            for row in self._select_paged(variables, f"GRAPH {g} {{ VALUES ?s {{ {values} }} {only}?s ?p ?o }}"):
                yield ox.Quad(row["s"], row["p"], _canonical(row["o"]), graph if graph is not None else row["g"])

    def _select_paged(self, variables: str, where: str) -> Iterator[ox.QuerySolution]:
        """Every solution, a page at a time: servers cap result sizes silently (Virtuoso at 10,000 rows).

        The order is fixed in a subquery and the page taken outside it, the scrollable-cursor
        form that Virtuoso also accepts past its sort limit.
        """
        offset = 0
        while True:
            page = list(self._select(f"SELECT {variables} WHERE {{ {{ SELECT {variables} WHERE {{ {where} }} "
                                     f"ORDER BY {variables} }} }} LIMIT {_PAGE_ROWS} OFFSET {offset}"))
            yield from page
            if len(page) < _PAGE_ROWS:
                return
            offset += _PAGE_ROWS

    def _graph_count(self, graph: ox.NamedNode) -> int:
        row = next(iter(self._select(f"SELECT (COUNT(*) AS ?c) WHERE {{ GRAPH {graph} {{ ?s ?p ?o }} }}")))
        return int(row["c"].value)

    def apply(self, deletes: Sequence[ox.Quad], inserts: Mapping[ox.NamedNode, Sequence[str]]) -> None:
        try:
            self._apply(deletes, inserts)
        except UnicodeError as exc:
            raise WriteRejected(f"{type(exc).__name__}: {exc}") from exc

    @property
    def server(self) -> str:
        """The server's software, from its ``Server`` header (read once)."""
        if self._server is None:
            try:
                r = self.session.get(self.endpoints.query, params={"query": "ASK {}"}, timeout=self.timeout,
                                     headers={"Accept": "application/sparql-results+json"})
                self._server = r.headers.get("Server", "")
            except requests.RequestException:
                self._server = ""
        return self._server

    @property
    def capabilities(self) -> Capabilities:
        """What this server can do (asked of it once: Virtuoso declares what it cannot keep)."""
        if self.is_virtuoso:
            return replace(self._CAPABILITIES, lossy_datatypes=virtuoso.LOSSY)
        return self._CAPABILITIES

    @property
    def is_virtuoso(self) -> bool:
        return "virtuoso" in self.server.lower()

    def _apply(self, deletes: Sequence[ox.Quad], inserts: Mapping[ox.NamedNode, Sequence[str]]) -> None:
        if self.is_virtuoso:
            virtuoso.apply(self, deletes, inserts)
            return
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
        self, sparql: str, *, substitutions: dict[str, Any] | None = None, union: bool = True,
        dataset: Dataset | None = None,
    ) -> ox.QuerySolutions | ox.QueryBoolean | ox.QueryTriples:
        if substitutions:
            sparql = bind_with_values(sparql, substitutions)
        form = query_form(sparql)
        data: dict[str, Any] = {"query": sparql}
        if dataset is not None:
            data["default-graph-uri"] = list(dataset.default_graphs)
            data["named-graph-uri"] = list(dataset.named_graphs)
        elif union and not has_dataset_clause(sparql):
            # the protocol's dataset: union of our graphs as default graph, and each as a named graph
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
        """Every quad of konbini-ld's graphs (or of ``graph``).

        Read with a Graph Store ``GET`` when there is one, spooled to a temporary file and
        checked against the graph's size: a server that cuts the answer short (Virtuoso stops
        at its ``ResultSetMaxRows``) is read again page by page instead.
        """
        for graph in OUR_GRAPHS if graph is None else (graph,):
            expected = self._graph_count(graph)
            if expected == 0:
                continue
            if self.endpoints.gsp:
                spooled = self._graph_store_get(graph)
                if spooled is not None:
                    with spooled:
                        if spooled.count == expected:
                            spooled.file.seek(0)
                            for q in ox.parse(spooled.file, ox.RdfFormat.N_TRIPLES):
                                yield ox.Quad(q.subject, q.predicate, _canonical(q.object), graph)
                            continue
            n = 0
            for row in self._select_paged("?s ?p ?o", f"GRAPH {graph} {{ ?s ?p ?o }}"):
                n += 1
                yield ox.Quad(row["s"], row["p"], _canonical(row["o"]), graph)
            if n != expected:
                raise StoreError(f"{self.description} answered {n} of the {expected} triples of {graph.value}; "
                                 "it cuts results short below the page size konbini-ld reads")

    def _graph_store_get(self, graph: ox.NamedNode) -> _Spooled | None:
        try:
            r = self.session.get(self.endpoints.gsp or "", params={"graph": graph.value}, stream=True,
                                 headers={"Accept": "application/n-triples"}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise StoreError(f"reading {graph.value} from {self.description} failed: {type(exc).__name__}") from None
        if r.status_code == 404:
            return None
        if r.status_code >= 400:
            raise StoreError(f"reading {graph.value} from {self.description} answered HTTP {r.status_code}")
        spooled = _Spooled(tempfile.TemporaryFile())
        for chunk in r.iter_content(1 << 16):
            spooled.file.write(chunk)
            spooled.count += chunk.count(b"\n")
        return spooled

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


class _Spooled:
    """A Graph Store answer kept on disk, with its line count."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.count = 0

    def __enter__(self) -> _Spooled:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _canonical(term: Any) -> Any:
    """A literal in its canonical form (servers answer ``"1"^^xsd:boolean`` for ``true``…), so
    that the upsert recognises the values it wrote."""
    if isinstance(term, ox.Literal) and not term.language:
        datatype = term.datatype.value
        text = canonical_lexical(term.value, datatype)
        if text != term.value:
            return ox.Literal(text, datatype=term.datatype)
    return term


def _by_graph(quads: Sequence[ox.Quad]) -> dict[Any, list[ox.Quad]]:
    out: dict[Any, list[ox.Quad]] = {}
    for q in quads:
        out.setdefault(q.graph_name, []).append(q)
    return out
