"""The remote-store path, against a real `oxigraph serve` process."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from helpers import AUDIO_IRI, KHABY, NEWER, SEED, VIDEOS, seed_data, write_json
from rdflib import Graph
from rdflib.compare import isomorphic
from servers import OxigraphServer, VirtuosoServer, require_or_skip, virtuoso_available

import konbini_ld
from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.engines.sparql_http import derive_endpoints
from konbini_ld.io.formats import Format

KS = "https://konbiniapi.com/ns/social#"
AT = "2026-11-01T12:00:00Z"


@pytest.fixture(scope="module", params=["oxigraph", "virtuoso"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The same remote-store suite against each real engine."""
    if request.param == "virtuoso":
        reason = virtuoso_available()
        if reason:
            require_or_skip(reason)
        srv: Any = VirtuosoServer(tmp_path_factory.mktemp("virtuoso"))
    else:
        srv = OxigraphServer(tmp_path_factory.mktemp("oxigraph"))
    yield srv
    srv.stop()


#: What each engine does not keep as written (Virtuoso 7 rewrites xsd:duration literals).
LOSSY = {"oxigraph": set(), "virtuoso": {"http://www.w3.org/2001/XMLSchema#duration"}}


def comparable(graph: Graph, server: Any) -> set[Any]:
    """The triples an engine must keep exactly: all but literals of the datatypes it declares lossy."""
    lossy = LOSSY[server.name]
    return {t for t in graph if not (getattr(t[2], "datatype", None) is not None and str(t[2].datatype) in lossy)
            and "endedAtTime" not in t[1]}


@pytest.fixture
def remote(server: OxigraphServer, tmp_path: Path) -> Any:
    server.clear()
    with open_store(server.query_url, archive=tmp_path / "archive") as store:
        yield store


def as_graph(store: Any) -> Graph:
    out = io.BytesIO()
    store.export(out, Format.NT)
    return Graph().parse(data=out.getvalue(), format="nt")


def test_remote_load_matches_the_embedded_store_and_reload_is_a_no_op(remote: Any, server: Any) -> None:
    local = open_store(None)
    for s in (local, remote):
        s.load([SEED, NEWER, VIDEOS], observed_at=AT)
    assert len(remote) == len(local) > 100
    remote.load([SEED, NEWER, VIDEOS], observed_at=AT)
    assert len(remote) == len(local)
    local_graph, remote_graph = as_graph(local), as_graph(remote)
    assert comparable(local_graph, server) == comparable(remote_graph, server)
    # what the engine rewrites is exactly what it declares, and nothing is missing
    assert len(local_graph) == len(remote_graph)
    assert remote.engine.capabilities.lossy_datatypes == frozenset(LOSSY[server.name])


def test_more_than_a_page_of_results_is_read_whole(remote: Any, server: Any, tmp_path: Path) -> None:
    """Virtuoso stops answers at 10,000 rows without saying so: exports and validation must not."""
    from konbini_ld.sources.konbini.corpus import corpus_lines

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(line.rstrip("\n") + "\n" for line in corpus_lines(400)))
    local = open_store(None)
    for s in (local, remote):
        assert s.load([corpus], observed_at=AT).ok
    assert len(local) > 10_000
    assert comparable(as_graph(remote), server) == comparable(as_graph(local), server)
    report = konbini_ld.validate(remote)
    assert report.ok, report.summary()


def test_upsert_provenance_and_no_blank_nodes_on_the_server(remote: Any, tmp_path: Path) -> None:
    remote.load([SEED])
    newer = seed_data()
    newer["videoCount"] = 600000
    remote.load([write_json(tmp_path / "n.json", {"data": newer})])
    rows = list(remote.query(f"SELECT ?n WHERE {{ <{AUDIO_IRI}> <{KS}videoCount> ?n }}").rows())
    assert [r[0].value for r in rows] == ["600000"]
    assert remote.query("ASK { { ?s ?p ?o FILTER(isBlank(?s) || isBlank(?o)) } }").boolean is False
    prov = list(remote.run_named("provenance", {"entity": KHABY}).rows())
    assert len(prov) == 1 and prov[0][3].value.startswith("file://")


