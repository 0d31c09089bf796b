"""Fault injection at scale: kills, damaged archives and stores, a full disk, hostile input, a
hostile API (answers that lie about credits, identity, size, encoding or time).

    python bench/faults.py [--size 20000] [--trials 5] [--seed 1] [--only WORD]

Builds a store of ``--size`` synthetic responses, then injects each fault ``--trials`` times
against real processes (``konbini-ld`` run as a subprocess, the loopback fake API for fetch),
checks what a user would check afterwards, and prints a table (also written to
bench/FAULTS.md): faults injected and survived, bad inputs tried and handled cleanly, credits
spent again after kills, tracebacks seen. The same injections run at small scale in the test
suite (tests/test_faults.py, tests/test_hostile.py, tests/test_serve_clients.py). The serve rows
drive a real `konbini-ld serve` over the scale store with hostile HTTP clients.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from konbini_ld.store.log.archive import Archive  # noqa: E402
from konbini_ld.sources.konbini.corpus import audio_id, corpus_lines  # noqa: E402
from konbini_ld.sources.konbini.fakeapi import FakeKonbiniAPI  # noqa: E402

KEY = "bench-fault-key"


@dataclass
class Row:
    fault: str
    injected: int = 0
    survived: int = 0
    notes: list[str] = field(default_factory=list)


ROWS: list[Row] = []
TRACEBACKS = 0


def run(store: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 900,
        preexec: object = None) -> subprocess.CompletedProcess[str]:
    global TRACEBACKS
    out = subprocess.run([sys.executable, "-m", "konbini_ld", "--store", str(store), *args], capture_output=True,
                         text=True, timeout=timeout, env=env, preexec_fn=preexec)  # type: ignore[arg-type]
    TRACEBACKS += out.stderr.count("Traceback")
    return out


def spawn(store: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "konbini_ld", "--store", str(store), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=env)


def audios(store: Path) -> int:
    out = run(store, "stats", "--json")
    return int(json.loads(out.stdout)["audios"]) if out.returncode == 0 else -1


def kill_at(proc: subprocess.Popen[str], after: float) -> None:
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def fresh_copy(base: Path, work: Path, name: str) -> Path:
    target = work / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(base, target)
    return target


def kills_during_load(corpus: Path, work: Path, n: int, trials: int, rng: random.Random, load_s: float) -> None:
    row = Row("kill -9 during load")
    store = work / "load-kills"
    for _ in range(trials):
        proc = spawn(store, "load", str(corpus))
        kill_at(proc, rng.uniform(0.1, load_s))
        row.injected += 1
        out = run(store, "load", str(corpus))
        if out.returncode == 0 and audios(store) == n:
            row.survived += 1
    row.notes.append(f"killed at random points of a {n:,}-response load; the next load converges to {n:,} audios")
    ROWS.append(row)


def kills_during_rebuild(base: Path, work: Path, n: int, trials: int, rng: random.Random, rebuild_s: float) -> None:
    row = Row("kill -9 during rebuild")
    store = fresh_copy(base, work, "rebuild-kills")
    sizes = []
    for _ in range(trials):
        proc = spawn(store, "rebuild")
        kill_at(proc, rng.uniform(0.2, rebuild_s))
        row.injected += 1
        count = audios(store)
        sizes.append(count)
        if count == n and run(store, "query", "top-audios", "-f", "csv").returncode == 0:
            row.survived += 1
    row.notes.append(f"audios right after each kill: {sorted(set(sizes))} (expected {n:,}: old graph or new)")
    ROWS.append(row)


def kills_during_fetch(work: Path, n: int, trials: int, rng: random.Random) -> None:
    row = Row("kill -9 during fetch")
    store = work / "fetch-kills"
    ids = work / "ids.txt"
    ids.write_text("\n".join(audio_id(i) for i in range(n)) + "\n")
    rebought = 0
    with FakeKonbiniAPI(api_key=KEY, audios=n, latency=0.01) as api:
        env = {**os.environ, "KONBINI_API_KEY": KEY, "KONBINI_API_URL": api.url}
        for _ in range(trials):
            received = {r.key for r in Archive(store / "archive").records()} if (store / "archive").exists() else set()
            api.reset()
            proc = subprocess.Popen(
                [sys.executable, "-m", "konbini_ld", "--store", str(store), "fetch", "--ids-file", str(ids),
                 "--concurrency", "64"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            time.sleep(rng.uniform(1.0, 6.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            row.injected += 1
            again = sum(1 for r in api.requests if f"audio:{r.path.rsplit('/', 1)[-1]}" in received)
            rebought += again
            if again == 0:
                row.survived += 1
        received = {r.key for r in Archive(store / "archive").records()}
        api.reset()
        out = run(store, "fetch", "--ids-file", str(ids), "--concurrency", "64", env=env)
        again = sum(1 for r in api.requests if f"audio:{r.path.rsplit('/', 1)[-1]}" in received)
        rebought += again
        keys = [r.key for r in Archive(store / "archive").records()]
        complete = out.returncode == 0 and len(keys) == len(set(keys)) == n
    row.notes.append(f"credits re-spent for received responses: {rebought}; final run completes all {n:,} "
                     f"with each bought once: {'yes' if complete else 'NO'}")
    if not complete:
        row.survived = min(row.survived, row.injected - 1)
    ROWS.append(row)


def sigterm_during_fetch(work: Path, n: int, trials: int) -> None:
    row = Row("SIGTERM during fetch")
    ids = work / "ids-term.txt"
    ids.write_text("\n".join(audio_id(i) for i in range(n)) + "\n")
    waits = []
    with FakeKonbiniAPI(api_key=KEY, audios=n, latency=0.05) as api:
        env = {**os.environ, "KONBINI_API_KEY": KEY, "KONBINI_API_URL": api.url}
        for t in range(trials):
            store = work / f"term-{t}"
            api.reset()
            proc = subprocess.Popen(
                [sys.executable, "-m", "konbini_ld", "--store", str(store), "fetch", "--ids-file", str(ids),
                 "--concurrency", "64"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            time.sleep(3)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=120)
            waits.append(time.monotonic() - sent)
            row.injected += 1
            archived = sum(1 for _ in Archive(store / "archive").records())
            if proc.returncode == 143 and archived == len(api.requests) and "Traceback" not in err:
                row.survived += 1
    row.notes.append(f"exit 143, every answer archived; time from SIGTERM to exit: max {max(waits):.2f} s")
    ROWS.append(row)


def damaged_archive(base: Path, work: Path, n: int, trials: int, rng: random.Random) -> None:
    flips = Row("bytes flipped inside an archive segment")
    cuts = Row("archive segment truncated mid-way")
    for kind, row in (("flip", flips), ("cut", cuts)):
        lost_total = 0
        for t in range(trials):
            store = fresh_copy(base, work, f"damage-{kind}-{t}")
            seg = sorted((store / "archive").glob("*.jsonl.gz"))[0]
            data = bytearray(seg.read_bytes())
            at = rng.randrange(len(data) // 10, len(data) * 9 // 10)
            if kind == "flip":
                for i in range(4):
                    data[at + i * 11] ^= 0xA5
                seg.write_bytes(bytes(data))
            else:
                seg.write_bytes(bytes(data[:at]))
            row.injected += 1
            refused = run(store, "rebuild")
            intact = audios(store) == n
            scan = Archive(store / "archive").verify()
            lost_total += scan.lost
            accepted = run(store, "rebuild", "--accept-damage")
            after = audios(store)
            load = run(store, "load", str(ROOT / "samples" / "seed-audio.json"))
            if (refused.returncode == 1 and "records lost" in refused.stderr and intact and accepted.returncode == 0
                    and after == n - scan.lost and load.returncode == 0):
                row.survived += 1
        row.notes.append(f"rebuild refused and left {n:,} audios; --accept-damage kept every readable record "
                         f"({lost_total / trials:,.0f} lost per trial on average)")
        ROWS.append(row)


def damaged_store(base: Path, work: Path, n: int) -> None:
    row = Row("damaged or deleted graph (RocksDB)")
    for kind in ("CURRENT", "sst", "MANIFEST", "deleted", "state.json"):
        store = fresh_copy(base, work, f"store-{kind}")
        ox = store / "oxigraph"
        if kind == "CURRENT":
            (ox / "CURRENT").write_text("garbage\n")
        elif kind == "sst":
            max(ox.glob("*.sst"), key=lambda p: p.stat().st_size).unlink()
        elif kind == "MANIFEST":
            m = next(ox.glob("MANIFEST-*"))
            m.write_bytes(m.read_bytes()[:16] + os.urandom(64))
        elif kind == "deleted":
            shutil.rmtree(ox)
        else:
            (store / "state.json").write_text("{oops")
        row.injected += 1
        first = run(store, "load", str(ROOT / "samples" / "seed-audio.json"))
        rebuilt = run(store, "rebuild")
        if first.returncode == 1 and "konbini-ld rebuild" in first.stderr and rebuilt.returncode == 0 \
                and audios(store) == n:
            row.survived += 1
    row.notes.append("CURRENT garbled, largest .sst deleted, MANIFEST garbled, oxigraph/ deleted, state.json garbled: "
                     "one line naming `konbini-ld rebuild`, which restores every audio")
    ROWS.append(row)


def full_disk(base: Path, corpus: Path, work: Path, n: int, trials: int, rng: random.Random) -> None:
    row = Row("full disk during load (file-size limit)")
    largest = max(p.stat().st_size for p in base.rglob("*") if p.is_file())
    for t in range(trials):
        store = work / f"disk-{t}"
        limit = int(largest * rng.uniform(0.05, 0.9))  # some file the load writes outgrows it

        def full() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        out = run(store, "load", str(corpus), preexec=full)
        row.injected += 1
        archived = {r.body for r in Archive(store / "archive").records()}
        again = run(store, "stats", "--json")
        recovered = run(store, "load", str(ROOT / "samples" / "seed-audio.json"))
        ok = out.returncode == 1 and recovered.returncode == 0 and audios(store) == len(archived) + 1
        final = run(store, "load", str(corpus))
        if ok and again.returncode in (0, 1) and final.returncode == 0 and audios(store) == n + 1:
            row.survived += 1
        else:
            row.notes.append(f"NOT survived at a {limit:,}-byte limit: exit {out.returncode}, {out.stderr[-200:]!r}")
    row.notes.append("load stops with one error line; what reached the archive is in the graph after the next "
                     "command; loading again completes")
    ROWS.append(row)


def hostile_inputs(work: Path) -> Row:
    from test_hostile import BAD, GOOD

    row = Row("hostile inputs (each among 1,000 good lines)")
    store = work / "hostile"
    good = [GOOD.replace("{n}", str(i)) for i in range(1000)]
    for label, line, says in BAD:
        path = work / "hostile.jsonl"
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as fh:
            fh.write("\n".join(good[:500] + [line.replace("\n", " ")] + good[500:]) + "\n")
        out = run(store, "load", str(path))
        row.injected += 1
        errors = [x for x in out.stderr.splitlines() if x.startswith("error:")]
        if out.returncode == 1 and len(errors) == 1 and says in errors[0] and audios(store) == 1000:
            row.survived += 1
        else:
            row.notes.append(f"NOT handled: {label}")
    row.notes.insert(0, "one located error line each, the 1,000 good lines loaded, the store opens after")
    ROWS.append(row)
    return row


def _hostile_answer(kind: str, i: int) -> object:
    """One misbehaving answer of ``kind`` for synthetic audio ``i`` (the fake API's Scripted)."""
    import gzip as gz

    from konbini_ld.sources.konbini.corpus import audio_response
    from konbini_ld.sources.konbini.fakeapi import Scripted

    body = json.dumps(audio_response(i), ensure_ascii=False)
    envelope = {"errors": [{"code": "unavailable", "message": "try later"}], "data": None}
    return {
        "credit header -1": Scripted(200, body, headers={"X-Credits-Used": "-1"}),
        "credit header 10^30": Scripted(200, body, headers={"X-Credits-Used": "1" + "0" * 30}),
        "credit header garbage": Scripted(200, body, headers={"X-Credits-Used": "lots", "X-Credits-Remaining": "-7"}),
        "proxy HTML 404": Scripted(404, "<html><h1>404</h1>nginx</html>", content_type="text/html"),
        "router 404 (no route)": Scripted(404, {"errors": [{"code": "route_not_found"}], "data": None},
                                          headers={"X-Credits-Used": ""}),
        "another audio's answer": Scripted(200, json.dumps(audio_response(i + 1))),
        "redirect to another host": Scripted(302, "", headers={"Location": "http://127.0.0.1:9/x"}),
        "gzip bomb (200 MiB)": Scripted(200, _BOMB, headers={"Content-Encoding": "gzip"}),
        "endless chunked body": Scripted(200, body, endless=True),
        "a byte every 50 ms": Scripted(200, body, drip=0.05),
        "UTF-8 labelled latin-1": Scripted(200, body.replace("\"name\": \"", "\"name\": \"Beyonc\u00e9 ", 1).encode(),
                                           content_type="application/json; charset=iso-8859-1"),
        "bytes that are not UTF-8": Scripted(200, body.replace("\"name\": \"", "\"name\": \"Beyonc\u00e9 ", 1).encode("latin-1")),
        "billed 503, then the answer": Scripted(503, envelope, bill=True),
        "HTML 200 (captive portal)": Scripted(200, "<html>sign in</html>", content_type="text/html"),
        "gzip that is cut off": Scripted(200, gz.compress(body.encode())[:-20], headers={"Content-Encoding": "gzip"}),
        "the key JSON-escaped in the answer": Scripted(200, body.replace(
            '"name": "', '"name": "' + "".join(f"\\u{ord(c):04x}" for c in KEY) + " ", 1)),
        "the key in a credit header": Scripted(200, body, headers={"X-Credits-Used": KEY}),
        "another audio nested inside": Scripted(200, json.dumps(
            {"data": {**audio_response(i)["data"], "inReplyTo": audio_response(i + 1)["data"]}})),
        "padded to 12 MiB (gzipped)": Scripted(200, gz.compress(body.replace("{", "{" + " " * (12 << 20), 1).encode()),
                                               headers={"Content-Encoding": "gzip"}),
    }[kind]


_BOMB = b""
HOSTILE_KINDS = ["credit header -1", "credit header 10^30", "credit header garbage", "proxy HTML 404",
                 "router 404 (no route)", "another audio's answer", "redirect to another host", "gzip bomb (200 MiB)",
                 "endless chunked body", "a byte every 50 ms", "UTF-8 labelled latin-1", "bytes that are not UTF-8",
                 "billed 503, then the answer", "HTML 200 (captive portal)", "gzip that is cut off",
                 "the key JSON-escaped in the answer", "the key in a credit header", "another audio nested inside",
                 "padded to 12 MiB (gzipped)"]


def hostile_api(work: Path, n: int, trials: int, rng: random.Random) -> None:
    """A fetch of ``n`` audios where a tenth of the answers misbehave, each kind of misbehaviour
    ``trials`` times per run: what the run counts and keeps, then what a clean run does next."""
    import gzip as gz

    global _BOMB
    _BOMB = gz.compress(b" " * (200 << 20), compresslevel=9)
    for kind in HOSTILE_KINDS:
        row = Row(f"API answer: {kind}")
        store = work / f"hostile-api-{HOSTILE_KINDS.index(kind)}"
        with FakeKonbiniAPI(api_key=KEY, audios=n) as api:
            env = {**os.environ, "KONBINI_API_KEY": KEY, "KONBINI_API_URL": api.url}
            chosen = rng.sample(range(n), trials)
            for i in chosen:
                api.script(f"/v1/tiktok/audios/{audio_id(i)}", _hostile_answer(kind, i))  # type: ignore[arg-type]
            ids = work / "ids-hostile.txt"
            ids.write_text("\n".join(audio_id(i) for i in range(n)) + "\n")
            started = time.monotonic()
            first = run(store, "fetch", "--ids-file", str(ids), "--timeout", "5", "--retries", "2", env=env)
            took = time.monotonic() - started
            billed_first = api.credits_used
            row.injected += trials
            archive = list(Archive(store / "archive").records())
            small = all(len(r.body) < 16 << 20 for r in archive)
            leaked = any(KEY in r.body or KEY in repr(r) for r in archive)
            exported = run(store, "export", "-f", "nq")
            leaked = leaked or KEY in exported.stdout or KEY in first.stderr
            api.reset()
            second = run(store, "fetch", "--ids-file", str(ids), env=env)
            asked = {r.path.rsplit("/", 1)[-1] for r in api.requests}
            out = run(store, "stats", "--json")
            stats = json.loads(out.stdout) if out.returncode == 0 else {}
            billed = billed_first + api.credits_used
            again_ok = asked <= {audio_id(i) for i in chosen}  # only what went wrong is asked again
            exact = stats.get("credits_spent") == billed and stats.get("audios") == n
            if first.returncode in (0, 1) and second.returncode == 0 and small and again_ok and exact and not leaked:
                row.survived += trials
            row.notes.append(f"{n:,} audios, {trials} misbehaving: first run {took:.1f} s, exit {first.returncode}; "
                             f"asked again next run {len(asked)}; stats credits {stats.get('credits_spent')} = "
                             f"billed {billed}: {'yes' if exact else 'NO'}; nothing over 16 MiB archived: "
                             f"{'yes' if small else 'NO'}; the key kept or shown: {'YES' if leaked else 'no'}")
        ROWS.append(row)


def archive_unwritable_during_fetch(work: Path, n: int, trials: int, rng: random.Random) -> None:
    """The archive's HEAD cannot be replaced from a random moment of a fetch on (a disk gone bad)."""
    import threading

    row = Row("archive unwritable during fetch")
    ids = work / "ids-unwritable.txt"
    ids.write_text("\n".join(audio_id(i) for i in range(n)) + "\n")
    rebought = 0
    for t in range(trials):
        store = work / f"unwritable-{t}"
        with FakeKonbiniAPI(api_key=KEY, audios=n, latency=0.005) as api:
            env = {**os.environ, "KONBINI_API_KEY": KEY, "KONBINI_API_URL": api.url}
            at = rng.randrange(n // 10, n // 2)
            stop = threading.Event()

            def breaker(store: Path = store, at: int = at) -> None:
                while not stop.is_set():
                    if (store / "archive" / "HEAD").exists() and Archive(store / "archive").last_seq >= at:
                        try:
                            (store / "archive" / "HEAD.tmp").mkdir()
                            return
                        except OSError:
                            pass
                    time.sleep(0.005)

            thread = threading.Thread(target=breaker, daemon=True)
            thread.start()
            first = run(store, "fetch", "--ids-file", str(ids), "--concurrency", "32", env=env)
            stop.set()
            thread.join()
            shutil.rmtree(store / "archive" / "HEAD.tmp", ignore_errors=True)
            bought = {r.path.rsplit("/", 1)[-1] for r in api.requests}
            api.reset()
            second = run(store, "fetch", "--ids-file", str(ids), env=env)
            again = sum(1 for r in api.requests if r.path.rsplit("/", 1)[-1] in bought)
            rebought += again
            keys = [r.key for r in Archive(store / "archive").records()]
            row.injected += 1
            if first.returncode == 1 and second.returncode == 0 and again == 0 and len(keys) == len(set(keys)) == n:
                row.survived += 1
    row.notes.append(f"answers received before and after the failure kept (unarchived/, adopted on the next open); "
                     f"credits re-spent: {rebought}")
    ROWS.append(row)


def future_times(base: Path, corpus: Path, work: Path) -> None:
    row = Row("observation times in the future")
    store = fresh_copy(base, work, "future")
    for when in ("2062-11-01T00:00:00Z", "9999-12-31T23:59:59Z"):
        out = run(store, "load", "--observed-at", when, str(corpus))
        row.injected += 1
        if out.returncode == 2 and "in the future" in out.stderr:
            row.survived += 1
    lines = corpus.read_text().splitlines()[:1000]
    dated = work / "dated.jsonl"
    dated.write_text("".join(json.dumps({"request": {"url": "https://api.konbiniapi.com/v1/tiktok/audios/1"},
                                         "status": 200, "headers": {"Date": "Fri, 31 Dec 9999 00:00:00 GMT"},
                                         "body": json.loads(line)}) + "\n" for line in lines))
    out = run(store, "load", str(dated))
    row.injected += 1
    if out.returncode == 1 and out.stderr.count("in the future") == len(lines):
        row.survived += 1
    row.notes.append(f"--observed-at in 2062 and 9999: usage error; {len(lines):,} recorded exchanges dated 9999: "
                     "one located error each, nothing frozen")
    ROWS.append(row)


def restored_archive(base: Path, work: Path, n: int) -> None:
    """A backup of the archive alone put back over a newer one: the next load never reuses a number,
    and rebuild refuses to shrink the graph."""
    row = Row("archive restored from an older backup")
    store = fresh_copy(base, work, "restored")
    backup = work / "archive-backup"
    shutil.copytree(store / "archive", backup)
    extra = work / "extra.jsonl"
    extra.write_text("".join(line.rstrip("\n") + "\n" for line in list(corpus_lines(n + 1000))[n:]))
    run(store, "load", str(extra))
    shutil.rmtree(store / "archive")
    shutil.copytree(backup, store / "archive")
    out = run(store, "load", str(extra), "--observed-at", "2026-11-02T00:00:00Z")
    seqs = [r.seq for r in Archive(store / "archive").records()]
    rebuilt = run(store, "rebuild")
    row.injected += 1
    if out.returncode == 0 and len(seqs) == len(set(seqs)) and rebuilt.returncode == 1 and "lost" in rebuilt.stderr:
        row.survived += 1
    row.notes.append("new records numbered after what the graph applied; rebuild names the lost records and "
                     "refuses to shrink the graph")
    ROWS.append(row)


# -- serve: what HTTP clients send ---------------------------------------------------------------------


def _serve_stderr_tracebacks(served: object) -> None:
    global TRACEBACKS
    TRACEBACKS += "".join(getattr(served, "lines", [])).count("Traceback")


def serve_clients(base: Path, work: Path, n: int, trials: int, rng: random.Random) -> None:
    """Hostile HTTP clients of `konbini-ld serve` over the scale store: each row a class of fault,
    injected against a real server process, checked from a client's side."""
    import statistics
    import threading

    import requests
    from test_serve_clients import BIG, CHEAP, RUNAWAY, raw, rss, workers
    from test_server import Served

    store = fresh_copy(base, work, "serve-clients")
    url_of = lambda s: s.url + "/sparql"  # noqa: E731

    # runaways sent again and again beside cheap queries
    row = Row("runaway queries beside cheap ones (serve)")
    worst: list[float] = []
    for t in range(trials):
        served = Served(store, "--workers", "2", "--timeout", "30")
        stop = threading.Event()
        codes: list[int] = []

        def runaway() -> None:
            while not stop.is_set():
                try:
                    codes.append(requests.get(url_of(served), params={"query": RUNAWAY}, timeout=60).status_code)
                except requests.RequestException:
                    return

        clients = 8 + 4 * t
        for _ in range(clients):
            threading.Thread(target=runaway, daemon=True).start()
        time.sleep(1)
        latencies, ok = [], True
        until = time.monotonic() + 10
        while time.monotonic() < until:
            started = time.monotonic()
            ok &= requests.get(url_of(served), params={"query": CHEAP}, timeout=60).status_code == 200
            latencies.append(time.monotonic() - started)
        stop.set()
        row.injected += 1
        median = statistics.median(latencies)
        worst.append(median)
        if ok and median < 1.0 and set(codes) <= {503}:
            row.survived += 1
        else:
            row.notes.append(f"NOT survived with {clients} runaway clients: median {median:.2f} s, codes {set(codes)}")
        _serve_stderr_tracebacks(served)
        served.stop()
    row.notes.insert(0, f"8 to {8 + 4 * (trials - 1)} clients sending a runaway again as soon as it ends, --workers 2; "
                        f"cheap query median at worst {max(worst):.2f} s")
    ROWS.append(row)

    # idle connections past the open-files limit; headers a byte at a time
    row = Row("idle and trickling connections (serve)")
    for _ in range(trials):
        def few_files() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

        served = Served(store, preexec_fn=few_files)
        socks: list[object] = []
        try:
            for _ in range(3000):
                socks.append(raw(served.port, b""))
            trickle = [raw(served.port, b"GET /queries HTTP/1.1\r\n") for _ in range(50)]
            answered = requests.get(url_of(served), params={"query": CHEAP}, timeout=30).status_code == 200
            cut = 0
            for _second in range(14):  # (the server gives a request head 10 s)
                for sock in trickle:
                    try:
                        sock.sendall(b"x")
                    except OSError:
                        pass
                time.sleep(1)
            for sock in trickle:
                sock.settimeout(2)
                try:
                    sock.recv(100)  # an answer (408) or the end: cut either way
                    cut += 1
                except (ConnectionError, BrokenPipeError):
                    cut += 1
                except TimeoutError:
                    pass  # still open
            again = requests.get(url_of(served), params={"query": CHEAP}, timeout=30).status_code == 200
        finally:
            for sock in socks + trickle:
                sock.close()
            _serve_stderr_tracebacks(served)
            served.stop()
        row.injected += 1
        if answered and again and cut == len(trickle):
            row.survived += 1
        else:
            row.notes.append(f"NOT survived: answered {answered}/{again}, trickles cut {cut}/{len(trickle)}")
    row.notes.insert(0, "3,000 idle connections against 1,024 file handles, 50 sending a header byte a second: "
                        "a cheap query answered beside them, every trickle cut")
    ROWS.append(row)

    # large distinct bodies, readers that take nothing, queries slow to check
    row = Row("large bodies, slow readers, slow checks (serve)")
    grown_at_worst = 0
    for t in range(trials):
        served = Served(store, "--workers", "2", "--timeout", "20")
        stuck: list[object] = []
        try:
            requests.get(url_of(served), params={"query": CHEAP}, timeout=30)
            before = rss(served.proc.pid)
            ok = True
            bodies = 20 if n >= 10_000 else 4
            for k in range(bodies):
                values = " ".join(str((t * 100 + k) * 1_000_000 + i) for i in range(95_000))  # ~1 MB, distinct
                r = requests.post(url_of(served), data=f"ASK {{ VALUES ?x {{ {values} }} FILTER(?x < 0) }}",
                                  headers={"Content-Type": "application/sparql-query"}, timeout=120)
                ok &= r.status_code in (200, 413)
            big = ("GET /sparql?query=" + requests.utils.quote(BIG) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").encode()
            stuck = [raw(served.port, big, rcvbuf=4096) for _ in range(32)]
            heavy = ("# customer service\nSELECT * WHERE { ?s ?p ?o FILTER("
                     + " || ".join(f"?o = {i}" for i in range(5000)) + ") } LIMIT 1")
            threads = [threading.Thread(target=lambda: requests.post(
                url_of(served), data=heavy, headers={"Content-Type": "application/sparql-query"}, timeout=60))
                for _ in range(8)]
            for th in threads:
                th.start()
            time.sleep(1)
            started = time.monotonic()
            ok &= requests.get(url_of(served), params={"query": CHEAP}, timeout=60).status_code == 200
            quick = time.monotonic() - started < 5
            for th in threads:
                th.join(90)
            grown = rss(served.proc.pid) - before
            grown_at_worst = max(grown_at_worst, grown)
        finally:
            for sock in stuck:
                sock.close()
            _serve_stderr_tracebacks(served)
            served.stop()
        row.injected += 1
        if ok and quick and grown < 64 * 1024 * 1024:
            row.survived += 1
        else:
            row.notes.append(f"NOT survived: answers ok {ok}, cheap query quick {quick}, grew {grown >> 20} MiB")
    row.notes.insert(0, "20 distinct 1 MB queries (4 below 10,000 audios), 32 clients reading none of a 3 MB answer, 8 60 KB queries with "
                        f"'service' in a comment: serve grew {grown_at_worst >> 20} MiB at worst, a cheap query "
                        "answered within 5 s")
    ROWS.append(row)

    # workers killed from outside, a text index damaged while serving
    row = Row("killed workers, damaged text index (serve)")
    for _ in range(trials):
        served = Served(store, "--workers", "2")
        errors: list[int | str] = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                try:
                    r = requests.get(served.url + "/queries/creators", headers={"Accept": "text/csv"}, timeout=60)
                except requests.RequestException as exc:  # (an answer cut short is a failed request)
                    errors.append(type(exc).__name__)
                    continue
                if r.status_code != 200:
                    errors.append(r.status_code)

        threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
        for th in threads:
            th.start()
        killed = 0
        for _kill in range(10):
            time.sleep(rng.uniform(0.5, 1.5))  # (a query is run again once: kills further apart than that)
            for pid in workers(served.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
        index = store / "search.sqlite"
        saved = index.read_bytes()
        data = bytearray(saved)
        for i in range(100, len(data), 7):
            data[i] = 0x5A
        index.write_bytes(bytes(data))
        time.sleep(2)
        stop.set()
        for th in threads:
            th.join(60)
        names = ["top-audios", "creators", "verified-creators", "original-vs-licensed"]
        damaged_ok = all(requests.get(served.url + f"/queries/{q}", timeout=60).status_code == 200 for q in names)
        index.write_bytes(saved)
        _serve_stderr_tracebacks(served)
        served.stop()
        row.injected += 1
        if not errors and damaged_ok:
            row.survived += 1
        else:
            row.notes.append(f"NOT survived: {len(errors)} failed requests {set(errors)}, damaged index ok {damaged_ok}")
    row.notes.insert(0, "every worker killed 10 times at random moments under 4 clients, then the text index "
                        "damaged: no request failed")
    ROWS.append(row)


def write(path: Path, args: argparse.Namespace, elapsed: float) -> str:
    lines = [
        "# konbini-ld fault injection",
        "",
        f"Generated by `python bench/faults.py --size {args.size} --trials {args.trials}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {elapsed / 60:.1f} min.",
        "",
        "| fault | injected | survived | notes |",
        "|---|---:|---:|---|",
    ]
    for r in ROWS:
        lines.append(f"| {r.fault} | {r.injected} | {r.survived} | {'; '.join(r.notes)} |")
    lines += ["", f"Tracebacks printed by any command (without `--debug`): {TRACEBACKS}.", ""]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "FAULTS.md")
    parser.add_argument("--only", metavar="WORD", help="Run only the faults whose step name holds WORD "
                        "(load, rebuild, fetch, sigterm, archive, store, disk, hostile, serve, hostile_api, archive_unwritable, future, restored_archive); with a small "
                        "--size and --trials 1 a quick check that the runner works")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="konbini-faults-") as tmp:
        work = Path(tmp)
        corpus = work / "corpus.jsonl"
        corpus.write_text("".join(line.rstrip("\n") + "\n" for line in corpus_lines(args.size)))
        base = work / "base"
        t = time.monotonic()
        assert run(base, "load", str(corpus)).returncode == 0
        load_s = time.monotonic() - t
        t = time.monotonic()
        assert run(base, "rebuild").returncode == 0
        rebuild_s = time.monotonic() - t
        print(f"base store: {args.size:,} responses, load {load_s:.1f} s, rebuild {rebuild_s:.1f} s", file=sys.stderr)
        steps = [
            ("load", lambda: kills_during_load(corpus, work, args.size, args.trials, rng, load_s)),
            ("rebuild", lambda: kills_during_rebuild(base, work, args.size, args.trials, rng, rebuild_s)),
            ("fetch", lambda: kills_during_fetch(work, min(args.size, 5000), args.trials, rng)),
            ("sigterm", lambda: sigterm_during_fetch(work, min(args.size, 3000), min(args.trials, 3))),
            ("archive", lambda: damaged_archive(base, work, args.size, args.trials, rng)),
            ("store", lambda: damaged_store(base, work, args.size)),
            ("disk", lambda: full_disk(base, corpus, work, args.size, args.trials, rng)),
            ("hostile", lambda: hostile_inputs(work)),
            ("serve", lambda: serve_clients(base, work, args.size, min(args.trials, 3), rng)),
            ("hostile_api", lambda: hostile_api(work, min(args.size, 2000), args.trials, rng)),
            ("archive_unwritable", lambda: archive_unwritable_during_fetch(work, min(args.size, 3000),
                                                                           min(args.trials, 3), rng)),
            ("future", lambda: future_times(base, corpus, work)),
            ("restored_archive", lambda: restored_archive(base, work, args.size)),
        ]
        for name, step in steps:
            if args.only and args.only not in name:
                continue
            before = len(ROWS)
            step()
            for r in ROWS[before:]:
                print(f"{r.fault}: {r.survived}/{r.injected}", file=sys.stderr)
    print(write(args.out, args, time.monotonic() - started))


if __name__ == "__main__":
    main()
