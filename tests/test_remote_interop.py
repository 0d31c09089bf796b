"""The same store on any SPARQL server: the default graph is the union of konbini-ld's graphs
on embedded and remote stores alike, whichever way the server takes a query's dataset (or
whether it reads ``default-graph-uri`` at all), and a third-party endpoint that answers
SPARQL XML and has no Graph Store (RDF::Endpoint, Debian ``librdf-endpoint-perl``) works
as a store."""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from helpers import AUDIO_IRI, KHABY, NEWER, SEED, VIDEOS
from rdflib import Graph
from servers import OxigraphServer, Proxy, RdfEndpointServer, rdf_endpoint_available, require_or_skip

import konbini_ld
from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.errors import StoreError
from konbini_ld.io.formats import Format

AT = "2026-11-01T12:00:00Z"
#: Someone else's graph on the same server: never part of konbini-ld's answers.
FOREIGN = f"""INSERT DATA {{ GRAPH <urn:someone:else> {{
  <{AUDIO_IRI}> <https://konbiniapi.com/ns/social#videoCount> 1 .
  <urn:someone:x> a <https://www.w3.org/ns/activitystreams#Audio> ;
      <https://konbiniapi.com/ns/social#videoCount> 99999999 .
}} }}"""

PREFIXES = """PREFIX as: <https://www.w3.org/ns/activitystreams#>
PREFIX ks: <https://konbiniapi.com/ns/social#>
PREFIX kg: <urn:konbini-ld:graph:>
"""
#: The same texts on every store: plain patterns, GRAPH, FROM and FROM NAMED.
QUERIES = [
    "SELECT ?s ?p ?o WHERE { ?s ?p ?o }",
    "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }",
    "SELECT ?audio ?n WHERE { ?audio a as:Audio ; ks:videoCount ?n }",
    "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g",
    "SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }",
    "SELECT ?g WHERE { GRAPH ?g { } }",
    "SELECT ?s ?g WHERE { ?s a as:Audio . GRAPH ?g { ?s ?p ?o } }",
    "SELECT ?s ?p ?o FROM kg:data WHERE { ?s a as:Audio ; ?p ?o }",
    "SELECT ?s FROM kg:provenance WHERE { ?s ?p ?o }",
    "SELECT ?g ?s FROM NAMED kg:provenance WHERE { GRAPH ?g { ?s ?p ?o } }",
    "SELECT ?g FROM kg:data WHERE { GRAPH ?g { ?s ?p ?o } }",
    "ASK { ?s ks:videoCount 99999999 }",
    "ASK { GRAPH ?g { ?s a as:Audio } }",
    "CONSTRUCT { ?s ks:videoCount ?n } WHERE { ?s ks:videoCount ?n }",
    "CONSTRUCT { ?s ?p ?o } FROM kg:data WHERE { ?s a as:Person ; ?p ?o }",
    "DESCRIBE <" + AUDIO_IRI + ">",
]


def answer(store: Any, sparql: str) -> Any:
    result = store.query(PREFIXES + sparql)
    if result.kind == "ASK":
        return result.boolean
    if result.kind == "CONSTRUCT":
        return sorted(str(t) for t in result.triples())
    return sorted(tuple(str(t) if t is not None else "" for t in row) for row in result.rows())


def _dropping_dataset_parameters(upstream: str) -> Proxy:
    """In front of a server: one that does not read the protocol's default-graph-uri and named-graph-uri."""
    return Proxy(upstream, drop=frozenset({"default-graph-uri", "named-graph-uri"}))


