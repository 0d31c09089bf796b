"""`konbini-ld serve` as a real process, queried by real HTTP clients."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import AUDIO_IRI, KHABY, NEWER, SEED, VIDEOS

from konbini_ld import open_store

ROOT = Path(__file__).resolve().parent.parent


class Served:
    """``konbini-ld serve --port 0`` as a process: the port is the one it says it bound; its
    stderr is read as it comes (a server that logs much never blocks on a full pipe)."""

    def __init__(self, store: Path, *extra: str, command: list[str] | None = None, preexec_fn: Any = None) -> None:
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "konbini_ld", "--store", str(store), "serve", "--port", "0", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn,
        )
        self.lines: list[str] = []
        self.port = 0
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                m = re.search(r"serving .* at http://127\.0\.0\.1:(\d+)/", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not ready.wait(60) or not self.port:
            self.proc.kill()
            raise RuntimeError("serve did not start: " + "".join(self.lines))
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            self._ready()
        except BaseException:
            self.proc.kill()  # (a server that never became ready is not left running)
            self.proc.wait(15)
            raise

    def _ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/queries", timeout=5).ok:
                    return
            except requests.ConnectionError:
                if self.proc.poll() is not None:
                    raise RuntimeError("".join(self.lines) or "serve exited") from None
                time.sleep(0.1)
            except requests.Timeout:
                pass  # (accepted, not yet answered: a busy machine)
        raise RuntimeError("serve did not start")

    def stop(self, now: bool = False) -> str:
        """SIGTERM (queries still running get 5 s); ``now``: then Ctrl-C, as a second one stops it
        at once (for tests that leave runaways running)."""
        self.proc.terminate()
        if now:
            try:
                self.proc.wait(0.3)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)
        self.reader.join(5)
        if self.proc.stderr is not None and not self.reader.is_alive():  # (else a process it started holds it)
            self.proc.stderr.close()
        return "".join(self.lines)


@pytest.fixture(scope="module")
def data_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("served") / "store"
    with open_store(path) as store:
        store.load([SEED, NEWER, VIDEOS])
    return path


@pytest.fixture(scope="module")
def served(data_store: Path) -> Any:
    server = Served(data_store, "--timeout", "2", "--max-rows", "50")
    yield server
    server.stop()


def sparql(served: Served, query: str, accept: str, method: str = "GET") -> requests.Response:
    if method == "GET":
        return requests.get(served.url + "/sparql", params={"query": query}, headers={"Accept": accept}, timeout=30)
    if method == "FORM":
        return requests.post(served.url + "/sparql", data={"query": query}, headers={"Accept": accept}, timeout=30)
    return requests.post(served.url + "/sparql", data=query.encode(), timeout=30,
                         headers={"Accept": accept, "Content-Type": "application/sparql-query"})


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on ``port`` (Linux /proc/net/tcp, state 0A)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if int(p, 16) == port and state == "0A":
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(addr))))
    return found


def test_binds_loopback_by_default(served: Served) -> None:
    assert _listening_addresses(served.port) == {"127.0.0.1"}


def test_rdflib_sparqlstore_gets_the_same_answers_as_query(served: Served, data_store: Path) -> None:
    from rdflib import URIRef
    from rdflib.plugins.stores.sparqlstore import SPARQLStore

    from konbini_ld.engines.rdflib_view import to_rdflib
    from konbini_ld.query.catalog import named_queries

    remote = SPARQLStore(served.url + "/sparql", returnFormat="json")
    with open_store(data_store, read_only=True) as store:
        for name, params in [("top-audios", {}), ("creators", {}), ("original-vs-licensed", {}),
                             ("audios-by-creator", {"creator": KHABY}), ("videos-using-audio", {"audio": AUDIO_IRI})]:
            local = [[to_rdflib(t) if t is not None else None for t in row] for row in store.run_named(name, params).rows()]
            bindings = {k: URIRef(v) for k, v in params.items()}
            got = [list(row) for row in
                   remote.query(named_queries()[name].text, initNs={}, initBindings=bindings, queryGraph=None)]
            assert got == local, name


@pytest.mark.parametrize(
    ("accept", "expect"),
    [
        ("application/sparql-results+json", "application/sparql-results+json"),
        ("application/sparql-results+xml", "application/sparql-results+xml"),
        ("text/csv", "text/csv"),
        ("text/tab-separated-values", "text/tab-separated-values"),
        ("*/*", "application/sparql-results+json"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "FORM", "POST"])
def test_select_content_negotiation(served: Served, accept: str, expect: str, method: str) -> None:
    r = sparql(served, f"SELECT ?n WHERE {{ <{AUDIO_IRI}> <https://konbiniapi.com/ns/social#videoCount> ?n }}", accept, method)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(expect)
    assert "500000" in r.text


@pytest.mark.parametrize(
    ("accept", "expect", "marker"),
    [("text/turtle", "text/turtle", "ks:videoCount 500000"), ("application/n-triples", "application/n-triples", "<https://konbiniapi.com/ns/social#videoCount> \"500000\""),
     ("application/ld+json", "application/ld+json", '"videoCount": 500000')],
)
def test_construct_content_negotiation(served: Served, accept: str, expect: str, marker: str) -> None:
    r = sparql(served, f"CONSTRUCT {{ ?a ?p ?o }} WHERE {{ BIND(<{AUDIO_IRI}> AS ?a) ?a ?p ?o }}", accept)
    assert r.status_code == 200 and r.headers["content-type"].startswith(expect)
    assert marker in r.text


def test_ask(served: Served) -> None:
    r = sparql(served, "ASK { ?s a <https://www.w3.org/ns/activitystreams#Audio> }", "application/sparql-results+json")
    assert r.json() == {"head": {}, "boolean": True}


def test_status_codes(served: Served) -> None:
    assert sparql(served, "SELECT * WHERE { ?s ?p }", "application/json").status_code == 400
    assert requests.post(served.url + "/sparql", data={"x": "1"}, timeout=5).status_code == 400  # no query
    # a client whose Accept names nothing usable gets the default, as from Fuseki, not a 406
    r = sparql(served, "SELECT * WHERE { ?s ?p ?o } LIMIT 1", "image/png")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/sparql-results+json")
    r = sparql(served, "SELECT * WHERE { SERVICE <http://127.0.0.1:9/sparql> { ?s ?p ?o } }", "application/json")
    assert r.status_code == 400 and "SERVICE" in r.text
    assert requests.post(served.url + "/sparql", data="x", headers={"Content-Type": "text/plain"}, timeout=5).status_code == 415


def test_updates_are_refused_and_change_nothing(served: Served) -> None:
    count = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
    before = sparql(served, count, "text/csv").text
    drop = "DELETE WHERE { ?s ?p ?o }"
    r1 = requests.post(served.url + "/sparql", data=drop, headers={"Content-Type": "application/sparql-update"}, timeout=5)
    r2 = requests.post(served.url + "/sparql", data={"update": drop}, timeout=5)
    r3 = sparql(served, drop, "application/json")
    assert (r1.status_code, r2.status_code, r3.status_code) == (403, 403, 400)
    assert sparql(served, count, "text/csv").text == before


def test_max_rows_never_cuts_a_protocol_answer(served: Served) -> None:
    count = sparql(served, "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }", "text/csv").text.split()[1]
    r = sparql(served, "SELECT * WHERE { ?s ?p ?o }", "application/sparql-results+json")
    assert len(r.json()["results"]["bindings"]) == int(count) > 50  # --max-rows 50 is the page's
    assert "x-result-truncated" not in r.headers


def test_query_timeout_stops_the_query_and_the_server_keeps_answering(served: Served) -> None:
    heavy = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l . ?m ?n2 ?o }"
    started = time.monotonic()
    r = sparql(served, heavy, "application/json")
    assert r.status_code == 503 and "time limit" in r.text
    assert time.monotonic() - started < 15
    assert sparql(served, "ASK { ?s ?p ?o }", "application/json").json()["boolean"] is True


def test_named_queries_over_http(served: Served) -> None:
    listed = requests.get(served.url + "/queries", timeout=5).json()
    assert {"top-audios", "search"} <= {q["name"] for q in listed}
    r = requests.get(served.url + "/queries/search", params={"text": "original"}, headers={"Accept": "text/csv"}, timeout=5)
    assert r.status_code == 200 and "khaby.lame" in r.text
    assert requests.get(served.url + "/queries/audios-by-creator", timeout=5).status_code == 400
    assert requests.get(served.url + "/queries/nope", timeout=5).status_code == 404


def test_no_cors_unless_asked(served: Served, data_store: Path) -> None:
    r = requests.get(served.url + "/queries", headers={"Origin": "https://example.org"}, timeout=5)
    assert "access-control-allow-origin" not in r.headers
    server = Served(data_store, "--cors", "https://example.org")
    try:
        r = requests.get(server.url + "/queries", headers={"Origin": "https://example.org"}, timeout=5)
        assert r.headers["access-control-allow-origin"] == "https://example.org"
    finally:
        server.stop()


def test_store_stays_writable_while_serving(served: Served, data_store: Path, tmp_path: Path) -> None:
    from helpers import seed_data, write_json

    other = seed_data()
    other["id"] = "https://www.tiktok.com/music/another-sound-1"
    with open_store(data_store) as store:  # the writer's lock is free: serve holds read-only views
        store.load([write_json(tmp_path / "o.json", {"data": other})])
    r = sparql(served, "SELECT (COUNT(?a) AS ?n) WHERE { ?a a <https://www.w3.org/ns/activitystreams#Audio> }", "text/csv")
    assert r.text.split()[-1] == "2"


def test_query_page_shows_a_results_table_for_a_named_query(served: Served, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    from browser import chrome

    with chrome(tmp_path / "profile") as driver:
        driver.get(served.url + "/")
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        Select(driver.find_element(By.ID, "named")).select_by_value("top-audios")
        driver.find_element(By.ID, "run").click()
        table = wait.until(ec.visibility_of_element_located((By.ID, "results-table")))
        headers = [th.text for th in table.find_elements(By.TAG_NAME, "th")]
        assert headers == ["audio", "name", "videoCount", "creator", "username"]
        cells = [td.text for td in table.find_elements(By.TAG_NAME, "td")]
        assert AUDIO_IRI in cells and "khaby.lame" in cells and "500000" in cells
        shot = tmp_path / "query-page.png"
        assert driver.save_screenshot(str(shot))
        png = shot.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width >= 1000 and height >= 600
        table_png = table.screenshot_as_png
        assert len(table_png) > 1000  # the rendered table, not an empty box
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert driver.find_element(By.ID, "status").text.startswith(f"{len(rows)} row")
        folder = Path(os.environ.get("KONBINI_LD_SCREENSHOT_DIR") or tmp_path)
        folder.mkdir(parents=True, exist_ok=True)  # (the first test to keep a screenshot makes it)
        shot.replace(folder / "query-page.png")
