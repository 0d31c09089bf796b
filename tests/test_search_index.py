"""The text index behind ``search``: same matches as the plain query, folded accents, ranking,
and an index that never answers out of step with the graph (upserts, rebuilds, kills, damage)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from helpers import kill_mid_work, writing

from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.query.catalog import get_named_query
from konbini_ld.query.run import run_query
from konbini_ld.sources.konbini.corpus import corpus_lines, videos_page
from konbini_ld.store.index import textindex
from konbini_ld.store.index.textindex import TextIndex

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


def contents(index: TextIndex) -> list[list[tuple[Any, ...]]]:
    return [sorted(index.db.execute(sql)) for sql in (
        "SELECT a.iri, a.name, a.videos, a.original, a.credits, t.album, t.creators FROM audio a "
        "JOIN text t ON t.rowid = a.id",
        "SELECT * FROM person",
        "SELECT a.iri, c.person FROM credit c JOIN audio a ON a.id = c.audio",
        "SELECT entity, property, first_t, first_v, last_t, last_v, observations, growth, per_day FROM series",
        "SELECT s.entity, s.property, p.t, p.v FROM point p JOIN series s ON s.id = p.series",
        "SELECT iri, t FROM activity",
    )]


def consistent(store_dir: Path) -> None:
    """The store's index holds exactly what an index built afresh from its graph holds."""
    with open_store(store_dir) as store:
        assert store.index is not None
        fresh = TextIndex(None)
        fresh.rebuild(store.engine.store, None)
        assert contents(store.index) == contents(fresh)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    pages = [json.dumps(videos_page(i, 0)) + "\n" for i in range(0, 40, 4)]  # persons who only post videos
    path.write_text("".join(line.rstrip("\n") + "\n" for line in corpus_lines(1200)) + "".join(pages),
                    encoding="utf-8")
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


