"""Does the writer keep up with the network? ``konbini-ld fetch --videos`` of N audios (each audio
and its first page of 30 videos) against the loopback fake API at 200 ms a request and the default
concurrency: the command's wall time against the moment the API sent its last response.

Day 1 fetches into an empty store; day 2 refreshes the same audios (``--refresh-older-than 0s``)
with every counter moved on, so each page is an upsert of 30 videos and their history points.

    python bench/run.py --only keepup --keepup 300
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

KONBINI = [sys.executable, "-m", "konbini_ld"]


def bench_keepup(count: int, latency: float, record: Callable[..., None], run_measured: Callable[..., Any],
                 runs: int = 3) -> None:
    """``runs`` runs of both days, each into a store of its own: the median ratio, and the range
    (one run's tail swings by half a second on this shared machine)."""
    from konbini_ld.sources.konbini.fakeapi import FakeKonbiniAPI, audio_id

    work = Path(tempfile.mkdtemp(prefix="kld-keepup-"))
    ids = work / "ids.txt"
    ids.write_text("".join(audio_id(i) + "\n" for i in range(count)))
    measured: dict[int, list[tuple[float, float, int, int]]] = {0: [], 1: []}
    with FakeKonbiniAPI(api_key="bench-key", latency=latency, audios=count) as api:
        sent: list[float] = []
        answer = api.answer

        def noted(*args: Any, **kw: Any) -> Any:
            try:
                return answer(*args, **kw)
            finally:
                sent.append(time.monotonic())

        api.answer = noted  # type: ignore[method-assign]
        env = dict(os.environ, KONBINI_API_KEY="bench-key", KONBINI_API_URL=api.url)
        for run in range(runs):
            store = work / f"store-{run}"
            for day, extra in ((0, []), (1, ["--refresh-older-than", "0s"])):
                api.reset()
                api.day = day
                sent.clear()
                started = time.monotonic()
                _, rss, _ = run_measured([*KONBINI, "-q", "--store", str(store), "fetch", "--ids-file", str(ids),
                                          "--videos", *extra], env=env)
                ended = time.monotonic() - started
                measured[day].append((ended, max(sent) - started, len(sent), rss))
            shutil.rmtree(store, ignore_errors=True)
    for day, rows in measured.items():
        rows.sort(key=lambda r: r[0] / r[1])
        ended, last, requests, rss = rows[len(rows) // 2]
        ratios = [r[0] / r[1] for r in rows]
        what = "day 1, an empty store" if day == 0 else "day 2, every counter moved on (upserts)"
        record("keepup", f"fetch --videos of {count} audios @ {latency * 1000:.0f} ms, {what}", f"{ended:.1f} s",
               f"median of {runs} runs: its last response was sent at {last:.1f} s, the command ended "
               f"{ended - last:.1f} s later = {ended / last:.2f}x (target 1.10x; runs {min(ratios):.2f}x to "
               f"{max(ratios):.2f}x); {requests} requests, peak {max(r[3] for r in rows)} MiB, process start included")
    shutil.rmtree(work, ignore_errors=True)
