"""The client matrix: the SPARQL clients people already use, against a real ``konbini-ld serve``.

Every cell answers what the embedded store answers, or is a documented refusal. The matrix
is printed in the README's "SPARQL endpoint" section.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest
import requests
from rdflib import Graph
from rdflib.plugins.stores.sparqlstore import SPARQLStore

from helpers import KHABY, NEWER, SEED, VIDEOS
from konbini_ld import open_store
from test_server import Served

AS = "https://www.w3.org/ns/activitystreams#"
SELECT = f"SELECT ?a ?n WHERE {{ ?a <{AS}name> ?n }} ORDER BY ?a ?n"
ASK = "ASK { ?s ?p ?o }"
CONSTRUCT = f"CONSTRUCT {{ ?a <urn:x:name> ?n }} WHERE {{ ?a <{AS}name> ?n }}"
DESCRIBE = f"DESCRIBE <{KHABY}>"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clients") / "store"
    with open_store(path) as store:
        store.load([SEED, NEWER, VIDEOS])
    return path


@pytest.fixture(scope="module")
def served(store_path: Path) -> Iterator[Served]:
    server = Served(store_path)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def expected(store_path: Path) -> dict[str, Any]:
    with open_store(store_path, read_only=True) as store:
        rows = [(r["a"], r["n"]) for r in store.query(SELECT).records()]
        constructed = len(list(store.query(CONSTRUCT).triples()))
        described = len(list(store.query(DESCRIBE).triples()))
    return {"rows": rows, "construct": constructed, "describe": described}


def endpoint(served: Served) -> str:
    return served.url + "/sparql"


# -- rdflib SPARQLStore ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "POST_FORM"])
@pytest.mark.parametrize("return_format", ["xml", "json", "csv", "tsv"])
def test_rdflib_sparqlstore(served: Served, expected: dict[str, Any], method: str, return_format: str) -> None:
    store = SPARQLStore(endpoint(served), returnFormat=return_format, method=method)
    rows = [(str(a), str(n)) for a, n in store.query(SELECT)]
    assert rows == expected["rows"]
    assert store.query(ASK).askAnswer is True
    assert len(store.query(CONSTRUCT).graph) == expected["construct"]
    assert len(store.query(DESCRIBE).graph) == expected["describe"]


# -- SPARQLWrapper ---------------------------------------------------------------------------------


def _wrapper(served: Served, query: str, fmt: str, method: str, *params: tuple[str, str]) -> Any:
    from SPARQLWrapper import SPARQLWrapper

    client = SPARQLWrapper(endpoint(served))
    client.setMethod(method)
    client.setQuery(query)
    client.setReturnFormat(fmt)
    for name, value in params:
        client.addParameter(name, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SPARQLWrapper warns about formats it does not convert itself
        result = client.query()
        return result.response.headers.get("Content-Type", ""), result.convert()


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("fmt", ["json", "xml", "csv", "tsv"])
def test_sparqlwrapper_select(served: Served, expected: dict[str, Any], method: str, fmt: str) -> None:
    ctype, converted = _wrapper(served, SELECT, fmt, method)
    if fmt == "json":
        rows = [(b["a"]["value"], b["n"]["value"]) for b in converted["results"]["bindings"]]
    elif fmt == "xml":
        rows = [tuple(node.firstChild.firstChild.data for node in result.getElementsByTagName("binding"))
                for result in converted.getElementsByTagName("result")]
    else:
        sep = "," if fmt == "csv" else "\t"
        lines = converted.decode().strip().splitlines()[1:]
        rows = [tuple(cell.strip('"<>') for cell in line.split(sep)) for line in lines]
    assert ctype.split(";")[0] in {"json": "application/sparql-results+json", "xml": "application/sparql-results+xml",
                                   "csv": "text/csv", "tsv": "text/tab-separated-values"}[fmt].split()
    assert rows == expected["rows"]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("fmt", ["json", "xml", "csv", "tsv"])
def test_sparqlwrapper_ask(served: Served, method: str, fmt: str) -> None:
    ctype, converted = _wrapper(served, ASK, fmt, method)
    # CSV and TSV define no boolean: those clients get SPARQL JSON (the protocol's default)
    if fmt == "xml":
        assert converted.getElementsByTagName("boolean")[0].firstChild.data == "true"
    else:
        assert ctype.startswith("application/sparql-results+json") and converted["boolean"] is True


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("fmt", ["turtle", "n3", "rdf+xml", "xml", "json-ld", "json"])
@pytest.mark.parametrize("form", ["CONSTRUCT", "DESCRIBE"])
def test_sparqlwrapper_graphs(served: Served, expected: dict[str, Any], method: str, fmt: str, form: str) -> None:
    query = CONSTRUCT if form == "CONSTRUCT" else DESCRIBE
    # JSON-LD names the API's context URLs unless asked to embed them: SPARQLWrapper's
    # convert() would fetch them, so the matrix asks (context=inline), as the README says.
    params = [("context", "inline")] if fmt in ("json-ld", "json") else []
    ctype, converted = _wrapper(served, query, fmt, method, *params)
    if isinstance(converted, bytes):  # turtle and n3 come back as text
        converted = Graph().parse(data=converted, format="turtle")
    assert len(converted) == expected["construct" if form == "CONSTRUCT" else "describe"], ctype


def test_jsonld_stands_alone_and_names_urls_only_when_asked(served: Served) -> None:
    r = requests.get(endpoint(served), params={"query": DESCRIBE}, headers={"Accept": "application/ld+json"},
                     timeout=30)
    assert all(isinstance(c, dict) for c in r.json()["@context"])
    named = requests.get(endpoint(served), params={"query": DESCRIBE, "context": "urls"},
                         headers={"Accept": "application/ld+json"}, timeout=30).json()["@context"]
    assert named == ["https://www.w3.org/ns/activitystreams#", "https://konbiniapi.com/ns/social#"]


def test_sparqlwrapper_and_pyld_read_jsonld_offline(served: Served, expected: dict[str, Any]) -> None:
    """SPARQLWrapper's convert() and pyld, with a loader that refuses the network, read our JSON-LD."""
    from pyld import jsonld
    from SPARQLWrapper import JSONLD, SPARQLWrapper

    client = SPARQLWrapper(endpoint(served))
    client.setQuery(CONSTRUCT)
    client.setReturnFormat(JSONLD)
    graph = client.query().convert()
    assert len(graph) == expected["construct"]  # type: ignore[arg-type]

    def refuse(url: str, options: Any = None) -> Any:
        raise AssertionError(f"the document sent a JSON-LD processor to the network: {url}")

    doc = requests.get(endpoint(served), params={"query": DESCRIBE}, headers={"Accept": "application/ld+json"},
                       timeout=30).json()
    quads = jsonld.to_rdf(doc, {"documentLoader": refuse, "format": "application/n-quads"})
    assert quads.count("\n") == expected["describe"]