def test_a_first_load_indexes_new_entities_without_reading_them_back(corpus: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Entities new to the graph are indexed from what the batch wrote for them; only those the
    graph held before (creators seen in an earlier batch) are read back. Same index either way."""
    from konbini_ld.store.index import index_rows

    reads: list[str] = []
    real = index_rows.described
    monkeypatch.setattr(index_rows, "described", lambda store, node, kind: reads.append(node.value) or real(store, node, kind))
    with open_store(tmp_path / "store") as store:
        report = store.load(corpus, batch_size=200)
        audios = store.index.db.execute("SELECT COUNT(*) FROM audio").fetchone()[0]
    assert audios >= 1200 and report.loaded > 1200
    assert 0 < len(reads) < audios / 2, len(reads)  # (the persons seen again)
    monkeypatch.setattr(index_rows, "described", real)
    consistent(tmp_path / "store")


def test_entities_observed_again_unchanged_are_not_read_back(corpus: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A second observation that changes nothing leaves the index's rows as they are: nothing is
    read back for them (a creator seen in every batch of a load is read once at most)."""
    from konbini_ld.store.index import index_rows

    audios = tmp_path / "audios.jsonl"
    audios.write_text("".join(line for line in corpus.read_text(encoding="utf-8").splitlines(keepends=True)
                              if '"type":"Audio"' in line[:200]), encoding="utf-8")
    reads: list[str] = []
    real = index_rows.described
    with open_store(tmp_path / "store") as store:
        assert store.load(audios, batch_size=200, observed_at="2026-11-01T00:00:00Z").loaded == 1200
        monkeypatch.setattr(index_rows, "described", lambda store, node, kind: reads.append(node.value) or real(store, node, kind))
        store.load(audios, batch_size=200, observed_at="2026-11-01T00:00:00Z")
        assert reads == []
        store.load(audios, batch_size=200, observed_at="2026-11-02T00:00:00Z")  # (new times, same values)
        assert reads == []
    monkeypatch.setattr(index_rows, "described", real)
    consistent(tmp_path / "store")


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



def test_an_index_of_another_version_is_left_to_the_next_writer(loaded: Path, tmp_path: Path) -> None:
    """A reader of a newer konbini-ld beside an index an older one wrote (current, but laid out
    otherwise) answers from the graph; the next writer rebuilds the index in its own layout."""
    import shutil

    store_dir = tmp_path / "store"
    shutil.copytree(loaded, store_dir)
    index = TextIndex(store_dir / textindex.FILENAME)
    with index.db:
        index.db.execute("UPDATE meta SET value = '1' WHERE key = 'version'")
        index.db.execute("DROP INDEX person_rank")
        index.db.execute("ALTER TABLE person DROP COLUMN audios")  # (what an older layout lacks)
    index.close()
    nq = get_named_query("creators")
    with open_store(store_dir, read_only=True) as store:
        assert store.answer(nq.text, {}) is None
        assert rows_of(store.run_named("creators"))  # answered by the plain query
    with open_store(store_dir) as store:
        assert store.answer(nq.text, {}) is not None
    with open_store(store_dir, read_only=True) as store:
        same_answers(store)

def test_an_index_damaged_under_a_reader_answers_nothing_and_the_graph_answers(loaded: Path, tmp_path: Path) -> None:
    """A reader (serve's worker, query) whose index file is damaged while it reads it: each named
    query is answered from the graph (it was a DatabaseError, a 500 from serve), said once."""
    import shutil

    store_dir = tmp_path / "store"
    shutil.copytree(loaded, store_dir)
    names = ["top-audios", "creators", "verified-creators", "original-vs-licensed"]
    with open_store(store_dir, read_only=True) as store:
        expected = {n: sorted(map(str, rows_of(run_query(store.engine, get_named_query(n).text, {})))) for n in names}
        assert store.search("love").records()  # the index is open
        path = store_dir / textindex.FILENAME
        data = bytearray(path.read_bytes())
        for i in range(100, len(data), 7):
            data[i] = 0x5A
        path.write_bytes(bytes(data))
        for n in names:
            assert sorted(map(str, rows_of(store.run_named(n)))) == expected[n], n
        assert store.search("love").records()


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
        kill_mid_work(proc, writing(store_dir, proc), rng.uniform(0.05, 0.8), what="load")
        consistent(store_dir)  # opening for writing replays what the kill left, index included
    with open_store(store_dir, read_only=True) as store:
        for text in ("love", "creator.2"):
            assert fast(store, text) == plain(store, text)


# -- the aggregations answered from the index ----------------------------------------------

GROWING = ("trending", "rising-creators")
DOUBLE = "http://www.w3.org/2001/XMLSchema#double"
SUMMARIES = ["top-audios", "creators", "verified-creators", "original-vs-licensed", "trending", "rising-creators",
             "recent-observations"]


def rows_of(result: Any) -> list[tuple[Any, ...]]:
    return [tuple(None if t is None else (t.value, getattr(t, "datatype", None)) for t in r) for r in result.rows()]


def assert_same_growth(got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]], name: str) -> None:
    """The same rows; the ratios (doubles) equal to within rounding: the projection divides by the
    days between two times, the query by days it counts from calendar fields."""
    assert len(got) == len(expected), name
    for row, want in zip(got, expected, strict=True):
        for cell, value in zip(row, want, strict=True):
            if cell is not None and value is not None and cell[1] is not None and cell[1].value == DOUBLE:
                assert math.isclose(float(cell[0]), float(value[0]), rel_tol=1e-9), (name, row, want)
            else:
                assert cell == value, (name, row, want)


def same_answers(store: Any) -> None:
    """Every summary gives the plain query's rows on this store: the same rows in the same order,
    up to the order of rows the query's ORDER BY leaves tied."""
    from konbini_ld.lexical import observation_time
    from konbini_ld.store.index.projections import PROJECTIONS

    for name in SUMMARIES:
        nq = get_named_query(name)
        expected = rows_of(run_query(store.engine, nq.text, {}))
        result = store.run_named(name)
        assert store.answer(nq.text, {}) is not None and nq.projection in PROJECTIONS  # (the index answers it)
        got = rows_of(result)
        assert result.variables == [v.value for v in __import__("pyoxigraph").Store().query(nq.text).variables]
        if name == "creators":  # ORDER BY audios, followers: persons tied on both come in any order
            def key(row: tuple[Any, ...]) -> tuple[Any, ...]:
                return (-int(row[3][0]), -int(row[2][0]) if row[2] else 1)
            assert [key(r) for r in got] == [key(r) for r in expected]
            assert sorted(map(str, got)) == sorted(map(str, expected))
        elif name == "verified-creators":  # ORDER BY followers: persons tied on it come in any order
            assert [r[3] for r in got] == [r[3] for r in expected]
            assert sorted(map(str, got)) == sorted(map(str, expected))
        elif name == "recent-observations":  # LIMIT 50 picks any of the activities tied at the 50th time
            def when(row: tuple[Any, ...]) -> str:
                return observation_time(row[0][0])
            last = min(map(when, got))
            assert last == min(map(when, expected))
            assert [r for r in got if when(r) > last] == [r for r in expected if when(r) > last]
            unlimited = set(rows_of(run_query(store.engine, nq.text.replace("LIMIT 50", "LIMIT 1000000"), {})))
            assert {r for r in got if when(r) == last} <= unlimited
        elif name == "top-audios":  # LIMIT 100 picks any of the audios tied at the 100th count
            last = min(int(r[2][0]) for r in got)
            assert [r for r in got if int(r[2][0]) > last] == [r for r in expected if int(r[2][0]) > last]
            assert len({r[0] for r in got}) == len({r[0] for r in expected})
            unlimited = set(rows_of(run_query(store.engine, nq.text.replace("LIMIT 100", "LIMIT 100000"), {})))
            assert {r for r in got if int(r[2][0]) == last} <= unlimited
        elif name in GROWING:
            assert_same_growth(got, expected, name)
        else:
            assert got == expected, name
        if name not in GROWING and name != "verified-creators":  # (not every store has verified persons)
            assert got, name


