"""History: every observation's counters kept as a series; the current state is always the newest."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest
from click.testing import CliRunner
from helpers import AUDIO_IRI, KHABY, SEED, seed_data, write_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.errors import StoreError
from konbini_ld.pipeline import fetch
from konbini_ld.sources.konbini.client import KonbiniClient
from konbini_ld.sources.konbini.corpus import audio_response, corpus_lines
from konbini_ld.sources.konbini.fakeapi import FakeKonbiniAPI, audio_id

KS = "https://konbiniapi.com/ns/social#"
HISTORY = "urn:konbini-ld:graph:history"
NOW = timedelta(0)  # --refresh-older-than 0s: everything bought before is bought again
KEY = "sk-test-history"


def day(n: int, hour: int = 9) -> str:
    return f"2026-11-{n:02d}T{hour:02d}:00:00Z"


def audio(video_count: int, **more: Any) -> dict[str, Any]:
    data = seed_data()
    data["videoCount"] = video_count
    data.update(more)
    return {"data": data}


def current(store: Any, entity: str, prop: str) -> list[str]:
    return sorted(row[0].value for row in store.query(f"SELECT ?v WHERE {{ <{entity}> <{prop}> ?v }}").rows())


def points(store: Any) -> int:
    """Counter values in the history graph (each observation node: its entity, its time, its counters)."""
    return store.stats().points


def series(store: Any, entity: str, counter: str = "videoCount") -> list[tuple[str, int]]:
    return [(r["time"].isoformat(), r["value"]) for r in store.run_named("history", {"entity": entity}).records()
            if r["counter"] == KS + counter]


def state(store: Any) -> set[str]:
    """The current-state graph, as text."""
    return {str(q) for q in store.engine.iter_quads(ox.NamedNode("urn:konbini-ld:graph:data"))}


# -- when, and what the current state shows ------------------------------------


def test_out_of_order_loads_keep_the_newest_value_current(store: Any) -> None:
    store.load([audio(300)], observed_at=day(3))
    store.load([audio(100, album="Old Album")], observed_at=day(1))  # older: replaces nothing
    store.load([audio(200)], observed_at=day(2))
    assert current(store, AUDIO_IRI, KS + "videoCount") == ["300"]
    assert current(store, AUDIO_IRI, KS + "album") == ["Greatest Hits"]
    assert [v for _, v in series(store, AUDIO_IRI)] == [100, 200, 300]  # the series is in time order
    store.load([audio(400)], observed_at=day(4))
    assert current(store, AUDIO_IRI, KS + "videoCount") == ["400"]


def test_an_older_observation_fills_in_what_the_entity_lacks(store: Any) -> None:
    newer = seed_data()
    del newer["album"]
    store.load([{"data": newer}], observed_at=day(5))
    store.load([audio(1, album="Only Known Earlier")], observed_at=day(1))
    assert current(store, AUDIO_IRI, KS + "album") == ["Only Known Earlier"]
    assert current(store, AUDIO_IRI, KS + "videoCount") == ["500000"]


def test_out_of_order_in_one_batch_and_across_batches_agree(tmp_path: Path) -> None:
    shuffled = [(audio(300), day(3)), (audio(100), day(1)), (audio(200), day(2))]
    lines = [json.dumps({"request": {"url": "https://api.konbiniapi.com/v1/tiktok/audios/1"}, "status": 200,
                         "headers": {"Date": f"Mon, {d[8:10]} Nov 2026 09:00:00 GMT"}, "body": body})
             for body, d in shuffled]
    (tmp_path / "all.jsonl").write_text("\n".join(lines) + "\n")
    with open_store(tmp_path / "one") as one:
        one.load([tmp_path / "all.jsonl"])  # one batch
        with open_store(tmp_path / "many") as many:
            for body, d in shuffled:
                many.load([body], observed_at=d)
            assert state(one) == state(many)
            assert series(one, AUDIO_IRI) == series(many, AUDIO_IRI)
            assert current(one, AUDIO_IRI, KS + "videoCount") == ["300"]


def test_a_recorded_exchange_says_when_and_observed_at_overrides_it(store: Any, tmp_path: Path) -> None:
    exchange = json.loads(SEED.read_text())
    recorded = {"request": {"url": "https://api.konbiniapi.com/v1/tiktok/audios/7611615657754381599"},
                "status": 200, "headers": {"Date": "Sun, 01 Nov 2026 08:30:00 GMT"}, "body": exchange}
    path = write_json(tmp_path / "recorded.json", recorded)
    store.load([path])
    assert series(store, AUDIO_IRI) == [("2026-11-01T08:30:00+00:00", 500000)]
    store.load([path], observed_at="2026-11-02T10:00:00+01:00")
    assert [t for t, _ in series(store, AUDIO_IRI)] == ["2026-11-01T08:30:00+00:00", "2026-11-02T09:00:00+00:00"]
    records = list(store.archive.records())
    assert [r.at for r in records] == ["2026-11-01T08:30:00.000Z", "2026-11-02T09:00:00.000Z"]


def test_without_a_time_the_time_of_loading_is_used(store: Any) -> None:
    before = time.time()
    store.load([SEED])
    (at, _), = series(store, AUDIO_IRI)
    from datetime import datetime

    assert before - 1 <= datetime.fromisoformat(at).timestamp() <= time.time() + 1


def test_a_bad_observed_at_is_refused(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["--store", str(tmp_path / "s"), "load", "--observed-at", "yesterday", str(SEED)])
    assert r.exit_code == 2 and "ISO 8601" in r.output


# -- idempotence and size ----------------------------------------------------------


def test_the_same_response_for_the_same_time_adds_nothing_and_another_time_adds_one_point(store: Any) -> None:
    store.load([SEED], observed_at=day(1))
    n, before = len(store), points(store)
    assert before == 5  # the audio's videoCount; the creator's followers, following, likes, videos
    store.load([SEED], observed_at=day(1))
    assert len(store) == n and points(store) == before
    store.load([SEED], observed_at=day(2))
    assert points(store) == 2 * before
    assert [v for _, v in series(store, KHABY, "followerCount")] == [160300000, 160300000]


def test_a_creator_seen_in_every_batch_is_written_once_for_a_time(tmp_path: Path) -> None:
    """Responses of one load share creators (one time, one count each): the store is asked for each
    point once, or twice when the next batch was planned while it was being written, not once a
    batch; and the history is the one a single batch writes."""
    path = tmp_path / "shared.jsonl"
    path.write_text("".join(corpus_lines(120, n_persons=3)))
    asked: list[str] = []
    with open_store(tmp_path / "many") as many, open_store(tmp_path / "one") as one:
        real = many.engine.apply

        def spy(deletes: Any, inserts: Any) -> None:
            asked.extend(line for graph, lines in inserts.items() if graph.value == HISTORY for line in lines)
            real(deletes, inserts)

        many.engine.apply = spy  # type: ignore[method-assign]
        many.load([path], observed_at=day(1), batch_size=10)
        one.load([path], observed_at=day(1), batch_size=1000)
        history = {str(q) for q in one.engine.iter_quads(ox.NamedNode(HISTORY))}
        assert {str(q) for q in many.engine.iter_quads(ox.NamedNode(HISTORY))} == history
        assert {line.split(" ")[0] for line in asked} == {quad.split(" ")[0] for quad in history}
        assert max(Counter(asked).values()) <= 2  # (12 without: a creator's points in each of the 12 batches)
        many.load([path], observed_at=day(2), batch_size=10)  # another time: new points
        assert points(many) == 2 * points(one) and max(Counter(asked).values()) <= 2


def test_rebuild_gives_the_same_series_and_state(store: Any) -> None:
    store.load([audio(300)], observed_at=day(3))
    store.load([audio(100)], observed_at=day(1))
    store.load([SEED])  # now
    history = {str(q) for q in store.engine.iter_quads(ox.NamedNode(HISTORY))}
    data = state(store)
    store.rebuild()
    assert {str(q) for q in store.engine.iter_quads(ox.NamedNode(HISTORY))} == history
    assert state(store) == data
    assert current(store, AUDIO_IRI, KS + "videoCount") == ["500000"]


def test_an_older_observation_of_a_body_already_loaded_adds_its_point() -> None:
    """The same body observed at another time is another observation, older or newer; at a time
    it was already observed at (or without a time), it is the same one."""
    data = seed_data()
    del data["album"]
    store = open_store(None)
    assert store.load([{"data": data}], observed_at=day(2)).loaded == 1
    assert store.load([{"data": data}], observed_at=day(1)).loaded == 1
    again = store.load([{"data": data}], observed_at=day(1))
    assert (again.loaded, again.unchanged) == (0, 1)
    assert store.load([{"data": data}]).unchanged == 1  # no time: the same body is the same observation
    assert [t for t, _ in series(store, AUDIO_IRI)] == ["2026-11-01T09:00:00+00:00", "2026-11-02T09:00:00+00:00"]
    assert current(store, AUDIO_IRI, KS + "videoCount") == [str(data["videoCount"])]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 28), st.integers(0, 10**9), st.booleans()), min_size=1, max_size=6,
                unique_by=lambda t: t[0]), st.randoms())
def test_any_load_order_gives_the_same_store(observations: list[tuple[int, int, bool]], rng: Any) -> None:
    """Observations are facts at times: the order they arrive in changes nothing."""
    def body(count: int, with_album: bool) -> dict[str, Any]:
        data = seed_data()
        data["videoCount"] = count
        if not with_album:
            del data["album"]
        else:
            data["album"] = f"Album {count}"
        return {"data": data}

    stores = []
    for order in (sorted(observations), rng.sample(observations, len(observations))):
        s = open_store(None)
        for d, count, with_album in order:
            s.load([body(count, with_album)], observed_at=day(d))
        stores.append(s)
    assert state(stores[0]) == state(stores[1])
    assert series(stores[0], AUDIO_IRI) == series(stores[1], AUDIO_IRI)
    newest = max(observations)
    assert current(stores[1], AUDIO_IRI, KS + "videoCount") == [str(newest[1])]


# -- the queries ----------------------------------------------------------------------


def test_trending_ranks_a_fast_riser_above_a_big_flat_audio(store: Any) -> None:
    def body(i: int, count: int) -> dict[str, Any]:
        a = audio_response(i)
        a["data"]["videoCount"] = count
        return a

    big, riser = audio_response(1)["data"]["id"], audio_response(2)["data"]["id"]
    for d, (flat, rising) in enumerate([(9_000_000, 1_000), (9_000_100, 40_000), (9_000_150, 250_000)], start=1):
        store.load([body(1, flat), body(2, rising)], observed_at=day(d))
    store.load([body(3, 5)], observed_at=day(1))  # one observation: no growth to rank
    rows = store.run_named("trending").records()
    assert [r["audio"] for r in rows] == [riser, big]
    top = rows[0]
    assert (top["first"], top["last"], top["growth"], top["observations"]) == (1_000, 250_000, 249_000, 3)
    assert top["growthPerDay"] == pytest.approx(124_500)
    assert top["relativeGrowth"] == pytest.approx(249.0)
    assert rows[1]["growth"] == 150 and rows[1]["growthPerDay"] == pytest.approx(75)
    since = store.run_named("trending", {"since": day(2)}).records()
    assert [(r["first"], r["last"]) for r in since] == [(40_000, 250_000), (9_000_100, 9_000_150)]
    assert store.run_named("trending", {"since": "1d"}).records() == []  # nothing observed in the last day


def test_rising_creators_rank_by_follower_growth(store: Any) -> None:
    for d, followers in enumerate([1_000, 5_000, 20_000], start=1):
        data = seed_data()
        data["attributedTo"]["followerCount"] = followers
        store.load([{"data": data}], observed_at=day(d, hour=12))
    (row,) = store.run_named("rising-creators").records()
    assert row["person"] == KHABY and row["username"] == "khaby.lame"
    assert (row["first"], row["last"], row["growth"]) == (1_000, 20_000, 19_000)
    assert row["growthPerDay"] == pytest.approx(9_500)


def test_history_is_a_time_indexed_frame(store: Any) -> None:
    import pandas as pd

    for d in (3, 1, 2):
        store.load([audio(d * 100)], observed_at=day(d))
    frame = store.run_named("history", {"entity": AUDIO_IRI}).to_pandas()
    assert isinstance(frame.index, pd.DatetimeIndex) and str(frame.index.tz) == "UTC"
    assert frame.index.is_monotonic_increasing
    assert list(frame["value"]) == [100, 200, 300]
    assert list(frame.columns) == ["entity", "counter", "value"]


def test_the_series_are_plain_rdf_for_any_sparql_client(store: Any) -> None:
    store.load([SEED], observed_at=day(1))
    rows = store.query("""
        PREFIX sosa: <http://www.w3.org/ns/sosa/>
        PREFIX ks: <https://konbiniapi.com/ns/social#>
        PREFIX ksh: <https://konbiniapi.com/ns/social/history#>
        SELECT ?e ?t ?v WHERE { GRAPH <urn:konbini-ld:graph:history> {
          ?o sosa:hasFeatureOfInterest ?e ; sosa:resultTime ?t ; ksh:followingCount ?v } }
    """, {"e": ox.NamedNode(KHABY)}).records()
    assert [r["v"] for r in rows] == [85]


# -- collecting a series with fetch ----------------------------------------------------


def stop_graph_after(monkeypatch: pytest.MonkeyPatch, batches: int) -> Callable[[], None]:
    """A fetch whose graph takes ``batches`` batches and no more: the rest archived and not
    written, as past the run's grace after Ctrl-C (for the next writer). Returns what resumes."""
    from konbini_ld.pipeline.feed import GraphFeed

    written, taken = GraphFeed._apply, []

    def stopping(feed: GraphFeed, batch: list[Any], prepared: Any) -> None:
        taken.append(len(batch))
        if len(taken) <= batches:
            written(feed, batch, prepared)
        else:
            feed.report.unapplied += len(batch)

    monkeypatch.setattr(GraphFeed, "_apply", stopping)
    return lambda: monkeypatch.setattr(GraphFeed, "_apply", written)


