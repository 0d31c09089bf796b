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


def bench_keepup(count: int, latency: float, record: Callable[..., None], run_measured: Callable[..., Any]) -> None:
    from konbini_ld.sources.konbini.fakeapi import FakeKonbiniAPI, audio_id

    work = Path(tempfile.mkdtemp(prefix="kld-keepup-"))
    store = work / "store"
    ids = work / "ids.txt"
    ids.write_text("".join(audio_id(i) + "\n" for i in range(count)))
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
        for day, extra in ((0, []), (1, ["--refresh-older-than", "0s"])):
            api.reset()
            api.day = day
            sent.clear()
            started = time.monotonic()
            _, rss, _ = run_measured([*KONBINI, "-q", "--store", str(store), "fetch", "--ids-file", str(ids),
                                      "--videos", *extra], env=env)
            ended = time.monotonic() - started
            last = max(sent) - started
            what = "day 1, an empty store" if day == 0 else "day 2, every counter moved on (upserts)"
            record("keepup", f"fetch --videos of {count} audios @ {latency * 1000:.0f} ms, {what}", f"{ended:.1f} s",
                   f"its last response was sent at {last:.1f} s: the command ended {ended - last:.1f} s later = "
                   f"{ended / last:.2f}x (target 1.10x); {len(sent)} requests, peak {rss} MiB, process start included")
    shutil.rmtree(work, ignore_errors=True)