def test_summaries_give_the_plain_queries_answers(loaded: Path) -> None:
    with open_store(loaded, read_only=True) as store:
        same_answers(store)
        assert store.run_named("verified-creators").records()  # (some verified persons to compare)


def test_summaries_follow_upserts_in_any_order(tmp_path: Path) -> None:
    rng = random.Random(5)
    with open_store(tmp_path / "store") as store:
        lines = list(corpus_lines(300, observations=3))
        rng.shuffle(lines)  # later days before earlier ones: the graph keeps the newest values
        for chunk in range(0, len(lines), 150):
            store.load([__import__("io").StringIO("".join(line.rstrip("\n") + "\n" for line in lines[chunk:chunk + 150]))])
            same_answers(store)
        store.load({"data": {"type": "Audio", "id": f"{MUSIC}new", "name": "n", "videoCount": 10**9,
                             "isOriginal": False, "attributedTo": {"type": "Person", "id": "https://www.tiktok.com/@n",
                                                                   "preferredUsername": "n", "followerCount": 5}}})
        same_answers(store)
        assert store.run_named("top-audios").records()[0]["audio"] == f"{MUSIC}new"
        # credited to someone else, and no longer original: the counts move with it
        store.load({"data": {"type": "Audio", "id": f"{MUSIC}new", "isOriginal": True,
                             "attributedTo": {"type": "Person", "id": "https://www.tiktok.com/@creator.1"}}})
        same_answers(store)
        creators = {r["person"]: r["audios"] for r in store.run_named("creators").records()}
        assert creators["https://www.tiktok.com/@n"] == 0
    consistent(tmp_path / "store")


@pytest.mark.parametrize("seed", [9, 10, 11])
def test_growth_rankings_follow_points_at_any_time_in_any_order(tmp_path: Path, seed: int) -> None:
    """Times with milliseconds and odd hours, several values at one time, points loaded twice,
    in shuffled order: the index's first, last, counts and growth per day are the plain query's."""
    rng = random.Random(seed)
    loads = []
    for i in range(12):
        for day in range(4):
            at = f"2026-0{rng.randint(1, 3)}-{rng.randint(10, 28)}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:" \
                 f"{rng.randint(0, 59):02d}.{rng.choice(['000', '500', '250', '125', '999'])}Z"
            item = audio(i, f"song {i}", by=f"maker.{i % 3}", videos=rng.randint(0, 10**6))
            item["data"]["attributedTo"]["followerCount"] = rng.randint(0, 10**7)
            loads.append((item, at))
            if day == 0:
                loads.append((audio(i, f"song {i}", videos=rng.randint(0, 10**6)), at))  # another value, same time
    loads += rng.sample(loads, 10)  # seen again
    rng.shuffle(loads)
    with open_store(tmp_path / "store") as store:
        for item, at in loads:
            store.load(item, observed_at=at)
        same_answers(store)
        assert len(store.run_named("trending").records()) == 12
        for name in ("trending", "rising-creators"):  # since a time: from the points the index keeps
            nq = get_named_query(name)
            for since in ("2026-02-01T00:00:00Z", "2026-02-15T12:30:00.5+01:00", "2026-03-20T00:00:00Z"):
                bound = nq.bind({"since": since})
                assert store.answer(nq.text, bound) is not None
                expected = rows_of(run_query(store.engine, nq.text, bound))
                assert_same_growth(rows_of(store.run_named(name, {"since": since})), expected, f"{name} {since}")
    consistent(tmp_path / "store")


