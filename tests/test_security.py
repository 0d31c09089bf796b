"""No query reaches out, stored IRIs never run, one query cannot take the machine, and the
endpoint answers only to its own name."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from helpers import SEED
from test_server import Served

from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.errors import QueryError
from konbini_ld.sources.konbini.corpus import corpus_lines


class Listener:
    """A loopback TCP listener that counts connections (it must see none)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/sparql"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.fixture(scope="module")
def listener() -> Any:
    out = Listener()
    yield out
    out.sock.close()


def spellings(url: str) -> list[str]:
    """Every spelling of a federated call we could construct (one per line of attack)."""
    body = "{ ?x ?y ?z }"
    return [
        f"SELECT * WHERE {{ SERVICE <{url}> {body} }}",
        f"select * where {{ service <{url}> {body} }}",
        f"SELECT * WHERE {{ SeRvIcE SILENT <{url}> {body} }}",
        f"PREFIX ex: <http://e/> SELECT * WHERE {{ ?s ex:a\\# ?o . SERVICE <{url}> {body} }}",
        f"PREFIX ex: <http://e/> SELECT * WHERE {{ ?s ex:a\\#b ?o . SERVICE <{url}> {body} }} # trailing",
        f"PREFIX ex: <http://e/> SELECT * WHERE {{ ?s ex:\\#\\# ?o .\nSERVICE <{url}> {body} }}",
        f'SELECT * WHERE {{ BIND("\\u0022" AS ?q) SERVICE <{url}> {body} }}',
        f"SELECT * WHERE {{ BIND('''a''' AS ?q) SERVICE <{url}> {body} }}",
        f'SELECT * WHERE {{ BIND("#" AS ?q) SERVICE <{url}> {body} }}',
        f"SELECT * WHERE {{ ?s <http://e/#> ?o . SERVICE <{url}> {body} }}",
        f"BASE <{url}> SELECT * WHERE {{ SERVICE <> {body} }}",
        f"SELECT * WHERE {{ VALUES ?e {{ <{url}> }} SERVICE ?e {body} }}",
        f"SELECT * WHERE {{ OPTIONAL {{ SELECT * WHERE {{ SERVICE <{url}> {body} }} }} }}",
        f"SELECT * WHERE {{ ?s ?p ?o FILTER EXISTS {{ SERVICE <{url}> {body} }} }}",
        f"SELECT * WHERE {{ {{ ?s ?p ?o }} UNION {{ SERVICE <{url}> {body} }} }}",
        f"ASK {{ SERVICE <{url}> {body} }}",
        f"CONSTRUCT {{ ?x ?y ?z }} WHERE {{ SERVICE <{url}> {body} }}",
        f"DESCRIBE ?x WHERE {{ SERVICE <{url}> {body} }}",
        f"SELECT * WHERE {{\tSERVICE\r\n<{url}>\n{body} }}",
        f"PREFIX s: <{url.rsplit('/', 1)[0]}/> SELECT * WHERE {{ SERVICE s:sparql {body} }}",
        f"SELECT * WHERE {{ GRAPH ?g {{ ?s ?p ?o }} MINUS {{ SERVICE <{url}> {body} }} }}",
        f"SELECT (COUNT(*) AS ?n) WHERE {{ SERVICE <{url}> {body} }} GROUP BY ?x",
    ]


