"""What a remote SPARQL server answers: every standard format is read by its Content-Type,
anything else is one error naming the endpoint, every request ends within its time, and a
server without the Graph Store Protocol is written with updates and read with CONSTRUCT."""

from __future__ import annotations

import gzip
import io
import time
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest
from click.testing import CliRunner
from helpers import AUDIO_IRI, SEED, VIDEOS
from rdflib import Graph
from servers import OxigraphServer, Proxy, Scripted

from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.engines.sparql_http import SparqlHttpEngine, derive_endpoints
from konbini_ld.errors import QueryError, StoreError, UsageError
from konbini_ld.io.formats import Format

AT = "2026-11-01T12:00:00Z"
DATA = ox.NamedNode("urn:konbini-ld:graph:data")
XSD_INT = ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    srv = OxigraphServer(tmp_path_factory.mktemp("answers"))
    yield srv
    srv.stop()


def as_graph(store: Any) -> set[Any]:
    """The triples of a store's export (but the times its loads ended, which differ between stores)."""
    out = io.BytesIO()
    store.export(out, Format.NT)
    return {t for t in Graph().parse(data=out.getvalue(), format="nt") if "endedAtTime" not in t[1]}


def rows(result: Any) -> list[tuple[str | None, ...]]:
    return [tuple(str(t) if t is not None else None for t in r) for r in result.rows()]


# -- every standard format ---------------------------------------------------------------------

FORMATS = [
    ("application/sparql-results+xml", "text/turtle"),
    ("text/tab-separated-values", "application/rdf+xml"),
    ("application/sparql-results+json", "application/n-quads"),
    ("application/sparql-results+xml", "application/trig"),
    ("application/sparql-results+json", "application/ld+json"),
    ("text/tab-separated-values", "application/n-triples"),
]


@pytest.mark.parametrize(("results", "graphs"), FORMATS)
def test_a_server_answering_one_format_works_as_any_other(server: Any, tmp_path: Path, results: str,
                                                           graphs: str) -> None:
    """A server that answers in its own format whatever is asked (RDF::Endpoint: SPARQL XML)
    loads, upserts, exports and answers queries exactly as the embedded store does."""
    server.clear()
    proxy = Proxy(f"http://127.0.0.1:{server.port}", accept=(results, graphs))
    try:
        local = open_store(None)
        with open_store(proxy.url + "/query", archive=tmp_path / "a") as remote:
            for s in (local, remote):
                s.load([SEED, VIDEOS], observed_at=AT)
            remote.load([SEED, VIDEOS], observed_at=AT)  # the upsert reads what the server holds
            assert len(remote) == len(local)
            assert as_graph(remote) == as_graph(local)
            assert rows(remote.run_named("top-audios")) == rows(local.run_named("top-audios"))
            assert remote.query("ASK { ?s ?p ?o }").boolean is True
            got = set(remote.run_named("audio", {"audio": AUDIO_IRI}).triples())
            assert got == set(local.run_named("audio", {"audio": AUDIO_IRI}).triples())
        accepted = {accept for _, _, _, accept in proxy.requests}
        assert accepted, "the proxy saw no request"
    finally:
        proxy.stop()


def test_csv_answers_are_read_where_terms_need_not_be_exact_and_refused_where_they_must(
        server: Any, tmp_path: Path) -> None:
    server.clear()
    with open_store(server.query_url, archive=tmp_path / "a") as direct:
        direct.load([SEED], observed_at=AT)
        expected = [[t.value if t is not None else None for t in r] for r in direct.run_named("top-audios").rows()]
    proxy = Proxy(f"http://127.0.0.1:{server.port}", accept=("text/csv", "application/n-triples"))
    try:
        with open_store(proxy.url + "/query", read_only=True) as remote:
            got = [[t.value if t is not None else None for t in r] for r in remote.run_named("top-audios").rows()]
            assert got == expected  # (the values; CSV does not say which were numbers)
            assert remote.query("ASK { ?s ?p ?o }").boolean is True
            with pytest.raises(StoreError, match="CSV, which does not keep datatypes"):
                list(remote.engine.quads_for_subjects([ox.NamedNode(AUDIO_IRI)], DATA))
    finally:
        proxy.stop()


