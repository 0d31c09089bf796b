"""Answers and errors cross threads: none may leave a frame in a reference cycle.

A frame caught in a cycle keeps its callers' variables until the garbage collector breaks the
cycle, on whichever thread runs it then; and pyoxigraph's query answers may only be dropped by
the thread that made them (another prints "Exception ignored … is unsendable" and leaks them).
So a result read in full holds nothing of the engine, and the library's error paths (failed and
refused requests, a write the store rejects, an archive that cannot be written) leave no frame
in a cycle, whatever their caller holds meanwhile.
"""

from __future__ import annotations

import gc
import json
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from konbini_ld import open_store
from konbini_ld.errors import StoreError
from konbini_ld.pipeline import fetch
from konbini_ld.sources.konbini.client import KonbiniClient
from konbini_ld.sources.konbini.fakeapi import FakeKonbiniAPI, Scripted, audio_id
from konbini_ld.store.log.archive import Archive, ArchiveRecord

KEY = "sk-cycles-0d5c3e1b"


@contextmanager
def no_frame_left_in_a_cycle() -> Iterator[None]:
    """Fails if the block leaves cyclic garbage holding a frame of konbini-ld's (or any of the
    engine's objects): the collector is off meanwhile, so what the block leaves is all there."""
    gc.collect()
    gc.disable()
    try:
        yield
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, types.FrameType) and "konbini_ld" in o.f_code.co_filename
                or type(o).__module__.startswith("pyoxigraph")]
        where = sorted({f"{o.f_code.co_filename.rsplit('konbini_ld', 1)[-1]}:{o.f_code.co_name}"
                        if isinstance(o, types.FrameType) else type(o).__name__ for o in left})
        del left
        assert where == [], where
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _dropped_by_another_thread(box: list[Any]) -> None:
    thread = threading.Thread(target=box.clear)
    thread.start()
    thread.join()


@pytest.fixture(scope="module")
def api() -> Any:
    with FakeKonbiniAPI(api_key=KEY, audios=50) as server:
        yield server


@pytest.fixture
def loaded(tmp_path: Path, api: FakeKonbiniAPI) -> Any:
    api.reset(credits=1_000_000)
    with open_store(tmp_path / "store") as store:
        fetch(store, KonbiniClient(KEY, base_url=api.url), [audio_id(i) for i in range(3)])
        yield store


# -- a result read in full holds nothing of the engine ------------------------------------------


@pytest.mark.parametrize("read", ["records", "rows", "json", "csv", "triples", "ask"])
def test_a_result_read_in_full_can_be_dropped_by_another_thread(loaded: Any, read: str) -> None:
    """(pytest fails the test on the unraisable "is unsendable, but is being dropped on another
    thread" the engine's objects raise there.)"""
    if read == "triples":
        result = loaded.query("CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o } LIMIT 5")
        assert len(list(result.triples())) == 5
    elif read == "ask":
        result = loaded.query("ASK { ?s ?p ?o }")
        assert result.boolean is True
    else:
        result = loaded.query("SELECT ?s WHERE { ?s a ?c } LIMIT 5")
        if read == "records":
            assert len(result.records()) == 5
        elif read == "rows":
            assert len(list(result.rows())) == 5
        else:
            out = BytesIO()
            result.write(out, read)
            assert out.getvalue()
    box = [result]
    del result
    _dropped_by_another_thread(box)


@pytest.mark.parametrize("held", ["unread", "partly read"])
def test_a_result_its_caller_left_in_a_cycle_is_dropped_by_its_own_thread(loaded: Any, held: str) -> None:
    """A caller's own reference cycle holding a result it did not read: the collector may break
    it on any thread (here another's, on purpose); the engine's answer waits for its own."""
    from konbini_ld.query import run

    class Holder:
        pass

    gc.disable()  # (nothing collects the cycle before the other thread does)
    try:
        holder = Holder()
        holder.me = holder  # type: ignore[attr-defined]
        holder.result = loaded.query("SELECT ?s WHERE { ?s ?p ?o }")  # type: ignore[attr-defined]
        if held == "partly read":
            holder.rows = holder.result.rows()  # type: ignore[attr-defined]
            next(holder.rows)  # type: ignore[attr-defined]
        del holder
        collector = threading.Thread(target=gc.collect)
        collector.start()
        collector.join()
        assert run._GRAVEYARD  # left for this thread
        assert loaded.query("ASK { ?s ?p ?o }").boolean is True
        assert not run._GRAVEYARD  # and dropped by it at its next query
    finally:
        gc.enable()


def test_a_result_read_on_another_thread_is_refused_not_a_crash(loaded: Any) -> None:
    """Reading the engine's answer from another thread would end the process (pyoxigraph aborts):
    it is refused with an error saying what to do; read in full on its own thread, any may read it."""
    from konbini_ld.errors import QueryError

    result = loaded.query("SELECT ?s WHERE { ?s ?p ?o }")
    refused: list[str] = []

    def read() -> None:
        try:
            result.records()
        except QueryError as exc:
            refused.append(str(exc))

    reader = threading.Thread(target=read)
    reader.start()
    reader.join()
    assert len(refused) == 1 and "thread" in refused[0]
    rows = len(result.records())
    counted: list[int] = []
    reader = threading.Thread(target=lambda: counted.append(len(result.records())))
    reader.start()
    reader.join()
    assert rows > 0 and counted == [rows]


