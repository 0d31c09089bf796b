"""The text index behind ``search``: same matches as the plain query, folded accents, ranking,
and an index that never answers out of step with the graph (upserts, rebuilds, kills, damage)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.query.catalog import get_named_query
from konbini_ld.query.run import run_query
from konbini_ld.sources.konbini.corpus import corpus_lines
from konbini_ld.store import textindex
from konbini_ld.store.textindex import TextIndex

pytestmark = pytest.mark.skipif(not textindex.supported(), reason="this SQLite has no FTS5 trigram tokenizer")

MUSIC = "https://www.tiktok.com/music/"
QUERIES = ["love", "LOVE", "lo", "o", "sound", "creator.1", "hits", "singles", "original sound", "zzz", "ve y", "7000"]


def audio(n: int, name: str, *, album: str | None = None, by: str | None = None, username: str | None = None,
          videos: int = 1) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "Audio", "id": f"{MUSIC}a-{n}", "name": name, "videoCount": videos}
    if album is not None:
        item["album"] = album
    if by is not None:
        item["attributedTo"] = {"type": "Person", "id": f"https://www.tiktok.com/@{by}",
                                "preferredUsername": username or by}
    return {"data": item}


def plain(store: Any, text: str) -> set[tuple[str, int]]:
    """What the plain SPARQL query finds (every match: no LIMIT), as (audio, relevance tier)."""
    nq = get_named_query("search")
    sparql = nq.text.replace("LIMIT 100", "LIMIT 1000000")
    rows = run_query(store.engine, sparql, nq.bind({"text": text})).records()
    return {(str(r["audio"]), int(r["relevance"])) for r in rows}  # type: ignore[call-overload]


def fast(store: Any, text: str) -> set[tuple[str, int]]:
    rows = store.search(text, limit=1_000_000).records()
    assert all(isinstance(r["relevance"], float) for r in rows), "not answered by the index"
    return {(str(r["audio"]), int(r["relevance"])) for r in rows}


def contents(index: TextIndex) -> list[tuple[Any, ...]]:
    return sorted(index.db.execute(
        "SELECT a.iri, a.name, a.videos, t.album, t.creators FROM audio a JOIN text t ON t.rowid = a.id"))


def consistent(store_dir: Path) -> None:
    """The store's index holds exactly what an index built afresh from its graph holds."""
    with open_store(store_dir) as store:
        assert store.writer.index is not None
        fresh = TextIndex(None)
        fresh.rebuild(store.engine.store, None)
        assert contents(store.writer.index) == contents(fresh)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(line.rstrip("\n") + "\n" for line in corpus_lines(1200)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    store = tmp_path_factory.mktemp("loaded") / "store"
    with open_store(store) as s:
        s.load(corpus)
    return store


def test_the_index_finds_what_the_plain_query_finds(loaded: Path) -> None:
    with open_store(loaded, read_only=True) as store:
        for text in QUERIES:
            expected = plain(store, text)
            assert fast(store, text) == expected, text
        assert len(plain(store, "love")) > 20  # (the corpus has matches to compare)


def test_accents_and_case_are_folded() -> None:
    with open_store(None) as store:
        store.load([audio(1, "Beyoncé — Crazy in Love", by="queenb", username="Beyoncé"),
                    audio(2, "Straße nach Süden"), audio(3, "Crazy Frog")])
        found = {r["audio"] for r in store.search("beyonce").records()}
        assert found == {f"{MUSIC}a-1"}
        assert {r["audio"] for r in store.search("CRAZY").records()} == {f"{MUSIC}a-1", f"{MUSIC}a-3"}
        assert {r["audio"] for r in store.search("strasse nach sud").records()} == {f"{MUSIC}a-2"}
        assert {r["audio"] for r in store.search("BEYONCÉ").records()} == {f"{MUSIC}a-1"}


def test_ranking_whole_name_then_start_then_inside_then_album_and_creator() -> None:
    with open_store(None) as store:
        store.load([
            audio(1, "a song about summer", videos=900),
            audio(2, "Summer", videos=1),
            audio(3, "Summer Nights", videos=5),
            audio(4, "Winter", album="Summer Hits", videos=10_000),
            audio(5, "Rain", by="summer.dj", videos=50_000),
            audio(6, "Summer Nights", videos=50),
        ])
        rows = store.search("summer").records()
        assert [r["audio"].rsplit("-", 1)[1] for r in rows] == ["2", "6", "3", "1", "4", "5"]  # type: ignore[union-attr]
        assert [int(r["relevance"]) for r in rows] == [3, 2, 2, 1, 0, 0]  # type: ignore[call-overload]
        assert rows[0]["relevance"] > rows[1]["relevance"] > rows[3]["relevance"]  # type: ignore[operator]


def test_upserts_move_the_index_with_the_graph(tmp_path: Path) -> None:
    with open_store(tmp_path / "store") as store:
        store.load(audio(1, "Alpha", by="first.user"), observed_at="2026-03-01T00:00:00Z")
        assert {r["audio"] for r in store.search("alpha").records()} == {f"{MUSIC}a-1"}
        store.load(audio(1, "Beta", by="first.user"), observed_at="2026-03-02T00:00:00Z")
        assert store.search("alpha").records() == []
        assert [r["name"] for r in store.search("beta").records()] == ["Beta"]
        # an older observation arriving late changes nothing: the graph keeps the newer name
        store.load(audio(1, "Gamma", by="first.user"), observed_at="2026-02-01T00:00:00Z")
        assert store.search("gamma").records() == [] and len(store.search("beta").records()) == 1
        # a creator renamed in a response about the person alone: their audios follow
        store.load({"data": {"type": "Person", "id": "https://www.tiktok.com/@first.user",
                             "preferredUsername": "renamed.user"}}, observed_at="2026-03-03T00:00:00Z")
        assert [r["username"] for r in store.search("renamed").records()] == ["renamed.user"]
        assert store.search("first.user").records() == []
    consistent(tmp_path / "store")


def test_named_query_cli_and_endpoint_answer_from_the_index(loaded: Path) -> None:
    r = CliRunner().invoke(main, ["--store", str(loaded), "query", "search", "-p", "text=love", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)["results"]["bindings"]
    assert rows and all("." in row["relevance"]["value"] for row in rows)  # BM25 fractions: the index answered
    from test_server import Served  # the real server, as the other endpoint tests start it

    served = Served(loaded)
    try:
        resp = requests.get(f"{served.url}/queries/search", params={"text": "LOVE"},
                            headers={"Accept": "application/sparql-results+json"}, timeout=30)
        assert resp.status_code == 200
        http_rows = resp.json()["results"]["bindings"]
        assert [b["audio"]["value"] for b in http_rows] == [b["audio"]["value"] for b in rows]
    finally:
        served.stop()


def test_a_stale_index_is_never_read_and_the_next_writer_rebuilds_it(loaded: Path, tmp_path: Path) -> None:
    import shutil

    store_dir = tmp_path / "store"
    shutil.copytree(loaded, store_dir)
    index = TextIndex(store_dir / textindex.FILENAME)
    with index.db:
        index.db.execute("DELETE FROM text")  # out of step with the graph, and says it is not current
        index.db.execute("UPDATE meta SET value = '7' WHERE key = 'seq'")
    index.close()
    with open_store(store_dir, read_only=True) as store:
        rows = store.search("love").records()
        assert rows and all(isinstance(r["relevance"], int) for r in rows)  # the plain query answered
    consistent(store_dir)  # the writer rebuilt it


@pytest.mark.parametrize("damage", ["deleted", "garbage"])
def test_a_missing_or_damaged_index_is_rebuilt_from_the_graph(loaded: Path, tmp_path: Path, damage: str) -> None:
    import shutil

    store_dir = tmp_path / "store"
    shutil.copytree(loaded, store_dir)
    path = store_dir / textindex.FILENAME
    if damage == "deleted":
        textindex.discard(store_dir)
    else:
        path.write_bytes(b"SQLite format 3\x00" + bytes(random.Random(1).randrange(256) for _ in range(8192)))
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    with open_store(store_dir, read_only=True) as store:
        assert store.search("love").records()  # answered by the plain query meanwhile
    consistent(store_dir)
    with open_store(store_dir, read_only=True) as store:
        assert fast(store, "love") == plain(store, "love")


def test_rebuild_rebuilds_the_index(loaded: Path, tmp_path: Path) -> None:
    import shutil

    store_dir = tmp_path / "store"
    shutil.copytree(loaded, store_dir)
    r = CliRunner().invoke(main, ["--store", str(store_dir), "rebuild"])
    assert r.exit_code == 0, r.stderr
    with open_store(store_dir, read_only=True) as store:
        assert fast(store, "hits") == plain(store, "hits")
    consistent(store_dir)


def test_a_load_killed_at_random_points_leaves_an_index_in_step(corpus: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    rng = random.Random(12)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "konbini_ld", "--store", str(store_dir), "load", str(corpus)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        consistent(store_dir)  # opening for writing replays what the kill left, index included
    with open_store(store_dir, read_only=True) as store:
        for text in ("love", "creator.2"):
            assert fast(store, text) == plain(store, text)