@pytest.fixture(scope="module")
def api() -> Any:
    with FakeKonbiniAPI(api_key=KEY) as server:
        yield server


@pytest.fixture
def client(api: FakeKonbiniAPI) -> KonbiniClient:
    api.reset(credits=1_000_000)
    api.day = 0
    return KonbiniClient(KEY, base_url=api.url, backoff=0.001, max_backoff=0.01, timeout=(2, 2))


def test_refresh_older_than_buys_only_what_is_stale(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    from datetime import timedelta

    ids = [audio_id(i) for i in range(6)]
    fetch(store, client, ids[:3])
    time.sleep(1.2)
    fetch(store, client, ids[3:])
    api.reset()
    api.day = 4  # the counters have grown since
    report = fetch(store, client, ids, refresh_older_than=timedelta(seconds=1))
    assert api.count() == 3 and report.credits_used == 3 and report.skipped == 3
    assert sorted(r.path.rsplit("/", 1)[-1] for r in api.requests) == sorted(ids[:3])
    iri = audio_response(0)["data"]["id"]
    values = [v for _, v in series(store, iri)]
    assert len(values) == 2 and values[1] >= values[0]
    assert current(store, iri, KS + "videoCount") == [str(values[1])]
    api.reset()
    assert fetch(store, client, ids, refresh_older_than=timedelta(hours=1)).credits_used == 0
    assert api.count() == 0


def test_dry_run_buys_nothing_and_says_what_a_run_would_buy(store: Any, client: KonbiniClient,
                                                            api: FakeKonbiniAPI) -> None:
    ids = [audio_id(i) for i in range(5)]
    fetch(store, client, ids[:2])
    api.reset()
    plan = fetch(store, None, ids, dry_run=True)
    assert api.count() == 0 and (plan.planned, plan.planned_max, plan.skipped) == (3, 3, 2)
    assert "would make 3 requests, costing 3 credits" in plan.summary()
    real = fetch(store, client, ids)
    assert api.count() == real.credits_used == plan.planned
    # with videos: certain requests, and at most the pages a run could discover
    api.reset()
    plan = fetch(store, None, ids + [audio_id(7)], videos=True, max_pages=3, dry_run=True)
    assert api.count() == 0 and (plan.planned, plan.planned_max) == (6, 1 + 3 + 5 * 3)
    real = fetch(store, client, ids + [audio_id(7)], videos=True, max_pages=3)
    assert plan.planned <= real.credits_used <= plan.planned_max


def test_fetch_dry_run_from_the_command_line_needs_no_key(store_dir: Path, api: FakeKonbiniAPI,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KONBINI_API_KEY", raising=False)
    monkeypatch.setenv("KONBINI_API_URL", api.url)
    api.reset()
    r = CliRunner().invoke(main, ["--store", str(store_dir), "fetch", "--dry-run", "--refresh-older-than", "12h",
                                  audio_id(1), audio_id(2)])
    assert r.exit_code == 0, r.output
    assert "would make 2 requests, costing 2 credits" in r.output and api.count() == 0
    bad = CliRunner().invoke(main, ["--store", str(store_dir), "fetch", "--refresh-older-than", "soon", audio_id(1)])
    assert bad.exit_code == 2 and "duration" in bad.output


# -- pictures ---------------------------------------------------------------------------


def test_plot_draws_a_png_and_an_svg(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(corpus_lines(20, observations=4)))
    store = str(tmp_path / "s")
    runner = CliRunner()
    assert runner.invoke(main, ["--store", store, "load", str(corpus)]).exit_code == 0
    person = "https://www.tiktok.com/@creator.1"
    png = tmp_path / "h.png"
    r = runner.invoke(main, ["--store", store, "plot", "history", "-p", f"entity={person}", "-o", str(png)])
    assert r.exit_code == 0, r.output
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 600 and height >= 400
    svg = tmp_path / "h.svg"
    r = runner.invoke(main, ["--store", store, "query", "history", "-p", f"entity={person}", "--plot", str(svg)])
    assert r.exit_code == 0, r.output
    text = svg.read_text()
    assert text.count("<svg") == 1 and "followerCount" in text and "History of " + person in text
    empty = runner.invoke(main, ["--store", store, "plot", "top-audios", "-o", str(tmp_path / "x.png")])
    assert empty.exit_code == 2 and "no column of times" in empty.output
    assert not (tmp_path / "x.png").exists()


def test_compacting_changes_no_answer(store: Any) -> None:
    for d in (2, 1, 3):
        store.load([audio(d * 10)], observed_at=day(d))
    before = (state(store), series(store, AUDIO_IRI), store.run_named("trending").records())
    store.compact()
    assert (state(store), series(store, AUDIO_IRI), store.run_named("trending").records()) == before


def test_a_history_in_the_older_layout_is_named_and_rebuild_migrates_it(store_dir: Any, caplog: Any) -> None:
    """Stores written before observation nodes held every counter: the next writer says so, and
    `rebuild` re-derives the history from the archive in the new layout."""
    with open_store(store_dir) as store:
        store.load([SEED], observed_at=day(1))
        expected = series(store, KHABY, "followerCount")
        points_now = store.stats().points
        older = ox.NamedNode("urn:konbini-ld:point:0")  # a point as older versions wrote it
        store.engine.store.add(ox.Quad(older, ox.NamedNode("http://www.w3.org/ns/sosa/observedProperty"),
                                       ox.NamedNode(KS + "followerCount"), ox.NamedNode(HISTORY)))
    with caplog.at_level("WARNING"), open_store(store_dir) as store:
        assert "older layout" in caplog.text and "rebuild" in caplog.text
        store.rebuild()
        assert series(store, KHABY, "followerCount") == expected and store.stats().points == points_now
    caplog.clear()
    with caplog.at_level("WARNING"), open_store(store_dir):
        assert "older layout" not in caplog.text


FOLLOWERS = "<https://konbiniapi.com/ns/social#followerCount>"


def observation(run: str, *pairs: tuple[str, str]) -> Any:
    """An observation of ``pairs`` (entity, counter) in ``run``, as the rounds see it."""
    o = type("O", (), {})()
    o.response = type("R", (), {"run": run, "observed": "2026-11-01T00:00:00.000Z"})()
    o.groups = {pair: [] for pair in pairs}
    return o


def test_a_round_written_is_never_open_to_a_batch_planned_meanwhile() -> None:
    """The writer's thread marks a batch's rounds written while the next batch is planned on
    another: at every moment a round is pending or seen, so the next batch never opens it again
    (a second point of one counter in one run; a rebuild of one archive gave 132,964 or 133,055)."""
    from konbini_ld.store.rounds import Rounds, _Window

    rounds = Rounds()
    key = ("run", "<https://www.tiktok.com/@a>", FOLLOWERS)
    batch: dict[int, int] = {}
    rounds.firsts(observation("run", key[1:]), batch)
    rounds.reserve(batch)
    open_meanwhile: list[bool] = []

    class Watched(_Window):
        def update(self, items: Any) -> None:  # (the moments the other thread may look)
            open_meanwhile.append(not rounds.taken(key))
            super().update(items)
            open_meanwhile.append(not rounds.taken(key))

    class WatchedDict(dict):  # type: ignore[type-arg]
        def pop(self, *args: Any) -> Any:
            open_meanwhile.append(not rounds.taken(key))
            return super().pop(*args)

    window = Watched(rounds.limit)
    window.opened = rounds._seen.opened
    rounds._seen, rounds._pending = window, WatchedDict(rounds._pending)
    rounds.written(batch)
    assert len(open_meanwhile) == 3 and not any(open_meanwhile)
    assert rounds.taken(key) and not rounds._pending


@pytest.mark.parametrize("first_look", ["seen", "pending"])
def test_a_batch_planned_while_the_last_write_ends_never_reopens_its_rounds(first_look: str) -> None:
    """Whatever look at the rounds the planning thread has made when the writer's thread marks
    the batch before it written, a round of that batch is not opened again."""
    from konbini_ld.store.rounds import Rounds

    rounds = Rounds()
    o = observation("run", ("<https://www.tiktok.com/@a>", FOLLOWERS))
    before: dict[int, int] = {}
    rounds.firsts(o, before)
    rounds.reserve(before)
    done: list[bool] = []

    def switch() -> None:  # (the writer's thread runs here: its write ends)
        if not done:
            done.append(True)
            rounds.written(before)

    class Seen(set):  # type: ignore[type-arg]
        def __contains__(self, h: object) -> bool:
            found = super().__contains__(h)
            if first_look == "seen":
                switch()
            return found

    class Pending(dict):  # type: ignore[type-arg]
        def get(self, *args: Any) -> Any:
            found = super().get(*args)
            if first_look == "pending":
                switch()
            return found

    rounds._seen._held, rounds._pending = Seen(rounds._seen._held), Pending(rounds._pending)
    firsts, waiting = rounds.firsts(o, {})
    assert done and not firsts and not rounds.claim([(o, waiting)], {})


def test_the_rounds_remembered_are_the_last_ones_opened_and_no_more() -> None:
    """A day of 8,000 audios with their pages observes 1.4 million counters: the memory of which
    rounds are taken keeps the last ``limit`` opened, oldest forgotten first, however many pass,
    in 16 bytes a slot (a set with a queue took 150 a round)."""
    from konbini_ld.store.rounds import Rounds

    import tracemalloc

    keys = [("run", f"<https://www.tiktok.com/@a/video/{70000000000000 + i}>", FOLLOWERS) for i in range(50_000)]
    tracemalloc.start()
    try:
        rounds, before = Rounds(limit=20_000), tracemalloc.get_traced_memory()[0]
        for i in range(0, len(keys), 700):  # batches as the writer plans and marks them, across the limit
            batch: dict[int, int] = {}
            rounds.firsts(observation("run", *(k[1:] for k in keys[i:i + 700])), batch)
            rounds.reserve(batch)
            rounds.written(batch)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(rounds) == 20_000 and not rounds._pending
    assert held < 170 * 20_000, held  # (a set with a queue took 228 bytes a round with its strings)
    assert [rounds.taken(k) for k in keys] == [False] * 30_000 + [True] * 20_000  # (exactly the last)
    firsts, waiting = rounds.firsts(observation("run", keys[0][1:], keys[-1][1:]), {})
    assert firsts == {keys[0][1:]} and not waiting  # the newest are not opened again; the oldest are


@pytest.mark.parametrize("openings", ["one", "one a day"])
def test_the_rounds_taken_depend_on_the_order_of_observations_alone(tmp_path: Path, client: KonbiniClient,
                                                                     api: FakeKonbiniAPI, openings: str) -> None:
    """Past the rounds remembered, which are forgotten depended on how the archive was cut into
    batches, on the order of a set (the process's hash seed), and on the process: a rebuild of
    one archive gave 9,967 or 9,972 points, and daily runs in processes of their own one point
    less than their rebuild. Now the same points, whatever the batches, the seed and the process."""
    import subprocess
    import sys

    a = open_store(tmp_path / "a")
    a.pipeline.writer._rounds.limit = 300
    for d in range(2):
        if d and openings == "one a day":  # (a process a day, as cron runs it)
            a.close()
            a = open_store(tmp_path / "a")
            a.pipeline.writer._rounds.limit = 300
        api.day = d
        fetch(a, client, [audio_id(i) for i in range(6)], videos=True, refresh_older_than=NOW, workers=0)
    original = {str(q) for q in a.engine.iter_quads(ox.NamedNode(HISTORY))}
    records = list(a.archive.records())
    a.close()
    assert len(original) > 1_000
    for size in (1, 3, 500):
        with open_store(tmp_path / f"b{size}") as b:
            b.pipeline.writer._rounds.limit = 300
            b.pipeline.run(iter(records), archive=False, batch_size=size)
            assert {str(q) for q in b.engine.iter_quads(ox.NamedNode(HISTORY))} == original, size
    if openings == "one a day":  # the same archive at other limits: an opening a run, or one for all
        runs = [[r for r in records if r.response().run == run] for run in dict.fromkeys(r.response().run for r in records)]
        for limit in (50, 100, 200, 700):
            graphs = []
            for per_run in (True, False):
                with open_store(tmp_path / f"c{limit}{per_run}") as c:
                    for i, part in enumerate(runs if per_run else [records]):
                        if i:
                            c.close()
                            c = open_store(tmp_path / f"c{limit}{per_run}")
                        c.pipeline.writer._rounds.limit = limit
                        c.pipeline.run(iter(part), archive=False)
                    graphs.append({str(q) for q in c.engine.iter_quads(ox.NamedNode(HISTORY))})
                    c.close()
            assert graphs[0] == graphs[1], limit
    script = ("import sys; from konbini_ld import open_store\n"
              "with open_store(sys.argv[1]) as s:\n"
              "    s.pipeline.writer._rounds.limit = 300; s.rebuild(); print(s.stats().points)")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "a")], capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, check=True, timeout=120)
        assert int(out.stdout.split()[-1]) == sum(1 for q in original if "/history#" in q), out.stderr