def test_answers_left_to_a_thread_are_dropped_by_it_as_it_ends(loaded: Any) -> None:
    from konbini_ld.query import run

    class Holder:
        pass

    made, release = threading.Event(), threading.Event()

    def worker() -> None:
        holder = Holder()
        holder.me = holder  # type: ignore[attr-defined]
        holder.result = loaded.query("SELECT ?s WHERE { ?s ?p ?o }")  # type: ignore[attr-defined]
        del holder
        made.set()
        release.wait(30)

    gc.disable()
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        assert made.wait(30)
        collector = threading.Thread(target=gc.collect)
        collector.start()
        collector.join()
        assert run._GRAVEYARD  # left to the worker, still running
        release.set()
        thread.join()
        assert not run._GRAVEYARD  # which dropped it as it ended
    finally:
        release.set()
        gc.enable()


# -- the library's error paths leave no frame in a cycle -----------------------------------------


def test_requests_that_fail_in_every_way_leave_no_frame_in_a_cycle(tmp_path: Path, api: FakeKonbiniAPI) -> None:
    api.reset(credits=1_000_000)
    path = "/v1/tiktok/audios/{}".format
    api.script(path(audio_id(1)), *[Scripted(503, {"errors": [{"code": "unavailable"}], "data": None})] * 9)
    api.script(path(audio_id(2)), Scripted(200, "<html>maintenance</html>", content_type="text/html"))
    api.script(path(audio_id(3)), *[Scripted(200, {"data": {"type": "Audio"}}, truncate=True)] * 9)
    api.script(path(audio_id(4)), Scripted(302, "", headers={"Location": "http://127.0.0.1:9/"}))
    client = KonbiniClient(KEY, base_url=api.url, backoff=0.001, max_backoff=0.01, timeout=(2, 2))
    with open_store(tmp_path / "store") as store:
        held = store.query("SELECT ?s WHERE { ?s ?p ?o }")  # (an answer its caller holds meanwhile)
        with no_frame_left_in_a_cycle():
            report = fetch(store, client, [audio_id(i) for i in range(1, 6)] + [audio_id(900)])
            assert report.fetched == 1 and report.not_found == 1 and len(report.failed) == 4, report
            refused = fetch(store, KonbiniClient("sk-wrong", base_url=api.url), [audio_id(7)])
            assert refused.exit_code == 3
            api.reset(credits=0)
            spent = fetch(store, client, [audio_id(8)])
            assert spent.exit_code == 4
        assert held.records() == []


def test_a_write_the_store_rejects_leaves_no_frame_in_a_cycle(tmp_path: Path) -> None:
    from konbini_ld.mapping.prepare import prepare
    from konbini_ld.model import Response

    def observed(i: int, *, defective: bool = False) -> Any:
        body = json.dumps({"data": {"type": "Audio", "id": f"https://www.tiktok.com/music/a-{i}", "name": "n"}})
        p = prepare(Response(body, "-", line=i, observed_at="2026-11-01T00:00:00Z", observed_given=True))
        if defective:  # (a line the store refuses: the batch is written again response by response)
            key = next(iter(p.groups))
            p.groups[key] = p.groups[key] + ['<urn:x> <urn:p> "\ud800" .\n']
        return p

    with open_store(tmp_path / "store") as store:
        with no_frame_left_in_a_cycle():
            store.apply_prepared([observed(1, defective=True), observed(2)], None, behind=True)
            report = store.settle_writes()
            assert report.loaded == -1 and len(report.failed) == 1, report
            written = store.apply_prepared([observed(3, defective=True)], None)
            assert written.loaded == 0 and len(written.failed) == 1
        assert store.stats().audios == 1  # (the response between the two refused ones)


def test_an_archive_that_cannot_be_written_leaves_no_frame_in_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "archive").write_text("a file where the archive's folder should be")
    archive = Archive(tmp_path / "archive")
    record = ArchiveRecord(seq=0, at="2026-11-01T00:00:00Z", source="-", body="{}")
    with no_frame_left_in_a_cycle():
        for _ in range(2):
            try:
                archive.append([record])
            except StoreError:
                pass
            else:
                raise AssertionError("written into a file")


def test_responses_that_do_not_map_leave_no_frame_in_a_cycle(tmp_path: Path) -> None:
    audio = "https://www.tiktok.com/music/a-{}".format
    answers = [{"data": {"type": "Audio", "id": audio(1), "duration": "forever"}},
               {"data": {"type": "Audio", "id": audio(2), "name": "fine"}},
               {"data": {"type": "Audio", "id": audio(3), "@context": "https://elsewhere.example/ctx"}},
               {"data": [[[[]]]]}]
    from konbini_ld.mapping.prepare import prepare
    from konbini_ld.model import Response

    with no_frame_left_in_a_cycle():
        prepared = [prepare(Response(json.dumps(a), "-", line=i)) for i, a in enumerate(answers)]
        assert [p.error is None for p in prepared] == [False, True, False, False]
    with open_store(tmp_path / "store") as store:
        with no_frame_left_in_a_cycle():
            report = store.load(answers)
            assert report.loaded == 1 and len(report.failed) == 3, report

