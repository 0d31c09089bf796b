"""Faults while a run is under way, at small scale: fetch killed or stopped by a signal, and
readers (queries, ``serve``, dry runs) beside a writer.

``bench/faults.py`` runs the same injections at scale and prints a table.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import SEED, kill_mid_work
from test_faults import _spawn, cli, corpus_file

from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.store.log.archive import Archive


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus_file(tmp_path_factory)


# -- kills during fetch: nothing received is bought twice --------------------------------------


@pytest.fixture(scope="module")
def api() -> Any:
    from konbini_ld.sources.konbini.fakeapi import FakeKonbiniAPI

    with FakeKonbiniAPI(api_key="k-faults") as server:
        yield server


def _fetch_proc(store: Path, api: Any, ids_file: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "KONBINI_API_KEY": "k-faults", "KONBINI_API_URL": api.url}
    return subprocess.Popen(
        [sys.executable, "-m", "konbini_ld", "--store", str(store), "fetch", "--ids-file", str(ids_file),
         "--concurrency", "16", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )


def _archived_keys(store: Path) -> list[str]:
    return [r.key for r in Archive(store / "archive").records() if r.key]


def _ids_file(tmp_path: Path, count: int) -> Path:
    """The first ``count`` audio ids the fake API knows, one a line."""
    from konbini_ld.sources.konbini.fakeapi import audio_id

    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(audio_id(i) for i in range(count)) + "\n")
    return ids


def _requested_keys(api: Any) -> list[str]:
    out = []
    for seen in api.requests:
        parts = seen.path.split("/")
        if seen.path.endswith("/videos"):
            out.append(f"videos:{parts[4]}:{(seen.query.get('cursor') or ['0'])[0]}")
        else:
            out.append(f"audio:{parts[4]}")
    return out


def test_fetch_killed_at_random_points_never_buys_a_received_response_twice(api: Any, tmp_path: Path) -> None:
    ids = _ids_file(tmp_path, 120)
    store = tmp_path / "store"
    api.reset()
    api.latency = 0.02
    rng = random.Random(11)
    try:
        for _ in range(3):
            before = set(_archived_keys(store)) if (store / "archive").exists() else set()
            api.requests.clear()
            proc = _fetch_proc(store, api, ids, "--videos")
            # (within 0.4 s of its first request: a run whose graph keeps up with the network
            # ends soon after its last answer, and later runs have less left to buy)
            kill_mid_work(proc, lambda: len(api.requests) > 0, rng.uniform(0.05, 0.4), what="fetch")
            proc.communicate()
            rebought = [k for k in _requested_keys(api) if k in before]
            assert rebought == []
        before = set(_archived_keys(store))
        api.requests.clear()
        proc = _fetch_proc(store, api, ids, "--videos")
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert [k for k in _requested_keys(api) if k in before] == []
        keys = _archived_keys(store)
        assert len(keys) == len(set(keys)) == 240  # every audio and its first page, each bought once
    finally:
        api.latency = 0.0


def test_a_fetch_killed_mid_run_then_finished_has_the_points_a_rebuild_has(api: Any, tmp_path: Path) -> None:
    """``kill -9`` leaves answers archived and not written (and some written without their mark);
    the next writer replays them beside what the killed run wrote: every counter still has one
    point a run, and the store is what a rebuild of the same archive gives."""
    ids = _ids_file(tmp_path, 60)
    store = tmp_path / "store"
    api.reset()
    api.latency = 0.02
    try:
        proc = _fetch_proc(store, api, ids, "--videos", "--batch-size", "5")
        kill_mid_work(proc, lambda: len(api.requests) > 20, 0.1, what="fetch")
        proc.communicate()
        proc = _fetch_proc(store, api, ids, "--videos", "--batch-size", "5")  # (replays, then buys the rest)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    finally:
        api.latency = 0.0
    with open_store(store) as s:
        finished = s.stats()
        s.rebuild()
        rebuilt = s.stats()
    assert finished.responses == 120 and finished.unapplied == 0
    assert (finished.points, finished.triples) == (rebuilt.points, rebuilt.triples)


def test_sigterm_stops_fetch_like_ctrl_c_and_keeps_every_answer(api: Any, tmp_path: Path) -> None:
    ids = _ids_file(tmp_path, 800)
    store = tmp_path / "store"
    api.reset()
    api.latency = 0.05
    try:
        proc = _fetch_proc(store, api, ids)
        deadline = time.monotonic() + 60
        while len(api.requests) < 50 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # (the signal lands mid-run, however slowly the process starts)
        assert proc.poll() is None and len(api.requests) >= 50
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
        assert proc.returncode == 143, err
        assert "stopped: terminated" in err and "Traceback" not in err
        answered = len(api.requests)
        keys = _archived_keys(store)
        assert len(keys) == answered  # every answer the API sent was archived
        assert took < 10, took
        api.requests.clear()
        proc = _fetch_proc(store, api, ids)
        proc.communicate(timeout=120)
        assert [k for k in _requested_keys(api) if k in set(keys)] == []
    finally:
        api.latency = 0.0


# -- readers beside a writer ---------------------------------------------------------------------


def test_queries_and_serve_beside_a_writer_never_fail(corpus: Path, tmp_path: Path) -> None:
    """A writer's compactions delete files under read-only views: readers retry on a fresh view."""
    import requests
    from test_server import Served

    store = tmp_path / "store"
    assert cli(store, "load", str(SEED)).exit_code == 0
    served = Served(store)
    failures: list[str] = []
    done = 0
    try:
        for round_ in range(2):
            writer = _spawn(store, "load", "--batch-size", "50", str(corpus))
            while writer.poll() is None:
                r = CliRunner().invoke(main, ["--store", str(store), "query", "top-audios", "-f", "csv"])
                if r.exit_code != 0:
                    failures.append(r.stderr)
                h = requests.get(served.url + "/queries/creators", headers={"Accept": "text/csv"}, timeout=30)
                if h.status_code != 200:
                    failures.append(h.text)
                done += 2
            assert writer.returncode == 0
            if round_ == 0:
                assert cli(store, "rebuild").exit_code == 0
    finally:
        served.stop()
    assert done > 20 and failures == []


