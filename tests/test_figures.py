"""Every figure exact: credits counted are requests billed, a reload adds nothing, one point per
counter per run, a dry run's count is the run's spend, a known 404 is not bought again."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.pipeline import fetch
from konbini_ld.sources.konbini.client import KonbiniClient
from konbini_ld.sources.konbini.fakeapi import FakeKonbiniAPI, Scripted, audio_id
from konbini_ld.store.log.archive import Archive

KEY = "sk-figures-5a4b3c2d"
SAMPLES = sorted((Path(__file__).parent.parent / "samples").glob("*.json"))
NOW = timedelta(0)  # --refresh-older-than 0s: everything bought before now is bought again


@pytest.fixture(scope="module")
def api() -> Any:
    with FakeKonbiniAPI(api_key=KEY, pages=2) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(api: FakeKonbiniAPI) -> None:
    api.reset(credits=1_000_000)
    api.day = 0


@pytest.fixture
def client(api: FakeKonbiniAPI) -> KonbiniClient:
    return KonbiniClient(KEY, base_url=api.url, backoff=0.001, max_backoff=0.01, timeout=(2, 2))


WATCH = [audio_id(i) for i in range(12)] + ["111", "222"]  # two that do not exist


def test_a_week_of_refreshes_counts_every_billed_request(store: Any, client: KonbiniClient,
                                                         api: FakeKonbiniAPI) -> None:
    spent = 0
    for day in range(7):
        api.day = day
        if day == 3:  # a transient failure the API bills, then the answer
            api.script(f"/v1/tiktok/audios/{audio_id(0)}", Scripted(503, {"errors": [{"code": "x"}], "data": None},
                                                                    bill=True))
        report = fetch(store, client, WATCH[:5] + WATCH[-2:], videos=True, max_pages=2, refresh_older_than=NOW,
                       refresh=day == 5)  # day 5 buys everything again, not-found answers included
        spent += report.credits_used
    billed = api.credits_used
    assert billed == spent == store.stats().credits_spent  # the API's bill, the summaries, stats
    total = store.query("SELECT (SUM(?c) AS ?n) WHERE { ?a <https://konbiniapi.com/ns/social#creditsUsed> ?c }")
    assert total.records()[0]["n"] == billed


# Seen twice in many runs, on a loaded machine only: a pyoxigraph object reported as dropped on
# another thread than its own by the cyclic collector, during fetch (the object is leaked, not
# used). Not yet traced; the figures asserted here do not depend on it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_one_point_per_counter_per_run(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    for day in range(7):
        api.day = day
        fetch(store, client, [audio_id(1)], videos=True, refresh_older_than=NOW)
    audio = "https://www.tiktok.com/music/"
    rows = store.query(
        "SELECT ?a (COUNT(?p) AS ?n) WHERE { ?a a <https://www.w3.org/ns/activitystreams#Audio> . "
        "?p <http://www.w3.org/ns/sosa/hasFeatureOfInterest> ?a ; "
        "<https://konbiniapi.com/ns/social/history#videoCount> ?v } GROUP BY ?a"
    ).records()
    assert len(rows) == 1 and rows[0]["a"].startswith(audio)
    assert rows[0]["n"] == 7  # the audio and its copy in the page of videos: one observation a run
    history = store.run_named("history", {"entity": rows[0]["a"]}).records()
    assert len([r for r in history if r["counter"].endswith("videoCount")]) == 7


def test_a_rebuild_keeps_one_point_per_counter_per_run(store_dir: Path, client: KonbiniClient,
                                                       api: FakeKonbiniAPI) -> None:
    with open_store(store_dir) as store:
        for day in range(3):
            api.day = day
            fetch(store, client, [audio_id(2)], videos=True, refresh_older_than=NOW)
        before = store.stats().points
        store.rebuild()
        assert store.stats().points == before


def test_a_known_404_is_not_bought_again_by_refresh_older_than(store: Any, client: KonbiniClient,
                                                               api: FakeKonbiniAPI) -> None:
    fetch(store, client, ["111", audio_id(1)])
    api.reset()
    report = fetch(store, client, ["111", audio_id(1)], refresh_older_than=NOW)
    assert api.count() == 1 and report.skipped == 1
    api.reset()
    fetch(store, client, ["111"], refresh_older_than=NOW, retry_not_found=True)
    assert api.count() == 1  # asked for


@pytest.mark.parametrize("max_pages", [1, 2, 3])
def test_a_dry_run_counts_what_the_run_then_spends(store: Any, client: KonbiniClient, api: FakeKonbiniAPI,
                                                   max_pages: int) -> None:
    fetch(store, client, WATCH[:6], videos=True, max_pages=max_pages)
    plan = fetch(store, None, WATCH, videos=True, max_pages=max_pages, refresh_older_than=NOW, dry_run=True)
    api.reset()
    fetch(store, client, WATCH, videos=True, max_pages=max_pages, refresh_older_than=NOW)
    # the six known audios and their pages are exact; the new ones are bounded above
    assert plan.planned <= api.count() <= plan.planned_max
    api.reset()
    plan = fetch(store, None, WATCH, videos=True, max_pages=max_pages, refresh_older_than=NOW, dry_run=True)
    real = fetch(store, client, WATCH, videos=True, max_pages=max_pages, refresh_older_than=NOW)
    assert plan.planned == api.count() == real.credits_used  # nothing new to discover: exact


def test_the_command_line_dry_run_says_the_same(store_dir: Path, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    with open_store(store_dir) as store:
        fetch(store, client, WATCH[:4], videos=True)
    r = CliRunner(env={"KONBINI_API_URL": api.url}).invoke(
        main, ["--store", str(store_dir), "fetch", *WATCH[:4], "--videos", "--refresh-older-than", "0s", "--dry-run"])
    assert r.exit_code == 0 and "would make 8 requests" in r.stderr, r.stderr


def test_the_graph_phase_has_its_own_progress(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    told: list[int] = []
    taken: list[int] = []
    fetch(store, client, [audio_id(i) for i in range(40)], on_graph=told.append, graph_progress=taken.append)
    assert len(told) <= 1 and sum(taken) == 40
    if told:
        assert 0 < told[0] <= 40


# -- reloads ----------------------------------------------------------------------------------


def test_loading_the_same_files_twice_adds_nothing_anywhere(store_dir: Path) -> None:
    def load() -> Any:
        return CliRunner().invoke(main, ["--store", str(store_dir), "load", *map(str, SAMPLES)])

    assert load().exit_code == 0
    with open_store(store_dir) as store:
        before = (len(store), store.stats().points, Archive(store_dir / "archive").last_seq)
    r = load()
    assert r.exit_code == 0 and f"loaded 0 responses, {len(SAMPLES)} already there" in r.stderr, r.stderr
    with open_store(store_dir) as store:
        assert (len(store), store.stats().points, Archive(store_dir / "archive").last_seq) == before


def test_a_reload_with_another_explicit_time_is_a_new_observation(store: Any) -> None:
    store.load(SAMPLES, observed_at="2026-11-01T00:00:00Z")
    points = store.stats().points
    again = store.load(SAMPLES, observed_at="2026-11-02T00:00:00Z")
    assert again.loaded == len(SAMPLES) and store.stats().points > points
    points = store.stats().points
    older = store.load(SAMPLES, observed_at="2026-10-01T00:00:00Z")  # a fact at a time: older is new too
    assert older.loaded == len(SAMPLES) and store.stats().points > points
    same = store.load(SAMPLES, observed_at="2026-11-02T00:00:00Z")  # a time it was observed at: the same
    assert same.unchanged == len(SAMPLES)


def test_replaying_a_batch_at_a_time_keeps_one_point_per_counter_per_run(tmp_path: Path, client: KonbiniClient,
                                                                         api: FakeKonbiniAPI) -> None:
    """Batches written behind the next one's planning: the audio's answer and its page in
    consecutive batches still make one point a run."""
    with open_store(tmp_path / "a") as a:
        for day in range(3):
            api.day = day
            fetch(a, client, [audio_id(i) for i in range(3)], videos=True, refresh_older_than=NOW)
        expected = a.stats().points
        records = list(a.archive.records())
    with open_store(tmp_path / "b") as b:
        b.pipeline.run(iter(records), archive=False, batch_size=1)
        assert b.stats().points == expected
