"""No HTTP client, however hostile, holds or crashes ``konbini-ld serve``: large and slow
bodies, slow and idle connections, readers that take nothing, runaway queries beside cheap
ones, killed workers, a damaged text index. Real server processes, real sockets."""

from __future__ import annotations

import re
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from helpers import NEWER, SEED, VIDEOS
from test_server import Served

from konbini_ld import open_store
from konbini_ld.apps.cli import main

#: CPU for as long as it is let run, in little memory (a count over a five-way cross product).
RUNAWAY = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l . ?m ?n2 ?o }"
CHEAP = "ASK { ?s ?p ?o }"
#: A few megabytes of answer (12,000 rows of a cross product).
BIG = "SELECT ?a ?b ?c WHERE { ?a ?p ?b . ?c ?q ?d } LIMIT 12000"


def samples_store(factory: pytest.TempPathFactory) -> Path:
    """A store with the samples (each module serving it makes its own)."""
    path = factory.mktemp("clients") / "store"
    with open_store(path) as s:
        s.load([SEED, NEWER, VIDEOS])
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return samples_store(tmp_path_factory)


def post(url: str, query: str, timeout: float = 60) -> requests.Response:
    return requests.post(url + "/sparql", data=query.encode(), timeout=timeout,
                         headers={"Content-Type": "application/sparql-query", "Accept": "application/json"})


