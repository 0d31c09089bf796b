"""What the API sends is evidence, not truth: credits, not-found, identity, time, size, text.

Every test here talks to a real HTTP server on 127.0.0.1 (the fake API, scripted to misbehave)
through the real client, and looks at what a user would see: the summary, ``stats``, the
ledger that decides what is bought next, the archive.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.pipeline import fetch
from konbini_ld.sources.konbini.client import KonbiniClient
from konbini_ld.sources.konbini.corpus import audio_response, videos_page
from konbini_ld.sources.konbini.fakeapi import FakeKonbiniAPI, Scripted, audio_id
from konbini_ld.store.log.archive import Archive
from konbini_ld.units import MAX_CREDITS_PER_ANSWER, parse_credits

KEY = "sk-evidence-0f9e8d7c"


@pytest.fixture(scope="module")
def api() -> Any:
    with FakeKonbiniAPI(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(api: FakeKonbiniAPI) -> None:
    api.reset(credits=1_000_000)
    api.latency = 0.0


def client_for(url: str, **options: Any) -> KonbiniClient:
    settings_ = {"backoff": 0.001, "max_backoff": 0.01, "timeout": (2, 2), **options}
    return KonbiniClient(KEY, base_url=url, **settings_)


@pytest.fixture
def client(api: FakeKonbiniAPI) -> KonbiniClient:
    return client_for(api.url)


def path(i: int) -> str:
    return f"/v1/tiktok/audios/{audio_id(i)}"


def ids(n: int, start: int = 0) -> list[str]:
    return [audio_id(i) for i in range(start, start + n)]


def cli(store: Path, *args: str, url: str) -> Any:
    env = {"KONBINI_API_KEY": KEY, "KONBINI_API_URL": url}
    return CliRunner(env=env).invoke(main, ["--store", str(store), "fetch", *args], catch_exceptions=False)


# -- 1. credits: the cap counts requests sent; headers are validated evidence ------------------------


@pytest.mark.parametrize("header", ["-1", "-5", "99999999999999999999999", "1e9", "abc", "1.5", "", " 7 x"])
def test_a_credit_header_that_is_not_a_believable_number_is_kept_as_evidence(
        store: Any, client: KonbiniClient, api: FakeKonbiniAPI, header: str) -> None:
    for i in range(5):
        api.script(path(i), Scripted(200, audio_response(i), headers={"X-Credits-Used": header}))
    report = fetch(store, client, ids(5))
    assert report.fetched == 5
    assert report.credits_used == 5  # one credit a request: the price, not the header
    stats = store.stats()
    assert stats.credits_spent == 5 and stats.audios == 5  # never negative, never zeroed
    kept = store.query("SELECT (COUNT(*) AS ?n) WHERE { ?a <https://konbiniapi.com/ns/social#creditHeaderNotBelieved> ?v }")
    assert kept.records()[0]["n"] == 5


def test_the_credit_cap_counts_requests_sent_whatever_the_headers_say(store: Any, client: KonbiniClient,
                                                                      api: FakeKonbiniAPI) -> None:
    for i in range(40):
        api.script(path(i), Scripted(200, audio_response(i), headers={"X-Credits-Used": "0"}))
    report = fetch(store, client, ids(40), max_credits=5, concurrency=16)
    assert api.count() == 5 and report.stopped == "max-credits"
    assert report.not_requested == 35


def test_retries_count_against_the_cap(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    for i in range(3):
        api.script(path(i), *[Scripted(503, {"errors": [{"code": "unavailable"}], "data": None})] * 4)
    fetch(store, client, ids(3), max_credits=4, concurrency=1)
    assert api.count() == 4  # every attempt is a request sent: the cap holds through retries


def test_billed_5xx_answers_are_counted_and_recorded(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    api.script(path(1), Scripted(503, {"errors": [{"code": "unavailable"}], "data": None}, bill=True),
               Scripted(503, {"errors": [{"code": "unavailable"}], "data": None}))  # (unbilled)
    report = fetch(store, client, [audio_id(1)])
    assert report.fetched == 1 and api.count() == 3
    assert report.credits_used == 2  # the billed 503 and the answer
    assert store.stats().credits_spent == 2  # stats agree with the bill


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=30), st.integers(), st.floats(), st.booleans(), st.none()))
def test_parse_credits_believes_only_whole_numbers_in_range(value: Any) -> None:
    n = parse_credits(value)
    assert n is None or (isinstance(n, int) and 0 <= n <= MAX_CREDITS_PER_ANSWER)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(used=st.text(alphabet="-0123456789e. x+", max_size=25), remaining=st.text(alphabet="-0123456789", max_size=25))
def test_no_credit_header_can_drive_stats_negative_or_to_zero(tmp_path_factory: Any, api: FakeKonbiniAPI,
                                                              used: str, remaining: str) -> None:
    api.reset()
    store_dir = tmp_path_factory.mktemp("credits") / "store"
    api.script(path(2), Scripted(200, audio_response(2),
                                 headers={"X-Credits-Used": used, "X-Credits-Remaining": remaining}))
    api.script(path(3), Scripted(200, audio_response(3)))
    with open_store(store_dir) as store:
        report = fetch(store, client_for(api.url), ids(2, 2))
        stats = store.stats()
    assert report.credits_used >= 1 and stats.credits_spent >= 1
    assert stats.credits_spent == report.credits_used
    assert report.credits_remaining is None or report.credits_remaining >= 0


# -- 2. only the API's own not-found marks an id not found ---------------------------------------------


@pytest.mark.parametrize("answer", [
    Scripted(404, "<html><body><h1>404 Not Found</h1>nginx</body></html>", content_type="text/html"),
    Scripted(404, {"errors": [{"code": "route_not_found", "message": "No route"}], "data": None},
             headers={"X-Credits-Used": "0"}),
    Scripted(404, {"message": "Not Found"}),  # a JSON 404 that is not the API's envelope
    Scripted(404, {"errors": [{"code": "not_found", "message": "gone"}], "data": None},
             headers={"X-Credits-Used": "", "X-Credits-Remaining": ""}),  # unbilled: not the API's
], ids=["html", "route", "json", "unbilled"])
def test_a_404_that_is_not_the_apis_not_found_is_a_failure_asked_again(
        store: Any, client: KonbiniClient, api: FakeKonbiniAPI, answer: Scripted) -> None:
    api.script(path(7), answer)
    report = fetch(store, client, [audio_id(7)])
    assert report.not_found == 0 and len(report.failed) == 1 and report.exit_code == 1
    assert audio_id(7) in str(report.failed[0])  # names the URL
    assert f"audio:{audio_id(7)}" not in store.fetch_ledger()
    again = fetch(store, client, [audio_id(7)])
    assert (again.fetched, again.skipped) == (1, 0)


def test_a_wrong_api_url_loses_no_id(api: FakeKonbiniAPI, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    for url in (api.url + "/api", api.url + "/v2", dead):
        r = cli(store, audio_id(1), audio_id(2), "--retries", "1", url=url)
        assert r.exit_code == 1 and "not found 0" in r.stderr and "failed 2" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    r = cli(store, audio_id(1), audio_id(2), url=api.url)
    assert r.exit_code == 0 and "fetched 2, skipped 0" in r.stderr, r.stderr


def test_the_apis_own_not_found_is_remembered(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    missing = "123456789"
    report = fetch(store, client, [missing])
    assert report.not_found == 1 and report.credits_used == 1
    assert store.fetch_ledger()[f"audio:{missing}"].status == 404
    assert fetch(store, client, [missing]).skipped == 1


# -- 3. answers are checked against the question -------------------------------------------------------


def test_an_answer_for_another_audio_is_evidence_not_a_purchase(store: Any, client: KonbiniClient,
                                                              api: FakeKonbiniAPI) -> None:
    api.script(path(1), Scripted(200, audio_response(2)))
    report = fetch(store, client, [audio_id(1)])
    assert report.fetched == 0 and len(report.failed) == 1 and "another audio" in str(report.failed[0])
    assert report.credits_used == 1 and store.stats().credits_spent == 1  # billed: counted
    assert store.stats().audios == 0  # not applied as the answer
    archived = list(Archive(store.archive.path).records())
    assert len(archived) == 1 and archived[0].note and archived[0].body  # kept as evidence
    assert f"audio:{audio_id(1)}" not in store.fetch_ledger()
    assert fetch(store, client, [audio_id(1)]).fetched == 1  # asked again, and right this time


def test_a_page_of_another_audios_videos_is_evidence(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    api.script(path(4) + "/videos", Scripted(200, videos_page(5)))
    report = fetch(store, client, [audio_id(4)], videos=True)
    assert report.fetched == 1 and len(report.failed) == 1 and "videos of audio" in str(report.failed[0])
    assert f"videos:{audio_id(4)}:0" not in store.fetch_ledger()
    assert store.stats().videos == 0


def test_a_page_at_another_cursor_is_evidence(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    api.script(path(4) + "/videos", Scripted(200, videos_page(4, cursor=2)))
    report = fetch(store, client, [audio_id(4)], videos=True)
    assert len(report.failed) == 1 and "cursor" in str(report.failed[0])


def test_redirects_are_not_followed(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    with FakeKonbiniAPI(api_key=KEY) as other:
        api.script(path(3), Scripted(302, "", headers={"Location": other.url + path(3)}))
        report = fetch(store, client, [audio_id(3)])
        assert other.count() == 0  # (the key never went to another host)
    assert len(report.failed) == 1 and "redirect" in str(report.failed[0])
    assert f"audio:{audio_id(3)}" not in store.fetch_ledger()


def test_an_html_page_with_status_200_is_not_a_purchase(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    api.script(path(3), Scripted(200, "<html>captive portal</html>", content_type="text/html"))
    report = fetch(store, client, [audio_id(3)])
    assert len(report.failed) == 1 and f"audio:{audio_id(3)}" not in store.fetch_ledger()


# -- 4. every request ends within its time limit; signals end the run within seconds ------------------


def test_a_server_that_sends_a_byte_at_a_time_is_cut_at_the_timeout(store: Any, api: FakeKonbiniAPI) -> None:
    body = json.dumps(audio_response(1))
    api.script(path(1), Scripted(200, body, drip=0.05))  # ~70 s for the whole body
    started = time.monotonic()
    report = fetch(store, client_for(api.url, timeout=1.0, retries=1), [audio_id(1)])
    took = time.monotonic() - started
    assert len(report.failed) == 1 and "time limit" in str(report.failed[0])
    assert took < 6, took  # the whole request, not each read: 1 s (and the watchdog's tick)
    assert report.credits_used == 1 == store.stats().credits_spent  # its head said it was billed: counted


def _drip_server(body: bytes, per_byte: float) -> tuple[Any, str]:
    """A server that answers every request with headers, then a byte per ``per_byte`` seconds."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            server.asked += 1  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(per_byte)
            except OSError:
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.asked = 0  # type: ignore[attr-defined]
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize("signals", [1, 2])
def test_sigterm_ends_fetch_within_seconds_whatever_the_server_does(tmp_path: Path, signals: int) -> None:
    server, url = _drip_server(json.dumps(audio_response(1)).encode(), 1.0)
    try:
        ids_file = tmp_path / "ids.txt"
        ids_file.write_text("\n".join(ids(8)) + "\n")
        env = {**os.environ, "KONBINI_API_KEY": KEY, "KONBINI_API_URL": url}
        proc = subprocess.Popen(
            [sys.executable, "-m", "konbini_ld", "--store", str(tmp_path / "store"), "fetch", "--ids-file",
             str(ids_file), "--timeout", "600"], stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 60
        while server.asked < 8 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # every request in flight, each hours from done (however slowly it starts)
        assert proc.poll() is None and server.asked == 8
        sent = time.monotonic()
        for _ in range(signals):
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
        assert proc.returncode == 143 and "Traceback" not in err, err
        assert took < 15, took
        with open_store(tmp_path / "store") as store:  # not left locked
            assert store.stats().audios == 0
    finally:
        server.shutdown()
        server.server_close()


# -- 5. bodies are bounded on the wire and once inflated; what was refused is never archived ----------


def test_a_gzip_bomb_is_refused_without_inflating_it(store: Any, api: FakeKonbiniAPI) -> None:
    limit = 1 << 20
    bomb = gzip.compress(b"[" + b" " * (200 * limit) + b"]", compresslevel=9)  # 200 MiB from ~200 KB
    api.script(path(1), Scripted(200, bomb, headers={"Content-Encoding": "gzip"}))
    report = fetch(store, client_for(api.url, max_body=limit), [audio_id(1)])
    assert len(report.failed) == 1 and "decompressed" in str(report.failed[0])
    records = list(Archive(store.archive.path).records())
    assert all(len(r.body) < limit for r in records)  # never archived
    assert f"audio:{audio_id(1)}" not in store.fetch_ledger()


def test_an_endless_body_is_cut_at_the_limit(store: Any, api: FakeKonbiniAPI) -> None:
    api.script(path(1), Scripted(200, json.dumps(audio_response(1)), endless=True))
    report = fetch(store, client_for(api.url, max_body=1 << 20, retries=1), [audio_id(1)])
    assert len(report.failed) == 1 and "larger than 1 MiB" in str(report.failed[0])
    assert all(len(r.body) < 1 << 20 for r in Archive(store.archive.path).records())


def test_a_declared_length_past_the_limit_is_not_read(store: Any, api: FakeKonbiniAPI) -> None:
    api.script(path(1), Scripted(200, b"{" + b" " * (2 << 20) + b"}"))
    report = fetch(store, client_for(api.url, max_body=1 << 20), [audio_id(1)])
    assert len(report.failed) == 1 and "larger than 1 MiB" in str(report.failed[0])


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_answers_are_read(store: Any, api: FakeKonbiniAPI, client: KonbiniClient, encoding: str) -> None:
    raw = json.dumps(audio_response(1)).encode()
    data = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    api.script(path(1), Scripted(200, data, headers={"Content-Encoding": encoding}))
    assert fetch(store, client, [audio_id(1)]).fetched == 1


def test_large_answers_are_read_a_few_at_a_time_whatever_the_concurrency(
        store: Any, api: FakeKonbiniAPI, client: KonbiniClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid answers padded to megabytes (small on the wire, gzipped): however many requests are in
    flight, at most LARGE_AT_ONCE such bodies are read at once, and every answer is still bought."""
    from konbini_ld.sources.konbini import transport

    holding, most = [0], [0]
    take, release = transport._LARGE_TURNS.acquire, transport._LARGE_TURNS.release
    lock = threading.Lock()

    def acquire(*args: Any, **kwargs: Any) -> bool:
        got = take(*args, **kwargs)
        if got:
            with lock:
                holding[0] += 1
                most[0] = max(most[0], holding[0])
            time.sleep(0.05)  # (long enough for every request to be reading at once)
        return got

    def give_back() -> None:
        with lock:
            holding[0] -= 1
        release()

    monkeypatch.setattr(transport._LARGE_TURNS, "acquire", acquire)
    monkeypatch.setattr(transport._LARGE_TURNS, "release", give_back)
    for i in range(12):
        padded = json.dumps(audio_response(i)).replace("{", "{" + " " * (3 << 20), 1).encode()
        api.script(path(i), Scripted(200, gzip.compress(padded), headers={"Content-Encoding": "gzip"}))
    report = fetch(store, client, ids(12), concurrency=12)
    assert report.fetched == 12 and not report.failed, report.failed
    assert 1 <= most[0] <= transport.LARGE_AT_ONCE


# -- 6. JSON is UTF-8 whatever the Content-Type says ------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/json; charset=iso-8859-1",
                                          "application/octet-stream"])
def test_utf8_is_read_as_utf8_whatever_the_label(store: Any, client: KonbiniClient, api: FakeKonbiniAPI,
                                                 content_type: str) -> None:
    audio = audio_response(1)
    audio["data"]["name"] = "Beyoncé – Ça ira 🎵"
    api.script(path(1), Scripted(200, json.dumps(audio, ensure_ascii=False).encode(), content_type=content_type))
    assert fetch(store, client, [audio_id(1)]).fetched == 1
    names = store.query("SELECT ?n WHERE { ?a a <https://www.w3.org/ns/activitystreams#Audio> ; "
                        "<https://www.w3.org/ns/activitystreams#name> ?n }").records()
    assert names == [{"n": "Beyoncé – Ça ira 🎵"}]
    assert "Beyoncé" in next(iter(Archive(store.archive.path).records())).body


def test_bytes_that_are_not_utf8_are_a_failure_asked_again(store: Any, client: KonbiniClient,
                                                           api: FakeKonbiniAPI) -> None:
    audio = json.dumps(audio_response(1), ensure_ascii=False).replace("original", "Beyonc\u00e9")
    api.script(path(1), Scripted(200, audio.encode("latin-1", "replace")))
    report = fetch(store, client, [audio_id(1)])
    assert len(report.failed) == 1 and "UTF-8" in str(report.failed[0])
    assert f"audio:{audio_id(1)}" not in store.fetch_ledger()


# -- 7. observation times in the future are refused --------------------------------------------------


def test_a_future_observed_at_is_a_usage_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["--store", str(tmp_path / "s"), "load", "--observed-at", "2062-11-01T00:00:00Z",
                                  str(Path(__file__).parent / "data" / "seed-audio.json")])
    assert r.exit_code == 2 and "in the future" in r.stderr and "Traceback" not in r.stderr


def test_a_future_date_header_is_refused_and_does_not_freeze_the_entity(store: Any) -> None:
    audio = audio_response(1)
    frozen = {"request": {"url": "https://api.konbiniapi.com" + path(1)}, "status": 200,
              "headers": {"Date": "Fri, 01 Jan 9999 00:00:00 GMT"}, "body": {**audio}}
    report = store.load(frozen)
    assert report.loaded == 0 and "in the future" in str(report.failed[0])
    audio["data"]["videoCount"] = 4242
    store.load(audio, observed_at="2026-11-02T00:00:00Z")
    rows = store.run_named("history", {"entity": audio["data"]["id"]}).records()
    assert [r["value"] for r in rows if r["counter"].endswith("videoCount")] == [4242]


def test_a_future_record_in_the_archive_is_left_out_by_rebuild(store_dir: Path) -> None:
    from konbini_ld.model import Response
    from konbini_ld.store.log.archive_format import ArchiveRecord

    with open_store(store_dir) as store:
        store.load(audio_response(1), observed_at="2026-11-01T00:00:00Z")
        ahead = json.dumps(audio_response(1) | {"data": {**audio_response(1)["data"], "videoCount": 1}})
        store.archive.append([ArchiveRecord.of(Response(ahead, "file:///typo.json", observed_at="2062-11-01T00:00:00.000Z"))])
    r = CliRunner().invoke(main, ["--store", str(store_dir), "rebuild"])
    assert r.exit_code == 1 and "in the future" in r.stderr and "--observed-at" in r.stderr
    with open_store(store_dir) as store:
        store.load(audio_response(1) | {"data": {**audio_response(1)["data"], "videoCount": 77}},
                   observed_at="2026-11-03T00:00:00Z")
        rows = store.query("SELECT ?v WHERE { ?a a <https://www.w3.org/ns/activitystreams#Audio> ; "
                           "<https://konbiniapi.com/ns/social#videoCount> ?v }").records()
    assert rows == [{"v": 77}]  # the newest real observation shows


# -- 8. cursor cycles, an archive that cannot be written, a rolled-back HEAD ------------------------


def test_a_cycle_of_cursors_buys_each_page_once(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    def page(cursor: str, nxt: str) -> dict[str, Any]:
        p = videos_page(6, 0)
        p["data"]["cursor"], p["data"]["nextCursor"] = cursor, nxt
        return p

    base = path(6) + "/videos"
    api.script(base, *[Scripted(200, page(c, n)) for c, n in [("0", "A"), ("A", "B"), ("B", "A")] * 6])
    report = fetch(store, client, [audio_id(6)], videos=True, max_pages=20)
    pages = [r for r in api.requests if r.path == base]
    assert len(pages) == 3 and report.fetched == 4


def test_a_dry_run_says_what_a_run_with_cycles_spends(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    fetch(store, client, ids(3), videos=True, max_pages=3)
    from datetime import timedelta
    plan = fetch(store, None, ids(3), videos=True, max_pages=3, refresh_older_than=timedelta(0), dry_run=True)
    api.reset()
    fetch(store, client, ids(3), videos=True, max_pages=3, refresh_older_than=timedelta(0))
    assert plan.planned == api.count() == 12


def test_an_archive_that_cannot_be_written_mid_fetch_loses_no_paid_answer(api: FakeKonbiniAPI, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    api.latency = 0.01
    blocked = threading.Event()

    def break_the_archive() -> None:  # once 40 answers are in, the archive's HEAD cannot be replaced
        head_tmp = store_dir / "archive" / "HEAD.tmp"
        while not blocked.is_set():
            if (store_dir / "archive" / "HEAD").exists() and Archive(store_dir / "archive").last_seq >= 40:
                try:
                    head_tmp.mkdir()
                    blocked.set()
                except OSError:
                    pass
            time.sleep(0.002)

    breaker = threading.Thread(target=break_the_archive, daemon=True)
    breaker.start()
    with open_store(store_dir) as store:
        report = fetch(store, client_for(api.url), ids(300), concurrency=8)
    breaker.join(5)
    assert blocked.is_set() and report.stopped == "store-error" and report.exit_code == 1
    assert any("kept in" in str(e) for e in report.errors)
    bought = len(api.requests)
    assert 40 <= bought < 300
    (store_dir / "archive" / "HEAD.tmp").rmdir()  # the disk is fixed
    api.requests.clear()
    with open_store(store_dir) as store:  # adopts what the archive could not take
        assert fetch(store, client_for(api.url), ids(300)).fetched == 300 - bought
        assert store.stats().audios == 300
    assert len(api.requests) == 300 - bought  # nothing received was bought again
    keys = [rec.key for rec in Archive(store_dir / "archive").records()]
    assert len(keys) == len(set(keys)) == 300


def test_a_rolled_back_archive_head_never_reuses_a_number(store_dir: Path) -> None:
    import shutil

    with open_store(store_dir) as store:
        store.load([audio_response(i) for i in range(0, 50)])
    shutil.copytree(store_dir / "archive", store_dir.parent / "backup")
    with open_store(store_dir) as store:
        store.load([audio_response(i) for i in range(50, 100)])
    shutil.rmtree(store_dir / "archive")  # a backup of the archive alone put back: 50 responses lost
    shutil.copytree(store_dir.parent / "backup", store_dir / "archive")
    with open_store(store_dir) as store:
        store.load([audio_response(i) for i in range(100, 150)])
        seqs = [r.seq for r in store.archive.records()]
        assert len(seqs) == len(set(seqs)) == 100 and max(seqs) == 150
        scan = store.archive.verify()
        assert scan.lost == 50  # reported as lost, never read short in silence
    r = CliRunner().invoke(main, ["--store", str(store_dir), "rebuild"])
    assert r.exit_code == 1 and "50 records lost" in r.stderr  # refuses to shrink the graph


def test_stats_counts_what_was_archived_before_the_graph_took_it(store_dir: Path, api: FakeKonbiniAPI) -> None:
    """A run stopped while the graph was catching up: its answers are paid for, and counted."""
    from konbini_ld.model import Response

    with open_store(store_dir) as store:
        fetch(store, client_for(api.url), ids(3))
        store.archive_responses([Response(json.dumps(audio_response(i)), f"{api.url}{path(i)}", status=200,
                                          key=f"audio:{audio_id(i)}", credits_used=1, observed_at="2026-11-01T00:00:00Z")
                                 for i in range(3, 8)])  # archived, then the run was stopped
    with open_store(store_dir, read_only=True) as reader:
        stats = reader.stats()
        assert (stats.credits_spent, stats.unapplied, stats.audios) == (8, 5, 3)
        with open_store(store_dir) as store:  # the next writer applies them: the same total
            stats = store.stats()
            assert (stats.credits_spent, stats.unapplied, stats.audios) == (8, 0, 8)
        # the reader, held meanwhile, still reads its view, without them: they are counted beside it
        # (it took them for applied, and counted them nowhere: 3 credits)
        held = reader.stats()
        assert (held.credits_spent, held.unapplied, held.audios) == (8, 5, 3)


def test_sigterm_while_the_graph_catches_up_still_ends_with_the_summary(tmp_path: Path, api: FakeKonbiniAPI) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids(150)) + "\n")
    env = {**os.environ, "KONBINI_API_KEY": KEY, "KONBINI_API_URL": api.url}
    proc = subprocess.Popen([sys.executable, "-m", "konbini_ld", "--store", str(tmp_path / "store"), "fetch",
                             "--ids-file", str(ids_file), "--videos", "--concurrency", "64"],
                            stderr=subprocess.PIPE, text=True, env=env)
    while len(api.requests) < 300 and proc.poll() is None:  # every answer is in: the graph is catching up
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 143) and "Traceback" not in err, err
    assert "credits used 300" in err  # the summary, whatever was still to apply
    r = CliRunner().invoke(main, ["--store", str(tmp_path / "store"), "stats", "--json"])
    assert json.loads(r.stdout)["credits_spent"] == 300


# -- answers that try to pass for the one asked for ------------------------------------------------

_A, _B = audio_response(1)["data"], audio_response(2)["data"]
_PAGE_B = videos_page(2, 0, per_page=2, pages=3)["data"]
_PAGE_A = videos_page(1, 0, per_page=2, pages=3)["data"]

AUDIO_IMPOSTORS = {
    "envelope inside the envelope": {"data": {"data": _B, "id": _A["id"]}},
    "a recorded exchange wrapping another audio": {"request": {"url": "https://x"}, "status": 200, "headers": {},
                                                   "body": {"data": _B}, "id": _A["id"]},
    "another audio wrapping this one": {**_B, "data": _A},
    "a Video named like the audio": {"data": {"type": "Video", "id": f"https://www.tiktok.com/@x/video/{audio_id(1)}",
                                              "audio": _B}},
    "id of another audio, entityId of this one": {"data": {**_B, "entityId": audio_id(1)}},
    "an IRI on another host": {"data": {**_A, "id": f"https://evil.example/whatever-{audio_id(1)}"}},
    "the API's error envelope with status 200": {"errors": [{"code": "internal", "message": "oops"}], "data": None},
    "NaN": f'{{"data": {{"type": "Audio", "id": "{_A["id"]}", "videoCount": NaN}}}}',
    "no type": {"data": {"id": _A["id"]}},
    "another audio nested inside it": {"data": {**_A, "inReplyTo": {**_B, "name": "forged"}}},
    "another audio deep in its creator": {"data": {**_A, "attributedTo": [{"type": "Person", "id": "https://www.tiktok.com/@x",
                                                                          "attachment": [_B]}]}},
    # a type is read as JSON-LD reads it: a term, a compact IRI or the IRI itself
    "another audio typed with a compact IRI": {"data": {**_A, "x-extra": {**_B, "type": "as:Audio"}}},
    "another audio typed with its IRI": {"data": {**_A, "attributedTo": {
        **_A["attributedTo"], "featured": {**_B, "type": "https://www.w3.org/ns/activitystreams#Audio"}}}},
    "the audio asked for typed with its IRI, another one nested": {"data": {
        **_A, "type": "https://www.w3.org/ns/activitystreams#Audio", "inReplyTo": {**_B, "type": "as:Audio"}}},
    "a video's IRI ending with the id": {"data": {**_A, "id": f"https://www.tiktok.com/@someone/video/{audio_id(1)}"}},
    "an IRI whose longer number ends with the id": {"data": {**_A, "id": f"https://www.tiktok.com/music/x-5{'0' * 11}{audio_id(1)}"}},
    "another audio whose longer number ends with the id, nested": {"data": {**_A, "attachment": {
        "type": "Audio", "id": f"https://www.tiktok.com/music/x-5{'0' * 11}{audio_id(1)}", "name": "EVIL"}}},
    "another audio typed by @type beside a null type": {"data": {**_A, "attachment": {
        "type": None, "@type": "Audio", "id": _B["id"], "name": "EVIL"}}},
    "another audio's IRI on a node typed otherwise": {"data": {**_A, "attachment": {
        "type": "Image", "id": _B["id"], "name": "EVIL"}}},
}
PAGE_IMPOSTORS = {
    "the API's error envelope with status 200": {"errors": [{"code": "internal", "message": "oops"}], "data": None},
    "envelope inside the envelope": {"data": {"data": _PAGE_B}},
    "an audio instead of a page": {"data": _B},
    "an empty object": {"data": {}},
    "partOf on another host": {"data": {**_PAGE_A, "partOf": f"https://evil.example/v1/tiktok/audios/{audio_id(1)}/videos"}},
    "videos whose audio is a list naming another": {"data": {**{k: v for k, v in _PAGE_B.items() if k != "partOf"},
                                                             "orderedItems": [{**i, "audio": [i["audio"]]}
                                                                              for i in _PAGE_B["orderedItems"]]}},
    "a page that does not say whose videos": {"data": {**{k: v for k, v in _PAGE_A.items() if k != "partOf"},
                                                       "orderedItems": [{k: v for k, v in i.items() if k != "audio"}
                                                                        for i in _PAGE_A["orderedItems"]]}},
    "an empty page that names no audio": {"data": {"type": "OrderedCollectionPage", "totalItems": 0,
                                                   "orderedItems": []}},
    "another audio listed among the videos": {"data": {**_PAGE_A, "orderedItems": [*_PAGE_A["orderedItems"], _B]}},
    "another audio deep in a video's creator": {"data": {**_PAGE_A, "orderedItems": [
        {**_PAGE_A["orderedItems"][0], "attributedTo": {**_PAGE_A["orderedItems"][0]["attributedTo"],
                                                        "attachment": {**_B, "videoCount": 999999999}}}]}},
    "another audio typed with a compact IRI on a video": {"data": {**_PAGE_A, "orderedItems": [
        {**_PAGE_A["orderedItems"][0], "x-extra": {**_B, "type": "as:Audio", "name": "EVIL"}}]}},
    "a video naming another audio with a compact key": {"data": {**_PAGE_A, "orderedItems": [
        {**_PAGE_A["orderedItems"][0], "ks:audio": {"id": _B["id"], "name": "EVIL"}}]}},
    "the page named as another audio's page": {"data": {
        **_PAGE_A, "id": f"https://api.konbiniapi.com/v1/tiktok/audios/{audio_id(2)}/videos?cursor=0"}},
    "partOf another audio's videos, by @id": {"data": {
        **_PAGE_A, "partOf": {"@id": f"https://api.konbiniapi.com/v1/tiktok/audios/{audio_id(2)}/videos"}}},
    "next page of another audio's videos": {"data": {
        **_PAGE_A, "next": f"https://api.konbiniapi.com/v1/tiktok/audios/{audio_id(2)}/videos?cursor=1"}},
    "first page on another host": {"data": {
        **_PAGE_A, "first": {"href": f"https://evil.example/v1/tiktok/audios/{audio_id(1)}/videos"}}},
    "the page naming itself the page at another cursor": {"data": {
        **_PAGE_A, "id": f"https://api.konbiniapi.com/v1/tiktok/audios/{audio_id(1)}/videos?cursor=2&count=3"}},
    "another audio's IRI on an untyped node of a video": {"data": {**_PAGE_A, "orderedItems": [
        {**_PAGE_A["orderedItems"][0], "attachment": {"type": None, "@type": "Audio", "id": _B["id"], "name": "EVIL"}}]}},
}


@pytest.mark.parametrize("name", sorted(AUDIO_IMPOSTORS))
def test_an_audio_impostor_is_never_bought(store: Any, client: KonbiniClient, api: FakeKonbiniAPI, name: str) -> None:
    api.script(path(1), Scripted(200, AUDIO_IMPOSTORS[name]))
    report = fetch(store, client, [audio_id(1)])
    assert report.fetched == 0 and len(report.failed) == 1, report.failed
    assert f"audio:{audio_id(1)}" not in store.fetch_ledger() and store.stats().audios == 0
    assert fetch(store, client, [audio_id(1)]).fetched == 1  # asked again


@pytest.mark.parametrize("name", sorted(PAGE_IMPOSTORS))
def test_a_page_impostor_is_never_bought(store: Any, client: KonbiniClient, api: FakeKonbiniAPI, name: str) -> None:
    api.script(path(1) + "/videos", Scripted(200, PAGE_IMPOSTORS[name]))
    report = fetch(store, client, [audio_id(1)], videos=True)
    assert len(report.failed) == 1, report.failed
    assert f"videos:{audio_id(1)}:0" not in store.fetch_ledger() and store.stats().videos == 0


@pytest.mark.parametrize("own", [None, f"https://api.konbiniapi.com/v1/tiktok/audios/{audio_id(1)}/videos?cursor=0&count=2"])
def test_a_last_page_with_null_links_is_bought(store: Any, client: KonbiniClient, api: FakeKonbiniAPI, own: Any) -> None:
    page = videos_page(1, 0, per_page=2, pages=1)
    page["data"].update({"next": None, "prev": None, "first": None, "id": own})
    api.script(path(1) + "/videos", Scripted(200, page))
    report = fetch(store, client, [audio_id(1)], videos=True)
    assert report.fetched == 2 and not report.failed and store.stats().videos == 2


@pytest.mark.parametrize("kind", ["as:Audio", "https://www.w3.org/ns/activitystreams#Audio", ["Object", "as:Audio"]])
def test_the_audio_asked_for_is_bought_however_its_type_is_spelled(store: Any, client: KonbiniClient,
                                                                    api: FakeKonbiniAPI, kind: Any) -> None:
    api.script(path(1), Scripted(200, {"data": {**_A, "type": kind}}))
    report = fetch(store, client, [audio_id(1)])
    assert report.fetched == 1 and not report.failed, report.failed
    assert store.stats().audios == 1


def test_the_request_url_of_a_body_never_breaks_the_store(store_dir: Path, api: FakeKonbiniAPI, tmp_path: Path) -> None:
    """A body shaped like a recorded exchange names a request URL that is no IRI: one refused item,
    never a store every later command fails on."""
    exchange = {"request": {"url": "https://x/ y"}, "status": 200, "headers": {}, "body": audio_response(1)}
    api.script(path(1), Scripted(200, exchange))
    jsonl = tmp_path / "three.jsonl"
    jsonl.write_text("\n".join(json.dumps(x) for x in (
        audio_response(2), {**exchange, "request": {"url": "https://x/a>b"}}, audio_response(3))) + "\n")
    with open_store(store_dir) as store:
        fetch(store, client_for(api.url), [audio_id(1)])
        report = store.load(jsonl)
        assert report.loaded == 2 and len(report.failed) == 1 and "three.jsonl:2" in str(report.failed[0])
    r = CliRunner().invoke(main, ["--store", str(store_dir), "rebuild"])
    assert r.exit_code == 0, r.stderr
    with open_store(store_dir) as store:
        assert store.stats().audios == 2


def _escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04X}" for c in text)


def _percent(text: str) -> str:
    return "".join(f"%{b:02x}" for b in text.encode())


def test_the_key_sent_back_by_a_server_is_never_kept_or_shown(store_dir: Path, api: FakeKonbiniAPI) -> None:
    """In any spelling a reader decodes back to the key: as itself, JSON-escaped, percent-encoded;
    in a message, a redirect, a body, a credit header."""
    api.script(path(1), Scripted(400, {"errors": [{"code": "bad", "message": f"bad Authorization: Bearer {KEY}"}],
                                       "data": None}))
    api.script(path(2), Scripted(302, "", headers={"Location": f"http://127.0.0.1:9/?k={KEY}"}))
    api.script(path(3), Scripted(200, {"data": {**audio_response(3)["data"], "summary": f"echo {KEY}"}}))
    api.script(path(4), Scripted(200, audio_response(4), headers={"X-Credits-Used": KEY, "X-Credits-Remaining": KEY}))
    api.script(path(5), Scripted(200, json.dumps(audio_response(5)).replace('"Audio",', f'"Audio", "name": "{_escaped(KEY)}",')))
    api.script(path(6), Scripted(400, '{"errors": [{"code": "bad", "message": "your key %s is bad"}], "data": null}'
                                 % _escaped(KEY)))
    api.script(path(7), Scripted(302, "", headers={"Location": f"http://127.0.0.1:9/?k={_percent(KEY).upper()}"}))
    r = CliRunner(env={"KONBINI_API_KEY": KEY, "KONBINI_API_URL": api.url}).invoke(
        main, ["--store", str(store_dir), "fetch", *ids(7, 1)])
    spellings = [KEY, _escaped(KEY), _escaped(KEY).lower(), _percent(KEY), _percent(KEY).upper()]
    assert not [k for k in spellings if k in r.stderr] and "REDACTED" in r.stderr, r.stderr
    out = CliRunner().invoke(main, ["--store", str(store_dir), "export", "-f", "nq"])
    assert not [k for k in spellings if k in out.stdout]
    for f in store_dir.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            data = gzip.decompress(data) if f.name.endswith(".gz") else data
            assert not [k for k in spellings if k.encode() in data], f


def test_a_key_too_short_to_be_real_leaves_answers_alone(tmp_path: Path) -> None:
    """A key of a few characters would match ordinary text: answers are not rewritten for it."""
    with FakeKonbiniAPI(api_key="k") as short:
        with open_store(tmp_path / "s") as store:
            report = fetch(store, KonbiniClient("k", base_url=short.url, backoff=0.001, timeout=(2, 2)), [audio_id(1)])
            assert report.fetched == 1 and not report.failed
            assert "REDACTED" not in "".join(r.body for r in Archive(tmp_path / "s" / "archive").records())


def test_an_interim_answer_is_not_taken_for_the_final_one(store: Any) -> None:
    """``103 Early Hints`` before the 200, on a kept-alive connection: each answer goes to its request."""
    bodies = {audio_id(i): json.dumps(audio_response(i)).encode() for i in (1, 2)}

    def serve(conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                aid = head.split(b" ")[1].decode().rsplit("/", 1)[-1]
                conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n")
                time.sleep(0.2)
                body = bodies[aid]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Credits-Used: 1\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        report = fetch(store, client_for(f"http://127.0.0.1:{listener.getsockname()[1]}"), ids(2, 1), concurrency=1)
    finally:
        listener.close()
    assert (report.fetched, len(report.failed), report.credits_used) == (2, 0, 2)
    assert store.stats().audios == 2


@pytest.mark.parametrize("header,counted", [("0", 1), ("1000", 1), ("1", 1)])
def test_an_answer_costs_one_credit_whatever_its_header_says(store: Any, client: KonbiniClient, api: FakeKonbiniAPI,
                                                            header: str, counted: int) -> None:
    api.script(path(1), Scripted(200, audio_response(1), headers={"X-Credits-Used": header}))
    report = fetch(store, client, [audio_id(1)])
    assert report.credits_used == counted == store.stats().credits_spent


@pytest.mark.parametrize("answer", [
    Scripted(404, {"errors": [{"code": "not_found", "message": "x"}], "data": None}, headers={"X-Credits-Used": "0"}),
    Scripted(404, {"errors": [{"code": "not_found", "message": "x"}]}),
], ids=["unbilled", "no data member"])
def test_a_not_found_that_is_not_the_apis_billed_envelope_is_asked_again(
        store: Any, client: KonbiniClient, api: FakeKonbiniAPI, answer: Scripted) -> None:
    api.script(path(1), answer)
    report = fetch(store, client, [audio_id(1)])
    assert report.not_found == 0 and f"audio:{audio_id(1)}" not in store.fetch_ledger()


def test_a_dry_run_with_refresh_says_what_the_run_spends(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    fetch(store, client, [audio_id(1)], videos=True, max_pages=3)
    plan = fetch(store, None, [audio_id(1)], videos=True, max_pages=3, refresh=True, dry_run=True)
    api.reset()
    fetch(store, client, [audio_id(1)], videos=True, max_pages=3, refresh=True)
    assert plan.planned == api.count() == 4


def test_a_video_listed_twice_with_two_counts_is_one_point(store: Any, client: KonbiniClient,
                                                           api: FakeKonbiniAPI) -> None:
    """The response says both counts (both are kept, as every value an answer holds); the series
    has one point for that observation, the larger count."""
    page = videos_page(1, 0, per_page=2, pages=1)
    twin = dict(page["data"]["orderedItems"][0])
    twin["viewCount"] = page["data"]["orderedItems"][0]["viewCount"] + 1000
    page["data"]["orderedItems"].append(twin)
    api.script(path(1) + "/videos", Scripted(200, page))
    fetch(store, client, [audio_id(1)], videos=True)
    rows = store.query("SELECT ?v WHERE { <%s> <https://konbiniapi.com/ns/social#viewCount> ?v }" % twin["id"])
    assert sorted(r["v"] for r in rows.records()) == [twin["viewCount"] - 1000, twin["viewCount"]]
    points = store.run_named("history", {"entity": twin["id"]}).records()
    assert [p["value"] for p in points if p["counter"].endswith("viewCount")] == [twin["viewCount"]]


@pytest.mark.parametrize("cursor", ["\ud800", "x" * 100_000, "a\nb"])
def test_a_next_cursor_that_cannot_be_asked_for_ends_the_chain_in_one_line(
        store: Any, client: KonbiniClient, api: FakeKonbiniAPI, cursor: str) -> None:
    page = videos_page(1, 0, per_page=2, pages=3)
    page["data"]["nextCursor"] = cursor
    api.script(path(1) + "/videos", Scripted(200, json.dumps(page)))
    report = fetch(store, client, [audio_id(1)], videos=True, max_pages=3)
    assert api.count() == 2  # the audio and its first page: no page is asked for with that cursor
    assert report.failed and all(len(str(e)) < 400 for e in report.failed)


def test_ids_written_with_leading_zeros_are_one_audio(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    report = fetch(store, client, [audio_id(1), "000" + audio_id(1)])
    assert report.fetched == 1 and api.count() == 1


def test_gzip_with_bytes_after_its_end_is_refused(store: Any, client: KonbiniClient, api: FakeKonbiniAPI) -> None:
    body = gzip.compress(json.dumps(audio_response(1)).encode()) + b"trailing garbage"
    api.script(path(1), Scripted(200, body, headers={"Content-Encoding": "gzip"}))
    report = fetch(store, client, [audio_id(1)])
    assert len(report.failed) == 1 and "follow" in str(report.failed[0])


@pytest.mark.parametrize("key", ["clé-sécrète", " spaced ", "line\nbreak"])
def test_a_key_a_header_cannot_carry_is_one_line(key: str, api: FakeKonbiniAPI, tmp_path: Path) -> None:
    r = CliRunner(env={"KONBINI_API_KEY": key, "KONBINI_API_URL": api.url}).invoke(
        main, ["--store", str(tmp_path / "s"), "fetch", audio_id(1)])
    assert r.exit_code == 3 and "Traceback" not in r.stderr and api.count() == 0, r.stderr


def test_an_archive_that_is_a_file_costs_no_paid_answer(store_dir: Path, api: FakeKonbiniAPI) -> None:
    with open_store(store_dir) as store:
        fetch(store, client_for(api.url), [audio_id(1)])
    import shutil

    shutil.rmtree(store_dir / "archive")
    (store_dir / "archive").write_text("not a directory")
    r = CliRunner(env={"KONBINI_API_KEY": KEY, "KONBINI_API_URL": api.url}).invoke(
        main, ["--store", str(store_dir), "fetch", audio_id(2)])
    assert r.exit_code == 1 and "Traceback" not in r.stderr, r.stderr


def test_an_api_url_with_credentials_is_refused_before_anything_is_sent(api: FakeKonbiniAPI, tmp_path: Path) -> None:
    """requests would send them as Basic authorization in place of the key: the API would say 401."""
    netloc = api.url.split("://", 1)[1]
    r = cli(tmp_path / "s", audio_id(1), url=f"http://user:secret@{netloc}")
    assert r.exit_code == 2 and "credentials" in r.stderr and "secret" not in r.stderr, r.stderr
    assert api.count() == 0


def _spellings(key: str) -> dict[str, str]:
    import base64
    import unicodedata

    percent = "".join(f"%{b:02X}" for b in key.encode())
    return {
        "percent-encoding JSON-escaped": percent.replace("%", "\\u0025"),
        "escapes escaped": "".join(f"\\\\u{ord(c):04x}" for c in key),
        "base64": base64.b64encode(key.encode()).decode(),
        "base64 of the header": base64.b64encode(f"Bearer {key}".encode()).decode(),
        "HTML entities": "".join(f"&#{ord(c)};" for c in key),
        "fullwidth": "".join(chr(ord(c) + 0xFEE0) if 0x21 <= ord(c) <= 0x7E else c for c in key),
        "zero-width spaces": "\\u200b".join(key),
        "upper case": key.upper(),
        "percent-encoded twice": percent.replace("%", "%25"),
        "\\x escapes": "".join(f"\\\\x{ord(c):02x}" for c in key),
        "hex": key.encode().hex(),
        "hex upper case": "0A" + key.encode().hex().upper(),
        "base32": base64.b32encode(key.encode()).decode(),
        "base32 at an offset": base64.b32encode(b"xyz" + key.encode()).decode(),
        "spaced apart": " ".join(key),
        "dashes between": "-".join(key),
        "dots and spaces": ". ".join(key.upper()),
        "em dashes between": "\u2014".join(key),
        "bullets and no-break spaces": "\u2022\u00a0".join(key),
        "hex with colons": ":".join(f"{b:02x}" for b in key.encode()),
        "base64 across lines": "\\n".join(base64.b64encode(f"user: {key}".encode()).decode()[i:i + 8] for i in range(0, 40, 8)),
        "combining marks": "".join(c + "\u0301" for c in key),
        "Cyrillic look-alikes": key.translate(str.maketrans("aeopcxyisk", "аеорсхуіѕк")),
        "Greek look-alikes": key.translate(str.maketrans("aoiktv", "αοικτν")),
        "right-to-left override, reversed": "\u202e" + key[::-1] + "\u202c",
        "minus signs between": "\u2212".join(key),
        "katakana middle dots between": "\u30fb".join(key),
        "emoji between": "\U0001f511".join(key),
        "0x list": ",".join(f"0x{ord(c):02x}" for c in key),
        "U+ code points": " ".join(f"U+{ord(c):04X}" for c in key),
        "\\u{} escapes": "".join(f"\\\\u{{{ord(c):x}}}" for c in key),
        "\\U escapes": "".join(f"\\\\U{ord(c):08x}" for c in key),
        "octal escapes": "".join(f"\\\\{ord(c):03o}" for c in key),
        "HTML entities twice": "".join(f"&amp;#{ord(c)};" for c in key),
        "percent-encoded JSON escapes": "".join(f"%5Cu{ord(c):04x}" for c in key),
        "0x with eight digits": ",".join(f"0x{ord(c):08x}" for c in key),
        "0x without separators": "".join(f"0x{ord(c):02x}" for c in key),
        "U+ percent-encoded": " ".join(f"U%2B{ord(c):04X}" for c in key),
        "Perl \\x{} escapes": "".join(f"\\\\x{{{ord(c):x}}}" for c in key),
        "Java \\uu escapes": "".join(f"\\\\uu{ord(c):04x}" for c in key),
        "JavaScript %u escapes": "".join(f"%u{ord(c):04X}" for c in key),
        "CSS escapes of six digits": "".join(f"\\\\{ord(c):06x}" for c in key),
        "Python \\N{} escapes": "".join("\\\\N{" + unicodedata.name(c) + "}" for c in key),
        "override as an entity, reversed": "&#x202E;" + key[::-1],
        "override escaped, reversed": "\\\\u202e" + key[::-1],
        "override percent-encoded, reversed": "%E2%80%AE" + key[::-1],
        "tatweel between": "\u0640".join(key),
        "prolonged sound marks between": "\u30fc".join(key),
        "tags between": "".join(f"<span>{c}</span>" for c in key),
        "fullwidth escapes": "".join(f"\\\\u{ord(c):04x}" for c in key).translate(_FULLWIDTH),
        "fullwidth percent-encoding": percent.translate(_FULLWIDTH),
        "fullwidth base64": base64.b64encode(key.encode()).decode().translate(_FULLWIDTH),
        "fullwidth hex": key.encode().hex().translate(_FULLWIDTH),
        "hex of UTF-16": key.encode("utf-16-be").hex(),
        "UTF-16 code points spaced": " ".join(f"{ord(c):04X}" for c in key),
        "entities without semicolons": "".join(f"&#x{ord(c):x}" for c in key),
    }


def test_a_code_point_a_string_ends_with_is_not_read_on_into_the_next_string() -> None:
    """An answer's strings are looked at together (a key split across two is found): ``U+0063``
    then the key ``duration`` is not the code point ``U+0063D``."""
    from konbini_ld.sources.konbini.client import KonbiniClient

    client = KonbiniClient(KEY, base_url="http://127.0.0.1:1")
    spelled = " ".join(f"U+{ord(c):04X}" for c in KEY)
    assert KEY.endswith("c")
    answer = client._scrub_answer(json.dumps({"data": {"type": "Audio", "name": spelled, "duration": 1}}))
    assert spelled not in answer and json.loads(answer)["data"]["duration"] == 1, answer


#: ASCII made fullwidth (＼ｕ００６ｂ, ％６Ｂ).
_FULLWIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}


@pytest.mark.parametrize("spelling", sorted(_spellings(KEY)))
def test_the_key_in_a_decodable_spelling_is_never_kept(store_dir: Path, api: FakeKonbiniAPI, spelling: str) -> None:
    """A reader who decodes what a server sent (JSON, percent-encoding, entities, base64, Unicode
    forms, case) must not get the key back from anything kept or shown."""
    text = _spellings(KEY)[spelling]
    raw = json.dumps(audio_response(1)).replace('"Audio",', f'"Audio", "album": "{text}",', 1)
    api.script(path(1), Scripted(200, raw))
    split = KEY[: len(KEY) // 2], KEY[len(KEY) // 2:]
    api.script(path(2), Scripted(200, audio_response(2), headers={"X-Credits-Used": split[0],
                                                                   "X-Credits-Remaining": split[1]}))
    r = CliRunner(env={"KONBINI_API_KEY": KEY, "KONBINI_API_URL": api.url}).invoke(
        main, ["--store", str(store_dir), "fetch", *ids(2, 1)])
    out = CliRunner().invoke(main, ["--store", str(store_dir), "export", "-f", "nq"]).stdout
    kept = {"export": out, "stderr": r.stderr}
    for f in store_dir.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            kept[str(f)] = (gzip.decompress(data) if f.name.endswith(".gz") else data).decode("utf-8", "replace")
    decoded = json.loads(f'"{text}"')
    for name, where in kept.items():
        assert KEY not in where and decoded not in where and split[1] not in where, (spelling, name)


def test_a_credit_header_sent_twice_counts_once() -> None:
    """Two identical headers arrive joined ("1, 1"): one credit, not an unreadable value."""
    from types import SimpleNamespace

    from requests.structures import CaseInsensitiveDict

    from konbini_ld.sources.konbini.client import _credit_headers

    answer = SimpleNamespace(headers=CaseInsensitiveDict({"X-Credits-Used": "1, 1", "X-Credits-Remaining": "9, 9"}))
    assert _credit_headers(answer) == (1, 9, None)  # type: ignore[arg-type]
    answer = SimpleNamespace(headers=CaseInsensitiveDict({"X-Credits-Used": "1, 2"}))
    assert _credit_headers(answer)[0] is None  # type: ignore[arg-type]


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not ended (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def _cmdline(pid: int) -> bytes:
    """A process's command line; empty once it has ended (it may end as it is read)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in "ZX":
            found.append(int(stat.parent.name))
    return found


def _fetch_in_session(tmp_path: Path, api: FakeKonbiniAPI, audios: int, store: str, *options: str
                      ) -> subprocess.Popen[str]:
    """``fetch --videos`` of ``audios`` audios in a process group of its own (as a terminal or a
    service manager starts it), stderr piped."""
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids(audios)) + "\n")
    env = {**os.environ, "KONBINI_API_KEY": KEY, "KONBINI_API_URL": api.url}
    return subprocess.Popen([sys.executable, "-m", "konbini_ld", "--store", str(tmp_path / store), "fetch",
                             "--ids-file", str(ids_file), "--videos", *options],
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def test_a_stopped_preparing_process_neither_holds_the_run_nor_outlives_it(tmp_path: Path, api: FakeKonbiniAPI) -> None:
    """A worker frozen (SIGSTOP) while it prepares: the graph waits for it, but a SIGTERM still
    ends the run within seconds with its summary, and the frozen worker does not outlive it."""
    api.latency = 0.02
    proc = _fetch_in_session(tmp_path, api, 150, "store", "--workers", "1", "--batch-size", "5")
    stopped: list[int] = []
    try:
        while proc.poll() is None and len(api.requests) < 40:
            time.sleep(0.01)
        workers = [c for c in _children(proc.pid) if b"multiprocessing" in Path(f"/proc/{c}/cmdline").read_bytes()
                   and b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert workers, "no preparing process"
        for w in workers:
            os.kill(w, signal.SIGSTOP)
            stopped.append(w)
        time.sleep(1.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        for w in stopped:
            try:
                os.kill(w, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143 and "Traceback" not in err and "Exception ignored" not in err, err
    assert took < 15 and "credits used" in err, (took, err)
    time.sleep(0.2)
    assert not [w for w in stopped if _running(w)]
    r = CliRunner().invoke(main, ["--store", str(tmp_path / "store"), "stats", "--json"])
    stats = json.loads(r.stdout)
    assert stats["credits_spent"] == len(api.requests)


def test_ctrl_c_reaching_preparing_processes_as_they_start_prints_no_traceback(tmp_path: Path, api: FakeKonbiniAPI
                                                                               ) -> None:
    """A terminal's Ctrl-C reaches the whole process group: preparing processes still starting
    (importing, unpickling) leave it to the run, which ends with its summary."""
    api.latency = 0.05
    for attempt in range(3):
        proc = _fetch_in_session(tmp_path, api, 40, f"store{attempt}", "--workers", "3")
        try:
            while proc.poll() is None and not any(b"multiprocessing" in _cmdline(c) for c in _children(proc.pid)):
                time.sleep(0.002)
            time.sleep(0.05 * attempt)
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode in (0, 130) and "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_sigterm_to_the_whole_group_leaves_the_preparing_processes_to_the_run(tmp_path: Path, api: FakeKonbiniAPI
                                                                              ) -> None:
    """A service manager's stop reaches every process of the group: the preparing processes leave
    it to the run, which ends with its summary and nothing else on stderr (no leaked semaphores)."""
    api.latency = 0.02
    for attempt in range(2):
        proc = _fetch_in_session(tmp_path, api, 120, f"s{attempt}", "--workers", "3", "--batch-size", "200")
        try:
            while proc.poll() is None and len(api.requests) < 60 * (attempt + 1):
                time.sleep(0.01)
            os.killpg(proc.pid, signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 143 and "Warning" not in err and "Traceback" not in err, err
        assert "credits used" in err


def test_answers_kept_out_of_a_full_store_disk_are_adopted_not_bought_again(store_dir: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's disk is full: neither the archive nor its unarchived/ folder can take paid
    answers, which go to the temporary directory; the next writer on this machine adopts them."""
    import tempfile

    from konbini_ld.model import Response

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with open_store(store_dir) as store:
        store.load([audio_response(0)])
        (store_dir / "unarchived").write_text("")  # (unarchived/ cannot be made: as good as a full disk)
        where = store.spill([Response(json.dumps(audio_response(i)), f"https://api.konbiniapi.com{path(i)}", status=200,
                                      key=f"audio:{audio_id(i)}", credits_used=1, observed_at="2026-11-01T00:00:00Z")
                             for i in (1, 2)])
    assert tmp_path / "tmp" in where.parents
    (store_dir / "unarchived").unlink()  # the disk is fixed
    with open_store(store_dir) as store:  # adopts them: in the archive, in the graph, never bought again
        assert store.stats().audios == 3
        assert {e for e in store.fetch_ledger()} >= {f"audio:{audio_id(i)}" for i in (1, 2)}
    assert not list(where.parent.glob("unarchived-*.jsonl"))


def test_answers_in_someone_elses_spill_folder_are_not_adopted(store_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared temporary directory: a folder of that name anyone may write is not trusted."""
    import tempfile

    from konbini_ld.store.log.archive import Archive

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with open_store(store_dir) as store:
        store.load([audio_response(0)])
    spare = Archive(store_dir / "archive").spare_spill_dir
    spare.mkdir()
    spare.chmod(0o777)
    (spare / "unarchived-planted.jsonl").write_text("not a record\n")
    with open_store(store_dir) as store:
        assert store.stats().audios == 1
    assert (spare / "unarchived-planted.jsonl").exists()


_ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(['"', "\\", "\\u0073", "\U0001f525", ""])
_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _ANY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_ANY_TEXT, children, max_size=4),
    max_leaves=20,
)


def _strings_of(value: Any) -> str:
    """Every string of a decoded JSON value, keys included, in document order (as json writes it),
    each ended by a line break."""
    if isinstance(value, str):
        return value + "\n"
    if isinstance(value, list):
        return "".join(map(_strings_of, value))
    if isinstance(value, dict):
        return "".join(_strings_of(k) + _strings_of(v) for k, v in value.items())
    return ""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_ANY_JSON, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]), part=st.sampled_from([4, 16, 1 << 20]))
