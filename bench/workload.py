"""The collector's workload: audios with their first page of videos, refreshed daily.

``python bench/run.py --only workload --workload 1000x3`` loads N audios, each with its page of 30
videos (creators shared across videos), as D daily observations (recorded exchanges whose ``Date``
is a day apart, counters growing), one ``konbini-ld load`` per day, and measures beside it in the
same run:

- the naive pipeline (pyld ``to_rdf`` per response into an in-memory rdflib graph) on day 1's
  first responses (pyld is slow on pages: its rate per response is flat, so a prefix is enough);
- Oxigraph's own bulk load of the same quads the days left in the store (the floor), and its
  store's size on disk beside ours;
- the history graph: quads per counter observed and bytes per point (the history alone,
  bulk-loaded and compacted);
- ``export`` in TriG and Turtle beside Oxigraph's own dump, and ``validate`` beside the Turtle
  export;
- a profile of one refresh day by stage (in-process, every write in line).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
KONBINI = [sys.executable, "-m", "konbini_ld"]
HISTORY = "urn:konbini-ld:graph:history"

Record = Callable[..., None]
Measured = Callable[..., tuple[float, int, subprocess.CompletedProcess[str]]]


def day_file(n: int, day: int) -> Path:
    from konbini_ld.sources.konbini.corpus import workload_lines

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"workload-{n}-day{day}.jsonl"
    if not path.exists():
        with open(path, "w") as fh:
            fh.writelines(workload_lines(n, day))
    return path


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


FLOOR = r'''
import json, sys, time, pyoxigraph as ox
src = ox.Store.read_only(sys.argv[1])
with open(sys.argv[2], "wb") as fh:
    src.dump(fh, ox.RdfFormat.N_QUADS)
del src
dst = ox.Store(sys.argv[3])
t = time.perf_counter()
dst.bulk_load(path=sys.argv[2], format=ox.RdfFormat.N_QUADS)
dst.flush()
load = time.perf_counter() - t
t = time.perf_counter()
if sys.argv[4] != "-":  # (no dump: the load alone)
    with open(sys.argv[4] + ".trig", "wb") as fh:
        dst.dump(fh, ox.RdfFormat.TRIG)
trig = time.perf_counter() - t
print(json.dumps({"load": load, "trig": trig, "quads": len(dst)}))
'''

SAME_FILES = r'''
import json, sys, time, pyoxigraph as ox
store = ox.Store.read_only(sys.argv[1])
t = time.perf_counter()
with open(sys.argv[2], "wb") as fh:
    store.dump(fh, ox.RdfFormat.TRIG)
print(json.dumps({"trig": time.perf_counter() - t}))
'''

POINTS = r'''
import json, sys, pyoxigraph as ox
src = ox.Store.read_only(sys.argv[1])
g = ox.NamedNode(sys.argv[2])
quads = points = nodes = 0
for q in src.quads_for_pattern(None, None, None, g):
    quads += 1
    p = q.predicate.value
    if p.startswith("https://konbiniapi.com/ns/social/history#"):
        points += 1
    elif p.endswith("resultTime"):
        nodes += 1
print(json.dumps({"quads": quads, "points": points, "nodes": nodes}))
'''

ALONE = r'''
import sys, pyoxigraph as ox
src = ox.Store.read_only(sys.argv[1])
with open(sys.argv[3], "wb") as fh:
    src.dump(fh, ox.RdfFormat.N_QUADS, from_graph=ox.NamedNode(sys.argv[2]))
dst = ox.Store(sys.argv[4])
dst.bulk_load(path=sys.argv[3], format=ox.RdfFormat.N_QUADS)
dst.optimize()
dst.flush()
'''


CAPTURE_DAYS = r'''
import pickle, sys
from konbini_ld import open_store
from konbini_ld.engines import oxigraph as engines
out = open(sys.argv[1], "wb")
real = engines.OxigraphEngine.apply
def apply(self, deletes, inserts):
    pickle.dump(([str(q) for q in deletes], {g.value: list(v) for g, v in inserts.items()}), out, protocol=5)
    return real(self, deletes, inserts)
engines.OxigraphEngine.apply = apply
for path in sys.argv[3:]:  # one load a day, as the timed runs do
    with open_store(sys.argv[2]) as store:
        store.load([path])
out.close()
'''


def bench_workload(n: int, days: int, naive_docs: int, record: Record, run_measured: Measured,
                   naive: str, profile_n: int = 0, stages: list[tuple[str, tuple[str, ...]]] | None = None,
                   replay: str | None = None) -> None:
    files = [day_file(n, d) for d in range(days)]
    responses = 2 * n
    shape = f"{n:,} audios + their page of 30 videos"
    # the naive pipeline on day 1's first responses (audios and pages alternate)
    dt, rss, p = run_measured([sys.executable, "-c", naive, str(files[0]),
                               str(ROOT / "contexts" / "konbini-social.jsonld"), str(naive_docs)])
    naive_rate = naive_docs / dt
    record("workload", f"naive pyld+rdflib in-memory, first {naive_docs:,} responses of day 1", f"{naive_rate:,.1f} docs/s",
           f"peak {rss} MiB; audios and pages alternate; no history, no upsert")
    work = Path(tempfile.mkdtemp(prefix="kld-workload-"))
    store = work / "store"
    total = 0.0
    first = 0.0
    for d, path in enumerate(files):
        dt, rss, _ = run_measured([*KONBINI, "-q", "--store", str(store), "load", str(path)])
        total += dt
        first = first or dt
        note = f"peak RSS {rss} MiB"
        if d == 0:
            note += f"; {responses / dt / naive_rate:.1f}x naive"
        else:
            note += f"; {dt / first:.2f}x day 1's time"
        record("workload", f"konbini-ld load, day {d + 1}: {shape} ({responses:,} responses)",
               f"{responses / dt:,.0f} docs/s", f"{dt:.1f} s, {note}")
        if d == 0:  # what the store alone takes to write day 1's quads, against what 10x naive allows
            p = subprocess.run([sys.executable, "-c", FLOOR, str(store / "oxigraph"), str(work / "day1.nq"),
                                str(work / "floor1"), "-"], check=True, capture_output=True, text=True)
            floor1 = json.loads(p.stdout.strip().splitlines()[-1])
            allowed = responses / (10 * naive_rate)
            record("workload", f"  oxigraph bulk_load of day 1's {floor1['quads']:,} quads alone", f"{floor1['load']:.1f} s",
                   f"day 1 at 10x naive would be {allowed:.1f} s for everything: the store's own fastest write of "
                   f"the quads is {floor1['load'] / allowed:.2f}x that; konbini-ld's day 1 took "
                   f"{dt / floor1['load']:.2f}x it")
            shutil.rmtree(work / "floor1", ignore_errors=True)
            (work / "day1.nq").unlink()
    p = subprocess.run([sys.executable, "-c", FLOOR, str(store / "oxigraph"), str(work / "all.nq"),
                        str(work / "floor"), str(work / "floor")], check=True, capture_output=True, text=True)
    floor = json.loads(p.stdout.strip().splitlines()[-1])
    record("workload", f"  oxigraph bulk_load of the same {floor['quads']:,} quads (floor)", f"{floor['load']:.1f} s",
           f"konbini-ld's {days} loads took {total:.1f} s = {total / floor['load']:.2f}x (process starts, mapping, "
           "archive, history, index and all rules included)")
    if replay is not None:  # the bound: konbini-ld's writes alone, made again with no mapping or planning
        subprocess.run([sys.executable, "-c", CAPTURE_DAYS, str(work / "writes.pickle"), str(work / "capture"),
                        *map(str, files)], check=True, capture_output=True)
        p = subprocess.run([sys.executable, "-c", replay, str(work / "writes.pickle"), str(work / "replay")],
                           check=True, capture_output=True, text=True)
        info = json.loads(p.stdout.strip().splitlines()[-1])
        record("workload", f"  konbini-ld's writes alone: {info['writes']} writes of the {days} days, no mapping",
               f"{info['dt']:.1f} s", f"{info['dt'] / floor['load']:.2f}x the floor; {info['lines']:,} lines inserted, "
               f"{info['deletes']:,} removed; the rest of the {total:.1f} s is mapping, planning, archive and index")
        replayed = du(work / "replay")
        shutil.rmtree(work / "capture", ignore_errors=True)
        shutil.rmtree(work / "replay", ignore_errors=True)
    ours = du(store / "oxigraph")
    theirs = du(work / "floor")
    record("workload", "  disk: konbini-ld's graph store vs Oxigraph's of the same quads", f"{ours / 2**20:,.0f} MiB",
           f"{ours / theirs:.2f}x Oxigraph's bulk-loaded store ({theirs / 2**20:,.0f} MiB); archive "
           f"{du(store / 'archive') / 2**20:,.0f} MiB and index {du(store) - ours - du(store / 'archive'):,} B beside it")
    if replay is not None:
        record("workload", "  disk: Oxigraph's own store written by the same writes (no mapping)",
               f"{replayed / 2**20:,.0f} MiB", f"{replayed / theirs:.2f}x its bulk-loaded store: written load by load, "
               "RocksDB's merged files take about twice the room of one bulk load's")
    p = subprocess.run([sys.executable, "-c", POINTS, str(store / "oxigraph"), HISTORY],
                       check=True, capture_output=True, text=True)
    hist = json.loads(p.stdout.strip().splitlines()[-1])
    subprocess.run([sys.executable, "-c", ALONE, str(store / "oxigraph"), HISTORY, str(work / "history.nq"),
                    str(work / "history")], check=True, capture_output=True)
    per_point = du(work / "history") / max(1, hist["points"])
    record("workload", f"  history: {hist['points']:,} points on {hist['nodes']:,} observation nodes",
           f"{hist['quads'] / max(1, hist['points']):.2f} quads/counter",
           f"{hist['quads']:,} quads of {floor['quads']:,} ({hist['quads'] / floor['quads']:.0%} of the store)")
    record("workload", "  bytes on disk per history point", f"{per_point:,.0f} B",
           "the history graph alone, bulk-loaded into a fresh Oxigraph store and compacted")
    # Oxigraph's dump of konbini-ld's own files (as written day by day): what the layout costs, apart
    # from what the export adds to it
    p = subprocess.run([sys.executable, "-c", SAME_FILES, str(store / "oxigraph"), str(work / "same.trig")],
                       check=True, capture_output=True, text=True)
    same = json.loads(p.stdout)["trig"]
    record("workload", "  oxigraph dump TriG of konbini-ld's store (its files as written)", f"{same:.1f} s",
           f"{same / floor['trig']:.2f}x the same dump of Oxigraph's bulk-loaded store ({floor['trig']:.1f} s): "
           "the files' layout alone, in-process")
    for fmt in ("trig", "turtle"):
        dt, rss, _ = run_measured([*KONBINI, "--store", str(store), "export", "-f", fmt, "-o", str(work / f"g.{fmt}")])
        record("workload", f"  konbini-ld export -f {fmt}", f"{dt:.1f} s",
               f"{dt / floor['trig']:.2f}x Oxigraph's own TriG dump of the same quads ({floor['trig']:.1f} s, in-process); "
               f"{dt / same:.2f}x its dump of the same files; peak {rss} MiB")
        if fmt == "turtle":
            turtle = dt
    started = time.perf_counter()
    p = subprocess.run([*KONBINI, "--store", str(store), "validate"], capture_output=True, text=True)
    dt = time.perf_counter() - started
    record("workload", f"  konbini-ld validate after {days} days", f"{dt:.1f} s",
           f"{dt / turtle:.2f}x the Turtle export (exit {p.returncode})")
    # `konbini-ld compact`: the same quads in one bulk load, then the disk, the export and validate again
    dt, rss, _ = run_measured([*KONBINI, "-q", "--store", str(store), "compact"])
    ours = du(store / "oxigraph")
    record("workload", f"  konbini-ld compact after {days} days", f"{dt:.1f} s",
           f"peak {rss} MiB; the graph then takes {ours / 2**20:,.0f} MiB = {ours / theirs:.2f}x Oxigraph's "
           "bulk-loaded store")
    dt, rss, _ = run_measured([*KONBINI, "--store", str(store), "export", "-f", "turtle", "-o", str(work / "c.ttl")])
    turtle = dt
    record("workload", "  konbini-ld export -f turtle, compacted", f"{dt:.1f} s",
           f"{dt / floor['trig']:.2f}x Oxigraph's own TriG dump of the same quads; peak {rss} MiB")
    started = time.perf_counter()
    p = subprocess.run([*KONBINI, "--store", str(store), "validate"], capture_output=True, text=True)
    dt = time.perf_counter() - started
    record("workload", f"  konbini-ld validate after {days} days, compacted", f"{dt:.1f} s",
           f"{dt / turtle:.2f}x the Turtle export of the compacted store (exit {p.returncode})")
    if profile_n and stages:
        profile_refresh(profile_n, days, record, stages)
    shutil.rmtree(work, ignore_errors=True)


def profiled_load(store_dir: Path, path: Path, stages: list[tuple[str, tuple[str, ...]]]
                  ) -> tuple[dict[str, float], float, float]:
    """A cProfile of an in-process load of ``path`` into ``store_dir``, every write in line (one
    thread does all the work): seconds by stage, seconds profiled, wall seconds."""
    import cProfile
    import pstats

    from konbini_ld import open_store

    with open_store(store_dir) as store:
        store.pipeline.write_behind = False
        store.pipeline.workers = 0
        profile = cProfile.Profile()
        t = time.perf_counter()
        profile.enable()
        store.load(path)
        profile.disable()
        wall = time.perf_counter() - t
    stats: Any = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}
    for (filename, _, function), (_, _, tottime, _, _) in stats.items():
        where = f"{filename}:{function}".replace("\\", "/")
        stage = next((name for name, keys in stages if any(k in where for k in keys)), "other (Python, glue)")
        totals[stage] = totals.get(stage, 0.0) + tottime
    return totals, sum(totals.values()), wall


CPU_BY_THREAD = r'''
import json, os, sys, threading, time
from konbini_ld import open_store
TICK = os.sysconf("SC_CLK_TCK")
seen = {}  # thread id -> (name, CPU seconds): sampled, since a batch's write thread ends with it
def sample():
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        seen[tid] = (name, (int(rest[11]) + int(rest[12])) / TICK)
done = threading.Event()
def watch():
    while not done.wait(0.05):
        sample()
threading.Thread(target=watch, daemon=True).start()
start, wall = os.times(), time.perf_counter()
with open_store(sys.argv[2]) as store:
    store.load(sys.argv[1])
sample()
done.set()
end, wall = os.times(), time.perf_counter() - wall
rocksdb = sum(cpu for name, cpu in seen.values() if name.startswith("rocksdb"))
main = seen[str(os.getpid())][1]
total = end.user + end.system - start.user - start.system
print(json.dumps({"wall": wall, "total": total, "main": main, "rocksdb": rocksdb}))
'''


def cpu_by_thread(store: Path, path: Path) -> dict[str, float]:
    """One load of ``path`` in its own process, unprofiled: its wall time and where its CPU went
    (the main thread; RocksDB's own threads, flushing and merging files)."""
    p = subprocess.run([sys.executable, "-c", CPU_BY_THREAD, str(path), str(store)], capture_output=True, text=True,
                       check=True)
    out: dict[str, float] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def profile_refresh(n: int, days: int, record: Record, stages: list[tuple[str, tuple[str, ...]]]) -> None:
    """A cProfile of the last refresh day at ``n`` audios (the days before it loaded untimed), and
    the same day unprofiled on a copy of the store: where the process's CPU went, by thread."""
    files = [day_file(n, d) for d in range(max(2, days))]
    work = Path(tempfile.mkdtemp(prefix="kld-wprofile-"))
    for path in files[:-1]:
        subprocess.run([*KONBINI, "-q", "--store", str(work / "store"), "load", str(path)], check=True)
    shutil.copytree(work / "store", work / "copy")
    cpu = cpu_by_thread(work / "copy", files[-1])
    record("workload", f"  refresh day {len(files)} of {n:,} audios + pages: CPU of the loading process",
           f"{cpu['total']:.1f} s", f"in {cpu['wall']:.1f} s wall (unprofiled) = {cpu['total'] / cpu['wall']:.2f} cores: "
           f"main thread {cpu['main']:.1f} s, RocksDB's own threads (flushes, merging files) {cpu['rocksdb']:.1f} s = "
           f"{cpu['rocksdb'] / cpu['total']:.0%}, the rest the write-behind thread and Oxigraph's bulk loader")
    totals, profiled, wall = profiled_load(work / "store", files[-1], stages)
    for stage, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        record("workload", f"  refresh day {len(files)} of {n:,} audios + pages: {stage}", f"{seconds / profiled:.0%}",
               f"{seconds:.1f} s of {profiled:.1f} s profiled ({wall:.1f} s wall, one thread, profiler on)")
    shutil.rmtree(work, ignore_errors=True)


DAY_LOADER = r'''
import json, resource, sys, time
from konbini_ld import open_store
path, store_dir, every, offset = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
done, mark, t0 = 0, every, time.perf_counter()
def progress(k):
    global done, mark
    done += k
    if done >= mark:
        mark += every
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(json.dumps({"n": offset + done, "t": time.perf_counter() - t0, "rss": rss(), "peak": peak}), flush=True)
with open_store(store_dir) as store:
    report = store.load([path], progress=progress)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(json.dumps({"n": offset + done, "t": time.perf_counter() - t0, "rss": rss(), "peak": peak, "end": True,
                  "loaded": report.loaded, "failed": len(report.failed)}), flush=True)
'''


def bench_workload_scale(n: int, days: int, record: Record) -> None:
    """The workload's shape at scale: ``days`` daily loads of ``n`` audios with their page of videos,
    each day one process (as a collector's daily run), sampled as it goes; plotted in
    bench/wscale.svg (rate and peak RSS against responses loaded)."""
    from konbini_ld.sources.konbini.corpus import workload_lines

    work = Path(tempfile.mkdtemp(prefix="kld-wscale-"))
    store = work / "store"
    every = max(200, n // 10)
    samples: list[dict[str, Any]] = []
    ends: list[dict[str, Any]] = []
    clock = 0.0
    for day in range(days):
        path = work / f"day{day}.jsonl"
        with open(path, "w") as fh:
            fh.writelines(workload_lines(n, day))
        proc = subprocess.Popen([sys.executable, "-c", DAY_LOADER, str(path), str(store), str(every),
                                 str(day * 2 * n)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            sample = json.loads(line)
            sample["t"] += clock
            (ends if sample.get("end") else samples).append(sample)
        if proc.wait() != 0:
            raise RuntimeError(f"the load of day {day + 1} failed")
        path.unlink()
        end = ends[-1]
        dt = end["t"] - clock
        clock = end["t"]
        record("wscale", f"day {day + 1} of {days}: {n:,} audios + their page of 30 videos", f"{2 * n / dt:,.0f} docs/s",
               f"{dt:.0f} s in the loading process, peak RSS {end['peak']} MiB, {end['failed']} failed; {end['n']:,} loaded so far, "
               f"store {du(store) / 2**30:.2f} GiB")
    first, last = ends[0], ends[-1]
    total = last["n"]
    record("wscale", f"{days} days of {n:,} audios + pages ({total:,} responses), whole run",
           f"{total / last['t']:,.0f} docs/s", f"{last['t']:.0f} s; the last day at "
           f"{2 * n / (last['t'] - ends[-2]['t']) if days > 1 else 0:,.0f} docs/s against day 1's "
           f"{2 * n / first['t']:,.0f}; peak RSS {max(e['peak'] for e in ends)} MiB")
    from plot import rate_and_rss

    rate_and_rss(samples + ends, ROOT / "bench" / "wscale.svg", f"{days} daily loads of {n:,} audios with their page of videos",
                 f"responses loaded (audios and pages of 30 videos; a new day every {2 * n:,})",
                 [day * 2 * n for day in range(1, days)])
    shutil.rmtree(work, ignore_errors=True)

