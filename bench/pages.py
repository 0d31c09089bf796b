"""Entity pages: how fast ``serve`` answers ``/resource`` on a large store, and what a static site
costs to build. Writes the ``pages`` rows of bench/BENCHMARKS.md (the other rows are kept).

    python bench/pages.py                                 # 100k audios for latency, a 20k-audio site
    python bench/pages.py --audios 2000 --site-audios 1000 --dry-run

The stores are built with the benchmarks' corpus generator through the normal load path
(``konbini-ld load`` of the synthetic responses, plus one page of 30 videos for 300 audios, as
``run.py`` does). Latency is measured by one client, sequentially, against ``konbini-ld serve``
(process and HTTP included): p50 and p95 over random audios, creators and videos, as HTML and as
Turtle; and ``/void``'s first call beside a later one. The site is ``konbini-ld publish`` (with
its two default dumps).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
KONBINI = [sys.executable, "-m", "konbini_ld"]
VIDEO_AUDIOS = 300

rows: list[tuple[str, str, str]] = []  # what, value, note


def record(what: str, value: str, note: str = "") -> None:
    rows.append((what, value, note))
    print(f"pages    {what:58} {value:>16}  {note}", flush=True)


def corpus(n: int) -> Path:
    """The bench's corpus of ``n`` audio responses (shared with bench/run.py)."""
    from run import corpus as shared

    return shared(n)


def videos() -> Path:
    from konbini_ld.sources.konbini.corpus import videos_page

    path = OUT / "videos.jsonl"
    if not path.exists():
        with open(path, "w") as fh:
            for i in range(VIDEO_AUDIOS):
                fh.write(json.dumps(videos_page(i, 0), separators=(",", ":")) + "\n")
    return path


def build(n: int) -> tuple[Path, float]:
    store = Path(tempfile.mkdtemp(prefix=f"kld-pages-{n}-")) / "store"
    started = time.perf_counter()
    subprocess.run([*KONBINI, "-q", "--store", str(store), "load", str(corpus(n)), str(videos())], check=True)
    return store, time.perf_counter() - started


def sample(store: Path, k: int) -> dict[str, list[str]]:
    """``k`` random audios, creators and videos of the store."""
    from konbini_ld import open_store

    kinds = {"audio": "Audio", "creator": "Person", "video": "Video"}
    out = {}
    with open_store(store, read_only=True) as s:
        for kind, cls in kinds.items():
            rows_ = s.query(f"SELECT ?e WHERE {{ ?e a <https://www.w3.org/ns/activitystreams#{cls}> "
                            "FILTER (!STRSTARTS(STR(?e), 'urn:')) }").records()
            iris = sorted(str(r["e"]) for r in rows_)
            out[kind] = random.Random(kind).sample(iris, min(k, len(iris)))
    return out


class Server:
    def __init__(self, store: Path) -> None:
        self.proc = subprocess.Popen([*KONBINI, "--store", str(store), "serve", "--port", "0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.url = ""
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                m = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
                if m:
                    self.url = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(120) or not self.url:
            raise RuntimeError("serve did not start")
        for _ in range(300):
            try:
                if requests.get(self.url + "/queries", timeout=5).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("serve did not answer")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return statistics.median(times) * 1000, times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))] * 1000


def bench_latency(n: int, k: int) -> None:
    store, load_seconds = build(n)
    record(f"store for the latency rows: {n:,} audios loaded", f"{load_seconds:.0f} s",
           f"`python bench/pages.py`: konbini-ld load of the synthetic corpus and {VIDEO_AUDIOS} pages of 30 videos "
           "(the machine shared, 2 cores)")
    picks = sample(store, k)
    server = Server(store)
    try:
        session = requests.Session()
        started = time.perf_counter()
        first = session.get(server.url + "/void", headers={"Accept": "text/turtle"}, timeout=600)
        first_void = time.perf_counter() - started
        again = []
        for _ in range(20):
            started = time.perf_counter()
            assert session.get(server.url + "/void", headers={"Accept": "text/turtle"}, timeout=60).ok
            again.append(time.perf_counter() - started)
        triples = re.search(r"void:triples (\d+)", first.text)
        p50, p95 = percentiles(again)
        record(f"/void @ {n:,} audios, later calls", f"{p50:.1f} ms",
               f"p95 {p95:.1f} ms; the first call {first_void * 1000:,.0f} ms computes the figures "
               f"({int(triples.group(1)) if triples else 0:,} triples), kept until a write")
        for kind, iris in picks.items():
            for label, accept in (("HTML", "text/html"), ("Turtle", "text/turtle")):
                times = []
                for i, iri in enumerate(iris):
                    started = time.perf_counter()
                    r = session.get(server.url + "/resource", params={"iri": iri}, headers={"Accept": accept},
                                    timeout=60)
                    elapsed = time.perf_counter() - started
                    assert r.status_code == 200, (iri, r.status_code, r.text[:200])
                    if i >= 3:  # (the first few warm the workers' views)
                        times.append(elapsed)
                p50, p95 = percentiles(times)
                record(f"/resource {kind} page as {label} @ {n:,} audios", f"{p50:.1f} ms",
                       f"p95 {p95:.1f} ms over {len(times)} random {kind}s, one client, HTTP included")
    finally:
        server.stop()
        shutil.rmtree(store.parent, ignore_errors=True)


def _du(path: Path) -> tuple[int, int]:
    files = size = 0
    for p in path.rglob("*"):
        if p.is_file():
            files += 1
            size += p.stat().st_size
    return files, size


def bench_site(n: int) -> None:
    store, load_seconds = build(n)
    site = store.parent / "site"
    started = time.perf_counter()
    done = subprocess.run([*KONBINI, "--store", str(store), "publish", str(site)], check=True, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    files, size = _du(site)
    pages, page_bytes = _du(site / "r")
    dumps = _du(site / "dumps")[1]
    entities = re.search(r"published (\d+) entities", done.stderr)
    count = int(entities.group(1)) if entities else 0
    record(f"konbini-ld publish @ {n:,} audios", f"{seconds:.0f} s",
           f"{count:,} entities ({count / seconds:,.0f} a second), process start and the two dumps included")
    record(f"static site @ {n:,} audios", f"{size / 2**20:,.0f} MiB",
           f"{files:,} files: pages and Turtle {page_bytes / 2**20:,.0f} MiB ({page_bytes / max(pages, 1) / 1024:.1f} "
           f"KiB a file), dumps {dumps / 2**20:,.0f} MiB")
    shutil.rmtree(store.parent, ignore_errors=True)


def write_markdown() -> None:
    target = ROOT / "bench" / "BENCHMARKS.md"
    lines = target.read_text().splitlines() if target.exists() else ["| section | measurement | value | notes |",
                                                                          "|---|---|---:|---|"]
    lines = [line for line in lines if not line.startswith("| pages |")]
    last = max(i for i, line in enumerate(lines) if line.startswith("| "))
    new = [f"| pages | {w} | {v} | {n} |" for w, v, n in rows]
    lines[last + 1:last + 1] = new
    target.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audios", type=int, default=100_000, help="audios of the store the latency is measured on")
    parser.add_argument("--site-audios", type=int, default=20_000, help="audios of the published site")
    parser.add_argument("--samples", type=int, default=100, help="random entities per kind")
    parser.add_argument("--dry-run", action="store_true", help="print the rows; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(f"{'section':8} {'measurement':58} {'value':>16}  notes")
    bench_latency(args.audios, args.samples)
    bench_site(args.site_audios)
    if not args.dry_run:
        write_markdown()


if __name__ == "__main__":
    main()