@pytest.fixture(scope="module")
def bait(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store where every pattern beside the SERVICE matches, so the engine would really call out."""
    import pyoxigraph as ox

    path = tmp_path_factory.mktemp("bait") / "store"
    with open_store(path) as store:
        store.load([SEED])
        for p in ("http://e/a#", "http://e/a#b", "http://e/#"):
            store.engine.store.add(ox.Quad(ox.NamedNode("urn:s"), ox.NamedNode(p), ox.Literal("o"),
                                            ox.NamedNode("urn:konbini-ld:graph:data")))
    return path


def test_no_spelling_of_service_reaches_out_from_the_library(bait: Path, listener: Listener) -> None:
    with open_store(bait, read_only=True) as store:
        for q in spellings(listener.url):
            with pytest.raises(QueryError, match="SERVICE|cannot"):
                list(store.query(q).rows()) if q.lstrip().upper().startswith(("SELECT", "PREFIX", "BASE")) else \
                    store.query(q)
    time.sleep(0.2)
    assert listener.connections == 0


def test_no_spelling_of_service_reaches_out_from_the_command_line(bait: Path, listener: Listener) -> None:
    for q in spellings(listener.url):
        r = CliRunner().invoke(main, ["--store", str(bait), "query", "-e", q], catch_exceptions=False)
        assert r.exit_code == 1 and "SERVICE" in r.stderr, (q, r.stderr)
    time.sleep(0.2)
    assert listener.connections == 0


def test_no_spelling_of_service_reaches_out_through_serve(bait: Path, listener: Listener) -> None:
    served = Served(bait)
    try:
        for q in spellings(listener.url):
            for send in (
                lambda: requests.get(served.url + "/sparql", params={"query": q}, timeout=30),
                lambda: requests.post(served.url + "/sparql", data={"query": q}, timeout=30),
                lambda: requests.post(served.url + "/sparql", data=q.encode(), timeout=30,
                                      headers={"Content-Type": "application/sparql-query"}),
            ):
                r = send()
                assert r.status_code == 400 and "SERVICE" in r.text, (q, r.status_code, r.text)
    finally:
        served.stop()
    time.sleep(0.2)
    assert listener.connections == 0


def test_service_in_text_alone_is_not_refused(bait: Path) -> None:
    with open_store(bait, read_only=True) as store:
        rows = list(store.query('SELECT ?s WHERE { ?s ?p ?o FILTER(?o != "SERVICE <http://x/>") } # SERVICE').rows())
    assert rows


def test_the_query_workers_cannot_open_a_connection_even_past_the_check(listener: Listener) -> None:
    """The engine-level half: a sandboxed process asking Oxigraph for SERVICE directly."""
    code = (
        "import pyoxigraph as ox\n"
        "from konbini_ld.engines.sandbox import deny_network\n"
        "assert deny_network()\n"
        "try:\n"
        f"    list(ox.Store().query('SELECT * WHERE {{ SERVICE <{listener.url}> {{ ?s ?p ?o }} }}'))\n"
        "except OSError as e:\n"
        "    print('refused', e)\n"
    )
    before = listener.connections
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "refused" in out.stdout, out.stderr
    time.sleep(0.2)
    assert listener.connections == before
    # and the serve worker installs it before it runs anything
    import inspect

    from konbini_ld.apps import query_workers as server

    assert inspect.getsource(server._worker).index("deny_network()") < inspect.getsource(server._worker).index("recv")


# -- the query page -------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("page") / "store"
    with open_store(path) as store:
        store.load([SEED])
    server = Served(path)
    yield server
    server.stop()


def test_the_page_allows_no_inline_script_or_style(served: Served) -> None:
    for path in ("/", "/app.js", "/app.css"):
        r = requests.get(served.url + path, timeout=10)
        assert r.status_code == 200
        csp = r.headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "script-src 'self'" in csp
    page = requests.get(served.url + "/", timeout=10).text
    assert "<script>" not in page and "<style>" not in page and 'src="app.js"' in page


def test_only_http_iris_become_links(served: Served, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from browser import chrome

    with chrome(tmp_path / "profile") as driver:
        driver.get(served.url + "/")
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        area = driver.find_element(By.ID, "query")
        area.clear()
        area.send_keys("SELECT ?s ?o WHERE { ?s <https://www.w3.org/ns/activitystreams#icon> ?o } LIMIT 5")
        driver.find_element(By.ID, "run").click()
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "results-table"))
        links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#results-table a")]
        cells = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#results-table td")]
        assert any(c.startswith("urn:konbini-ld:genid:") for c in cells)  # shown as text
        assert links and all(h.startswith("https://") for h in links)  # the audio IRIs only
        assert all("Content Security Policy" not in e["message"] for e in driver.get_log("browser"))


# -- the Host header ---------------------------------------------------------------------


def test_only_its_own_host_names_are_answered(served: Served) -> None:
    port = served.port
    for host, status in [(f"127.0.0.1:{port}", 200), (f"localhost:{port}", 200), ("localhost", 200),
                         (f"evil.example:{port}", 421), ("attacker.test", 421), ("", 421)]:
        r = requests.get(served.url + "/queries", headers={"Host": host}, timeout=10)
        assert r.status_code == status, host


def test_allow_host_adds_a_name(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as store:
        store.load([SEED])
    server = Served(tmp_path / "s", "--allow-host", "kb.example.org")
    try:
        ok = requests.get(server.url + "/queries", headers={"Host": "kb.example.org"}, timeout=10)
        other = requests.get(server.url + "/queries", headers={"Host": "other.example.org"}, timeout=10)
        assert (ok.status_code, other.status_code) == (200, 421)
    finally:
        server.stop()


# -- one query cannot take the machine ----------------------------------------------------------


RUNAWAY = "SELECT ?a ?b WHERE { ?a ?p ?o . ?b ?q ?r } ORDER BY ?a ?b LIMIT 1"


def test_runaway_queries_are_stopped_at_the_memory_cap_while_cheap_ones_are_answered(tmp_path: Path) -> None:
    path = tmp_path / "store"
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(line.rstrip("\n") + "\n" for line in corpus_lines(600)))
    assert CliRunner().invoke(main, ["--store", str(path), "load", str(corpus)]).exit_code == 0
    server = Served(path, "--workers", "2", "--max-memory", "300M", "--timeout", "60")
    try:
        answers: list[requests.Response] = []

        def runaway() -> None:
            answers.append(requests.get(server.url + "/sparql", params={"query": RUNAWAY}, timeout=120))

        threads = [threading.Thread(target=runaway) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        latencies = []
        while any(t.is_alive() for t in threads) and len(latencies) < 40:
            started = time.monotonic()
            r = requests.get(server.url + "/queries/top-audios", headers={"Accept": "text/csv"}, timeout=60)
            latencies.append(time.monotonic() - started)
            assert r.status_code == 200
        for t in threads:
            t.join(120)
        assert [a.status_code for a in answers] == [503, 503]
        assert all("memory" in a.text for a in answers)
        assert latencies and statistics.median(latencies) < 1.0, latencies
        assert requests.get(server.url + "/queries/top-audios", timeout=30).status_code == 200
    finally:
        server.stop()


def test_max_memory_takes_sizes() -> None:
    from konbini_ld.units import parse_size

    assert parse_size("1.5G") == 1610612736
    r = CliRunner().invoke(main, ["serve", "--max-memory", "lots"])
    assert r.exit_code == 2 and "not a size" in r.stderr
    assert json.dumps  # (module used above)