def test_a_reader_keeps_the_aggregations_of_the_graph_it_reads(loaded: Path, tmp_path: Path) -> None:
    """Its answers are kept; a writer beside it moves the index on, not the reader's view: its
    aggregations stay those of the graph its queries read. A reader opened after has the new ones."""
    import shutil

    store_dir = tmp_path / "store"
    shutil.copytree(loaded, store_dir)
    with open_store(store_dir, read_only=True) as reader:
        first = rows_of(reader.run_named("creators"))
        assert reader.index is not None and reader.index.answers  # kept
        assert rows_of(reader.run_named("creators")) == first
        with open_store(store_dir) as writer:  # a writer beside the reader
            writer.load(audio(99, "fresh", by="brand.new", username="brand.new"))
        assert rows_of(reader.run_named("creators")) == first
        assert sorted(rows_of(reader.query(get_named_query("creators").text))) == sorted(first)
    with open_store(store_dir, read_only=True) as later:
        again = rows_of(later.run_named("creators"))
        assert any(r[0][0] == "https://www.tiktok.com/@brand.new" for r in again) and len(again) == len(first) + 1


def test_verified_creators_follow_the_newest_observation_of_the_flag(tmp_path: Path) -> None:
    """A creator verified, then not, then an older observation saying verified arrives late: the
    index answers with the newest flag, as the plain query does."""
    def by(n: int, verified: Any, followers: int) -> dict[str, Any]:
        item = audio(n, f"song {n}", by=f"maker.{n % 2}")
        item["data"]["attributedTo"].update(isVerified=verified, followerCount=followers)
        return item

    with open_store(tmp_path / "store") as store:
        store.load(by(1, True, 10), observed_at="2026-03-01T00:00:00Z")
        store.load(by(2, True, 20), observed_at="2026-03-01T00:00:00Z")
        same_answers(store)
        assert [r["person"] for r in store.run_named("verified-creators").records()] == [
            "https://www.tiktok.com/@maker.0", "https://www.tiktok.com/@maker.1"]
        store.load(by(3, False, 30), observed_at="2026-03-02T00:00:00Z")  # maker.1 no longer verified
        store.load(by(5, True, 5), observed_at="2026-02-01T00:00:00Z")  # older news of maker.1: kept out
        store.load(by(4, True, 40), observed_at="2026-03-03T00:00:00Z")  # maker.0: a second audio
        same_answers(store)
        rows = store.run_named("verified-creators").records()
        assert [(r["person"], r["followers"], r["audios"]) for r in rows] == [("https://www.tiktok.com/@maker.0", 40, 2)]
    consistent(tmp_path / "store")


