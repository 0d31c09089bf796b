from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.errors import InvalidIdError
from konbini_ld.pipeline import fetch
from konbini_ld.sources.konbini.client import KonbiniClient
from konbini_ld.sources.konbini.endpoints import parse_audio_id
from konbini_ld.sources.konbini.fakeapi import FakeKonbiniAPI, Scripted, audio_id

KEY = "sk-test-7d1f0c2b9a8e4f55"


@pytest.fixture(scope="session")
def api() -> Any:
    with FakeKonbiniAPI(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(api: FakeKonbiniAPI) -> None:
    api.reset(credits=1_000_000)
    api.latency = 0.0


@pytest.fixture
def client(api: FakeKonbiniAPI) -> KonbiniClient:
    return KonbiniClient(KEY, base_url=api.url, backoff=0.001, max_backoff=0.01, timeout=(2, 2))


@pytest.fixture
def cli(api: FakeKonbiniAPI, store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("KONBINI_API_KEY", KEY)
    monkeypatch.setenv("KONBINI_API_URL", api.url)

    def invoke(*args: str, input: str | None = None) -> Any:
        return CliRunner().invoke(main, ["--store", str(store_dir), "fetch", *args], input=input, catch_exceptions=False)

    return invoke


def ids(n: int, start: int = 0) -> list[str]:
    return [audio_id(i) for i in range(start, start + n)]


def path(i: int) -> str:
    return f"/v1/tiktok/audios/{audio_id(i)}"


# -- ids ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["https://www.tiktok.com/music/original-sound-7611615657754381599", "7611615657754381599",
     "https://m.tiktok.com/music/7611615657754381599?lang=en"],
)
def test_ids_and_music_urls_are_accepted(value: str) -> None:
    assert parse_audio_id(value) == "7611615657754381599"


@pytest.mark.parametrize("value", ["../../admin", "123/videos", "https://evil.example/music/x-1", "12a", ""])
def test_anything_else_is_rejected_before_any_request(cli: Any, api: FakeKonbiniAPI, value: str) -> None:
    with pytest.raises(InvalidIdError):
        parse_audio_id(value)
    r = cli(audio_id(1), value)
    assert r.exit_code == 2
    assert api.count() == 0


# -- the happy path and frugality ---------------------------------------------


def test_fetch_stores_audios_and_a_second_fetch_sends_nothing(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    report = fetch(store, client, ids(20))
    assert (report.fetched, report.skipped, report.credits_used) == (20, 0, 20)
    assert store.stats().audios == 20
    api.reset()
    again = fetch(store, client, ids(20))
    assert api.count() == 0
    assert (again.fetched, again.skipped) == (0, 20)


def test_refresh_buys_again(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    fetch(store, client, ids(3))
    api.reset()
    fetch(store, client, ids(3), refresh=True)
    assert api.count() == 3


def test_requests_run_concurrently(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    api.latency = 0.4  # (every request of a round in flight together, however busy the machine)
    fetch(store, client, ids(32), concurrency=8)
    assert api.max_in_flight == 8


def test_ids_file_and_urls(cli: Any, tmp_path: Path, api: FakeKonbiniAPI) -> None:
    f = tmp_path / "ids.txt"
    f.write_text(f"# my audios\n{audio_id(1)}\n\nhttps://www.tiktok.com/music/some-sound-{audio_id(2)}\n{audio_id(1)}\n")
    r = cli("--ids-file", str(f))
    assert r.exit_code == 0, r.stderr
    assert "fetched 2, skipped 0, not found 0, failed 0; credits used 2" in r.stderr
    assert api.count() == 2


def test_ids_from_stdin(cli: Any, api: FakeKonbiniAPI) -> None:
    r = cli("--ids-file", "-", input=f"{audio_id(5)}\n{audio_id(6)}\n")
    assert r.exit_code == 0 and api.count() == 2


# -- retries -------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        Scripted(503, {"errors": [{"code": "unavailable", "message": "try later"}], "data": None}),
        Scripted(502, "<html><title>502 Bad Gateway</title></html>", content_type="text/html"),
        Scripted(200, json.dumps({"data": {"type": "Audio"}}) * 3, truncate=True),
    ],
)
def test_transient_failures_are_retried_then_succeed(store: Any, client: KonbiniClient, api: FakeKonbiniAPI,
                                                      failure: Scripted) -> None:
    api.script(path(7), failure, failure)
    report = fetch(store, client, [audio_id(7)])
    assert report.fetched == 1 and not report.failed
    assert api.count() == 3


def test_retries_give_up_with_a_clear_error(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    api.script(path(8), *[Scripted(500, "<html>oops</html>", content_type="text/html")] * 5)
    report = fetch(store, client, [audio_id(8), audio_id(9)])
    assert report.fetched == 1 and len(report.failed) == 1
    message = str(report.failed[0])
    assert "HTTP 500" in message and "HTML page" in message and "gave up after 5 attempts" in message
    assert report.exit_code == 1


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404])
def test_client_errors_are_never_retried(store: Any, client: KonbiniClient, api: FakeKonbiniAPI, status: int) -> None:
    api.script(path(3), Scripted(status, {"errors": [{"code": "x", "message": "no"}], "data": None}))
    fetch(store, client, [audio_id(3)], concurrency=1)
    assert api.count(path(3)) == 1


