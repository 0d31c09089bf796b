"""No client's queries hold ``konbini-ld serve``: runaway queries beside cheap ones, one query sent
by many clients at once, runaways of one family. Real server processes, real sockets. (Workers
that die and clients that leave are in test_serve_workers.py.)"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from test_server import Served
from test_serve_clients import CHEAP, RUNAWAY, samples_store, stop_cleanly, workers

from konbini_ld import open_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return samples_store(tmp_path_factory)


# -- queries beside runaways ----------------------------------------------------------------------


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
    """Six clients each sending runaway after runaway, every one different (a constant changes each
    time), with --workers 2 (four places): a cheap query beside them still gets a median under a
    second (runaways beyond half the places give way, answered 503; one of a family stopped lately
    gives its place to a new query at once). `python bench/run.py --only runaways` measures it
    beside 6, 20 and 40 clients."""
    served = Served(store, "--workers", "2", "--timeout", "30")
    stop = threading.Event()
    runaways: list[requests.Response] = []

    try:
        _again_and_again(served, stop, _another_constant(iter(range(10**9))), 6, runaways)
        time.sleep(1.0)
        latencies = []
        window = time.monotonic() + 4
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
        stop_cleanly(served, now=True)


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
        # about a second on an idle machine (3.6 s seen with both cores busy: a runaway's place is
        # given up by processor time); twenty runaways' turns would be minutes
        assert time.monotonic() - started < 10
    finally:
        stop_cleanly(served, now=True)


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
        # about a second on an idle machine (3.6 s seen with both cores busy: a runaway's place is
        # given up by processor time); twenty runaways' turns would be minutes
        assert time.monotonic() - started < 10
    finally:
        stop.set()
        stop_cleanly(served, now=True)


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
        stop_cleanly(served, now=True)


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