def rss(pid: int) -> int:
    """Resident bytes of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def workers(pid: int) -> list[int]:
    """The query worker processes of a serve process: the children of the fork server it
    started them from (or its own, where workers are spawned), not that of multiprocessing's
    resource tracker."""

    def children(parent: int) -> list[tuple[int, bytes]]:
        found = []
        for task in Path(f"/proc/{parent}/task").glob("*"):  # (each thread's children)
            try:
                found += (task / "children").read_text().split()
            except OSError:
                pass
        out = []
        for child in map(int, found):
            try:
                out.append((child, Path(f"/proc/{child}/cmdline").read_bytes()))
            except OSError:
                pass
        return out

    found = []
    for child, cmdline in children(pid):
        if b"forkserver" in cmdline:
            found += [grandchild for grandchild, _ in children(child)]
        elif b"resource_tracker" not in cmdline:
            found.append(child)
    return found


def stop_cleanly(served: Served, now: bool = False) -> str:
    """Stop the server (``now``: as a second Ctrl-C does): whatever the clients did, it printed no
    traceback. Returns its stderr."""
    err = served.stop(now)
    assert "Traceback" not in err, err[-3000:]
    return err


def raw(port: int, data: bytes, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    if data:
        sock.sendall(data)
    return sock


def answer_of(sock: socket.socket, timeout: float = 30) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout``)."""
    sock.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            piece = sock.recv(65536)
            if not piece:
                break
            out += piece
    except (ConnectionResetError, TimeoutError, socket.timeout):
        pass
    return out


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (sending nothing, or an error answer)."""
    sock.settimeout(seconds)
    try:
        while True:
            piece = sock.recv(4096)
            if not piece:
                return True
    except ConnectionResetError:
        return True
    except (TimeoutError, socket.timeout):
        return False


def tuned(store: Path, **limits: float) -> Served:
    """``serve`` through its Python entry point, with short limits (so a test waits seconds, not minutes)."""
    body_seconds = limits.pop("body_seconds", 30.0)
    script = (
        "import sys\n"
        "from konbini_ld.apps.http import Limits\n"
        "from konbini_ld.apps.server import ServeOptions, serve\n"
        f"opts = ServeOptions({str(store)!r}, {{}}, timeout=10, body_seconds={body_seconds!r})\n"
        f"serve(opts, port=0, limits=Limits(**{limits!r}),\n"
        "      announce=lambda url: print(f'serving store read-only at {url}', file=sys.stderr, flush=True))\n"
    )
    return Served(store, command=[sys.executable, "-c", script])


# -- the SERVICE check and request bodies ----------------------------------------------------------


def test_the_service_check_does_not_hold_other_queries(store: Path) -> None:
    """Queries with 'service' in a comment (rdflib's parser took 5 s on each, on the event loop),
    or in IRIs between parentheses (only a full parse can place the word: a second each): the
    server answers requests beside them at once; a valid 300-pattern query is not refused."""
    served = Served(store, "--workers", "2", "--timeout", "20")
    try:
        numbers = ("# customer service desk\nASK { BIND(-1 AS ?o) FILTER(?o IN ("
                   + ", ".join(str(i) for i in range(8000)) + ")) }")
        iris = ("# customer service desk\nASK { BIND(-1 AS ?o) FILTER(?o IN ("
                + ", ".join(f"<urn:service:{i}>" for i in range(1500)) + ")) }")
        answers: list[int] = []
        threads = [threading.Thread(target=lambda q=q: answers.append(post(served.url, q).status_code))
                   for q in [numbers] * 2 + [iris] * 2]
        for t in threads:
            t.start()
        time.sleep(0.3)
        started = time.monotonic()
        assert requests.get(served.url + "/queries", timeout=30).status_code == 200
        assert time.monotonic() - started < 1
        r = post(served.url, CHEAP, timeout=30)
        assert r.status_code == 200 and r.json()["boolean"] is True
        assert time.monotonic() - started < 10
        for t in threads:
            t.join(60)
        assert len(answers) == 4 and set(answers) <= {200, 503}, answers
        many = ("# customer service report\nSELECT * WHERE {\n"
                + "\n".join(f"  ?s{i} <urn:p{i}> ?o{i} ." for i in range(300)) + "\n}")
        assert post(served.url, many).status_code == 200
    finally:
        stop_cleanly(served)


def test_request_bodies_are_bounded(store: Path) -> None:
    served = Served(store, "--max-body-size", "4K")
    try:
        assert post(served.url, "ASK { ?s ?p ?o } #" + "x" * 3000).status_code == 200
        r = post(served.url, "ASK { ?s ?p ?o } #" + "x" * 5000)
        assert r.status_code == 413 and "4 KiB" in r.text
        # announced too large: answered before any of it is read
        with raw(served.port, b"POST /sparql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/sparql-query"
                              b"\r\nContent-Length: 50000000\r\n\r\n") as sock:
            assert answer_of(sock).startswith(b"HTTP/1.1 413")
        # chunked, no length: cut at the limit
        with raw(served.port, b"POST /sparql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/sparql-query"
                              b"\r\nTransfer-Encoding: chunked\r\n\r\n") as sock:
            try:
                for _ in range(20):
                    sock.sendall(b"400\r\n" + b"#" * 1024 + b"\r\n")
            except OSError:
                pass  # (the server may close before all of it is sent)
            assert answer_of(sock).startswith(b"HTTP/1.1 413")
        assert post(served.url, CHEAP).status_code == 200
    finally:
        stop_cleanly(served)


def test_a_request_with_both_framings_is_refused_and_its_connection_closed(store: Path) -> None:
    """Content-Length and Transfer-Encoding together (request smuggling behind a proxy): 400, and
    the connection closed after it (RFC 9112, 6.3), so nothing sent after it is read as a request."""
    served = Served(store)
    try:
        smuggled = (b"POST /sparql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/sparql-query\r\n"
                    b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nASK {}\r\n0\r\n\r\n"
                    b"GET /sparql?query=ASK%7B%7D HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        with raw(served.port, smuggled) as sock:
            got = answer_of(sock, 10)
        assert got.startswith(b"HTTP/1.1 400") and b"not both" in got, got[:300]
        assert got.count(b"HTTP/1.1 ") == 1, got  # closed: the second request was never answered
        assert post(served.url, CHEAP).status_code == 200
    finally:
        stop_cleanly(served)


def test_server_memory_stays_flat_under_large_distinct_bodies(store: Path) -> None:
    served = Served(store)
    try:
        assert post(served.url, CHEAP).status_code == 200
        before = rss(served.proc.pid)
        for k in range(4):
            values = " ".join(str(k * 1_000_000 + i) for i in range(60_000))  # ~420 KB, ~60,000 tokens
            r = post(served.url, f"ASK {{ VALUES ?x {{ {values} }} FILTER(?x < 0) }}", timeout=120)
            assert r.status_code == 200, r.text
        grown = rss(served.proc.pid) - before
        assert grown < 50 * 1024 * 1024, f"serve grew by {grown >> 20} MiB"
    finally:
        stop_cleanly(served)


def test_parameters_headers_and_graph_lists_are_bounded(store: Path) -> None:
    served = Served(store)
    try:
        url = served.url + "/sparql"
        many = "&".join(f"p{i}=1" for i in range(2000))
        r = requests.get(f"{url}?query=ASK%7B%7D&{many}", timeout=30)
        assert r.status_code == 400 and "parameters" in r.text
        r = requests.post(url, data="query=ASK%7B%7D&" + many, timeout=30,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400 and "parameters" in r.text
        graphs = [("query", "ASK { ?s ?p ?o }")] + [("named-graph-uri", f"urn:g{i}") for i in range(900)]
        assert requests.post(url, data=graphs, timeout=30).status_code == 200
        r = requests.get(url, params={"query": "ASK { ?s ?p ?o }", "default-graph-uri": "not an IRI"}, timeout=30)
        assert r.status_code == 400 and "not an IRI" in r.text
        accept = ", ".join(f"text/x-{i};q=0.{i % 9 + 1}" for i in range(2500))  # 2,500 entries, 50 KB
        started = time.monotonic()
        r = requests.get(url, params={"query": "ASK { ?s ?p ?o }"}, headers={"Accept": accept}, timeout=30)
        assert r.status_code == 200 and r.json()["boolean"] is True
        assert time.monotonic() - started < 5
    finally:
        stop_cleanly(served)


# -- connections -----------------------------------------------------------------------------------


def test_idle_and_trickling_connections_are_closed(store: Path) -> None:
    served = tuned(store, head_seconds=2.0, stall_seconds=2.0, body_seconds=2.0)
    idle = trickle = body = None
    try:
        idle = raw(served.port, b"")
        trickle = raw(served.port, b"GET /queries HTTP/1.1\r\n")
        body = raw(served.port, b"POST /sparql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/sparql-query"
                                b"\r\nContent-Length: 100\r\n\r\nASK")
        started = time.monotonic()
        cut = False
        for ch in b"Host: 127.0.0.1\r\nAccept: */*\r\nX-Slow: " + b"x" * 40:
            try:
                trickle.sendall(bytes([ch]))
            except OSError:
                cut = True
                break
            time.sleep(0.2)
        assert cut or closed_within(trickle, 1), "a header sent a byte at a time kept its connection"
        assert time.monotonic() - started < 8
        assert closed_within(idle, 3)
        assert answer_of(body, 5).startswith(b"HTTP/1.1 408")
        assert requests.get(served.url + "/queries", timeout=10).status_code == 200
    finally:
        for sock in (idle, trickle, body):
            if sock is not None:
                sock.close()
        stop_cleanly(served)


def test_a_request_head_over_64_kib_is_answered_431(store: Path) -> None:
    served = Served(store)
    try:
        query = "ASK { ?s ?p ?o } #" + "x" * 100_000
        long_get = requests.get(served.url + "/sparql", params={"query": query}, timeout=30)
        assert long_get.status_code == 431 and "POST" in long_get.text
        assert post(served.url, query).status_code == 200  # (the same query, sent with POST)
    finally:
        stop_cleanly(served)


def test_more_connections_than_file_handles_do_not_stop_the_server(store: Path) -> None:
    """With 300 open files, 600 idle connections: the server closes the longest-idle ones to
    answer new clients (it stopped answering at all when accept ran out of file handles)."""

    def few_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))

    served = Served(store, preexec_fn=few_files)
    idle: list[socket.socket] = []
    try:
        for _ in range(600):
            try:
                idle.append(raw(served.port, b""))
            except OSError:
                break
        time.sleep(0.5)
        r = requests.get(served.url + "/sparql", params={"query": CHEAP}, timeout=10)
        assert r.status_code == 200
    finally:
        for sock in idle:
            sock.close()
        stop_cleanly(served)


def test_the_open_files_limit_is_raised_to_the_hard_limit(store: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    target = min(hard, 4096) if hard != resource.RLIM_INFINITY else 4096

    def low_soft() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, target))

    served = Served(store, preexec_fn=low_soft)
    try:
        limits = Path(f"/proc/{served.proc.pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        assert line.split()[3] == str(target), line
    finally:
        stop_cleanly(served)


def test_readers_that_take_nothing_hold_no_memory(store: Path) -> None:
    """Sixteen clients ask for a multi-megabyte answer and read none of it: the server keeps a
    small part of each in memory (the rest waits in a temporary file, and the workers are free
    for others), cuts the clients off after the stall limit, and answers others meanwhile."""
    served = tuned(store, stall_seconds=2.0)
    stuck: list[socket.socket] = []
    try:
        assert requests.get(served.url + "/sparql", params={"query": CHEAP}, timeout=30).status_code == 200
        before = rss(served.proc.pid)
        request = ("GET /sparql?query=" + requests.utils.quote(BIG) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Accept: application/sparql-results+json\r\n\r\n").encode()
        stuck = [raw(served.port, request, rcvbuf=4096) for _ in range(16)]
        time.sleep(3)
        started = time.monotonic()
        assert requests.get(served.url + "/sparql", params={"query": CHEAP}, timeout=30).status_code == 200
        assert time.monotonic() - started < 5
        grown = rss(served.proc.pid) - before
        assert grown < 40 * 1024 * 1024, f"serve grew by {grown >> 20} MiB"
        # a stuck client was cut off short of its Content-Length (never a silently short answer),
        # answered 503 when its query gave its place to another, or (its turn came when this
        # test began to read) answered in full
        cut = 0
        for sock in stuck:
            got = answer_of(sock, 20)
            m = re.search(rb"content-length: (\d+)", got, re.IGNORECASE)
            if got.startswith(b"HTTP/1.1 200"):
                assert m is not None
                cut += len(got.split(b"\r\n\r\n", 1)[1]) < int(m.group(1))
            else:
                assert got == b"" or got.startswith(b"HTTP/1.1 503"), got[:200]
                cut += got == b""
        assert cut > 0
    finally:
        for sock in stuck:
            sock.close()
        stop_cleanly(served)


# -- options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--timeout", "0"], ["--timeout", "-1"], ["--timeout", "nan"], ["--timeout", "inf"],
                                  ["--max-memory", "0"], ["--max-memory", "-5"], ["--max-memory", "garbage"],
                                  ["--max-body-size", "0"]])
def test_impossible_limits_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    r = CliRunner().invoke(main, ["--store", str(tmp_path / "s"), "serve", *args])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and args[0] in lines[0], r.stderr


def test_port_0_says_the_port_it_bound(store: Path) -> None:
    served = Served(store)  # (Served runs serve --port 0 and reads the port from the line it prints)
    try:
        assert served.port > 0
        assert requests.get(f"http://127.0.0.1:{served.port}/queries", timeout=10).ok
        assert any(f"at http://127.0.0.1:{served.port}/ " in line for line in served.lines)
    finally:
        stop_cleanly(served)


def test_a_port_in_use_is_one_error_line(store: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        out = subprocess.run([sys.executable, "-m", "konbini_ld", "--store", str(store), "serve", "--port",
                              str(taken.getsockname()[1])], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert [x for x in out.stderr.splitlines() if x.startswith("Error:")] == [
        x for x in out.stderr.splitlines() if "cannot listen" in x], out.stderr