@pytest.mark.parametrize("stop_after", [2, 5])
def test_a_stopped_run_past_the_rounds_remembered_gives_the_points_of_its_rebuild(
        tmp_path: Path, client: KonbiniClient, monkeypatch: pytest.MonkeyPatch, stop_after: int) -> None:
    """A run meets more counters than are remembered and stops; the same process writes again:
    its writer remembers what the run wrote, so the answers left give the points of a rebuild
    (read back from the graph instead, the rounds the run had forgotten were taken: 5,182 points
    where its rebuild has 5,268)."""
    resume = stop_graph_after(monkeypatch, stop_after)
    with open_store(tmp_path / "store") as store:
        store.pipeline.writer._rounds.limit = 300
        fetch(store, client, [audio_id(i) for i in range(8)], videos=True, max_pages=2, batch_size=2,
              concurrency=1, workers=0)
        resume()
        assert store.stats().unapplied > 0
        store.load([SEED])
        history = {str(q) for q in store.engine.iter_quads(ox.NamedNode(HISTORY))}
        store.rebuild()
        assert {str(q) for q in store.engine.iter_quads(ox.NamedNode(HISTORY))} == history


@pytest.mark.parametrize("ahead", ["past the run's answers", "among the run's answers"])
def test_a_point_loaded_with_a_time_ahead_is_not_taken_for_one_of_a_stopped_runs_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ahead: str) -> None:
    """A saved answer loaded with a time ahead (a clock off: accepted up to 10 minutes), then a
    run of the same audio stopped before its graph: the next opening applies the run's answer with
    its points (it took the loaded point for the run's own, and wrote none), as a rebuild does."""
    from datetime import UTC, datetime

    body = audio_response(3)
    later = timedelta(minutes=5) if ahead == "past the run's answers" else timedelta(seconds=1)
    resume = stop_graph_after(monkeypatch, 0)
    with FakeKonbiniAPI(api_key=KEY, latency=0.4) as slow, open_store(tmp_path / "store") as store:
        store.load([body], observed_at=(datetime.now(UTC) + later).isoformat())
        client = KonbiniClient(KEY, base_url=slow.url, backoff=0.001, max_backoff=0.01, timeout=(2, 2))
        fetch(store, client, [audio_id(i) for i in range(5)], concurrency=1, batch_size=1, workers=0)
    resume()
    with open_store(tmp_path / "store") as store:
        assert store.recovered.loaded == 5 and len(series(store, body["data"]["id"])) == 2
        history = {str(q) for q in store.engine.iter_quads(ox.NamedNode(HISTORY))}
        store.rebuild()
        assert {str(q) for q in store.engine.iter_quads(ox.NamedNode(HISTORY))} == history


