"""The W3C SPARQL 1.1 Protocol tests (``tests/data/w3c-protocol/manifest.ttl``, copied from
w3c/rdf-tests) against a real ``konbini-ld serve``, over the embedded store and over a remote one
(a real ``oxigraph serve`` process).

Every test of the manifest runs: its requests are read from the manifest (method, path, headers,
body in its declared encoding) and sent as they are, with the path's ``/sparql/`` replaced by our
endpoint's ``/sparql``; the status, format and boolean expected are checked.

``serve`` is read-only, so the manifest's update tests are expected to be refused (403) instead of
carried out: ``update_dataset_default_graph``, ``update_dataset_default_graphs``,
``update_dataset_named_graphs``, ``update_dataset_full``, ``update_post_form``,
``update_post_direct`` and ``update_base_uri`` expect their update to succeed (2xx) and then ask
whether it did; here the update is answered 403 and the question is not asked (its answer would be
false: nothing was written). The ``bad_update_*`` tests expect a 4xx and get one (403 or 4xx
before the request is read as an update).

Beside the manifest: what its prose says but its requests do not test (a relative IRI resolves
against the endpoint's own URL, never a backend's; ``HEAD`` answers as ``GET`` without a body).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import requests
from rdflib import Graph, Namespace
from rdflib.collection import Collection
from servers import OxigraphServer
from test_server import Served

from konbini_ld import open_store

HERE = Path(__file__).parent / "data" / "w3c-protocol"
MF = Namespace("http://www.w3.org/2001/sw/DataAccess/tests/test-manifest#")
HT = Namespace("http://www.w3.org/2011/http#")
CNT = Namespace("http://www.w3.org/2011/content#")
UT = Namespace("http://www.w3.org/2009/sparql/tests/test-update#")
RDFS = Namespace("http://www.w3.org/2000/01/rdf-schema#")
RDF = Namespace("http://www.w3.org/1999/02/22-rdf-syntax-ns#")
#: Read-only: these tests' updates are refused (see the module's description).
REFUSED_UPDATES = {"update_dataset_default_graph", "update_dataset_default_graphs", "update_dataset_named_graphs",
                   "update_dataset_full", "update_post_form", "update_post_direct", "update_base_uri"}
FORMATS = {
    "boolean": ("application/sparql-results+json", "application/sparql-results+xml"),
    "tabular": ("application/sparql-results+json", "application/sparql-results+xml", "text/csv",
                "text/tab-separated-values"),
    "RDF": ("application/rdf+xml", "text/turtle", "application/n-triples"),
}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None
    statuses: set[int]  # the hundreds expected: {2, 3}, {4}
    format: str | None
    boolean: bool | None


@dataclass
class ProtocolTest:
    name: str
    title: str
    graphs: dict[str, Path] = field(default_factory=dict)  # graph name -> file
    requests: list[Request] = field(default_factory=list)


def _manifest() -> list[ProtocolTest]:
    g = Graph().parse(HERE / "manifest.ttl", format="turtle")
    manifest = next(g.subjects(RDF.type, MF.Manifest))
    tests = []
    for entry in Collection(g, g.value(manifest, MF.entries)):
        test = ProtocolTest(str(entry).rsplit("#", 1)[1], str(g.value(entry, MF.name)))
        for data in g.objects(entry, UT.graphData):
            test.graphs[str(g.value(data, RDFS.label))] = HERE / Path(str(g.value(data, UT.graph))).name
        action = g.value(entry, MF.action)
        for req in Collection(g, g.value(action, HT.requests)):
            headers = {}
            listed = g.value(req, HT.headers)
            for h in Collection(g, listed) if listed is not None else []:
                headers[str(g.value(h, HT.fieldName))] = str(g.value(h, HT.fieldValue))
            body = g.value(req, HT.body)
            data_bytes = None
            if body is not None:
                encoding = str(g.value(body, CNT.characterEncoding) or "UTF-8")
                data_bytes = str(g.value(body, CNT.chars)).encode(encoding)
            resp = g.value(req, HT.resp)
            statuses = {int(str(s).rsplit("StatusCode", 1)[1][0]) for s in g.objects(resp, MF.expectedStatus)}
            fmt = g.value(resp, MF.expectedFormat)
            boolean = g.value(resp, MF.expectedBoolean)
            path = str(g.value(req, HT.absolutePath))
            assert path.startswith("/sparql/")
            test.requests.append(Request(str(g.value(req, HT.methodName)), "/sparql" + path[len("/sparql/"):],
                                         headers, data_bytes, statuses, str(fmt) if fmt is not None else None,
                                         boolean.toPython() if boolean is not None else None))
        tests.append(test)
    return tests


TESTS = _manifest()


def test_the_manifest_is_read_whole() -> None:
    assert len(TESTS) == 34 and all(t.requests for t in TESTS)
    assert REFUSED_UPDATES <= {t.name for t in TESTS}


def _load_graphs() -> dict[str, str]:
    graphs: dict[str, str] = {}
    for test in TESTS:
        for name, path in test.graphs.items():
            graphs[name] = path.read_text()
    return graphs


@pytest.fixture(scope="module", params=["embedded", "oxigraph"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``serve`` over the embedded store, and over a real ``oxigraph serve``, each holding the
    manifest's graphs under the names the manifest gives them."""
    import pyoxigraph as ox

    graphs = _load_graphs()
    if request.param == "embedded":
        path = tmp_path_factory.mktemp("w3c") / "store"
        with open_store(path) as store:
            store.engine.apply([], {ox.NamedNode(name): text.splitlines(keepends=True) for name, text in graphs.items()})
        server = Served(path)
        yield server
        server.stop()
        return
    backend = OxigraphServer(tmp_path_factory.mktemp("w3c-oxigraph"))
    try:
        update = "INSERT DATA { " + " ".join(f"GRAPH <{n}> {{ {t} }}" for n, t in graphs.items()) + " }"
        requests.post(backend.update_url, data={"update": update}, timeout=30).raise_for_status()
        server = Served(backend.query_url)
        yield server
        server.stop()
    finally:
        backend.stop()