def test_timeouts_are_retried(store: Any, api: FakeKonbiniAPI) -> None:
    api.latency = 0.3
    client = KonbiniClient(KEY, base_url=api.url, timeout=(1, 0.05), retries=2, backoff=0.001)
    report = fetch(store, client, [audio_id(1)])
    # (which bound fires first, the read's or the whole answer's, depends on the machine's pace)
    assert len(report.failed) == 1 and any(w in str(report.failed[0]) for w in ("timed out", "time limit"))
    assert api.count() == 2


# -- not found, auth, credits -------------------------------------------------------


def test_404_is_recorded_and_not_bought_again(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    missing = "999999999999"
    report = fetch(store, client, [missing, audio_id(1)])
    assert (report.not_found, report.fetched, report.credits_used, report.exit_code) == (1, 1, 2, 0)
    api.reset()
    again = fetch(store, client, [missing, audio_id(1)])
    assert api.count() == 0 and again.skipped == 2


def test_401_exits_3_and_the_key_is_never_shown(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KONBINI_API_KEY", "sk-wrong-key-0123456789")
    r = cli(audio_id(1), audio_id(2))
    assert r.exit_code == 3
    assert "HTTP 401" in r.stderr and "sk-wrong-key" not in r.stderr + r.stdout


def test_missing_key_is_an_auth_error(cli: Any, monkeypatch: pytest.MonkeyPatch, api: FakeKonbiniAPI) -> None:
    monkeypatch.delenv("KONBINI_API_KEY")
    r = cli(audio_id(1))
    assert r.exit_code == 3 and "KONBINI_API_KEY" in r.stderr and api.count() == 0


def test_402_midway_exits_4_keeps_everything_and_resumes(cli: Any, api: FakeKonbiniAPI, store_dir: Path) -> None:
    api.reset(credits=7)
    r = cli(*ids(12), "--concurrency", "1")
    assert r.exit_code == 4
    assert "credits used 7" in r.stderr and "stopped: credits-exhausted" in r.stderr
    with open_store(store_dir, read_only=True) as store:
        assert store.stats().audios == 7
    api.reset(credits=100)
    r = cli(*ids(12))
    assert r.exit_code == 0
    assert "fetched 5, skipped 7" in r.stderr
    assert api.count() == 5


def test_max_credits_stops_before_spending_more(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    report = fetch(store, client, ids(10), max_credits=4, concurrency=3)
    assert report.credits_used == 4 and api.count() == 4
    assert report.stopped == "max-credits" and report.not_requested == 6


# -- videos ----------------------------------------------------------------------


def test_videos_pages_link_videos_to_audio_and_creators(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    report = fetch(store, client, [audio_id(4)], videos=True, max_pages=2)
    assert report.fetched == 3  # the audio and two pages
    pages = [r for r in api.requests if r.path.endswith("/videos")]
    assert [p.query.get("cursor") for p in pages] == [["0"], ["1"]]
    found = store.query("SELECT ?a ?id WHERE { ?a <https://konbiniapi.com/ns/social#entityId> ?id }",
                        {"id": f'"{audio_id(4)}"'})
    audio = next(iter(found.rows()))[0]
    rows = list(store.run_named("videos-using-audio", {"audio": audio.value}).rows())
    assert len(rows) == 60
    assert all(row[5] is not None for row in rows)  # every video has a creator with a username


def test_videos_resume_from_the_last_stored_page(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    fetch(store, client, [audio_id(4)], videos=True, max_pages=1)
    api.reset()
    fetch(store, client, [audio_id(4)], videos=True, max_pages=3)
    assert [r.query.get("cursor") for r in api.requests] == [["1"], ["2"]]
    api.reset()
    fetch(store, client, [audio_id(4)], videos=True, max_pages=10)  # the last page has no next cursor
    assert api.count() == 0


# -- the key stays secret ----------------------------------------------------------


def test_the_key_never_reaches_store_archive_logs_or_exports(cli: Any, store_dir: Path, api: FakeKonbiniAPI,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    api.script(path(2), Scripted(503, "<html>busy</html>", content_type="text/html"))
    r = CliRunner().invoke(main, ["--store", str(store_dir), "-vv", "fetch", *ids(3), "999", "--videos"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    exported = CliRunner().invoke(main, ["--store", str(store_dir), "export", "-f", "nq"]).stdout
    assert KEY not in r.stdout + r.stderr + caplog.text + exported
    for f in store_dir.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            if f.name.endswith(".gz"):
                data = gzip.decompress(data)
            assert KEY.encode() not in data, f


# -- money and messages ---------------------------------------------------------------


def test_videos_are_never_bought_for_an_audio_that_is_not_found(store: Any, client: KonbiniClient,
                                                                 api: FakeKonbiniAPI) -> None:
    missing = "999999999999"
    report = fetch(store, client, [missing, audio_id(1)], videos=True)
    assert [r.path for r in api.requests if missing in r.path] == [f"/v1/tiktok/audios/{missing}"]
    assert report.credits_used == 3 and report.not_found == 1  # two audios and one page
    api.reset()
    fetch(store, client, [missing, audio_id(1)], videos=True)
    assert api.count() == 0


def test_stats_counts_the_credits_404s_cost(store: Any, client: KonbiniClient) -> None:
    report = fetch(store, client, ["999999999999", "999999999998", *ids(3)])
    assert report.credits_used == 5
    assert store.stats().credits_spent == 5


def test_a_401_beside_a_402_names_both_and_exits_3(cli: Any, api: FakeKonbiniAPI) -> None:
    api.script(path(1), Scripted(402, {"errors": [{"code": "credits_exhausted", "message": "No credits"}], "data": None}))
    api.script(path(2), Scripted(401, {"errors": [{"code": "unauthorized", "message": "Key revoked"}], "data": None}))
    r = cli(audio_id(1), audio_id(2), "--concurrency", "2")
    assert r.exit_code == 3
    assert "HTTP 401" in r.stderr and "HTTP 402" in r.stderr


def test_an_empty_api_url_variable_is_refused(cli: Any, api: FakeKonbiniAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KONBINI_API_URL", "")
    r = cli(audio_id(1))
    assert r.exit_code == 2 and "KONBINI_API_URL is set but empty" in r.stderr and api.count() == 0


def test_credentials_in_the_api_url_are_never_shown_or_recorded(cli: Any, api: FakeKonbiniAPI, store_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KONBINI_API_URL", api.url.replace("http://", "http://proxyuser:s3cr3t-pass@"))
    api.script(path(1), Scripted(503, "<html>busy</html>", content_type="text/html"))
    r = cli(audio_id(1), "--retries", "1")
    assert r.exit_code != 0 and "127.0.0.1" in r.stderr
    assert "s3cr3t" not in r.stdout + r.stderr
    for f in store_dir.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert b"s3cr3t" not in (gzip.decompress(data) if f.name.endswith(".gz") else data), f


def test_a_videos_page_nested_5000_deep_costs_one_error_line(cli: Any, api: FakeKonbiniAPI, store_dir: Path) -> None:
    deep = '{"data": {"type": "OrderedCollectionPage", "orderedItems": ' + "[" * 5000 + "]" * 5000 + "}}"
    api.script(path(3) + "/videos", Scripted(200, deep))
    r = cli(audio_id(3), "--videos")
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    assert "nested" in r.stderr or "not videos" in r.stderr  # (how deep Python reads JSON depends on the process)
    with open_store(store_dir) as store:
        ledger = store.fetch_ledger()
    # an answer that cannot be read cannot be checked: not bought, asked again (it is archived as evidence)
    assert f"videos:{audio_id(3)}:0" not in ledger


# -- the writer beside the network --------------------------------------------------


def _data_graph(store: Any) -> set[str]:
    from konbini_ld.store.provenance import DATA

    return {f"{q.subject} {q.predicate} {q.object}" for q in store.engine.store.quads_for_pattern(None, None, None, DATA)}


def test_answers_prepared_in_worker_processes_make_the_same_graph(tmp_path: Path, api: FakeKonbiniAPI) -> None:
    graphs = []
    for workers in (0, 1):
        api.reset()
        with open_store(tmp_path / f"w{workers}") as store:
            client = KonbiniClient(KEY, base_url=api.url, backoff=0.001, max_backoff=0.01, timeout=(2, 2))
            report = fetch(store, client, ids(12), videos=True, batch_size=5, workers=workers)
            assert (report.fetched, report.unapplied, report.load.loaded) == (24, 0, 24)
            graphs.append(_data_graph(store))
    assert len(graphs[0]) > 24 * 30 * 5 and graphs[0] == graphs[1]


def test_a_preparing_process_killed_mid_fetch_costs_no_answer(store: Any, api: FakeKonbiniAPI) -> None:
    import multiprocessing
    import os
    import signal
    import threading
    import time

    api.latency = 0.05
    client = KonbiniClient(KEY, base_url=api.url, backoff=0.001, max_backoff=0.01, timeout=(2, 2))
    killed: list[int] = []

    def kill_the_first_worker() -> None:
        for _ in range(2000):
            children = multiprocessing.active_children()
            if children:
                os.kill(children[0].pid, signal.SIGKILL)
                killed.append(children[0].pid)
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_the_first_worker, daemon=True)
    killer.start()
    report = fetch(store, client, ids(30), videos=True, batch_size=4, workers=1)
    killer.join(15)
    assert killed, "no preparing process was started"
    assert (report.fetched, report.unapplied, report.load.loaded, report.failed) == (60, 0, 60, [])
    assert store.stats().audios == 30
    assert len(list(store.run_named("videos-using-audio", {"audio": _audio_iri(store, 29)}).rows())) == 30


def _audio_iri(store: Any, i: int) -> str:
    found = store.query("SELECT ?a ?id WHERE { ?a <https://konbiniapi.com/ns/social#entityId> ?id }",
                        {"id": f'"{audio_id(i)}"'})
    return str(next(iter(found.rows()))[0].value)


def test_a_write_failing_behind_the_next_batch_leaves_its_answers_to_the_next_writer(store_dir: Path,
                                                                                    api: FakeKonbiniAPI) -> None:
    from konbini_ld.errors import StoreError
    from konbini_ld.store.log.archive import Archive

    client = KonbiniClient(KEY, base_url=api.url, backoff=0.001, max_backoff=0.01, timeout=(2, 2))
    with open_store(store_dir) as store:
        engine = store.pipeline.writer.engine
        real, calls = engine.apply, []

        def apply(*args: Any) -> None:  # the third write finds the disk full
            calls.append(1)
            if len(calls) == 3:
                raise StoreError("No space left on device")
            real(*args)

        engine.apply = apply
        report = fetch(store, client, ids(40), batch_size=3, workers=0, concurrency=2)
        engine.apply = real
    # the run ends with its report: the error, what was bought, what the graph has yet to take
    assert report.stopped == "store-error" and report.exit_code == 1 and "No space left" in str(report.error)
    assert report.unapplied >= 1 and "reach the graph when the store is next opened" in report.summary()
    assert report.credits_used == report.fetched == report.load.loaded + report.unapplied
    archived = len(list(Archive(store_dir / "archive").records()))
    assert archived < 40  # the run stopped buying
    with open_store(store_dir, read_only=True) as reader:
        stats = reader.stats()
        assert stats.unapplied >= 1 and stats.audios + stats.unapplied == archived  # the failed batch is not counted in
    with open_store(store_dir) as store:  # the next writer applies what was archived
        assert (store.stats().audios, store.stats().unapplied) == (archived, 0)



def test_preparing_processes_leave_ctrl_c_and_sigterm_to_the_run() -> None:
    """A terminal's Ctrl-C and a service manager's SIGTERM reach the whole process group: the
    preparing processes ignore both (the run decides what is still prepared, and ends them)."""
    from konbini_ld.mapping.prepare import PreparePool

    pool = PreparePool(1, eager=True)
    try:
        pool.start()
        assert pool.pool.submit(int).result(timeout=60) == 0  # (its initializer has run)
        pids = list(pool.pool._processes)
        assert len(pids) == 1
        status = Path(f"/proc/{pids[0]}/status").read_text()
        ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16)
        assert ignored & (1 << (2 - 1)) and ignored & (1 << (15 - 1))  # SIGINT, SIGTERM
    finally:
        pool.close(wait=True)


def test_ctrl_c_as_a_request_is_handed_to_its_thread_still_keeps_its_paid_answer(
        store: Any, client: KonbiniClient, api: FakeKonbiniAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C can land while a request is handed to its thread, once the thread has it: the run
    waits for that answer like any other in flight (it is paid for), and keeps it."""
    import importlib

    fetch_module = importlib.import_module("konbini_ld.pipeline.fetch")

    class InterruptedAtTheThird(fetch_module.ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args: Any, **kwargs: Any) -> Any:
            handed = super().submit(*args, **kwargs)
            InterruptedAtTheThird.submitted += 1
            if InterruptedAtTheThird.submitted == 3:
                raise KeyboardInterrupt
            return handed

    monkeypatch.setattr(fetch_module, "ThreadPoolExecutor", InterruptedAtTheThird)
    api.latency = 0.5
    report = fetch(store, client, ids(10))
    assert report.stopped == "interrupted"
    assert api.count() == 3
    assert store.stats().archived == 3 and report.fetched == 3 and report.credits_used == 3
    assert report.not_requested == 7