# -- Apache Jena -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jena(tmp_path_factory: pytest.TempPathFactory) -> str:
    from jena import classpath

    return classpath(tmp_path_factory.mktemp("jena"))


@pytest.mark.parametrize("results", ["text", "json", "xml", "csv", "tsv"])
def test_jena_rsparql_select(served: Served, jena: str, tmp_path: Path, expected: dict[str, Any], results: str) -> None:
    from jena import rsparql

    query = tmp_path / "q.rq"
    query.write_text(SELECT)
    out = rsparql(jena, endpoint(served), query, f"--results={results}")
    assert out.returncode == 0, out.stderr
    for audio, name in expected["rows"]:
        assert audio in out.stdout and name in out.stdout


@pytest.mark.parametrize("form", ["ASK", "CONSTRUCT", "DESCRIBE"])
def test_jena_rsparql_other_forms(served: Served, jena: str, tmp_path: Path, expected: dict[str, Any],
                                  form: str) -> None:
    from jena import rsparql

    query = tmp_path / "q.rq"
    query.write_text({"ASK": ASK, "CONSTRUCT": CONSTRUCT, "DESCRIBE": DESCRIBE}[form])
    out = rsparql(jena, endpoint(served), query)
    assert out.returncode == 0, out.stderr
    if form == "ASK":
        assert "Yes" in out.stdout
    else:
        graph = Graph().parse(data=out.stdout, format="turtle")
        assert len(graph) == expected["construct" if form == "CONSTRUCT" else "describe"]


# -- curl --------------------------------------------------------------------------------------------


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-s", "-S", "-f", *args], capture_output=True, text=True, timeout=60)


def test_curl_get_post_and_formats(served: Served, expected: dict[str, Any]) -> None:
    url = endpoint(served)
    get = _curl("-G", "-H", "Accept: text/csv", url, "--data-urlencode", f"query={SELECT}")
    form = _curl("-H", "Accept: application/sparql-results+json", url, "--data-urlencode", f"query={SELECT}")
    body = _curl("-H", "Content-Type: application/sparql-query", "-H", "Accept: text/tab-separated-values",
                 "--data-binary", SELECT, url)
    for out in (get, form, body):
        assert out.returncode == 0, out.stderr
    assert get.stdout.splitlines()[0] == "a,n" and len(get.stdout.splitlines()) == len(expected["rows"]) + 1
    assert len(json.loads(form.stdout)["results"]["bindings"]) == len(expected["rows"])
    assert body.stdout.startswith("?a\t?n")
    graph = _curl("-G", url, "-H", "Accept: application/n-quads", "--data-urlencode", f"query={DESCRIBE}")
    assert graph.returncode == 0 and graph.stdout.count(" .\n") == expected["describe"]