def _boolean(r: requests.Response) -> bool:
    if "json" in r.headers["content-type"]:
        return bool(json.loads(r.content)["boolean"])
    root = ElementTree.fromstring(r.content)
    found = root.find("{http://www.w3.org/2005/sparql-results#}boolean")
    assert found is not None
    return found.text == "true"


@pytest.mark.parametrize("test", TESTS, ids=[t.name for t in TESTS])
def test_w3c_protocol(served: Served, test: ProtocolTest) -> None:
    for req in test.requests:
        r = requests.request(req.method, served.url + req.path, headers=req.headers, data=req.body, timeout=60)
        if test.name in REFUSED_UPDATES:
            assert r.status_code == 403, (test.title, r.status_code, r.text)
            assert "read-only" in r.text
            return  # nothing was written: the question that follows would be answered false
        assert r.status_code // 100 in req.statuses, (test.title, r.status_code, r.text)
        if req.format is not None:
            assert r.headers["content-type"].split(";")[0] in FORMATS[req.format], (test.title, r.headers)
        if req.boolean is not None:
            assert _boolean(r) is req.boolean, (test.title, r.text)


def test_relative_iris_resolve_against_the_endpoint(served: Served) -> None:
    r = requests.post(served.url + "/sparql", data=b"CONSTRUCT { <s> <p> <o> } WHERE {}", timeout=30,
                      headers={"Content-Type": "application/sparql-query", "Accept": "application/n-triples"})
    assert r.status_code == 200, r.text
    mine = served.url.rstrip("/")
    assert r.text.strip() == f"<{mine}/s> <{mine}/p> <{mine}/o> .", r.text
    r = requests.get(served.url + "/sparql", params={"query": "SELECT ?x WHERE { BIND(<rel> AS ?x) }"},
                     headers={"Accept": "text/csv"}, timeout=30)
    assert r.status_code == 200 and r.text.split()[1] == f"{mine}/rel"
    r = requests.get(served.url + "/sparql", headers={"Accept": "text/csv"}, timeout=30, params={
        "query": "BASE <http://example.org/a/> SELECT ?x WHERE { BIND(<rel> AS ?x) }"})  # the query's own BASE wins
    assert r.text.split()[1] == "http://example.org/a/rel"


def test_head_answers_as_get_without_a_body(served: Served) -> None:
    params: dict[str, Any] = {"query": "SELECT * WHERE { ?s ?p ?o } LIMIT 2"}
    get = requests.get(served.url + "/sparql", params=params, headers={"Accept": "text/csv"}, timeout=30)
    head = requests.head(served.url + "/sparql", params=params, headers={"Accept": "text/csv"}, timeout=30)
    assert (head.status_code, head.headers["content-type"]) == (get.status_code, get.headers["content-type"])
    assert head.content == b"" and int(head.headers["content-length"]) == len(get.content)
    bad = requests.head(served.url + "/sparql", params={"query": "SELECT {"}, timeout=30)
    assert bad.status_code == 400 and bad.content == b""


@pytest.mark.parametrize(("what", "path", "headers", "body", "status"), [
    ("a query in the URL and the body", "/sparql?query=ASK%20%7B%7D", {"Content-Type": "application/sparql-query"},
     b"SELECT * {}", 400),
    ("a query in the URL and the form", "/sparql?query=ASK%20%7B%7D",
     {"Content-Type": "application/x-www-form-urlencoded"}, b"query=SELECT%20*%20%7B%7D", 400),
    ("bytes that are not UTF-8", "/sparql", {"Content-Type": "application/sparql-query"},
     b'ASK { FILTER("\xff" = "x") }', 400),
    ("a form whose value is not UTF-8", "/sparql", {"Content-Type": "application/x-www-form-urlencoded"},
     b"query=ASK%20%7B%20FILTER(%22%FF%22%20=%20%22x%22)%20%7D", 400),
    ("a charset other than UTF-8", "/sparql", {"Content-Type": "application/sparql-query; charset=ISO-8859-1"},
     b'ASK { FILTER("\xe9" = "x") }', 415),
    ("UTF-8 declared", "/sparql", {"Content-Type": "application/sparql-query; charset=utf-8"},
     'ASK { FILTER("é" = "é") }'.encode(), 200),
])
def test_requests_the_protocol_does_not_allow(served: Served, what: str, path: str, headers: dict[str, str],
                                               body: bytes, status: int) -> None:
    r = requests.post(served.url + path, data=body, headers=headers, timeout=30)
    assert r.status_code == status, (what, r.text)
    if status == 200:
        assert r.json()["boolean"] is True
