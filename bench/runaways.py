"""The ``runaways`` section of bench/run.py: a cheap query's latency on ``konbini-ld serve
--workers 2`` while N clients each send runaway after runaway, a constant changing each time (the
suite holds the rule with six clients; this measures it with more, and beside no runaway at all,
the baseline, in the same run).

    python bench/run.py --only runaways --runaways 6,20,40
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path

import requests

RUNAWAY = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l . ?m ?n2 ?o %s}"
CHEAP = "ASK { ?s ?p ?o }"


def _serve(store: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "konbini_ld", "--store", str(store), "serve", "--port", "0",
                             "--workers", "2", "--timeout", "30"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        m = re.search(r"serving .* at (http://127\.0\.0\.1:\d+)/", line)
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # (never a full pipe)
            for _ in range(300):  # (said before the socket listens)
                try:
                    requests.get(m.group(1) + "/queries", timeout=5)
                    return proc, m.group(1)
                except requests.ConnectionError:
                    time.sleep(0.1)
    raise RuntimeError("serve did not start")


def _cheap_latencies(url: str, clients: int, seconds: float) -> tuple[list[float], int]:
    """Latencies of cheap queries sent one after another for ``seconds`` beside ``clients`` runaway
    senders, and how many runaways were answered meanwhile."""
    stop = threading.Event()
    constants = count()
    answered = [0]

    def client() -> None:
        while not stop.is_set():
            try:
                requests.post(url + "/sparql", data={"query": RUNAWAY % f'FILTER(?c != "{next(constants)}") '},
                              timeout=60)
                answered[0] += 1
            except requests.RequestException:
                return

    for _ in range(clients):
        threading.Thread(target=client, daemon=True).start()
    time.sleep(1.0 if clients else 0)
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        requests.get(url + "/sparql", params={"query": CHEAP}, timeout=60).raise_for_status()
        latencies.append(time.monotonic() - started)
    stop.set()
    return latencies, answered[0]


def bench_runaways(client_counts: list[int], seconds: float, record: Callable[..., None]) -> None:
    from konbini_ld import open_store
    from konbini_ld.sources.konbini.corpus import corpus_lines

    with tempfile.TemporaryDirectory() as work:
        corpus = Path(work) / "c.jsonl"
        corpus.write_text("".join(line.rstrip("\n") + "\n" for line in corpus_lines(200)))
        store = Path(work) / "store"
        with open_store(store) as s:
            s.load([corpus])
        proc, url = _serve(store)
        try:
            base, _ = _cheap_latencies(url, 0, 3.0)
            p50 = statistics.median(base)
            record("runaways", "cheap ASK, no runaway (baseline)", f"{p50 * 1000:.1f} ms p50",
                   f"{len(base)} queries; max {max(base) * 1000:.0f} ms")
            for n in client_counts:
                lat, answered = _cheap_latencies(url, n, seconds)
                q = statistics.quantiles(lat, n=20) if len(lat) >= 2 else lat
                record("runaways", f"cheap ASK beside {n} clients sending runaways (--workers 2)",
                       f"{statistics.median(lat) * 1000:.0f} ms p50",
                       f"{statistics.median(lat) / p50:.1f}x baseline; p95 {q[-1] * 1000:.0f} ms, max "
                       f"{max(lat) * 1000:.0f} ms over {len(lat)} queries; {answered} runaways answered meanwhile (each 503 or 200)")
                time.sleep(2.0)  # (the last runaways stopped)
        finally:
            proc.terminate()
            proc.wait(30)
