"""No client's queries hold ``konbini-ld serve``: runaway queries beside cheap ones, one query sent
by many clients at once, killed workers, a query that crashes the engine, a damaged text index,
clients that leave mid-query. Real server processes, real sockets."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
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


# -- queries beside runaways, killed workers, a damaged index --------------------------------------


def _again_and_again(served: Served, stop: threading.Event, query: Callable[[], str], clients: int,
                     answers: list[requests.Response] | None = None) -> None:
    """``clients`` threads, each sending ``query()`` again as soon as it is answered, until ``stop``."""

    def client() -> None:
        while not stop.is_set():
            try:
                answer = requests.post(served.url + "/sparql", data={"query": query()}, timeout=60)
            except requests.RequestException:
                return
            if answers is not None:
                answers.append(answer)

    for _ in range(clients):
        threading.Thread(target=client, daemon=True).start()


def _another_constant(sent: Iterator[int]) -> Callable[[], str]:
    return lambda: RUNAWAY.replace("}", f'FILTER(?c != "{next(sent)}") }}')


def test_cheap_queries_are_answered_beside_runaways(store: Path) -> None:
    """Twelve clients each sending runaway after runaway, every one different (a constant changes
    each time), with --workers 2 (four places): a cheap query beside them still gets a median under
    a second (runaways beyond half the places give way, answered 503; one of a family stopped
    lately gives its place to a new query at once)."""
    served = Served(store, "--workers", "2", "--timeout", "30")
    stop = threading.Event()
    runaways: list[requests.Response] = []

    try:
        _again_and_again(served, stop, _another_constant(iter(range(10**9))), 12, runaways)
        time.sleep(1.0)
        latencies = []
        window = time.monotonic() + 6
        while time.monotonic() < window:
            started = time.monotonic()
            r = requests.get(served.url + "/sparql", params={"query": CHEAP}, timeout=60)
            latencies.append(time.monotonic() - started)
            assert r.status_code == 200
        stop.set()
        assert len(latencies) >= 4 and statistics.median(latencies) < 1.0 and max(latencies) < 10, latencies
        assert runaways and all(a.status_code == 503 and "make room" in a.text for a in runaways)
    finally:
        stop.set()
        stop_cleanly(served)


def test_one_runaway_sent_by_many_clients_at_once_does_not_queue_ahead(store: Path) -> None:
    """Twenty clients send the same runaway at the same moment (a dashboard opened everywhere):
    the copies that wait queue behind other queries, so a cheap query sent after them is
    answered within about a second, not after twenty runaways' turns."""
    served = Served(store, "--workers", "2", "--timeout", "30")

    def runaway() -> None:
        try:
            requests.get(served.url + "/sparql", params={"query": RUNAWAY}, timeout=120)
        except requests.RequestException:
            pass  # (the server stops before it ends)

    threads = [threading.Thread(target=runaway, daemon=True) for _ in range(20)]
    try:
        for th in threads:
            th.start()
        time.sleep(1.0)
        started = time.monotonic()
        assert requests.get(served.url + "/sparql", params={"query": CHEAP}, timeout=60).status_code == 200
        assert time.monotonic() - started < 3
    finally:
        stop_cleanly(served)


def _busy(pids: list[int], seconds: float = 3.0) -> int:
    """How many of ``pids`` used more than 0.4 of a core over ``seconds`` (a query on trial, half
    a second at most, does not count: a worker that stops one is replaced)."""

    def ticks(pid: int) -> int | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return int(fields[11]) + int(fields[12])

    before = {pid: ticks(pid) for pid in pids}
    time.sleep(seconds)
    hz = os.sysconf("SC_CLK_TCK")
    return sum(1 for pid, t in before.items() if t is not None and (after := ticks(pid)) is not None
               and (after - t) / hz > 0.4 * seconds)


def test_no_more_runaways_than_workers_run_while_others_wait(store: Path) -> None:
    """Six clients send runaways of one family at the same moment, each sending another as soon as
    one is answered, with --workers 2: once the first are stopped to make room, no more than two
    run at once (the others wait, or run on trial a quarter second), and a cheap query still gets a
    place at once."""
    served = Served(store, "--workers", "2", "--timeout", "30")
    stop = threading.Event()
    try:
        _again_and_again(served, stop, _another_constant(iter(range(10**9))), 6)
        time.sleep(2.5)
        busy = [_busy(workers(served.proc.pid))]
        assert max(busy) <= 2, busy
        started = time.monotonic()
        assert requests.get(served.url + "/sparql", params={"query": CHEAP}, timeout=60).status_code == 200
        assert time.monotonic() - started < 3
    finally:
        stop.set()
        stop_cleanly(served)


def test_a_cheap_query_of_a_runaway_s_family_is_answered_beside_it(store: Path) -> None:
    """Six clients send one parametrised runaway again and again (an id that matches); the same
    query with an id that matches nothing needs milliseconds: it is of the runaway's family, yet
    waits neither behind the runaway's copies nor for them to end (median under a second)."""
    served = Served(store, "--workers", "2", "--timeout", "30")
    stop = threading.Event()
    query = ('SELECT (COUNT(*) AS ?n) WHERE { ?v <https://konbiniapi.com/ns/social#entityId> "%s" . '
             "?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l }")
    with open_store(store, read_only=True) as opened:
        matches = str(opened.query(
            "SELECT ?id WHERE { ?v <https://konbiniapi.com/ns/social#entityId> ?id } LIMIT 1").records()[0]["id"])

    try:
        _again_and_again(served, stop, lambda: query % matches, 6)
        time.sleep(2.0)
        latencies = []
        for i in range(8):
            started = time.monotonic()
            r = requests.post(served.url + "/sparql", data={"query": query % f"none-{i}"}, timeout=60)
            latencies.append(time.monotonic() - started)
            assert r.status_code == 200 and '"0"' in r.text, r.text
        assert statistics.median(latencies) < 1.0, latencies
    finally:
        stop.set()
        stop_cleanly(served)


@pytest.mark.parametrize("constant", ['"k7"', "0e12", "1.5E-3", "-4", '"x"@en-x1', "<urn:a:1>", "true", "ex:thing"])
def test_a_family_is_one_whatever_the_constant_s_spelling_and_the_text_s_length(constant: str) -> None:
    """Runaways that differ only by a constant, written any way SPARQL allows, or padded past
    64 KiB, are one family (else each would be a new query, and a stream of them would queue
    ahead of cheap ones)."""
    from konbini_ld.apps.protocol import Job
    from konbini_ld.apps.worker_pool import _fingerprint

    query = "PREFIX ex: <urn:ex:> SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f FILTER(?c != %s) }"

    def family(text: str) -> bytes:
        return _fingerprint(Job(text, {}, None, [], None, None, False))

    assert family(query % constant) == family(query % "12") == family(query % constant + " " * 70_000 + "# end")
    assert family(query % constant) != family(query.replace("?d ?e ?f", "?d ?e ?f . ?g ?h ?i") % constant)


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
        stop_cleanly(served)