@pytest.mark.parametrize("kind,then", [("embedded", "load"), ("embedded", "fetch"), ("embedded", "fetch again"),
                                       ("remote", "load"), ("remote", "fetch again")])
def test_answers_a_stopped_fetch_left_unwritten_reach_the_graph_when_the_same_process_writes_again(
        tmp_path: Path, client: KonbiniClient, api: FakeKonbiniAPI, monkeypatch: pytest.MonkeyPatch,
        kind: str, then: str) -> None:
    """A notebook or a service that catches the interruption and goes on writing (or runs the
    same cell again): the answers the stopped run archived reach the graph first and count as
    bought (they were skipped for good: the next write marked the archive applied past them, and
    only a rebuild brought them back; fetching the same ids bought them a second time)."""
    from servers import OxigraphServer

    server = OxigraphServer(tmp_path / "oxigraph") if kind == "remote" else None
    where: Any = server.query_url if server is not None else tmp_path / "store"
    archive = tmp_path / "archive" if server is not None else None
    ids = [audio_id(i) for i in range(12)]
    try:
        resume = stop_graph_after(monkeypatch, 1)
        with open_store(where, archive=archive) as store:
            report = fetch(store, client, ids, batch_size=5, workers=0)
            assert report.unapplied > 0 and store.stats().unapplied == report.unapplied
            resume()
            asked = api.count()
            if then == "load":
                store.load([SEED])
            elif then == "fetch":
                fetch(store, client, [audio_id(12)], workers=0)
            else:
                again = fetch(store, client, ids, workers=0)
                assert api.count() == asked and again.fetched == 0  # nothing bought twice
            expected = 12 if then == "fetch again" else 13
            now = store.stats()
            assert now.unapplied == 0 and now.audios == expected and store.recovered.loaded == report.unapplied
        with open_store(where, archive=archive) as store:
            assert store.stats().audios == expected and store.recovered.loaded == 0
            if server is None:
                points = store.stats().points
                store.rebuild()
                assert store.stats().audios == expected and store.stats().points == points
    finally:
        if server is not None:
            server.stop()