def test_the_strings_of_an_answer_are_read_from_its_text_as_json_decodes_them(
        value: Any, ascii_only: bool, indent: int | None, part: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key is looked for in an answer's strings read from its text a part at a time (a page of
    thousands of videos is never held as a document beside it): they are what JSON decodes, in
    order, one line each, whatever the escapes and wherever a part ends."""
    from konbini_ld.sources.konbini import redaction

    monkeypatch.setattr(redaction, "_PART", part)
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    odd: list[bool] = []
    assert "".join(redaction.json_strings(text, odd)) == _strings_of(value)
    assert not odd


@pytest.mark.parametrize("text", ['{"a": sk-1}', '{"a": "b', '"a" "b" x', "<html>sk</html>", '{"a": "\\q"}'])
def test_text_that_is_no_json_is_told_apart(text: str) -> None:
    from konbini_ld.sources.konbini.redaction import json_strings

    odd: list[bool] = []
    list(json_strings(text, odd))
    assert odd


def test_the_key_across_the_parts_of_a_large_answer_is_found_wherever_they_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key spelled across two strings (a spelling with zero-width spaces, half in one, half in the
    next) is found wherever the answer's parts end."""
    from konbini_ld.sources.konbini import redaction

    monkeypatch.setattr(redaction, "_PART", 64)
    monkeypatch.setattr(redaction, "_OVERLAP", 48)
    key = KEY.lower()
    spelled = "\u200b".join(KEY.upper())
    for at in range(0, 160):
        cut = len(spelled) // 2
        text = json.dumps({"pad": "x" * at, "a": [spelled[:cut], spelled[cut:], "after"]}, ensure_ascii=at % 2 == 0)
        assert redaction.reveals_across(redaction.json_strings(text, []), key, ()), at
    text = json.dumps({"pad": "x" * 100, "a": "nothing here", "b": "y" * 300})
    assert not redaction.reveals_across(redaction.json_strings(text, []), key, ())