@pytest.fixture(scope="module", params=["oxigraph", "ignoring-dataset-parameters", "union-default-ignoring-from"])
def remote_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Servers that read a query's dataset differently, each holding someone else's graph too:
    Oxigraph (as the protocol says); Oxigraph behind a proxy that drops the dataset parameters
    (its own default graph is empty); Oxigraph whose default graph is every graph it holds, which
    then ignores FROM (``--union-default-graph``)."""
    srv = OxigraphServer(tmp_path_factory.mktemp("oxigraph"),
                         union_default_graph=request.param == "union-default-ignoring-from")
    srv.proxy = _dropping_dataset_parameters(f"http://127.0.0.1:{srv.port}") \
        if request.param == "ignoring-dataset-parameters" else None
    srv.url = srv.proxy.url + "/query" if srv.proxy is not None else srv.query_url
    yield srv
    if srv.proxy is not None:
        srv.proxy.stop()
    srv.stop()


@pytest.fixture(scope="module")
def embedded() -> Any:
    store = open_store(None)
    store.load([SEED, NEWER, VIDEOS], observed_at=AT)
    return store


@pytest.fixture(scope="module")
def remote(remote_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    remote_server.clear()
    requests.post(remote_server.update_url, data={"update": FOREIGN}, timeout=30).raise_for_status()
    with open_store(remote_server.url, archive=tmp_path_factory.mktemp("archive")) as store:
        store.load([SEED, NEWER, VIDEOS], observed_at=AT)
        yield store


@pytest.mark.parametrize("sparql", QUERIES)
def test_the_same_query_answers_the_same_on_embedded_and_remote_stores(embedded: Any, remote: Any,
                                                                        sparql: str) -> None:
    assert answer(remote, sparql) == answer(embedded, sparql)


def test_named_queries_see_only_konbini_lds_graphs(embedded: Any, remote: Any) -> None:
    for name, params in [("top-audios", {}), ("creators", {}), ("audios-by-creator", {"creator": KHABY}),
                         ("history", {"entity": AUDIO_IRI})]:
        a = [[t.value if t else None for t in r] for r in embedded.run_named(name, params).rows()]
        b = [[t.value if t else None for t in r] for r in remote.run_named(name, params).rows()]
        assert a == b, name


@pytest.fixture(params=["rdf-endpoint", "union-default-dropping-dataset-parameters"])
def deaf_server(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Servers that read neither FROM nor the dataset parameters: RDF::Endpoint, and Oxigraph
    with ``--union-default-graph`` behind a proxy that drops the parameters."""
    if request.param == "rdf-endpoint":
        reason = rdf_endpoint_available()
        if reason:
            require_or_skip(reason)
        srv: Any = RdfEndpointServer(tmp_path / "rdf-endpoint")
        srv.url, srv.proxy = srv.query_url, None
    else:
        srv = OxigraphServer(tmp_path / "oxigraph", union_default_graph=True)
        srv.proxy = _dropping_dataset_parameters(f"http://127.0.0.1:{srv.port}")
        srv.url = srv.proxy.url + "/query"
    requests.post(srv.update_url, data={"update": FOREIGN}, timeout=30).raise_for_status()
    yield srv
    if srv.proxy is not None:
        srv.proxy.stop()
    srv.stop()