def test_serve_and_a_dry_run_start_while_another_process_writes(tmp_path: Path) -> None:
    """The writer applies what an interrupted run left: a reader that would rather have done it
    opens the store read-only beside it instead of refusing to start."""
    import requests
    from test_server import Served


    store = tmp_path / "store"
    assert cli(store, "load", str(SEED)).exit_code == 0
    with open_store(store):  # (this process holds the writer's lock)
        served = Served(store)
        try:
            r = requests.get(served.url + "/queries/top-audios", headers={"Accept": "text/csv"}, timeout=30)
            assert r.status_code == 200 and "khaby" in r.text
        finally:
            served.stop()
        dry = CliRunner(env={"KONBINI_API_KEY": "sk-unused-12345678"}).invoke(
            main, ["--store", str(store), "fetch", "--dry-run", "7611615657754381599"])
        assert dry.exit_code == 0 and "would make" in dry.stderr, dry.stderr
        load = cli(store, "load", str(SEED))
        assert load.exit_code == 1 and "being written by another process" in load.stderr


def test_a_view_opened_beside_a_writer_never_reads_a_batch_half_written(tmp_path: Path) -> None:
    """A batch's removes and inserts are several writes: a view opened between them would see an
    audio with no value of a counter, or with two. Every view is the graph between two batches."""
    from konbini_ld.sources.konbini.corpus import corpus_lines

    audios, days = 1500, 8
    lines = list(corpus_lines(audios, observations=days))
    first, rest = tmp_path / "day0.jsonl", tmp_path / "later.jsonl"
    first.write_text("".join(lines[:audios]), encoding="utf-8")
    rest.write_text("".join(lines[audios:]), encoding="utf-8")
    store = tmp_path / "store"
    assert cli(store, "load", str(first)).exit_code == 0
    torn_query = """
        PREFIX as: <https://www.w3.org/ns/activitystreams#>
        PREFIX ks: <https://konbiniapi.com/ns/social#>
        SELECT (COUNT(*) AS ?torn) WHERE {
          { SELECT ?a (COUNT(?v) AS ?n) WHERE { ?a a as:Audio OPTIONAL { ?a ks:videoCount ?v } } GROUP BY ?a }
          FILTER (?n != 1)
        }"""
    writer = _spawn(store, "load", "--batch-size", str(audios), str(rest))  # a batch a day: every counter moves
    views, torn = 0, []
    while writer.poll() is None:
        with open_store(store, read_only=True) as view:  # (a view is the graph as it was when opened)
            n = int(view.query(torn_query).records()[0]["torn"])
        views += 1
        if n:
            torn.append(n)
    assert writer.returncode == 0
    assert views >= 10, views
    assert torn == [], f"{len(torn)} of {views} views read a batch half written ({torn[:5]} audios torn)"
