"""konbini-ld benchmarks: one command, a table on stdout, and bench/BENCHMARKS.md.

    python bench/run.py                         # everything, sizes 2k / 20k / 100k
    python bench/run.py --sizes 2000 --only fetch,startup

Every konbini-ld figure is measured beside its naive baseline in the same run and
reported as a ratio, because this machine is shared and noisy. Commands run as
subprocesses (process start included) unless a row says "in-process".

Sections:
  workload the collector's workload (bench/workload.py): N audios with their page of 30 videos, D
           daily refreshes, each day one `konbini-ld load`, beside the naive pipeline and Oxigraph's own
           bulk load of the same quads (and of day 1's alone); disk, history cost, export and validate;
           a refresh day's profile
  ingest   naive pipeline (pyld to_rdf per response → in-memory rdflib Graph) vs `konbini-ld load`,
           and Oxigraph's own bulk load of the resulting N-Quads (the floor); then (untimed, above
           the smallest size) a page of 30 videos for 300 of the audios, for the video queries
  differential  every corpus response through plain pyld and through the shape templates: same triples
  queries  p50/p95 of every named query at each size, and rdflib's own engine at 2k
  export   Turtle and JSON-LD export vs Oxigraph's own Turtle dump
  startup  `konbini-ld --help` and `konbini-ld queries`
  fetch    `konbini-ld fetch` against the loopback fake API at 200 ms per request vs a sequential loop
  scale    (not by default) `--only scale --sizes 1000000`: one load of the largest size sampled as it
           goes (rate and RSS against responses loaded, plotted in bench/scale.svg), its size on disk,
           the compaction `load` does after it, every named query's first call and p50 on the
           compacted store, and a Turtle export
  bound    (sizes from 20k) konbini-ld's own writes alone: every write a load makes, recorded, then
           made again on a fresh store with no mapping, planning or index (the least any pipeline that
           commits batch by batch can take), beside Oxigraph's one bulk load of the same quads
  history  `konbini-ld load` of N audios x K observations a day apart (recorded exchanges with Date
           headers, counters growing) vs the naive pipeline's rate on the same corpus; store size,
           bytes per history point, and trending / rising-creators / history p50 at that size
  keepup   `konbini-ld fetch --videos` of 300 audios at 200 ms a request (bench/keepup.py): how long the
           command runs past the last response the API sent, on day 1 and on a refresh day (the
           median of three runs, each into a store of its own, and their range)
  wscale   (not by default) `--only wscale --wscale 2500x10`: the workload's shape at scale, D daily
           loads of N audios with their page of videos, each day one process, sampled as it goes
           (rate and peak RSS against responses loaded, plotted in bench/wscale.svg)
  runaways a cheap query's latency on `konbini-ld serve --workers 2` beside 6, 20 and 40 clients each
           sending runaway after runaway (bench/runaways.py), against no runaway at all

With --only, rows of the sections not run are kept from the existing BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
KONBINI = [sys.executable, "-m", "konbini_ld"]

rows: list[tuple[str, str, str, str]] = []  # section, what, value, note


def record(section: str, what: str, value: str, note: str = "") -> None:
    rows.append((section, what, value, note))
    print(f"{section:8} {what:58} {value:>16}  {note}", flush=True)


def run_measured(cmd: list[str], **kw: Any) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """Wall seconds and peak RSS (MiB) of one command, measured through a wrapper process."""
    wrapper = (
        "import resource, subprocess, sys, time, json;"
        "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "dt = time.perf_counter() - t;"
        "print(json.dumps({'dt': dt, 'rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
        " 'rc': p.returncode, 'err': p.stderr[-2000:], 'out': p.stdout[-2000:]}))"
    )
    p = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, **kw)
    info = json.loads(p.stdout.strip().splitlines()[-1])
    done = subprocess.CompletedProcess(cmd, info["rc"], info["out"], info["err"])
    if info["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {info['err']}")
    return info["dt"], info["rss"] // 1024, done


def corpus(n: int) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"corpus-{n}.jsonl"
    if not path.exists():
        from konbini_ld.sources.konbini.corpus import corpus_lines

        with open(path, "w") as fh:
            fh.writelines(corpus_lines(n))
    return path


# -- ingest ----------------------------------------------------------------------

NAIVE = r'''
import json, sys, time
from pyld import jsonld
from pyld.documentloader.frozen import FrozenDocumentLoader, BUNDLED_CONTEXTS
from rdflib import Graph, URIRef, BNode, Literal
ks = json.load(open(sys.argv[2]))
docs = dict(BUNDLED_CONTEXTS)
docs["https://www.w3.org/ns/activitystreams#"] = BUNDLED_CONTEXTS["https://www.w3.org/ns/activitystreams"]
docs["https://konbiniapi.com/ns/social#"] = ks
docs["https://konbiniapi.com/ns/social"] = ks
loader = FrozenDocumentLoader(docs)
g = Graph()
def term(t):
    if t["type"] == "IRI": return URIRef(t["value"])
    if t["type"] == "blank node": return BNode(t["value"][2:])
    return Literal(t["value"], datatype=URIRef(t["datatype"]) if t.get("datatype") and not t.get("language") else None, lang=t.get("language"))
n = 0
limit = int(sys.argv[3]) if len(sys.argv) > 3 else None
for line in open(sys.argv[1]):
    if limit is not None and n >= limit:
        break
    doc = json.loads(line)
    doc = (doc["body"] if "body" in doc else doc)["data"]
    for t in jsonld.to_rdf(doc, {"documentLoader": loader})["@default"]:
        g.add((term(t["subject"]), term(t["predicate"]), term(t["object"])))
    n += 1
print(json.dumps({"docs": n, "triples": len(g)}))
'''


def bench_ingest(sizes: list[int], naive_max: int) -> dict[int, Path]:
    stores = {}
    for n in sizes:
        path = corpus(n)
        naive_dt = None
        if n <= naive_max:
            dt, rss, p = run_measured([sys.executable, "-c", NAIVE, str(path), str(ROOT / "contexts" / "konbini-social.jsonld")])
            info = json.loads(p.stdout.strip().splitlines()[-1])
            naive_dt = dt
            record("ingest", f"naive pyld+rdflib in-memory, {n} docs", f"{n / dt:,.0f} docs/s",
                   f"{info['triples'] / dt:,.0f} triples/s, peak {rss} MiB")
        store = Path(tempfile.mkdtemp(prefix=f"kld-bench-{n}-")) / "store"
        dt, rss, p = run_measured([*KONBINI, "-q", "--store", str(store), "load", str(path)])
        from konbini_ld import open_store

        with open_store(store, read_only=True) as s:
            triples = len(s)
        ratio = f"= {naive_dt / dt:.1f}x naive" if naive_dt else ""
        record("ingest", f"konbini-ld load (on-disk, all rules), {n} docs", f"{n / dt:,.0f} docs/s",
               f"{triples / dt:,.0f} triples/s, peak {rss} MiB, {dt:.1f} s {ratio}")
        floor = _oxigraph_bulk_floor(store)
        if n != min(sizes):  # the smallest size stays audio-only: rdflib's engine is compared there
            _add_videos(store)
        beyond = ""
        if naive_dt:  # what "10x naive" asks for, against what Oxigraph's own load of the result does
            beyond = f"; 10x naive would be {10 * n / naive_dt:,.0f} docs/s, {10 * floor / naive_dt:.2f}x this floor's rate"
        record("ingest", f"  oxigraph bulk_load of the same {triples:,} quads (floor)", f"{n / floor:,.0f} docs/s",
               f"{floor:.1f} s; konbini-ld takes {dt / floor:.1f}x, process start and all rules included{beyond}")
        stores[n] = store
    return stores


VIDEO_AUDIOS = 300  # audios that also get a page of 30 videos, so videos-using-audio has rows


def _add_videos(store: Path) -> None:
    """Load one page of videos for the first audios (after the timed load, before the queries)."""
    from konbini_ld.sources.konbini.corpus import videos_page

    pages = OUT / "videos.jsonl"
    if not pages.exists():
        with open(pages, "w") as fh:
            for i in range(VIDEO_AUDIOS):
                fh.write(json.dumps(videos_page(i, 0), separators=(",", ":")) + "\n")
    subprocess.run([*KONBINI, "-q", "--store", str(store), "load", str(pages)], check=True)


def _oxigraph_bulk_floor(store: Path) -> float:
    code = (
        "import pyoxigraph as ox, sys, tempfile, time, io;"
        "src = ox.Store.read_only(sys.argv[1]); buf = io.BytesIO(); src.dump(buf, ox.RdfFormat.N_QUADS);"
        "data = buf.getvalue(); dst = ox.Store(tempfile.mkdtemp());"
        "t = time.perf_counter(); dst.bulk_load(data, ox.RdfFormat.N_QUADS); dst.flush();"
        "print(time.perf_counter() - t)"
    )
    p = subprocess.run([sys.executable, "-c", code, str(store / "oxigraph")], capture_output=True, text=True, check=True)
    return float(p.stdout.strip())


# -- bound -------------------------------------------------------------------------------

REPLAY = r'''
import json, pickle, resource, sys, time
import pyoxigraph as ox
from konbini_ld.engines.oxigraph import OxigraphEngine
writes = []
with open(sys.argv[1], "rb") as fh:
    while True:
        try:
            writes.append(pickle.load(fh))
        except EOFError:
            break
made = [(list(ox.parse("".join(d + " .\n" for d in deletes).encode(), ox.RdfFormat.N_QUADS)) if deletes else [],
         {ox.NamedNode(g): lines for g, lines in inserts.items()}) for deletes, inserts in writes]
engine = OxigraphEngine(sys.argv[2])
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t, c = time.perf_counter(), cpu()
for deletes, inserts in made:
    engine.apply(deletes, inserts)
engine.store.flush()
dt = time.perf_counter() - t
print(json.dumps({"dt": dt, "cpu": cpu() - c, "writes": len(made), "lines": sum(len(l) for _, i in made for l in i.values()),
                  "deletes": sum(len(d) for d, _ in made), "quads": len(engine.store)}))
'''


def bench_bound(sizes: list[int], smallest: int = 20_000) -> None:
    """konbini-ld's writes alone, made again without the pipeline, beside Oxigraph's own load."""
    for n in [s for s in sizes if s >= smallest]:
        work = Path(tempfile.mkdtemp(prefix=f"kld-bound-{n}-"))
        from workload import CAPTURE_DAYS  # (every write of loads of the files given, recorded)

        subprocess.run([sys.executable, "-c", CAPTURE_DAYS, str(work / "writes.pickle"), str(work / "store"),
                        str(corpus(n))], check=True, capture_output=True)
        p = subprocess.run([sys.executable, "-c", REPLAY, str(work / "writes.pickle"), str(work / "replay")],
                           check=True, capture_output=True, text=True)
        info = json.loads(p.stdout.strip().splitlines()[-1])
        floor = _oxigraph_bulk_floor(work / "store")
        record("bound", f"konbini-ld's writes alone @ {n}: {info['writes']} loads, no mapping", f"{info['dt']:.1f} s",
               f"{info['dt'] / floor:.2f}x the floor ({floor:.1f} s, one load of the same {info['quads']:,} quads, "
               f"this run); {info['lines']:,} lines and {info['deletes']:,} deletes; "
               f"{info['cpu'] / info['dt']:.2f} cores busy (RocksDB merging the loads' files)")
        shutil.rmtree(work, ignore_errors=True)


# -- differential ------------------------------------------------------------------------


def _differential_chunk(lines: list[str]) -> tuple[int, int, int]:
    from konbini_ld.mapping.prepare import prepare
    from konbini_ld.model import Response
    from konbini_ld.mapping.templates import default_cache

    agree = 0
    for line in lines:
        plain = prepare(Response(line, "bench"), shape_cache=False)
        fast = prepare(Response(line, "bench"))
        same = {k: set(v) for k, v in plain.groups.items()} == {k: set(v) for k, v in fast.groups.items()}
        if plain.ok and fast.ok and same:
            agree += 1
    return agree, len(lines), default_cache().hits


def bench_differential(sizes: list[int]) -> None:
    import multiprocessing as mp

    videos = OUT / "videos.jsonl"
    for n in [*sizes, "videos"] if videos.exists() else sizes:
        lines = (videos if n == "videos" else corpus(n)).read_text().splitlines()  # type: ignore[arg-type]
        chunks = [lines[i : i + 2000] for i in range(0, len(lines), 2000)]
        t = time.perf_counter()
        with mp.get_context("spawn").Pool() as pool:
            results = pool.map(_differential_chunk, chunks)
        agree = sum(r[0] for r in results)
        total = sum(r[1] for r in results)
        what = f"{VIDEO_AUDIOS} pages of 30 videos" if n == "videos" else f"{n}-response corpus"
        record("diff", f"shape templates vs plain pyld, {what}", f"{agree}/{total} agree",
               f"{time.perf_counter() - t:.0f} s; every response: same lines in the same upsert groups")


# -- queries -----------------------------------------------------------------------

QUERY_PARAMS = {
    "creator": "https://www.tiktok.com/@creator.200",
    "text": "night",
    "audio": None,  # filled from the store
    "entity": "https://www.tiktok.com/@creator.200",
}


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    return statistics.median(times), p95


def bench_queries(stores: dict[int, Path], repeat: int) -> None:
    from konbini_ld import open_store
    from konbini_ld.query.catalog import named_queries

    baseline: dict[str, float] = {}
    for n, path in sorted(stores.items()):
        with open_store(path, read_only=True) as store:
            from konbini_ld.sources.konbini.corpus import videos_page

            audio = videos_page(0, 0)["data"]["orderedItems"][0]["audio"]["id"]  # with videos above 2k
            params = dict(QUERY_PARAMS, audio=audio)
            if n == min(stores):
                baseline = _rdflib_baseline(store, params, repeat)
            for name, q in named_queries().items():
                bound = {p.name: params[p.name] for p in q.params if p.name in params}

                once, p50, p95 = _named_timing(store, name, bound, repeat)
                note = f"first call {once * 1000:,.1f} ms, p95 {p95 * 1000:.1f} ms" + _beside_plain(store, name, bound, p50, repeat)
                if name in baseline and n == min(stores):
                    note += f", rdflib engine {baseline[name] * 1000:.0f} ms = {baseline[name] / p50:.0f}x"
                record("query", f"{name} @ {n} (in-process)", f"{p50 * 1000:.1f} ms", note)


def _named_timing(store: Any, name: str, params: dict[str, Any], repeat: int) -> tuple[float, float, float]:
    """A named query's first call, then its p50 and p95 (a reader keeps the aggregations' answers
    until the index moves: the first call computes them)."""
    def go() -> None:
        result = store.run_named(name, params)
        list(result.triples() if result.kind == "CONSTRUCT" else result.rows())

    t = time.perf_counter()
    go()
    once = time.perf_counter() - t
    return (once, *_timed(go, repeat))


def _beside_plain(store: Any, name: str, params: dict[str, Any], p50: float, repeat: int) -> str:
    """For a named query the index beside the graph answers: the plain query's p50 and the ratio."""
    from konbini_ld.query.catalog import get_named_query
    from konbini_ld.query.run import run_query

    nq = get_named_query(name)
    bound = nq.bind(params)
    if store.answer(nq.text, bound) is None:
        return ""
    plain, _ = _timed(lambda: list(run_query(store.engine, nq.text, bound).rows()), max(2, repeat // 10))
    return f", from the index; plain query {plain * 1000:,.0f} ms = {plain / p50:,.0f}x"


def _rdflib_baseline(store: Any, params: dict[str, str], repeat: int) -> dict[str, float]:
    """The same named queries on rdflib's own SPARQL engine over an in-memory copy of the store."""
    import io

    from rdflib import Dataset, Literal, URIRef

    from konbini_ld.io.formats import Format
    from konbini_ld.query.catalog import named_queries

    buf = io.BytesIO()
    store.export(buf, Format.NQ)
    ds = Dataset(default_union=True)
    ds.parse(data=buf.getvalue(), format="nquads")
    out = {}
    for name, q in named_queries().items():
        if any(p.name not in params for p in q.params):
            continue  # (an optional time: not compared here)
        bindings = {p.name: (URIRef(params[p.name]) if p.type == "iri" else Literal(params[p.name])) for p in q.params}
        p50, _ = _timed(lambda: list(ds.query(q.text, initBindings=bindings)), max(1, repeat // 5))
        out[name] = p50
    return out


# -- scale ---------------------------------------------------------------------------------

SCALE_LOADER = r"""
import json, os, resource, sys, time
from konbini_ld import open_store
path, store_dir, every = sys.argv[1], sys.argv[2], int(sys.argv[3])
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
TICK = os.sysconf("SC_CLK_TCK")
def cpu():  # CPU seconds so far: the whole process, and RocksDB's background threads (compactions, flushes)
    def ticks(stat):
        fields = stat.rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    rocks = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as fh:
                if fh.read().startswith("rocksdb"):
                    with open(f"/proc/self/task/{task}/stat") as st:
                        rocks += ticks(st.read())
        except OSError:  # (a thread that just ended)
            pass
    with open("/proc/self/stat") as st:
        return ticks(st.read()) / TICK, rocks / TICK
done = 0
mark = every
t0 = time.perf_counter()
def progress(k):
    global done, mark
    done += k
    if done >= mark:
        mark += every
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        total, rocks = cpu()
        print(json.dumps({"n": done, "t": time.perf_counter() - t0, "rss": rss(), "peak": peak, "cpu": total,
                          "rocks": rocks}), flush=True)
with open_store(store_dir) as store:
    report = store.load([path], progress=progress)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(json.dumps({"n": done, "t": time.perf_counter() - t0, "rss": rss(), "peak": peak, "end": True,
                  "loaded": report.loaded, "failed": len(report.failed)}), flush=True)
"""


def bench_scale(n: int, repeat: int) -> None:
    """One load of ``n`` responses, sampled as it goes (rate and RSS against responses loaded),
    then every named query's first call and p50 on the result, its size on disk, and an export."""
    path = corpus(n)
    store = Path(tempfile.mkdtemp(prefix=f"kld-scale-{n}-")) / "store"
    every = max(1, min(max(1000, n // 50), n // 2))  # (a sample at least once a batch or two)
    proc = subprocess.Popen([sys.executable, "-c", SCALE_LOADER, str(path), str(store), str(every)],
                            stdout=subprocess.PIPE, text=True)
    samples = []
    assert proc.stdout is not None
    for line in proc.stdout:
        samples.append(json.loads(line))
    if proc.wait() != 0:
        raise RuntimeError("the scale load failed")
    end = samples.pop()
    peak = max(s["peak"] for s in [*samples, end])

    def window(k: int) -> tuple[dict[str, Any], dict[str, Any]]:  # the window of `every` responses ending at k
        at = min(samples, key=lambda s: abs(s["n"] - k))
        i = samples.index(at)
        return (samples[i - 1] if i else {"n": 0, "t": 0.0, "cpu": 0.0, "rocks": 0.0}), at

    def rate_at(k: int) -> float:  # docs/s over that window
        before, at = window(k)
        return (at["n"] - before["n"]) / (at["t"] - before["t"])

    def cpu_at(k: int) -> str:  # cores busy over that window, and RocksDB's background share of them
        before, at = window(k)
        dt = at["t"] - before["t"]
        cores, rocks = (at["cpu"] - before["cpu"]) / dt, (at["rocks"] - before["rocks"]) / dt
        return f"{cores:.2f} cores busy, {rocks:.2f} of them RocksDB's compactions and flushes"

    marks = [k for k in (100_000, 500_000, 1_000_000, n) if k <= n]
    marks = list(dict.fromkeys(marks))
    first = rate_at(marks[0])
    for k in marks:
        r = rate_at(k)
        at = min(samples, key=lambda s: abs(s["n"] - k))
        change = f", {100 * (r / first - 1):+.0f}% from {marks[0]:,}" if k != marks[0] else ""
        record("scale", f"ingest rate at {k:,} responses (window of {every:,})", f"{r:,.0f} docs/s",
               f"RSS then {at['rss']} MiB{change}; {cpu_at(k)}")
    record("scale", f"load of {n:,} responses, whole run", f"{n / end['t']:,.0f} docs/s",
           f"{end['t']:.0f} s, peak RSS {peak} MiB, {end['failed']} failed")
    from konbini_ld import open_store

    def on_disk(when: str) -> None:
        sizes = {p.name: _du(p) for p in store.iterdir() if p.is_dir() or p.suffix == ".sqlite"}
        total = _du(store)
        record("scale", f"store on disk @ {n:,}, {when}", f"{total / n / 1024:.1f} KiB/response",
               f"{total / 2**30:.1f} GiB: " + ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in sorted(sizes.items())))

    on_disk("as loaded")
    t0 = time.perf_counter()
    with open_store(store) as s:  # what `konbini-ld load` does after a large load
        s.compact()
    record("scale", f"compaction after the load @ {n:,}", f"{time.perf_counter() - t0:.0f} s",
           "as `konbini-ld load` does after 50,000 responses or more; the queries below run on it")
    on_disk("compacted")
    from plot import rate_and_rss

    rate_and_rss(samples + [end], ROOT / "bench" / "scale.svg", f"konbini-ld load of {n:,} responses", "responses loaded")
    from konbini_ld.query.catalog import named_queries
    from konbini_ld.sources.konbini.corpus import videos_page

    _add_videos(store)
    audio = videos_page(0, 0)["data"]["orderedItems"][0]["audio"]["id"]
    params = dict(QUERY_PARAMS, audio=audio)
    with open_store(store, read_only=True) as s:
        for name, q in named_queries().items():
            bound = {p.name: params[p.name] for p in q.params if p.name in params}
            once, p50, p95 = _named_timing(s, name, bound, repeat)
            from_index = s.answer(q.text, q.bind(bound)) is not None
            record("scale", f"{name} @ {n:,} (in-process)", f"{p50 * 1000:.1f} ms",
                   f"first call {once * 1000:,.1f} ms, p95 {p95 * 1000:.1f} ms" + (", from the index" if from_index else ""))
    target = Path(tempfile.mkdtemp())
    dt, rss, _ = run_measured([*KONBINI, "--store", str(store), "export", "-f", "turtle", "-o", str(target / "all.ttl")])
    record("scale", f"konbini-ld export -f turtle @ {n:,}", f"{dt:.0f} s",
           f"{(target / 'all.ttl').stat().st_size / 2**30:.1f} GiB of Turtle, peak {rss} MiB")
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(store.parent, ignore_errors=True)


# -- profile ---------------------------------------------------------------------------

#: Where ingest time goes, by the module a function lives in (first match wins).
STAGES = [
    ("read and parse the input", ("sources/", "mapping/envelope", "json/", "_json")),
    ("normalise (checks, literals)", ("mapping/normalize", "mapping/literals", "lexical")),
    ("expand (pyld, shape templates)", ("mapping/templates", "mapping/to_rdf", "mapping/contexts", "pyld/",
                                        "mapping/skolem", "mapping/grouping", "mapping/prepare")),
    ("archive (gzip, fsync)", ("store/log/", "gzip", "zlib", "fsync")),
    ("plan the upsert (diff, times)", ("store/upsert", "store/writer", "store/history", "store/provenance",
                                       "store/memo")),
    ("index beside the graph (SQLite)", ("store/index/", "sqlite3")),
    ("Oxigraph writes (bulk load, removes)", ("engines/oxigraph", "pyoxigraph")),
]


def bench_profile(n: int) -> None:
    """A cProfile of an in-process load of the n-response corpus, every write in line (so one
    thread does all the work), its time summed by stage."""

    from workload import profiled_load

    work = Path(tempfile.mkdtemp(prefix="kld-profile-"))
    totals, profiled, wall = profiled_load(work / "store", corpus(n), STAGES)
    for stage, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        record("profile", f"load {n} responses: {stage}", f"{seconds / profiled:.0%}",
               f"{seconds:.1f} s of {profiled:.1f} s profiled ({wall:.1f} s wall, one thread, profiler on)")
    shutil.rmtree(work, ignore_errors=True)


# -- search ----------------------------------------------------------------------------

#: What people type: common words (thousands of matches at 100k), an album, a creator, two
#: letters (no trigram: a scan), accents, and nothing found.
SEARCH_TEXTS = ["night", "love remix", "Greatest", "creator.200", "ni", "Café Tokyo", "zzzz"]


def bench_search(sizes: list[int], repeat: int, stores: dict[int, Path]) -> None:
    """``search`` from the text index against the plain SPARQL scan (on the ingest section's
    stores, else on stores loaded here)."""
    from konbini_ld import open_store
    from konbini_ld.query.catalog import get_named_query
    from konbini_ld.query.run import run_query
    from konbini_ld.store.index.textindex import FILENAME, TextIndex

    nq = get_named_query("search")
    for n in sizes:
        store = stores.get(n) or Path(tempfile.mkdtemp(prefix=f"kld-search-{n}-")) / "store"
        note = ""
        if n not in stores:
            dt, _, _ = run_measured([*KONBINI, "-q", "--store", str(store), "load", str(corpus(n))])
            note = f"; load {n / dt:,.0f} docs/s with it"
        with open_store(store, read_only=True) as s:
            assert s.index is not None, "no text index"
            fast: list[float] = []
            plain: list[float] = []
            for text in SEARCH_TEXTS:
                fast.append(_timed(lambda: list(s.search(text).rows()), repeat)[0])
                bound = nq.bind({"text": text})
                plain.append(_timed(lambda: list(run_query(s.engine, nq.text, bound).rows()),
                                    max(2, repeat // 10))[0])
            p50, slowest = statistics.median(fast), max(fast)
            base = statistics.median(plain)
            record("search", f"search @ {n} from the text index, p50 of {len(SEARCH_TEXTS)} texts", f"{p50 * 1000:.1f} ms",
                   f"slowest text {slowest * 1000:.1f} ms; plain SPARQL scan {base * 1000:.0f} ms = {base / p50:.0f}x")
            size = sum(f.stat().st_size for f in store.glob(FILENAME + "*"))
            t = time.perf_counter()
            scratch = TextIndex(None)
            audios = scratch.rebuild(s.engine.store, None)
            record("search", f"  text index @ {n}: size, rebuild from the graph", f"{size / 2**20:,.1f} MiB",
                   f"{audios:,} audios re-indexed in {time.perf_counter() - t:.1f} s{note}")
        if n not in stores:
            shutil.rmtree(store.parent, ignore_errors=True)


# -- endpoint under load ----------------------------------------------------------------


def bench_endpoint(n: int, clients: int, seconds: float, stores: dict[int, Path]) -> None:
    """``clients`` concurrent HTTP clients running the named queries for ``seconds`` against
    ``konbini-ld serve`` on an n-response store, then the same queries (parameters written into
    the text, the union of graphs as default graph) against ``oxigraph serve-read-only`` over a
    copy of the same data: throughput, latency percentiles, errors and the servers' memory."""
    import socket
    import threading

    import requests

    from konbini_ld import open_store
    from konbini_ld.query.catalog import named_queries

    work = Path(tempfile.mkdtemp(prefix=f"kld-endpoint-{n}-"))
    store = stores.get(n) or work / "store"
    if n not in stores:
        run_measured([*KONBINI, "-q", "--store", str(store), "load", str(corpus(n))])
    with open_store(store) as s:
        from konbini_ld.sources.konbini.corpus import videos_page

        audio = videos_page(0, 0)["data"]["orderedItems"][0]["audio"]["id"]
        s.engine.store.backup(str(work / "copy"))
    params = dict(QUERY_PARAMS, audio=audio)
    queries = {name: {p.name: params[p.name] for p in q.params} for name, q in named_queries().items()
               if q.form == "SELECT" and name not in ("trending", "rising-creators", "history", "provenance")}
    inline = {}
    for name, values in queries.items():  # for a plain SPARQL server: the values written into the text
        lines = named_queries()[name].text.splitlines()
        for key, value in values.items():  # (a benchmark client's own fixed values)
            term = f"<{value}>" if value.startswith("http") else json.dumps(value)
            lines = [line.replace(f"?{key} ", "") if line.lstrip().startswith("SELECT") else
                     re.sub(rf"\?{key}\b", term, line) for line in lines]
        inline[name] = "\n".join(lines)

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def rss_of(pid: int) -> int:
        """Resident MiB of a process and all its descendants (serve's workers are forked from a
        fork server it starts: its grandchildren)."""
        parents: dict[int, int] = {}
        sizes: dict[int, int] = {}
        for proc in Path("/proc").iterdir():
            try:
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(proc.name)] = int(stat[1])
                sizes[int(proc.name)] = int((proc / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                continue
        family, grew = {pid}, True
        while grew:
            more = {child for child, parent in parents.items() if parent in family} - family
            family |= more
            grew = bool(more)
        return sum(sizes.get(p, 0) for p in family) // 2**20

    def hammer(label: str, url_of: Callable[[str], tuple[str, dict[str, str]]], pid: int) -> None:
        stop = time.monotonic() + seconds
        latencies: list[float] = []
        errors = [0]
        peak = [0]
        lock = threading.Lock()
        names = sorted(queries)

        def client(k: int) -> None:
            session = requests.Session()
            i = k
            while time.monotonic() < stop:
                url, args = url_of(names[i % len(names)])
                i += 1
                t = time.perf_counter()
                try:
                    r = session.get(url, params=args, headers={"Accept": "application/sparql-results+json"}, timeout=60)
                    ok = r.status_code == 200
                except requests.RequestException:
                    ok = False
                dt = time.perf_counter() - t
                with lock:
                    latencies.append(dt) if ok else None
                    errors[0] += 0 if ok else 1

        def sample() -> None:
            while time.monotonic() < stop:
                peak[0] = max(peak[0], rss_of(pid))
                time.sleep(0.5)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        threads.append(threading.Thread(target=sample))
        t0 = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.monotonic() - t0
        latencies.sort()

        def pct(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(q * (len(latencies) - 1)))] * 1000 if latencies else 0.0

        record("endpoint", f"{label}, {clients} clients x {seconds:g} s @ {n}", f"{len(latencies) / wall:,.0f} req/s",
               f"p50 {pct(0.5):,.0f} ms, p95 {pct(0.95):,.0f} ms, p99 {pct(0.99):,.0f} ms, {errors[0]} errors, "
               f"peak RSS {peak[0]} MiB, {len(queries)} named queries in turn")

    port = free_port()
    server = subprocess.Popen([*KONBINI, "--store", str(store), "serve", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(base + "/queries")
        hammer("konbini-ld serve (named queries)", lambda name: (f"{base}/queries/{name}", queries[name]), server.pid)
    finally:
        server.terminate()
        server.wait(30)
    port = free_port()
    oxigraph = str(Path(sys.executable).parent / "oxigraph")
    server = subprocess.Popen([oxigraph, "serve-read-only", "--location", str(work / "copy"), "--bind",
                               f"127.0.0.1:{port}", "--union-default-graph"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(base + "/query?query=ASK%7B%7D")
        hammer("oxigraph serve-read-only (same queries)", lambda name: (f"{base}/query", {"query": inline[name]}),
               server.pid)
    finally:
        server.terminate()
        server.wait(30)
    shutil.rmtree(work, ignore_errors=True)


def _wait_for(url: str) -> None:
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


# -- export ----------------------------------------------------------------------------


def bench_export(stores: dict[int, Path]) -> None:
    for n, path in sorted(stores.items()):
        target = Path(tempfile.mkdtemp())
        # Oxigraph's own dump of the same store (the floor)
        code = (
            "import pyoxigraph as ox, sys, time;"
            "s = ox.Store.read_only(sys.argv[1]); t = time.perf_counter();"
            "from konbini_ld.vocab import PREFIXES;"
            "f = open(sys.argv[2] + 'all.ttl', 'wb');"
            "[s.dump(f, ox.RdfFormat.TURTLE, from_graph=g, prefixes=PREFIXES) for g in s.named_graphs()];"
            "print(time.perf_counter() - t)"
        )
        p = subprocess.run([sys.executable, "-c", code, str(path / "oxigraph"), str(target / "ox-")], capture_output=True, text=True, check=True)
        ox_dt = float(p.stdout.strip())
        record("export", f"oxigraph dump turtle @ {n} (in-process floor)", f"{ox_dt:.2f} s")
        for fmt in ("turtle", "jsonld"):
            dt, rss, _ = run_measured([*KONBINI, "--store", str(path), "export", "-f", fmt, "-o", str(target / f"g.{fmt}")])
            note = f"peak {rss} MiB"
            if fmt == "turtle":
                note += f", {dt / ox_dt:.1f}x oxigraph dump (process start included)"
            record("export", f"konbini-ld export -f {fmt} @ {n}", f"{dt:.2f} s", note)
        shutil.rmtree(target, ignore_errors=True)


# -- startup --------------------------------------------------------------------------------


def bench_startup(repeat: int) -> None:
    base = [sys.executable, "-c", "pass"]
    for label, cmd in (("python -c pass (floor)", base), ("konbini-ld --help", [*KONBINI, "--help"]),
                       ("konbini-ld queries", [*KONBINI, "queries"])):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            times.append(time.perf_counter() - t)
        record("startup", label, f"{statistics.median(times) * 1000:.0f} ms", f"median of {repeat}")


# -- fetch -----------------------------------------------------------------------------------

SEQUENTIAL = r'''
import json, sys, requests
base, key, ids = sys.argv[1], sys.argv[2], sys.argv[3:]
s = requests.Session()
for i in ids:
    r = s.get(f"{base}/v1/tiktok/audios/{i}", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    r.raise_for_status()
print(len(ids))
'''


def bench_fetch(n: int, large: int, latency: float, concurrencies: list[int]) -> None:
    from konbini_ld.sources.konbini.fakeapi import FakeKonbiniAPI, audio_id

    with FakeKonbiniAPI(api_key="bench-key", latency=latency, audios=max(n, large)) as api:
        env = dict(os.environ, KONBINI_API_KEY="bench-key", KONBINI_API_URL=api.url)
        ids = [audio_id(i) for i in range(n)]
        seq_dt, _, _ = run_measured([sys.executable, "-c", SEQUENTIAL, api.url, "bench-key", *ids], env=env)
        seq_rate = n / seq_dt
        record("fetch", f"sequential requests loop, {n} audios @ {latency * 1000:.0f} ms", f"{seq_dt:.2f} s",
               f"{seq_rate:.2f} audios/s")
        for count in sorted({n, large}):
            ids = [audio_id(i) for i in range(count)]
            for c in concurrencies:
                if c == 1 and count > n:
                    continue
                store = Path(tempfile.mkdtemp()) / "store"
                api.reset()
                dt, rss, _ = run_measured(
                    [*KONBINI, "-q", "--store", str(store), "fetch", "--concurrency", str(c), *ids], env=env
                )
                label = f"konbini-ld fetch --concurrency {c}" + (" (default)" if c == 32 else "")
                record("fetch", f"{label}, {count} audios", f"{dt:.2f} s",
                       f"{count / dt:.1f} audios/s = {count / dt / seq_rate:.1f}x sequential, peak {rss} MiB, "
                       "process start included")
                if count == n:
                    api.reset()
                    dt2, _, _ = run_measured([*KONBINI, "-q", "--store", str(store), "fetch", *ids], env=env)
                    record("fetch", f"  second fetch of the same {count} ids", f"{dt2:.2f} s",
                           f"{api.count()} requests sent")
                shutil.rmtree(store.parent, ignore_errors=True)


# -- report ------------------------------------------------------------------------------------


# -- history -----------------------------------------------------------------------


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def bench_history(n: int, k: int, naive_docs: int, repeat: int) -> None:
    from konbini_ld import open_store
    from konbini_ld.sources.konbini.corpus import corpus_lines

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"history-{n}x{k}.jsonl"
    if not path.exists():
        with open(path, "w") as fh:
            fh.writelines(corpus_lines(n, observations=k))
    total = n * k
    dt, rss, p = run_measured([sys.executable, "-c", NAIVE, str(path), str(ROOT / "contexts" / "konbini-social.jsonld"),
                               str(naive_docs)])
    naive_rate = naive_docs / dt
    record("history", f"naive pyld+rdflib in-memory, first {naive_docs:,} of the {n}x{k} corpus", f"{naive_rate:,.0f} docs/s",
           f"peak {rss} MiB (no history, no upsert: its rate per response is flat)")
    work = Path(tempfile.mkdtemp(prefix="kld-history-"))
    store = work / "store"
    dt, rss, p = run_measured([*KONBINI, "-q", "--store", str(store), "load", str(path)])
    rate = total / dt
    record("history", f"konbini-ld load, {n:,} audios x {k} observations ({total:,} responses)", f"{rate:,.0f} docs/s",
           f"{dt:.0f} s, peak {rss} MiB = {rate / naive_rate:.1f}x naive")
    import pyoxigraph as ox

    with open_store(store, read_only=True) as s:
        quads = len(s)
        history = sum(1 for _ in s.engine.iter_quads(ox.NamedNode("urn:konbini-ld:graph:history")))
        points = history // 4
        dump = work / "history.nq"
        with open(dump, "wb") as fh:
            ox.serialize(s.engine.iter_quads(ox.NamedNode("urn:konbini-ld:graph:history")), fh, ox.RdfFormat.N_QUADS)
    graph_bytes = _du(store) - _du(store / "archive")
    record("history", f"  store on disk ({quads:,} quads, {points:,} history points)", f"{graph_bytes / 2**20:,.0f} MiB",
           f"archive {_du(store / 'archive') / 2**20:,.0f} MiB beside it")
    alone = ox.Store(str(work / "alone"))
    with open(dump, "rb") as fh:
        alone.bulk_load(fh, ox.RdfFormat.N_QUADS)
    alone.optimize()
    alone.flush()
    del alone
    per_point = _du(work / "alone") / points
    record("history", "  bytes per history point (its 4 quads alone, bulk-loaded, compacted)", f"{per_point:,.0f} B",
           f"100k audios x 30 observations of ~{points / total:.1f} counters each: "
           f"{per_point * 100_000 * 30 * points / total / 2**30:,.1f} GiB of points")
    with open_store(store, read_only=True) as s:
        entity = "https://www.tiktok.com/@creator.1"
        audio = next(iter(s.run_named("trending").rows()))[0].value
        for name, params in [("trending", {}), ("trending", {"since": "2026-11-05T00:00:00Z"}),
                             ("rising-creators", {}), ("history", {"entity": audio}), ("history", {"entity": entity})]:
            def go() -> None:
                list(s.run_named(name, params).rows())

            p50, p95 = _timed(go, repeat)
            label = f"{name} " + " ".join(f"{k}={v.rsplit('/', 1)[-1]}" for k, v in params.items())
            rows_n = sum(1 for _ in s.run_named(name, params).rows())
            record("history", f"{label.strip()} @ {n}x{k} (in-process)", f"{p50 * 1000:,.1f} ms",
                   f"p95 {p95 * 1000:,.1f} ms, {rows_n} rows" + _beside_plain(s, name, params, p50, repeat))
    shutil.rmtree(work, ignore_errors=True)


def write_markdown(args: argparse.Namespace) -> None:
    lines = [
        "# konbini-ld benchmarks",
        "",
        f"Generated by `python bench/run.py {' '.join(sys.argv[1:])}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.",
        "The machine is shared and noisy: compare the ratios measured in the same run, not absolute figures.",
        "",
        "| section | measurement | value | notes |",
        "|---|---|---:|---|",
    ]
    target = ROOT / "bench" / "BENCHMARKS.md"
    ran = {r[0] for r in rows}
    kept = []
    if target.exists():  # rows of sections this run did not measure stay as they were
        for line in target.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if line.startswith("| ") and len(cells) == 4 and cells[0] not in ("section", *ran) and not cells[0].startswith("-"):
                kept.append(line)
    lines += [f"| {s} | {w} | {v} | {n} |" for s, w, v, n in rows]
    if kept:
        lines += kept
        lines[2] += f" Rows of the sections not in this run ({', '.join(sorted({k.split('|')[1].strip() for k in kept}))}) are from an earlier run."
    if (ROOT / "bench" / "scale.svg").exists():
        lines += ["", "Ingest rate and peak RSS against responses loaded, from the last `scale` run:", "",
                  "![ingest rate and RSS against responses loaded](scale.svg)"]
    if (ROOT / "bench" / "wscale.svg").exists():
        lines += ["", "Load rate and peak RSS against responses loaded on the workload's shape (daily loads of "
                  "audios with their page of videos), from the last `wscale` run:", "",
                  "![load rate and RSS against responses loaded, daily workload](wscale.svg)"]
    target.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,20000,100000", help="corpus sizes (responses)")
    parser.add_argument("--only", default="workload,ingest,bound,profile,differential,queries,search,export,startup,fetch,"
                        "history,keepup,runaways",
                        help="sections to run")
    parser.add_argument("--naive-max", type=int, default=20000, help="largest size the naive pipeline runs at")
    parser.add_argument("--repeat", type=int, default=20, help="repetitions for latency percentiles")
    parser.add_argument("--fetch-audios", type=int, default=200)
    parser.add_argument("--fetch-large", type=int, default=1000, help="audios for the throughput rows")
    parser.add_argument("--fetch-latency", type=float, default=0.2)
    parser.add_argument("--concurrency", default="1,16,32,64")
    parser.add_argument("--profile-size", type=int, default=20000, help="responses the profile section loads")
    parser.add_argument("--endpoint", default="100000x50x60", help="responses x clients x seconds of the endpoint section")
    parser.add_argument("--history", default="20000x10", help="audios x observations for the history section")
    parser.add_argument("--history-naive", type=int, default=20000, help="responses the naive pipeline runs on there")
    parser.add_argument("--workload", default="1000x3", help="audios x days of the workload section (audios + pages)")
    parser.add_argument("--workload-naive", type=int, default=200, help="responses of day 1 the naive pipeline runs on")
    parser.add_argument("--workload-profile", type=int, default=300, help="audios of the refresh day profiled (0: none)")
    parser.add_argument("--wscale", default="2500x10", help="audios x days of the wscale section")
    parser.add_argument("--keepup", type=int, default=300, help="audios of the keepup section (fetch --videos)")
    parser.add_argument("--runaways", default="6,20,40", help="runaway clients beside a cheap query (runaways section)")
    args = parser.parse_args()
    sections = set(args.only.split(","))
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(f"{'section':8} {'measurement':58} {'value':>16}  notes")
    stores: dict[int, Path] = {}
    if sections & {"ingest", "queries", "export", "search", "endpoint"} and sections != {"scale"}:
        stores = bench_ingest(sizes, args.naive_max)
    if "bound" in sections:
        bench_bound(sizes)
    if "profile" in sections:
        bench_profile(args.profile_size)
    if "differential" in sections:
        bench_differential(sizes)
    if "queries" in sections:
        bench_queries(stores, args.repeat)
    if "search" in sections:
        bench_search(sizes, args.repeat, stores)
    if "export" in sections:
        bench_export(stores)
    if "endpoint" in sections:
        size, clients, secs = args.endpoint.lower().split("x")
        bench_endpoint(int(size), int(clients), float(secs), stores)
    if "startup" in sections:
        bench_startup(max(5, args.repeat // 2))
    if "fetch" in sections:
        bench_fetch(args.fetch_audios, args.fetch_large, args.fetch_latency, [int(c) for c in args.concurrency.split(",")])
    if "scale" in sections:
        bench_scale(max(sizes), max(5, args.repeat // 2))
    if "history" in sections:
        n, k = (int(x) for x in args.history.lower().split("x"))
        bench_history(n, k, min(args.history_naive, n * k), max(5, args.repeat // 2))
    if "workload" in sections:
        from workload import bench_workload

        n, k = (int(x) for x in args.workload.lower().split("x"))
        bench_workload(n, k, args.workload_naive, record, run_measured, NAIVE, args.workload_profile, STAGES, REPLAY)
    if "wscale" in sections:
        from workload import bench_workload_scale

        n, k = (int(x) for x in args.wscale.lower().split("x"))
        bench_workload_scale(n, k, record)
    if "keepup" in sections:
        from keepup import bench_keepup

        bench_keepup(args.keepup, args.fetch_latency, record, run_measured)
    if "runaways" in sections:
        from runaways import bench_runaways

        bench_runaways([int(c) for c in args.runaways.split(",")], 10.0, record)
    for path in stores.values():
        shutil.rmtree(path.parent, ignore_errors=True)
    write_markdown(args)


if __name__ == "__main__":
    main()