def test_the_serve_help_example_runs_as_printed(served: Served) -> None:
    from click.testing import CliRunner

    from konbini_ld.apps.cli import main

    text = CliRunner().invoke(main, ["serve", "--help"]).stdout
    (line,) = [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]
    command = line.replace("http://127.0.0.1:7878", served.url)
    out = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and sorted(out.stdout.splitlines()[0].split(",")) == ["o", "p", "s"], out.stderr


# -- the protocol's dataset, format parameters, service description, VoID -------------------------


def _count(served: Served, **params: Any) -> int:
    r = requests.post(endpoint(served), data={"query": "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }", **params},
                      headers={"Accept": "application/sparql-results+json"}, timeout=30)
    return int(r.json()["results"]["bindings"][0]["n"]["value"])


def test_default_and_named_graph_uris_are_honoured(served: Served, store_path: Path) -> None:
    with open_store(store_path, read_only=True) as store:
        total = len(store)
        prov = len(list(store.engine.iter_quads(ox.NamedNode("urn:konbini-ld:graph:provenance"))))
    assert _count(served) == total
    assert _count(served, **{"default-graph-uri": "urn:konbini-ld:graph:provenance"}) == prov
    got = requests.get(endpoint(served), params={
        "query": "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g",
        "named-graph-uri": "urn:konbini-ld:graph:data"}, headers={"Accept": "text/csv"}, timeout=30).text
    assert "urn:konbini-ld:graph:data" in got and "provenance" not in got


def test_an_unknown_format_parameter_never_overrides_a_valid_accept(served: Served) -> None:
    r = requests.get(endpoint(served), params={"query": SELECT, "format": "n3", "output": "bogus"},
                     headers={"Accept": "text/tab-separated-values"}, timeout=30)
    assert r.headers["content-type"].startswith("text/tab-separated-values")
    r = requests.get(endpoint(served), params={"query": SELECT, "format": "text/csv"}, timeout=30)
    assert r.headers["content-type"].startswith("text/csv")
    for name, media in [("ttl", "text/turtle"), ("rdfxml", "application/rdf+xml"), ("nq", "application/n-quads"),
                        ("trig", "application/trig"), ("json-ld", "application/ld+json"), ("xml", "application/rdf+xml")]:
        r = requests.get(endpoint(served), params={"query": DESCRIBE, "format": name}, timeout=30)
        assert r.status_code == 200 and r.headers["content-type"].startswith(media), name


def test_service_description_and_void(served: Served, store_path: Path) -> None:
    sd = requests.get(endpoint(served), headers={"Accept": "text/turtle"}, timeout=30)
    assert sd.status_code == 200 and sd.headers["content-type"].startswith("text/turtle")
    g = Graph().parse(data=sd.text, format="turtle")
    SD = "http://www.w3.org/ns/sparql-service-description#"
    services = list(g.query(f"SELECT ?e WHERE {{ ?s a <{SD}Service> ; <{SD}endpoint> ?e }}"))
    assert [str(r[0]) for r in services] == [endpoint(served)]
    names = {str(r[0]) for r in g.query(f"SELECT ?n WHERE {{ ?g <{SD}name> ?n }}")}
    assert names == {"urn:konbini-ld:graph:data", "urn:konbini-ld:graph:provenance", "urn:konbini-ld:graph:history"}
    void = Graph().parse(data=requests.get(served.url + "/void", headers={"Accept": "text/turtle"}, timeout=30).text,
                         format="turtle")
    VOID = "http://rdfs.org/ns/void#"
    with open_store(store_path, read_only=True) as store:
        total = len(store)
        audios = store.stats().audios
    dataset_triples = [int(r[0]) for r in void.query(
        f"SELECT ?n WHERE {{ ?d a <{VOID}Dataset> ; <{VOID}triples> ?n }}")]
    assert dataset_triples == [total]
    entities = {str(r[0]): int(r[1]) for r in void.query(
        f"SELECT ?c ?n WHERE {{ ?p <{VOID}class> ?c ; <{VOID}entities> ?n }}")}
    assert entities[AS + "Audio"] == audios and entities[AS + "Person"] >= 1
    page = requests.get(served.url + "/", timeout=30).text
    assert 'href="sparql"' in page and 'href="void"' in page