def test_the_key_in_an_answer_of_megabytes_is_never_kept(store_dir: Path, api: FakeKonbiniAPI) -> None:
    """Past a megabyte (looked at a part at a time), the key in another spelling, deep in a page of
    thousands of videos with emoji, is still withheld."""
    page = videos_page(1, 0, per_page=1500)
    spelled = "".join(f"&#{ord(c)};" for c in KEY)
    page["data"]["orderedItems"][1100]["content"] += spelled
    assert len(json.dumps(page)) > 2 << 20
    api.script(f"/v1/tiktok/audios/{audio_id(1)}/videos", Scripted(200, page))
    r = CliRunner(env={"KONBINI_API_KEY": KEY, "KONBINI_API_URL": api.url}).invoke(
        main, ["--store", str(store_dir), "fetch", audio_id(1), "--videos"])
    assert r.exit_code in (0, 1), r.stderr
    bodies = "".join(rec.body for rec in Archive(store_dir / "archive").records())
    assert spelled not in bodies and "REDACTED" in bodies


def test_the_key_in_the_api_url_is_never_kept_or_shown(tmp_path: Path) -> None:
    """A gateway that takes the key in its path (``--api-url https://gw/KEY``, ``…/gw;key=KEY``):
    the URL the archive, the graph's provenance and messages say has it taken out."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Gateway(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            asked = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
            body = (json.dumps(audio_response(1)) if asked == audio_id(1) else
                    '{"errors": [{"code": "bad", "message": "no"}], "data": null}').encode()
            self.send_response(200 if asked == audio_id(1) else 500)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Credits-Used", "1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for n, url in enumerate([f"http://127.0.0.1:{server.server_address[1]}/{KEY}",
                                 f"http://127.0.0.1:{server.server_address[1]}/gw;key={KEY}"]):
            where = tmp_path / f"s{n}"
            r = CliRunner(env={"KONBINI_API_KEY": KEY, "KONBINI_API_URL": url}).invoke(
                main, ["--store", str(where), "fetch", "--retries", "1", audio_id(1), audio_id(2)])
            assert KEY not in r.stderr + r.stdout and "REDACTED" in r.stderr, r.stderr
            out = CliRunner().invoke(main, ["--store", str(where), "export", "-f", "nq"])
            assert audio_id(1) in out.stdout and KEY not in out.stdout
            for f in where.rglob("*"):
                if f.is_file():
                    data = f.read_bytes()
                    assert KEY.encode() not in (gzip.decompress(data) if f.name.endswith(".gz") else data), f
            assert KEY not in repr(KonbiniClient(KEY, base_url=url))
    finally:
        server.shutdown()
        server.server_close()