def test_a_readers_aggregation_reads_one_state_of_the_index_when_a_writer_commits_between_its_reads(
        loaded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``top-audios`` reads the audios, then their creators: a writer committing between the two
    (a creator renamed) does not make the reader's answer half one state and half the next."""
    import shutil

    from konbini_ld.store.index import projections

    store_dir = tmp_path / "store"
    shutil.copytree(loaded, store_dir)
    with open_store(store_dir, read_only=True) as reader:
        plain_rows = sorted(rows_of(reader.query(get_named_query("top-audios").text)))
        creator = next(r["creator"] for r in reader.query(get_named_query("top-audios").text).records()
                       if r["creator"] is not None)
        real = projections._persons
        renamed: list[str] = []

        def writer_between(index: Any, audios: Any) -> Any:
            if not renamed:  # (once: the writer's commit falls between the reader's two reads)
                renamed.append(creator)
                with open_store(store_dir) as writer:
                    writer.load(audio(98, "renamed", by=creator.rsplit("@", 1)[1], username="someone.else"))
            return real(index, audios)

        monkeypatch.setattr(projections, "_persons", writer_between)
        indexed = reader.run_named("top-audios")
        assert renamed and indexed.variables == ["audio", "name", "videoCount", "creator", "username"]
        assert "someone.else" not in {str(r["username"]) for r in indexed.records()}
        assert sorted(rows_of(indexed)) == plain_rows  # (of the graph the reader's view reads)


_KILLED_BETWEEN = r'''
import os, signal, sys
from konbini_ld import open_store
from konbini_ld.store.store import Store
real, seen = Store._follow, []
def follow(self, event):
    seen.append(event)
    if len(seen) == 3:  # (the batch is in the graph; the index has not taken it)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, event)
Store._follow = follow
with open_store(sys.argv[1]) as s:
    s.load([sys.argv[2]], batch_size=1, workers=0)
'''


def test_a_writer_killed_between_the_graph_and_the_index_leaves_no_reader_and_no_writer_a_wrong_answer(
        tmp_path: Path) -> None:
    """Killed once a batch is in the graph and before the index took it: readers answer with the
    plain queries meanwhile, and the next writer rebuilds the index (it said it was in the middle
    of a batch), so its series hold that batch's points too."""
    from konbini_ld.sources.konbini.corpus import workload_lines

    days = []
    for d in range(3):
        days.append(tmp_path / f"day{d}.jsonl")
        days[-1].write_text("".join(workload_lines(4, d, n_persons=10)))
    store_dir = tmp_path / "store"
    with open_store(store_dir) as store:
        store.load(days[0])
    killed = subprocess.run([sys.executable, "-c", _KILLED_BETWEEN, str(store_dir), str(days[1])])
    assert killed.returncode == -9
    growth = [get_named_query(name) for name in ("trending", "rising-creators", "creators")]
    with open_store(store_dir, read_only=True) as reader:
        for nq in growth:
            answered = reader.answer(nq.text, {})
            assert answered is None or sorted(rows_of(answered)) == sorted(rows_of(run_query(reader.engine, nq.text, {})))
    with open_store(store_dir) as store:
        store.load(days[2])
    consistent(store_dir)


class _CutAfterBegin:
    """An index connection whose first ``BEGIN`` is cut short by a Ctrl-C once SQLite has run it."""

    def __init__(self, db: Any) -> None:
        self._db, self.cut = db, False

    def execute(self, sql: str, *args: Any) -> Any:
        out = self._db.execute(sql, *args)
        if sql == "BEGIN" and not self.cut:
            self.cut = True
            raise KeyboardInterrupt
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_a_ctrl_c_as_a_readers_answer_begins_leaves_no_read_open_to_hold_the_index_back(
        loaded: Path, tmp_path: Path) -> None:
    """A notebook's Ctrl-C landing as an answer opens its read of the index: the next answer ends
    that read, so a writer's commits are checkpointed into the file rather than held in the WAL
    for as long as the notebook keeps the store open."""
    import shutil
    import sqlite3

    store_dir = tmp_path / "store"
    shutil.copytree(loaded, store_dir)
    with open_store(store_dir, read_only=True) as reader:
        assert reader.index is not None
        real = reader.index.db
        reader.index.db = cut = _CutAfterBegin(real)  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt):
            reader.run_named("top-audios")
        assert cut.cut
        before = rows_of(reader.run_named("top-audios"))
        with open_store(store_dir) as writer:
            writer.load(audio(97, "later", by="late.comer"))
        assert rows_of(reader.run_named("top-audios")) == before  # (its view: the graph it opened)
        assert not real.in_transaction
        db = sqlite3.connect(store_dir / "search.sqlite")
        try:
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            db.close()
        assert busy == 0, "a reader's read left open holds the index's WAL back"


def test_a_view_opened_without_the_locks_is_answered_by_the_plain_queries(
        loaded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store last written before the views' lock files were kept, read by a user who may not make
    them: how far its view was applied is unknown, so a writer's later batches in the index never
    answer for it."""
    import shutil

    from konbini_ld.engines import views

    store_dir = tmp_path / "store"
    shutil.copytree(loaded, store_dir)
    for name in (views.LOCK, views.TURN):
        (store_dir / name).unlink(missing_ok=True)
    real = views._open_file
    monkeypatch.setattr(views, "_open_file",  # (as for a user who may not create them: root may)
                        lambda path, *, create: real(path, create=create) if path.exists() else None)
    fresh = tmp_path / "fresh.json"
    fresh.write_text(json.dumps(audio(96, "brand new hit", by="new.voice", videos=10**9)))
    nq = get_named_query("top-audios")
    with open_store(store_dir, read_only=True) as reader:
        subprocess.run([sys.executable, "-m", "konbini_ld", "-q", "--store", str(store_dir), "load", str(fresh)],
                       check=True)
        answered = reader.answer(nq.text, {})
        plain = rows_of(run_query(reader.engine, nq.text, {}))
        assert answered is None or rows_of(answered) == plain
        assert not any("brand new hit" in str(row) for row in rows_of(reader.run_named("top-audios")))