def test_named_queries_answer_the_same_remotely(remote: Any) -> None:
    local = open_store(None)
    for s in (local, remote):
        s.load([SEED, VIDEOS])
    for name, params in [("top-audios", {}), ("audios-by-creator", {"creator": KHABY}), ("search", {"text": "ORIG"}),
                         ("creators", {}), ("videos-using-audio", {"audio": AUDIO_IRI})]:
        a = [[t.value if t else None for t in r] for r in local.run_named(name, params).rows()]
        b = [[t.value if t else None for t in r] for r in remote.run_named(name, params).rows()]
        if name == "search":  # locally from the text index: BM25 adds a fraction to the relevance tier
            from konbini_ld.store.index.textindex import supported

            assert all(float(r[-1]) % 1 for r in a) or not supported()
            a = [[*r[:-1], str(int(float(r[-1])))] for r in a]
        assert a == b, name
    triples = list(remote.run_named("audio", {"audio": AUDIO_IRI}).triples())
    assert len(triples) == len(list(local.run_named("audio", {"audio": AUDIO_IRI}).triples()))


def test_cli_against_the_server(server: Any, tmp_path: Path) -> None:
    server.clear()
    base = ["--store", server.query_url, "--archive", str(tmp_path / "a")]
    r = CliRunner().invoke(main, [*base, "load", str(SEED), str(VIDEOS)], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    r = CliRunner().invoke(main, [*base, "query", "top-audios", "-f", "csv"], catch_exceptions=False)
    assert "khaby.lame" in r.stdout
    r = CliRunner().invoke(main, [*base, "stats", "--json"], catch_exceptions=False)
    assert '"audios": 1' in r.stdout
    r = CliRunner().invoke(main, [*base, "export", "-f", "turtle"], catch_exceptions=False)
    assert "ks:videoCount 500000" in r.stdout


def test_push_copies_the_local_graph_idempotently(server: Any, store: Any, tmp_path: Path) -> None:
    server.clear()
    store.load([SEED, NEWER, VIDEOS])
    from konbini_ld.store.transfer import push

    counts = push(store, server.query_url)
    assert sum(counts.values()) == len(store)
    push(store, server.query_url)
    with open_store(server.query_url) as remote:
        assert len(remote) == len(store)
        assert comparable(as_graph(remote), server) == comparable(as_graph(store), server)


def test_remote_rebuild_from_the_local_archive(remote: Any) -> None:
    remote.load([SEED, VIDEOS])
    n = len(remote)
    report = remote.rebuild()
    assert report.loaded == 2 and len(remote) == n


@pytest.mark.parametrize(
    ("url", "update", "gsp"),
    [
        ("http://h:7878/query", "http://h:7878/update", "http://h:7878/store"),
        ("http://h:3030/ds/sparql", "http://h:3030/ds/update", "http://h:3030/ds/data"),
        ("http://h:3030/ds/query", "http://h:3030/ds/update", "http://h:3030/ds/data"),
        ("http://h:7200/repositories/kb", "http://h:7200/repositories/kb/statements",
         "http://h:7200/repositories/kb/rdf-graphs/service"),
        ("http://h:8890/sparql", "http://h:8890/sparql", "http://h:8890/sparql-graph-crud"),
    ],
)
def test_endpoints_are_derived_for_known_servers(url: str, update: str, gsp: str) -> None:
    e = derive_endpoints(url)
    assert (e.update, e.gsp) == (update, gsp)


def test_serve_and_validate_a_remote_store(server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_server import Served

    monkeypatch.setenv("KONBINI_LD_ARCHIVE", str(tmp_path / "a"))
    server.clear()
    base = ["--store", server.query_url, "--archive", str(tmp_path / "a")]
    assert CliRunner().invoke(main, [*base, "load", str(SEED)], catch_exceptions=False).exit_code == 0
    r = CliRunner().invoke(main, [*base, "validate"], catch_exceptions=False)
    # (Virtuoso cannot keep xsd:duration: an information result, which fails nothing)
    assert r.exit_code == 0 and ("conforms:" in r.stderr or "no violations:" in r.stderr), r.stderr
    served = Served(server.query_url)
    try:
        r = requests.get(served.url + "/queries/top-audios", headers={"Accept": "text/csv"}, timeout=10)
        assert r.status_code == 200 and "khaby.lame" in r.text
        drop = requests.post(served.url + "/sparql", data={"update": "DROP ALL"}, timeout=10)
        assert drop.status_code == 403
        # an entity's page and description, and the dataset's, from the remote store
        audio = AUDIO_IRI
        for accept, text in (("text/html", '<h2 id="name">original sound</h2>'), ("text/turtle", "as:attributedTo")):
            r = requests.get(served.url + "/resource", params={"iri": audio}, headers={"Accept": accept}, timeout=30)
            assert r.status_code == 200 and text in r.text, r.text[:300]
        r = requests.get(served.url + "/resource", params={"iri": audio + "-missing"}, timeout=30)
        assert r.status_code == 404
        r = requests.get(served.url + "/void", headers={"Accept": "text/turtle"}, timeout=30)
        assert r.status_code == 200 and "void:classPartition" in r.text
    finally:
        served.stop()
    with open_store(server.query_url) as remote:
        assert remote.stats().audios == 1


def test_remote_rebuild_refuses_to_delete_what_another_archive_wrote(server: Any, store: Any,
                                                                     tmp_path: Path) -> None:
    from konbini_ld.errors import StoreError
    from konbini_ld.store.transfer import push

    server.clear()
    store.load([VIDEOS])  # someone else's data, pushed to the shared server
    push(store, server.query_url)
    with open_store(server.query_url, archive=tmp_path / "mine") as remote:
        remote.load([SEED])
        before = len(remote)
        with pytest.raises(StoreError, match="did not record"):
            remote.rebuild()
        assert len(remote) == before


def test_remote_rebuild_interrupted_leaves_the_graphs_as_they_were(remote: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    remote.load([SEED, VIDEOS])
    before = as_graph(remote)
    from konbini_ld.store.writer import Writer

    calls = {"n": 0}
    real = Writer.apply

    def dies(self: Any, *a: Any, **kw: Any) -> Any:
        calls["n"] += 1
        raise KeyboardInterrupt  # a kill in the middle of the replay

    monkeypatch.setattr(Writer, "apply", dies)
    with pytest.raises(KeyboardInterrupt):
        remote.rebuild()
    monkeypatch.setattr(Writer, "apply", real)
    assert calls["n"] == 1 and isomorphic(as_graph(remote), before)
    remote.rebuild()
    assert len(as_graph(remote)) == len(before)


def test_history_and_out_of_order_loads_on_the_server(remote: Any, tmp_path: Path) -> None:
    """The time-aware upsert reads the server's own record of times; the series queries run there."""
    def body(count: int, followers: int) -> dict[str, Any]:
        data = seed_data()
        data["videoCount"] = count
        data["attributedTo"]["followerCount"] = followers
        return {"data": data}

    for day, count, followers in ((3, 300, 30), (1, 100, 10), (2, 200, 20)):
        remote.load([body(count, followers)], observed_at=f"2026-11-0{day}T09:00:00Z")
    rows = list(remote.query(f"SELECT ?n WHERE {{ <{AUDIO_IRI}> <{KS}videoCount> ?n }}").rows())
    assert [r[0].value for r in rows] == ["300"]
    history = remote.run_named("history", {"entity": AUDIO_IRI}).records()
    assert [r["value"] for r in history] == [100, 200, 300]
    (trend,) = remote.run_named("trending").records()
    assert (trend["growth"], trend["growthPerDay"], trend["observations"]) == (200, 100.0, 3)
    (creator,) = remote.run_named("rising-creators", {"since": "2026-11-02T00:00:00Z"}).records()
    assert (creator["person"], creator["first"], creator["last"]) == (KHABY, 20, 30)
    before = len(remote)
    remote.load([body(300, 30)], observed_at="2026-11-03T09:00:00Z")  # the same again: nothing new
    assert len(remote) == before
