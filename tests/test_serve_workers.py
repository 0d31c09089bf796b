"""Workers that die, queries that would crash the engine, a damaged text index, clients that leave
mid-query: ``konbini-ld serve`` answers on. Real server processes, real sockets. (Runaway queries
beside cheap ones are in test_serve_queries.py: the two files run in different processes.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from test_server import Served
from test_serve_clients import CHEAP, RUNAWAY, post, raw, samples_store, stop_cleanly, workers

from konbini_ld import open_store
from konbini_ld.apps.cli import main


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return samples_store(tmp_path_factory)


def test_a_killed_worker_costs_no_request(store: Path) -> None:
    served = Served(store, "--workers", "1", "--timeout", "3")
    try:
        assert post(served.url, CHEAP).status_code == 200
        idle = workers(served.proc.pid)
        assert idle
        for pid in idle:  # idle workers killed from outside
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
        for _ in range(6):
            r = post(served.url, CHEAP)
            assert r.status_code == 200, r.text
        answer: list[requests.Response] = []
        t = threading.Thread(target=lambda: answer.append(post(served.url, RUNAWAY)))
        t.start()
        time.sleep(1.0)
        busy = workers(served.proc.pid)
        assert busy
        for pid in busy:  # the one running the query too
            os.kill(pid, signal.SIGKILL)
        t.join(30)
        # run again on a fresh worker, where it meets its time limit: never "worker died"
        assert answer[0].status_code == 503 and "time limit" in answer[0].text, answer[0].text
        assert post(served.url, CHEAP).status_code == 200
    finally:
        stop_cleanly(served)


@pytest.mark.parametrize("how", ["SIGKILL", "second Ctrl-C"])
def test_workers_end_with_the_server_however_it_ends(store: Path, how: str) -> None:
    """A server killed, or stopped at once, while its workers run runaways: its time limits go
    with it, so its workers follow it out instead of running the queries on for nobody."""
    served = Served(store, "--workers", "2", "--timeout", "60")

    def runaway() -> None:
        try:
            post(served.url, RUNAWAY, timeout=90)
        except requests.RequestException:
            pass  # (the server is gone before it answers)

    threads = [threading.Thread(target=runaway, daemon=True) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(running := [p for p in workers(served.proc.pid) if _cpu(p) > 0.3]) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(running) >= 2, "the runaways never started"
        if how == "SIGKILL":
            served.proc.kill()
        else:
            served.proc.terminate()
            time.sleep(0.3)
            served.proc.send_signal(signal.SIGINT)
        served.proc.wait(10)
        deadline = time.monotonic() + 5
        while any(Path(f"/proc/{p}").exists() and not _zombie(p) for p in running) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in running if Path(f"/proc/{p}").exists() and not _zombie(p)], "workers outlived the server"
    finally:
        served.stop()


def test_workers_end_with_their_fork_server_and_the_server_answers_on(store: Path) -> None:
    """The process workers are forked from, killed from outside while they run runaways: they
    end with it (the server's time limits no longer reach them), and the server answers on."""
    served = Served(store, "--workers", "2", "--timeout", "60")

    def runaway() -> None:
        try:
            post(served.url, RUNAWAY, timeout=90)
        except requests.RequestException:
            pass

    try:
        for _ in range(2):
            threading.Thread(target=runaway, daemon=True).start()
        deadline = time.monotonic() + 30
        while len(running := [p for p in workers(served.proc.pid) if _cpu(p) > 0.3]) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(running) >= 2, "the runaways never started"
        forkserver = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(int(p.name)) == served.proc.pid
                      and b"forkserver" in _cmdline(int(p.name))]
        assert forkserver
        os.kill(forkserver[0], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(Path(f"/proc/{p}").exists() and not _zombie(p) for p in running) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in running if Path(f"/proc/{p}").exists() and not _zombie(p)], "workers outlived their fork server"
        assert post(served.url, CHEAP).status_code == 200
    finally:
        err = stop_cleanly(served, now=True)
    assert "never retrieved" not in err, err[-2000:]


