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

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
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
from .datasets import dataset_of, with_dataset
from .endpoints import Endpoints, bind_with_values, derive_endpoints
from .remote_formats import GRAPH_ACCEPT, RESULTS_ACCEPT, count_graph, describe, read_graph, read_results
from .remote_http import DEFAULT_TIMEOUT, Answer, bounded_session, check_timeout, exchange

__all__ = ["Endpoints", "SparqlHttpEngine", "bind_with_values", "derive_endpoints"]  # (endpoints re-exported)

log = logging.getLogger(__name__)

OUR_GRAPHS = tuple(ox.NamedNode(g) for g in GRAPHS)
_OURS = [g.value for g in OUR_GRAPHS]
#: A graph no one writes: a dataset made of it alone is empty (how a server's reading of datasets is checked).
_NO_GRAPH = ["urn:konbini-ld:graph:none"]
_CHUNK_SUBJECTS = 200
#: Quads per ``INSERT DATA`` / ``DELETE DATA``: small updates, which every server takes.
_UPDATE_QUADS = 5_000
#: N-Triples lines per Graph Store upload.
_UPLOAD_LINES = 100_000
#: The ways a query's dataset can reach a server, in the order they are tried (see :mod:`.datasets`).
DATASET_WAYS = ("query text", "protocol")
#: Rows asked for per page: below every result cap seen in servers (Virtuoso: 10,000).
_PAGE_ROWS = 1_000


def _nt(quads: Sequence[ox.Quad]) -> str:
    return "".join(f"{q.subject} {q.predicate} {q.object} .\n" for q in quads)