def test_a_closed_store_or_a_fetch_without_client_catches_nothing_up(
        tmp_path: Path, client: KonbiniClient, api: FakeKonbiniAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a stopped run left waits for a write that may write: a closed store refuses as any
    write to it, a fetch without a client refuses before it applies anything, and a fetch on a
    read-only store before it buys anything."""
    from konbini_ld.errors import UsageError

    resume = stop_graph_after(monkeypatch, 1)
    state = tmp_path / "store" / "state.json"
    with open_store(tmp_path / "store") as store:
        fetch(store, client, [audio_id(i) for i in range(12)], batch_size=5, workers=0)
        resume()
        marked = state.read_bytes()
        with pytest.raises(UsageError, match="needs a client"):
            fetch(store, None, [audio_id(0)])
        assert state.read_bytes() == marked and store.stats().unapplied > 0
    asked = api.count()
    with open_store(tmp_path / "store", read_only=True) as view:
        with pytest.raises(StoreError, match="read-only"):
            fetch(view, client, [audio_id(20)], workers=0)  # nothing bought that could not be kept
        assert fetch(view, None, [audio_id(20)], dry_run=True).dry_run  # a dry run reads only
    assert api.count() == asked and state.read_bytes() == marked
    with pytest.raises(StoreError, match="closed"):
        store.load([SEED])
    with pytest.raises(StoreError, match="closed"):
        fetch(store, client, [audio_id(0)], workers=0)
    assert state.read_bytes() == marked


def test_a_dry_run_counts_what_a_stopped_run_archived_as_bought(
        tmp_path: Path, client: KonbiniClient, api: FakeKonbiniAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopped run's answers are archived and not yet in the graph: the next real run applies
    them before it buys, so a dry run between says it would buy none of them, and writes nothing."""
    resume = stop_graph_after(monkeypatch, 1)
    ids = [audio_id(i) for i in range(12)]
    with open_store(tmp_path / "store") as store:
        fetch(store, client, ids, videos=True, max_pages=1, batch_size=5, workers=0)
        resume()
        assert store.stats().unapplied > 0
        state = (tmp_path / "store" / "state.json").read_bytes()
        plan = fetch(store, None, [*ids, audio_id(12)], videos=True, max_pages=1, dry_run=True)
        assert (plan.planned, plan.planned_max) == (1, 2)  # the new audio and its page alone
        assert (tmp_path / "store" / "state.json").read_bytes() == state and store.stats().unapplied > 0
        asked = api.count()
        real = fetch(store, client, [*ids, audio_id(12)], videos=True, max_pages=1, workers=0)
        assert api.count() - asked == 2 and real.fetched == 2


def test_damage_met_while_catching_up_is_said_as_a_warning(
        tmp_path: Path, client: KonbiniClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-running process catching up finds part of the archive damaged: it says so where it
    can be heard, beside ``store.recovered.damage``."""

    resume = stop_graph_after(monkeypatch, 1)
    with open_store(tmp_path / "store") as store:
        fetch(store, client, [audio_id(i) for i in range(12)], batch_size=5, workers=0)
        resume()
        segment = sorted((tmp_path / "store" / "archive").glob("*.jsonl.gz"))[-1]
        data = bytearray(segment.read_bytes())
        members = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\x1f\x8b\x08"]
        data[members[len(members) // 2] + 30] ^= 0xFF  # one record of the stopped run's, unreadable
        segment.write_bytes(bytes(data))
        import logging

        said: list[logging.LogRecord] = []
        hear = logging.Handler(logging.WARNING)
        hear.emit = said.append  # type: ignore[method-assign]
        logger = logging.getLogger("konbini_ld.pipeline.collection")
        logger.addHandler(hear)
        try:
            store.load([SEED])
        finally:
            logger.removeHandler(hear)
        assert store.recovered.damage and any("damaged" in r.getMessage() for r in said)
        assert store.stats().unapplied == 0  # (what could be read is in the graph; the rest is said)


@pytest.mark.parametrize("failing", ["the fetch", "the catch-up"])
def test_a_write_that_failed_leaves_nothing_the_next_write_skips(
        tmp_path: Path, client: KonbiniClient, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    """A write fails (a full disk, for a moment) and the process goes on writing: what the failed
    write planned is not taken as written (the next writes skipped it as unchanged and marked the
    archive applied past it: 2 audios where a rebuild has 13)."""
    from konbini_ld.engines.oxigraph import OxigraphEngine

    original, fails = OxigraphEngine.apply, [0]

    def full_disk_once(engine: Any, deletes: Any, inserts: Any) -> None:
        if fails[0]:
            fails[0] -= 1
            raise StoreError("writing to the store failed: No space left on device (os error 28)")
        original(engine, deletes, inserts)

    monkeypatch.setattr(OxigraphEngine, "apply", full_disk_once)
    ids = [audio_id(i) for i in range(12)]
    with open_store(tmp_path / "store") as store:
        if failing == "the catch-up":
            resume = stop_graph_after(monkeypatch, 1)
            fetch(store, client, ids, batch_size=5, workers=0)
            resume()
            fails[0] = 1
            with pytest.raises(StoreError):
                store.load([SEED])
        else:
            fails[0] = 1
            report = fetch(store, client, ids, batch_size=3, workers=0)
            assert report.stopped == "store-error" and report.unapplied > 0
        store.load([SEED])
        held = store.stats()  # (a run stopped by its failed write buys no more: each answer is an audio)
        assert held.unapplied == 0 and held.audios == held.responses > 2
    with open_store(tmp_path / "store") as store:
        before = store.stats()
        store.rebuild()
        after = store.stats()
    assert (before.audios, before.triples, before.points) == (after.audios, after.triples, after.points)


def test_answers_a_stopped_fetch_left_unwritten_add_the_points_a_rebuild_has(
        tmp_path: Path, client: KonbiniClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopped run leaves answers archived and not written; the next writer replays them. The
    run had written the rounds of some of their counters (an audio before the copy of it in its
    page of videos, a creator from another page): replayed, they add no second point."""

    resume = stop_graph_after(monkeypatch, 2)
    ids = [audio_id(i) for i in range(12)]
    with open_store(tmp_path / "store") as store:
        report = fetch(store, client, ids, videos=True, batch_size=5, workers=0)
        assert report.unapplied > 0 and store.stats().points > 0
    resume()
    with open_store(tmp_path / "store") as store:  # (replays what the run left)
        replayed = store.stats()
        assert replayed.unapplied == 0 and replayed.responses == 24
        store.rebuild()
        rebuilt = store.stats()
    assert replayed.points == rebuilt.points and replayed.triples == rebuilt.triples