def test_ctrl_c_in_a_terminal_stops_serve_without_a_traceback(store: Path) -> None:
    """A terminal's Ctrl-C reaches the whole process group, the workers too: they leave the
    stopping to the server, and no traceback is printed."""
    served = Served(store, "--workers", "2", preexec_fn=os.setsid)
    try:
        assert post(served.url, CHEAP).status_code == 200
        time.sleep(0.5)  # (idle workers started ahead)
        os.killpg(served.proc.pid, signal.SIGINT)
        served.proc.wait(30)
    finally:
        err = served.stop()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "died while idle" not in err, err[-3000:]


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C", "second Ctrl-C"])
def test_a_stop_answers_every_query_503_and_waits_only_for_those_running(store: Path, how: str) -> None:
    """Asked to stop with queries running and more waiting: no query starts after the signal
    (those waiting are answered "stopping" at once), those running get the grace period (or none,
    at a second Ctrl-C), and every client gets a 503, never a 500 or a closed connection."""
    served = Served(store, "--workers", "1", "--timeout", "60", preexec_fn=os.setsid)
    answers: list[tuple[int | str, str, float]] = []
    retry: list[str | None] = []

    def runaway(i: int) -> None:
        try:
            r = post(served.url, RUNAWAY.replace("?o", f"?o{i}"), timeout=90)
            answers.append((r.status_code, r.text, time.monotonic()))
            retry.append(r.headers.get("Retry-After"))
        except requests.RequestException as exc:
            answers.append((type(exc).__name__, "", time.monotonic()))

    threads = [threading.Thread(target=runaway, args=(i,), daemon=True) for i in range(8)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len([p for p in workers(served.proc.pid) if _cpu(p) > 0.3]) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # (two places for --workers 1: two run, six wait)
        signalled = time.monotonic()
        if how == "SIGTERM":
            served.proc.terminate()
        else:
            os.killpg(served.proc.pid, signal.SIGINT)
            if how == "second Ctrl-C":
                time.sleep(0.2)
                os.killpg(served.proc.pid, signal.SIGINT)
        served.proc.wait(30)
        ended = time.monotonic() - signalled
        for t in threads:
            t.join(10)
    finally:
        err = served.stop()
    assert len(answers) == 8 and all(code == 503 for code, _, _ in answers), [a[:2] for a in answers]
    assert all(retry), retry  # (every one of them may be sent again: each says when)
    waiting = [when - signalled for _, text, when in answers if "stopping" in text]
    assert len(waiting) >= 6 and max(waiting) < 3, [a[:2] for a in answers]
    assert ended < (3 if how == "second Ctrl-C" else 5 + 5)
    assert "Traceback" not in err and "ASGI" not in err, err[-3000:]


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_a_stop_sent_to_the_whole_group_gives_running_queries_their_grace(store: Path, how: str) -> None:
    """`kill -TERM -PGID` (a service manager's stop) or a terminal's Ctrl-C reaches the workers
    too: they leave the stopping to the server, so a query running at the signal is answered."""
    served = Served(store, "--workers", "1", "--timeout", "60", preexec_fn=os.setsid)
    answers: list[int | str] = []

    def query() -> None:
        try:
            answers.append(post(served.url, MEDIUM, timeout=90).status_code)
        except requests.RequestException as exc:
            answers.append(type(exc).__name__)

    try:
        thread = threading.Thread(target=query, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not [p for p in workers(served.proc.pid) if _cpu(p) > 0.1] and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(served.proc.pid, signal.SIGTERM if how == "SIGTERM" else signal.SIGINT)
        thread.join(30)
        served.proc.wait(30)
    finally:
        err = served.stop()
    assert answers == [200], (answers, err[-2000:])
    assert "died" not in err and "Traceback" not in err, err[-2000:]


#: About half a second of work on the samples' store (a runaway is minutes).
MEDIUM = "SELECT (COUNT(*) AS ?n) WHERE { { SELECT ?a WHERE { ?a ?b ?c } LIMIT 1 } ?d ?e ?f . ?g ?h ?i . ?j ?k ?l }"


def test_the_address_is_announced_once_it_is_answered(store: Path) -> None:
    """The line that gives the address comes once the server accepts connections: a client that
    connects the moment it reads it is answered."""
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "konbini_ld", "--store", str(store), "serve", "--port", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            port = next(int(m.group(1)) for line in proc.stderr if (m := re.search(r"http://127\.0\.0\.1:(\d+)/", line)))
            assert requests.get(f"http://127.0.0.1:{port}/queries", timeout=30).status_code == 200
        finally:
            proc.terminate()
            proc.wait(30)
            proc.stderr.close()  # type: ignore[union-attr]


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _cpu(pid: int) -> float:
    """Processor seconds ``pid`` has used (0 when gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_workers_that_keep_dying_while_idle_are_not_restarted_in_a_loop(store: Path) -> None:
    """Idle workers killed again and again (as when each new one dies as it starts): after a few,
    their replacement pauses, with one line saying so, instead of a loop filling the log; a query
    still gets a worker when it needs one."""
    served = Served(store, "--workers", "1", "--timeout", "10")
    try:
        assert post(served.url, CHEAP).status_code == 200
        for _ in range(12):
            for pid in workers(served.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.15)
        assert post(served.url, CHEAP).status_code == 200
    finally:
        err = stop_cleanly(served)
    assert err.count("keep dying while idle") >= 1 and err.count("died while idle; starting another") <= 3, err[-2000:]


def test_a_query_that_crashes_the_engine_costs_only_itself(store: Path) -> None:
    """A worker that dies under a query (twice: the query is run once more on a fresh one), here
    killed by SIGSEGV from outside as an engine crash would: the client gets a 500 saying how, and
    the server answers on. (Queries known to crash Oxigraph, nested or chained too deep, are
    refused before they reach it: see test_queries_too_deep_for_the_engine_are_refused.)"""
    served = Served(store, "--workers", "1", "--timeout", "20")
    try:
        assert post(served.url, CHEAP).status_code == 200
        answer: list[requests.Response] = []
        t = threading.Thread(target=lambda: answer.append(post(served.url, RUNAWAY)))
        t.start()
        for _ in range(2):
            time.sleep(1.0)
            busy = workers(served.proc.pid)
            assert busy
            for pid in busy:
                os.kill(pid, signal.SIGSEGV)
        t.join(30)
        assert answer[0].status_code == 500 and "died twice" in answer[0].text, answer[0].text
        assert "SIGSEGV" in answer[0].text
        assert post(served.url, CHEAP).status_code == 200
    finally:
        stop_cleanly(served)


@pytest.mark.parametrize("query", [
    "SELECT * { FILTER(" + "(" * 20_000 + "1" + ")" * 20_000 + ") }",
    "SELECT * WHERE " + "{" * 3_000 + "}" * 3_000,
    "SELECT * WHERE { " + " UNION ".join(["{ BIND(1 AS ?x) }"] * 10_000) + " }",
    "SELECT (" + "+".join(["1"] * 10_000) + " AS ?x) WHERE {}",
    "SELECT * WHERE { ?s " + "/".join(["<urn:p>"] * 10_000) + " ?o }",
    "SELECT * WHERE { ?s <http://x/p> ?o " + ", ?o" * 10_000 + " }",
    "SELECT * WHERE { ?s <urn:p> ?o " + "; <urn:p> ?o" * 50_000 + " }",
    "SELECT * WHERE { " + "?s <http://x/p> ?o . " * 20_000 + "}",
], ids=["parentheses", "braces", "unions", "sums", "path", "objects", "predicates", "patterns"])
def test_queries_too_deep_for_the_engine_are_refused(store: Path, query: str) -> None:
    """Oxigraph recurses once per level of nesting and per link of a chain, and overflows its
    stack (a crash, no error) past a few thousand: such queries are refused with a message, by
    `query` and by `serve`."""


    r = CliRunner().invoke(main, ["--store", str(store), "query", "-e", query])
    assert r.exit_code == 1 and r.stderr.startswith("Error:") and ("nests" in r.stderr or "chains" in r.stderr), r.stderr
    served = Served(store, "--workers", "1")
    try:
        answer = post(served.url, query)
        assert answer.status_code == 400 and ("nests" in answer.text or "chains" in answer.text), answer.text
    finally:
        stop_cleanly(served)


def test_a_damaged_text_index_falls_back_to_the_graph(store: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    names = ["top-audios", "creators", "verified-creators", "original-vs-licensed"]
    served = Served(copy, "--workers", "1")
    try:
        url = served.url + "/queries/"
        with open_store(copy, read_only=True) as plain:  # what the graph answers
            before = {n: {tuple(str(t) for t in row) for row in plain.query(plain_text(n)).rows()} for n in names}
        assert requests.get(url + "search", params={"text": "orig"}, timeout=30).status_code == 200  # index open
        index = copy / "search.sqlite"
        data = bytearray(index.read_bytes())
        for i in range(100, len(data), 7):
            data[i] = 0x5A
        index.write_bytes(bytes(data))
        for n in names + ["search"]:
            r = requests.get(url + n, params={"text": "orig"} if n == "search" else {}, timeout=30,
                             headers={"Accept": "application/sparql-results+json"})
            assert r.status_code == 200, (n, r.text)
            if n in before:
                rows = r.json()["results"]["bindings"]
                assert len(rows) == len(before[n]), n
    finally:
        stop_cleanly(served)


def plain_text(name: str) -> str:
    from konbini_ld.query.catalog import named_queries

    return named_queries()[name].text


# -- clients that leave ----------------------------------------------------------------------------


def test_clients_gone_mid_body_and_a_stop_mid_query_leave_no_traceback(store: Path) -> None:
    """A body cut off, a chunked body whose framing breaks, then Ctrl-C with queries running:
    the log holds no traceback, and every answer says nosniff."""
    served = Served(store, "--workers", "1", "--timeout", "20")
    try:
        r = requests.get(served.url + "/sparql", params={"query": CHEAP}, timeout=30)
        assert r.headers.get("X-Content-Type-Options") == "nosniff"
        assert post(served.url, "SELECT ?x WHERE {").headers.get("X-Content-Type-Options") == "nosniff"
        head = (f"POST /sparql HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
                "Content-Type: application/sparql-query\r\n")
        cut = raw(served.port, (head + "Content-Length: 100\r\n\r\nSELECT").encode())
        time.sleep(0.3)
        cut.close()
        broken = raw(served.port, (head + "Transfer-Encoding: chunked\r\n\r\nZZ\r\nab\r\n").encode())
        time.sleep(0.3)
        broken.close()
        running = [threading.Thread(target=lambda: post(served.url, RUNAWAY), daemon=True) for _ in range(3)]
        for t in running:
            t.start()
        time.sleep(1.0)
        served.proc.send_signal(signal.SIGINT)
        served.proc.wait(30)
    finally:
        err = served.stop()
    assert "Traceback" not in err and "CancelledError" not in err, err[-3000:]


def test_queries_whose_clients_hung_up_give_their_places_back(store: Path) -> None:
    """Thirty different runaways sent and abandoned at once: they are given up as their clients
    are found gone, and a cheap query after them is answered as if they had never come."""
    served = Served(store, "--workers", "1", "--timeout", "20")
    try:
        for i in range(30):
            query = RUNAWAY.replace("?o }", f"?o FILTER(?o != {i}) }}")
            body = f"query={requests.utils.quote(query)}"
            sock = raw(served.port, (f"POST /sparql HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
                                     "Content-Type: application/x-www-form-urlencoded\r\n"
                                     f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
            sock.close()
        time.sleep(0.5)
        started = time.monotonic()
        assert post(served.url, CHEAP).status_code == 200
        assert time.monotonic() - started < 5.0  # (not behind thirty runaways of up to 20 s each)
    finally:
        stop_cleanly(served, now=True)