class SparqlHttpEngine:
    """An :class:`~konbini_ld.engines.base.Engine` over the SPARQL 1.1 protocols.

    :param endpoints: where to send queries, updates and graph uploads (no Graph Store
        endpoint: graphs are written with ``INSERT DATA`` and read with ``CONSTRUCT``).
    :param timeout: seconds every request may take, from sending it to the answer's last byte.
    :param session: an injectable ``requests.Session``.
    :raises UsageError: ``timeout`` is not a number of seconds more than 0 and at most a day.
    """

    _CAPABILITIES = Capabilities(exclusive_writer=False, write_behind=False, substitution=False, transactions=False,
                                 bulk_load=False, read_only_views=True, timeouts=True, persistent=True)

    def __init__(self, endpoints: Endpoints, *, timeout: float = DEFAULT_TIMEOUT,
                 session: requests.Session | None = None) -> None:
        self.endpoints = endpoints
        self.description = redact(endpoints.query)
        self.timeout = check_timeout(timeout)
        self.session = bounded_session(session)
        self._server: str | None = None
        #: how this server takes a query's dataset (found by asking it, see :meth:`dataset_way`)
        self._dataset_way: str | None = None

    # -- HTTP ------------------------------------------------------------------

    def _send(self, method: str, url: str, *, what: str, spool: bool = False, **kw: Any) -> Answer:
        answer = exchange(self.session, method, url, what=what, timeout=self.timeout, spool=spool, **kw)
        if answer.status >= 400:
            answer.close()
            self._refused(answer, url, what)
        return answer

    def _refused(self, answer: Answer, url: str, what: str) -> None:
        body = answer.body
        detail = describe(answer.content_type, body)
        if not detail.startswith("an HTML page"):
            text = body.decode("utf-8", "replace").strip()
            detail = " ".join(text.splitlines()[0].split())[:300] if text else ""
        message = f"{what} at {redact(url)} answered HTTP {answer.status}" + (f": {detail}" if detail else "")
        if answer.status in (404, 405, 501) and what == "graph upload":
            message += " (give its Graph Store endpoint with --gsp-url, or --gsp-url none for a server without one)"
        if answer.status == 400 and what == "query":
            raise QueryError(message)
        if answer.status in (400, 415, 422) and what in ("update", "graph upload"):
            raise WriteRejected(message)  # the server refused what was sent, not the connection
        raise StoreError(message)

    def _post(self, url: str, *, what: str, **kw: Any) -> Answer:
        return self._send("POST", url, what=what, **kw)

    def _ask_server(self, data: dict[str, Any], form: str, *, exact: bool = True,
                    ) -> ox.QuerySolutions | ox.QueryBoolean | list[ox.Triple]:
        """Send a query (``data``: the protocol's parameters) and read its answer by its Content-Type."""
        graph_result = form in ("CONSTRUCT", "DESCRIBE")
        answer = self._post(self.endpoints.query, what="query", data=data,
                            headers={"Accept": GRAPH_ACCEPT if graph_result else RESULTS_ACCEPT})
        cut = answer.headers.get("X-SPARQL-MaxRows")
        if cut is not None:  # Virtuoso's ResultSetMaxRows cut the answer short: a part is not the answer
            answer.close()
            raise StoreError(f"{self.description} cut its answer short at {cut[:20]} rows (its ResultSetMaxRows): "
                             "raise that limit on the server, or narrow the query")
        if graph_result:
            return list(read_graph(answer.body, answer.content_type, where=self.description, base_iri=answer.url))
        return read_results(answer.body, answer.content_type, where=self.description, form=form, exact=exact)

    def _select(self, sparql: str, *, exact: bool = True) -> list[ox.QuerySolution]:
        results = self._ask_server({"query": sparql}, "SELECT", exact=exact)
        assert isinstance(results, ox.QuerySolutions)
        return list(results)

    def _ask(self, sparql: str) -> bool:
        return bool(self._ask_server({"query": sparql}, "ASK"))

    def _update(self, sparql: str) -> None:
        if not self.endpoints.update:
            raise StoreError(f"no SPARQL update endpoint known for {self.description}: give --update-url")
        self._post(self.endpoints.update, what="update", data={"update": sparql})

    def _upload(self, graph: ox.NamedNode, lines: Sequence[str]) -> None:
        """Add N-Triples lines to ``graph``: Graph Store ``POST``s of up to 100,000 lines, or
        (no Graph Store) ``INSERT DATA`` updates of up to 5,000."""
        chunk = _UPLOAD_LINES if self.endpoints.gsp else _UPDATE_QUADS
        for i in range(0, len(lines), chunk):
            text = "".join(lines[i : i + chunk])
            if self.endpoints.gsp:
                self._post(self.endpoints.gsp, what="graph upload", params={"graph": graph.value},
                           data=text.encode("utf-8"), headers={"Content-Type": "application/n-triples"})
            else:
                self._update(f"INSERT DATA {{ GRAPH {graph} {{\n{text}}} }}")

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
            page = self._select(f"SELECT {variables} WHERE {{ {{ SELECT {variables} WHERE {{ {where} }} "
                                f"ORDER BY {variables} }} }} LIMIT {_PAGE_ROWS} OFFSET {offset}")
            yield from page
            if len(page) < _PAGE_ROWS:
                return
            offset += _PAGE_ROWS

    def _construct_paged(self, graph: ox.NamedNode) -> Iterator[ox.Triple]:
        """Every triple of ``graph``, a page of ``CONSTRUCT`` at a time (ordered as :meth:`_select_paged`)."""
        offset = 0
        while True:
            page = self._ask_server({"query": f"CONSTRUCT {{ ?s ?p ?o }} WHERE {{ {{ SELECT ?s ?p ?o WHERE {{ "
                                              f"GRAPH {graph} {{ ?s ?p ?o }} }} ORDER BY ?s ?p ?o }} }} "
                                              f"LIMIT {_PAGE_ROWS} OFFSET {offset}"}, "CONSTRUCT")
            assert isinstance(page, list)
            yield from page
            if len(page) < _PAGE_ROWS:
                return
            offset += _PAGE_ROWS

    def _graph_count(self, graph: ox.NamedNode) -> int:
        rows = self._select(f"SELECT (COUNT(*) AS ?c) WHERE {{ GRAPH {graph} {{ ?s ?p ?o }} }}", exact=False)
        return _count(rows, self.description)

    def writing(self) -> AbstractContextManager[None]:
        """Nothing to hold: each update and upload is the server's own (a reader may see a batch
        between them; docs/design/threats.md)."""
        return nullcontext()

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
                answer = exchange(self.session, "GET", self.endpoints.query, what="query", timeout=self.timeout,
                                  params={"query": "ASK {}"}, headers={"Accept": RESULTS_ACCEPT})
                self._server = answer.headers.get("Server", "")
            except StoreError:
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
            for i in range(0, len(quads), _UPDATE_QUADS):
                self._update(f"DELETE DATA {{ GRAPH {graph} {{\n{_nt(quads[i : i + _UPDATE_QUADS])}}} }}")
        for graph, lines in inserts.items():
            self._upload(graph, lines)

    def replace_graph(self, graph: ox.NamedNode, ntriples: IO[bytes] | bytes) -> None:
        """Replace a whole graph with N-Triples (Graph Store ``PUT``): an idempotent copy."""
        if not self.endpoints.gsp:
            raise StoreError(f"no Graph Store endpoint known for {self.description}: give --gsp-url")
        self._send("PUT", self.endpoints.gsp, what="graph upload", params={"graph": graph.value}, data=ntriples,
                   headers={"Content-Type": "application/n-triples"})

    def clear_graph(self, graph: ox.NamedNode) -> None:
        self._update(f"CLEAR SILENT GRAPH {graph}")

    def move_graphs(self, moves: Mapping[ox.NamedNode, ox.NamedNode]) -> None:
        """Replace each target graph with its source graph, in one update request.

        What the server did is checked (RDF::Endpoint answers ``MOVE`` with success and does
        nothing): where a move did not happen, it is done again as the operations it stands for.
        """
        sizes = {src: self._graph_count(src) for src in moves}
        self._update(" ;\n".join(f"MOVE SILENT GRAPH {src} TO GRAPH {dst}" for src, dst in moves.items()))
        for src, dst in moves.items():
            if self._graph_count(dst) == sizes[src] and (sizes[src] == 0 or self._graph_count(src) == 0):
                continue
            log.info("%s did not apply MOVE %s TO %s: copying instead", self.description, src.value, dst.value)
            self._update(f"CLEAR SILENT GRAPH {dst}")
            self._update(f"INSERT {{ GRAPH {dst} {{ ?s ?p ?o }} }} WHERE {{ GRAPH {src} {{ ?s ?p ?o }} }}")
            if self._graph_count(dst) != sizes[src]:
                raise StoreError(f"{self.description} did not move {src.value} to {dst.value}: it answered the "
                                 "update with success but the graph does not hold what was moved")
            self._update(f"CLEAR SILENT GRAPH {src}")

    # -- queries -------------------------------------------------------------

    def query(
        self, sparql: str, *, substitutions: dict[str, Any] | None = None, union: bool = True,
        dataset: Dataset | None = None, base_iri: str | None = None,
    ) -> ox.QuerySolutions | ox.QueryBoolean | ox.QueryTriples:
        """Run a query over konbini-ld's graphs: the default graph is their union and ``GRAPH``
        sees each of them, as on the embedded store, whatever the server's own default graph
        (the dataset is sent the way this server honours, see :meth:`dataset_way`). A query
        naming its own dataset (``FROM``), or ``dataset``, gets exactly that; ``union=False``
        sends the query as it is. Relative IRIs resolve against ``base_iri`` (sent as the
        query's first ``BASE``; a ``BASE`` of the query's own still applies after it), never
        against the server's address."""
        if base_iri:
            sparql = f"BASE <{base_iri}>\n{sparql}"
        if substitutions:
            sparql = bind_with_values(sparql, substitutions)
        form = query_form(sparql) or "SELECT"
        graphs: tuple[list[str], list[str]] | None = None
        if dataset is not None:
            graphs = (list(dataset.default_graphs), list(dataset.named_graphs))
        elif union:
            graphs = dataset_of(sparql) if has_dataset_clause(sparql) else (_OURS, _OURS)
        data = self._dataset_request(sparql, graphs, self.dataset_way()) if graphs is not None else {"query": sparql}
        result = self._ask_server(data, form if form in ("ASK", "CONSTRUCT", "DESCRIBE") else "SELECT", exact=False)
        if isinstance(result, list):
            return iter(result)  # type: ignore[return-value]  # iterated like QueryTriples
        return result

    @staticmethod
    def _dataset_request(sparql: str, graphs: tuple[list[str], list[str]], way: str) -> dict[str, Any]:
        default, named = graphs
        if way == "query text":
            return {"query": with_dataset(sparql, default, named)}
        return {"query": sparql, "default-graph-uri": default, "named-graph-uri": named}

    def dataset_way(self) -> str:
        """How this server takes a query's dataset: ``FROM`` / ``FROM NAMED`` in the ``query
        text`` (what every SPARQL 1.1 query engine must read), or the ``protocol``'s
        ``default-graph-uri`` / ``named-graph-uri``: the first of :data:`DATASET_WAYS` under
        which the server answers over exactly the graphs named, joins included (checked with a
        few ``ASK`` queries once konbini-ld's graphs hold something; until then each query
        checks again).

        :raises StoreError: the server honours neither (RDF::Endpoint): its answers would come
            from graphs other than konbini-ld's.
        """
        if self._dataset_way is not None:
            return self._dataset_way
        values = " ".join(str(g) for g in OUR_GRAPHS)
        stored = self._ask(f"ASK {{ VALUES ?g {{ {values} }} GRAPH ?g {{ ?s ?p ?o }} }}")
        for way in DATASET_WAYS:
            if self._honours(way, stored):
                if stored:
                    self._dataset_way = way
                log.debug("%s takes a query's dataset by its %s", self.description, way)
                return way
        raise StoreError(
            f"{self.description} does not answer over the graphs a query names (neither FROM and FROM NAMED nor "
            "default-graph-uri and named-graph-uri): its default graph is not the union of konbini-ld's graphs, "
            "so its answers to queries would not be this store's (loading, exporting, stats and validation work)"
        )

    def _honours(self, way: str, stored: bool) -> bool:
        def ask(sparql: str, graphs: list[str]) -> bool:
            result = self._ask_server(self._dataset_request(sparql, (graphs, graphs), way), "ASK")
            return bool(result)

        try:
            # (a join, not one pattern: RDF::Endpoint's dataset views answer single patterns only)
            return (ask("ASK { ?s ?p ?o . ?s ?q ?v }", _OURS) == stored
                    and ask("ASK { GRAPH ?g { ?s ?p ?o . ?s ?q ?v } }", _OURS) == stored
                    and not ask("ASK { ?s ?p ?o }", _NO_GRAPH) and not ask("ASK { GRAPH ?g { ?s ?p ?o } }", _NO_GRAPH))
        except (StoreError, QueryError) as exc:
            log.debug("%s: dataset by %s: %s", self.description, way, exc)
            return False

    # -- whole graphs ----------------------------------------------------------

    def iter_quads(self, graph: ox.NamedNode | None = None) -> Iterator[ox.Quad]:
        """Every quad of konbini-ld's graphs (or of ``graph``).

        Read with a Graph Store ``GET`` when there is one, spooled to a temporary file and
        checked against the graph's size: a server that cuts the answer short (Virtuoso stops
        at its ``ResultSetMaxRows``) is read again a page of ``CONSTRUCT`` at a time, as are
        servers without a Graph Store.
        """
        for graph in OUR_GRAPHS if graph is None else (graph,):
            expected = self._graph_count(graph)
            if expected == 0:
                continue
            if self.endpoints.gsp:
                answer = self._graph_store_get(graph)
                if answer is not None:
                    assert answer.file is not None
                    with answer.file:
                        where = f"the Graph Store of {self.description}"
                        if count_graph(answer.file, answer.content_type, where=where, base_iri=answer.url) == expected:
                            for t in read_graph(answer.file, answer.content_type, where=where, base_iri=answer.url):
                                yield ox.Quad(t.subject, t.predicate, _canonical(t.object), graph)
                            continue
            n = 0
            for t in self._construct_paged(graph):
                n += 1
                yield ox.Quad(t.subject, t.predicate, _canonical(t.object), graph)
            if n != expected:
                raise StoreError(f"{self.description} answered {n} of the {expected} triples of {graph.value}; "
                                 "it cuts results short below the page size konbini-ld reads")

    def _graph_store_get(self, graph: ox.NamedNode) -> Answer | None:
        """The graph from the Graph Store, spooled to a file; ``None`` where the server has no such graph."""
        assert self.endpoints.gsp is not None
        answer = exchange(self.session, "GET", self.endpoints.gsp, what=f"reading {graph.value}", timeout=self.timeout,
                          spool=True, params={"graph": graph.value}, headers={"Accept": GRAPH_ACCEPT})
        if answer.status == 404:
            answer.close()
            return None
        if answer.status >= 400:
            answer.close()
            raise StoreError(f"reading {graph.value} from {self.description} answered HTTP {answer.status}")
        return answer

    def dump(self, output: IO[bytes], fmt: ox.RdfFormat, *, prefixes: dict[str, str]) -> None:
        ox.serialize(self.iter_quads(), output, fmt, prefixes=prefixes)

    def count(self) -> int:
        values = " ".join(str(g) for g in OUR_GRAPHS)
        rows = self._select(f"SELECT (COUNT(*) AS ?c) WHERE {{ VALUES ?g {{ {values} }} GRAPH ?g {{ ?s ?p ?o }} }}",
                            exact=False)
        return _count(rows, self.description)

    def rdflib_store(self) -> Any:
        from rdflib.plugins.stores.sparqlstore import SPARQLUpdateStore

        return SPARQLUpdateStore(self.endpoints.query, self.endpoints.update or self.endpoints.query)

    def close(self) -> None:
        self.session.close()


def _count(rows: list[ox.QuerySolution], where: str) -> int:
    """The number a ``COUNT`` query answered (RDF::Endpoint leaves it unbound where it is 0)."""
    try:
        value = rows[0][0]
        return 0 if value is None else int(value.value)
    except (IndexError, AttributeError, TypeError, ValueError):
        raise StoreError(f"{where} answered a COUNT without a number") from None


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