# -- anything else: one error ------------------------------------------------------------------

_LOL = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>')
_CUT_GZIP = gzip.compress(b'{"head": {"vars": []}, "results": {"bindings": []}}')[:-12]

#: (what the query is, status, headers, body, what the error says)
HOSTILE = {
    "html page": ("SELECT", 200, {"Content-Type": "text/html; charset=utf-8"},
                  b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
                  "an HTML page (text/html: 502 Bad Gateway)"),
    "garbage labelled JSON": ("SELECT", 200, {"Content-Type": "application/sparql-results+json"},
                              b'{"head": {"vars": ["c"]}, "results": {"bindings": [{"c": {"type": "lit',
                              "application/sparql-results+json that does not parse"),
    "wrong content type": ("SELECT", 200, {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\n", "image/png"),
    "no content type": ("SELECT", 200, {}, b'{"head": {"vars": []}, "results": {"bindings": []}}',
                        "without a Content-Type"),
    "XML entity expansion": ("SELECT", 200, {"Content-Type": "application/sparql-results+xml"},
                             _LOL + b'<sparql xmlns="http://www.w3.org/2005/sparql-results#"><head><variable name="c"/>'
                             b'</head><results><result><binding name="c"><literal>&d;</literal></binding></result>'
                             b"</results></sparql>", "does not parse"),
    "a boolean for a SELECT": ("SELECT", 200, {"Content-Type": "application/sparql-results+json"},
                               b'{"head": {}, "boolean": true}', "answered a SELECT with a boolean"),
    "solutions for an ASK": ("ASK", 200, {"Content-Type": "application/sparql-results+json"},
                             b'{"head": {"vars": ["a", "b"]}, "results": {"bindings": []}}', "not a boolean"),
    "RDF/XML declaring entities": ("CONSTRUCT", 200, {"Content-Type": "application/rdf+xml"},
                                   _LOL + b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
                                   b'<rdf:Description rdf:about="urn:a"><rdf:value>&d;</rdf:value></rdf:Description>'
                                   b"</rdf:RDF>", "declares XML entities"),
    "JSON-LD with a remote context": ("CONSTRUCT", 200, {"Content-Type": "application/ld+json"},
                                      b'{"@context": "http://example.org/context.jsonld", "@id": "urn:a", "name": "x"}',
                                      "does not parse"),
    "results for a CONSTRUCT": ("CONSTRUCT", 200, {"Content-Type": "application/sparql-results+xml"},
                                b'<sparql xmlns="http://www.w3.org/2005/sparql-results#"><head/><boolean>true'
                                b"</boolean></sparql>", "not RDF"),
    "Turtle that does not parse": ("CONSTRUCT", 200, {"Content-Type": "text/turtle"}, b"<urn:a> <urn:b> .",
                                   "text/turtle that does not parse"),
    "a cut-off compressed body": ("SELECT", 200, {"Content-Type": "application/sparql-results+json",
                                                  "Content-Encoding": "gzip"}, _CUT_GZIP, "cut off"),
    "an encoding not asked for": ("SELECT", 200, {"Content-Type": "application/sparql-results+json",
                                                  "Content-Encoding": "br"}, b"\x0b\x02\x80", "encoded 'br'"),
    "a server error with a stack trace": ("SELECT", 500, {"Content-Type": "text/plain"},
                                          b"501 Protocol scheme 'urn' is not supported at Error.pm line 198\n"
                                          b"\tError::throw('RDF::Trine::Error::ParserError') called at Parser.pm",
                                          "answered HTTP 500: 501 Protocol scheme 'urn' is not supported"),
}
_QUERIES = {"SELECT": "SELECT ?c WHERE { ?s ?p ?c }", "ASK": "ASK { ?s ?p ?o }",
            "CONSTRUCT": "CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }"}


@pytest.fixture
def hostile(request: pytest.FixtureRequest) -> Any:
    form, status, headers, body, _ = HOSTILE[request.param]

    def answer(method: str, path: str, params: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        return status, headers, body

    srv = Scripted(answer)
    yield srv
    srv.stop()


@pytest.mark.parametrize("hostile", list(HOSTILE), indirect=True)
def test_an_answer_that_is_not_what_it_should_be_is_one_error_naming_the_endpoint(hostile: Any,
                                                                                   request: Any) -> None:
    form, _, _, _, says = HOSTILE[request.node.callspec.params["hostile"]]
    engine = SparqlHttpEngine(derive_endpoints(hostile.url + "/query", gsp="none"), timeout=5)
    with pytest.raises(StoreError) as caught:
        result = engine.query(_QUERIES[form], union=False)
        list(result) if form != "ASK" else bool(result)
    assert hostile.url in str(caught.value) and says in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("hostile", ["html page", "garbage labelled JSON", "XML entity expansion",
                                     "a server error with a stack trace"], indirect=True)
def test_the_command_line_says_it_in_one_line(hostile: Any, tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["--store", hostile.url + "/query", "--archive", str(tmp_path / "a"), "query",
                                  "SELECT ?c WHERE { ?s ?p ?c }"])
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and hostile.url in lines[0], r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit)


# -- time ---------------------------------------------------------------------------------------


def _dripping(method: str, path: str, params: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
    """Headers at once, then a byte every 0.2 s, for ever (each read alone is quick)."""
    return 200, {"Content-Type": "application/sparql-results+json"}, [(0.2, b" ")] * 10_000


def _silent(method: str, path: str, params: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
    time.sleep(3)
    return 200, {"Content-Type": "application/sparql-results+json"}, b'{"head": {}, "boolean": true}'


def _dripping_headers(method: str, path: str, params: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
    """A status line, then a header a byte every 0.2 s, for ever."""
    return 0, {}, [(0, b"HTTP/1.1 200 OK\r\nX-Slow: ")] + [(0.2, b"a")] * 10_000


@pytest.mark.parametrize("behaviour", [_dripping, _silent, _dripping_headers])
def test_every_request_ends_within_the_remote_timeout(behaviour: Any) -> None:
    srv = Scripted(behaviour)
    try:
        engine = SparqlHttpEngine(derive_endpoints(srv.url + "/query", gsp="none"), timeout=1)
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"took longer than 1 s \(--remote-timeout\)"):
            bool(engine.query("ASK { ?s ?p ?o }", union=False))
        assert time.monotonic() - started < 2.5
    finally:
        srv.stop()


def test_the_remote_timeout_is_an_option_of_the_library_the_command_line_and_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = Scripted(_dripping)
    try:
        url = srv.url + "/query"
        with pytest.raises(UsageError):
            open_store(url, remote_timeout=0)
        with open_store(url, remote_timeout=0.5, gsp_url="none", read_only=True) as store:
            assert store.engine.timeout == 0.5
        started = time.monotonic()
        r = CliRunner().invoke(main, ["--store", url, "--remote-timeout", "0.5", "query", "ASK { ?s ?p ?o }"])
        assert r.exit_code == 1 and "took longer than 0.5 s" in r.stderr, r.stderr
        assert time.monotonic() - started < 5
        monkeypatch.setenv("KONBINI_LD_REMOTE_TIMEOUT", "0.75")
        r = CliRunner().invoke(main, ["--store", url, "query", "ASK { ?s ?p ?o }"])
        assert r.exit_code == 1 and "took longer than 0.75 s" in r.stderr, r.stderr
        local = ["--store", str(tmp_path / "local")]
        assert CliRunner().invoke(main, [*local, "load", str(SEED)]).exit_code == 0
        r = CliRunner().invoke(main, [*local, "push", "--to", url])  # (the target of a push too)
        assert r.exit_code == 1 and "took longer than 0.75 s" in r.stderr, r.stderr
    finally:
        srv.stop()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc", "", "100000"])
def test_a_remote_timeout_that_bounds_nothing_is_a_usage_error(value: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for args, env in ((["--remote-timeout", value], None), ([], value)):
        if env is None:
            monkeypatch.delenv("KONBINI_LD_REMOTE_TIMEOUT", raising=False)
        else:
            monkeypatch.setenv("KONBINI_LD_REMOTE_TIMEOUT", env)
        r = CliRunner().invoke(main, ["--store", "http://127.0.0.1:9/query", *args, "stats"])
        if env == "":  # (an empty variable is no setting)
            continue
        assert r.exit_code == 2, (value, r.output)
        assert r.stderr.startswith("Error: --remote-timeout") and len(r.stderr.strip().splitlines()) == 1, r.stderr


# -- no Graph Store ------------------------------------------------------------------------------


def test_without_the_graph_store_protocol_writes_are_small_updates_and_reads_are_construct(
        server: Any, tmp_path: Path) -> None:
    server.clear()
    proxy = Proxy(f"http://127.0.0.1:{server.port}")
    try:
        local = open_store(None)
        with open_store(proxy.url + "/query", archive=tmp_path / "a", gsp_url="none") as remote:
            for s in (local, remote):
                s.load([SEED, VIDEOS], observed_at=AT)
            remote.load([SEED, VIDEOS], observed_at=AT)
            assert as_graph(remote) == as_graph(local)
            many = [f"<urn:x:s{i}> <urn:x:p> \"{i}\"^^{XSD_INT} .\n" for i in range(12_000)]
            remote.engine.apply([], {ox.NamedNode("urn:x:graph"): many})
        paths = {path for _, path, _, _ in proxy.requests}
        assert "/store" not in paths and paths <= {"/query", "/update"}
        updates = [v for _, path, params, _ in proxy.requests for k, v in params if k == "update"]
        sizes = [u.count(" .\n") for u in updates if "INSERT DATA" in u or "DELETE DATA" in u]
        assert max(sizes) <= 5_000 and sum(1 for n in sizes if n == 5_000) >= 2
        reads = [v for _, _, params, _ in proxy.requests for k, v in params if k == "query"]
        assert any(q.startswith("CONSTRUCT") for q in reads)
    finally:
        proxy.stop()


def test_gsp_none_on_the_command_line_and_for_push(server: Any, store: Any, tmp_path: Path) -> None:
    server.clear()
    proxy = Proxy(f"http://127.0.0.1:{server.port}")
    try:
        base = ["--store", proxy.url + "/query", "--archive", str(tmp_path / "a"), "--gsp-url", "none"]
        r = CliRunner().invoke(main, [*base, "load", str(SEED)], catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
        r = CliRunner().invoke(main, [*base, "export", "-f", "nt"], catch_exceptions=False)
        assert r.exit_code == 0 and AUDIO_IRI in r.stdout
        store.load([SEED, VIDEOS])
        r = CliRunner().invoke(main, ["--store", str(tmp_path / "store"), "push", "--to", proxy.url + "/query",
                                      "--to-gsp-url", "none"], catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
        assert "/store" not in {path for _, path, _, _ in proxy.requests}
    finally:
        proxy.stop()


def test_a_missing_graph_store_says_how_to_turn_it_off(tmp_path: Path) -> None:
    def answer(method: str, path: str, params: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        if path == "/sparql" and "query" in params:
            return 200, {"Content-Type": "application/sparql-results+xml"}, (
                b'<sparql xmlns="http://www.w3.org/2005/sparql-results#"><head/><boolean>false</boolean></sparql>'
                if params["query"][0].lstrip().upper().startswith("ASK") else
                b'<sparql xmlns="http://www.w3.org/2005/sparql-results#"><head><variable name="s"/></head><results/>'
                b"</sparql>")
        if path == "/sparql":
            return 200, {"Content-Type": "text/plain"}, b""
        return 404, {"Content-Type": "text/html"}, b"<html><head><title>404 Not Found</title></head></html>"

    srv = Scripted(answer)
    try:
        r = CliRunner().invoke(main, ["--store", srv.url + "/sparql", "--archive", str(tmp_path / "a"), "load",
                                      str(SEED)])
        assert r.exit_code == 1
        assert "--gsp-url none" in r.stderr and "404" in r.stderr and "Traceback" not in r.output
    finally:
        srv.stop()


def test_query_errors_stay_query_errors(server: Any) -> None:
    engine = SparqlHttpEngine(derive_endpoints(server.query_url))
    with pytest.raises(QueryError):
        engine.query("SELECT WHERE {", union=False)