def test_a_server_that_reads_no_dataset_is_refused_queries_not_answered_from_other_graphs(
        deaf_server: Any, embedded: Any, tmp_path: Path) -> None:
    """Its default graph is not konbini-ld's union (RDF::Endpoint: its own, empty; the other:
    every graph, someone else's included): queries fail with one clear error; what reads
    konbini-ld's graphs by name (load, stats, export) still works."""
    gsp = "none" if isinstance(deaf_server, RdfEndpointServer) else None
    with open_store(deaf_server.url, archive=tmp_path / "a", gsp_url=gsp) as store:
        store.load([SEED, NEWER, VIDEOS], observed_at=AT)
        assert len(store) == len(embedded)
        assert store.stats().audios == 1
        for sparql in ("SELECT ?s ?p ?o WHERE { ?s ?p ?o }", "ASK { ?s ks:videoCount 99999999 }",
                       "SELECT ?s FROM kg:data WHERE { ?s a as:Audio }"):
            with pytest.raises(StoreError, match="does not answer over the graphs a query names"):
                answer(store, sparql)
    r = CliRunner().invoke(main, ["--store", deaf_server.url, "--archive", str(tmp_path / "a"), "query", "top-audios"])
    assert r.exit_code == 1 and r.stderr.startswith("Error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr


# -- RDF::Endpoint: a third-party endpoint that answers SPARQL XML -------------------------------


@pytest.fixture(scope="module")
def rdf_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Any:
    reason = rdf_endpoint_available()
    if reason:
        require_or_skip(reason)
    srv = RdfEndpointServer(tmp_path_factory.mktemp("rdf-endpoint-cli"))
    yield srv
    srv.stop()


def _figures(stats: str) -> dict[str, Any]:
    """``stats --json`` with its times as instants (RDF::Endpoint writes ``12:00:00Z`` as ``12:00:00.000Z``)."""
    figures = json.loads(stats)
    return {k: datetime.fromisoformat(v) if isinstance(v, str) and v[:4].isdigit() else v for k, v in figures.items()}


def _triples(nt: str) -> set[Any]:
    return {t for t in Graph().parse(data=nt, format="nt") if "endedAtTime" not in t[1]}


def test_rdf_endpoint_serves_as_a_store_from_the_command_line(rdf_endpoint: Any, tmp_path: Path) -> None:
    """Loads, reloads, stats, export, validation and rebuild give what the embedded store gives."""
    rdf_endpoint.clear()
    base = ["--store", rdf_endpoint.query_url, "--gsp-url", "none", "--archive", str(tmp_path / "a")]
    local = ["--store", str(tmp_path / "local")]
    files = [str(SEED), str(NEWER), str(VIDEOS)]
    for args in (base, local):
        r = CliRunner().invoke(main, [*args, "load", "--observed-at", AT, *files], catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
    r = CliRunner().invoke(main, [*base, "load", "--observed-at", AT, *files], catch_exceptions=False)
    assert r.exit_code == 0 and "3 already there" in r.stderr, r.stderr
    a = CliRunner().invoke(main, [*base, "stats", "--json"], catch_exceptions=False)
    b = CliRunner().invoke(main, [*local, "stats", "--json"], catch_exceptions=False)
    assert a.exit_code == 0 and _figures(a.stdout) == _figures(b.stdout), a.stderr
    b = CliRunner().invoke(main, [*local, "export", "-f", "nt"], catch_exceptions=False)
    a = CliRunner().invoke(main, [*base, "export", "-f", "nt"], catch_exceptions=False)
    assert a.exit_code == 0 and _triples(a.stdout) == _triples(b.stdout), a.stderr
    r = CliRunner().invoke(main, [*base, "validate"], catch_exceptions=False)
    assert r.exit_code == 0 and "conforms" in r.stderr
    # a rebuild moves graphs: RDF::Endpoint answers MOVE with success and moves nothing
    r = CliRunner().invoke(main, ["-v", *base, "rebuild"], catch_exceptions=False)
    assert r.exit_code == 0 and "did not apply MOVE" in r.stderr, r.stderr
    a = CliRunner().invoke(main, [*base, "export", "-f", "nt"], catch_exceptions=False)
    assert _triples(a.stdout) == _triples(b.stdout)
    leftovers = requests.post(rdf_endpoint.query_url, data={"query": "ASK { GRAPH ?g { ?s ?p ?o } FILTER(STRENDS("
                                                            "STR(?g), ':rebuild')) }"}, timeout=30)
    assert "<boolean>false</boolean>" in leftovers.text
    r = CliRunner().invoke(main, [*base, "query", "top-audios"])
    assert r.exit_code == 1 and "does not answer over the graphs a query names" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_rdf_endpoint_through_the_library(rdf_endpoint: Any, tmp_path: Path) -> None:
    rdf_endpoint.clear()
    local = open_store(None)
    with open_store(rdf_endpoint.query_url, archive=tmp_path / "a", gsp_url="none") as remote:
        for s in (local, remote):
            s.load([SEED, VIDEOS], observed_at=AT)
        assert len(remote) == len(local)
        out_a, out_b = io.BytesIO(), io.BytesIO()
        remote.export(out_a, Format.NT)
        local.export(out_b, Format.NT)
        assert _triples(out_a.getvalue().decode()) == _triples(out_b.getvalue().decode())
        assert konbini_ld.validate(remote).conforms
