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
        # a comment ends at a carriage return as well as at a line feed
        f"SELECT * WHERE {{ ?s ?p ?o # a comment\rSERVICE <{url}> {body} }}",
        f"SELECT * WHERE {{ VALUES ?e {{ <{url}> }} ?s ?p ?o # a comment\rSERVICE ?e #\n{body} }}",
        # Oxigraph's local names hold one run of dots: ex:a.b.SERVICE is ex:a.b, '.', SERVICE
        f"PREFIX ex: <http://e/> SELECT * WHERE {{ ?s ?p ex:a.b.SERVICE <{url}> {body} }}",
        # keywords are read without a word boundary
        f"SELECT * WHERE {{ ?s ?p true.SERVICE<{url}>{body} }}",
        f"SELECT * WHERE {{ ?s ?p ?o SERVICESILENT<{url}>{body} }}",
        f"PREFIX : <{url.rsplit('/', 1)[0]}/> SELECT * WHERE {{ SERVICE:sparql{body} }}",
        # a less-than that a lexer could take for the start of an IRI ending in a string or a comment
        f"SELECT * WHERE {{ ?s ?p ?o FILTER(1<2&&'>'!=\"x\") SERVICE <{url}> {body} FILTER('' = '') }}",
        f"SELECT * WHERE {{ VALUES ?e {{ <{url}> }} ?s ?p ?o FILTER(?o<?p)SERVICE?e#>\n{body} }}",
        # servers that expand \u escapes before reading keywords
        f"SELECT * WHERE {{ SERVIC\\u0045 <{url}> {body} }}",
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


#: Valid queries where the word is text: a comment, a string, an IRI, a variable, a name, a language tag.
NOT_SERVICE = [
    "# customer service report\nSELECT * WHERE {\n" + "\n".join(f"  ?s{i} <urn:p{i}> ?o{i} ." for i in range(300)) + "\n}",
    "SELECT * WHERE { ?s ?p ?o } # service\r",
    "SELECT * WHERE { ?s ?p 'the service desk' . ?s ?p '''SERVICE <http://x/> { }''' }",
    'SELECT * WHERE { ?s ?p "a \\"SERVICE\\" b" }',
    "SELECT * WHERE { ?s <http://example.org/service#SERVICE> ?o }",
    "SELECT ?service WHERE { ?service ?p ?o }",
    'SELECT * WHERE { ?s ?p "x"@en-service }',
    "PREFIX ex: <http://e/> SELECT * WHERE { ?s ex:customer_service ?o }",
    "SELECT * WHERE { VALUES (?a ?b) { (<http://e/service> <urn:b>) } }",
    "SELECT * WHERE { ?s ?p ?o FILTER(?p IN (<http://e/service>, <urn:b>)) }",
    "SELECT * WHERE { ?s ?p ?o FILTER(?o<?p) } # service <x> {}",
]


@pytest.mark.parametrize("sparql", NOT_SERVICE, ids=range(len(NOT_SERVICE)))
def test_the_word_service_as_text_is_not_refused(bait: Path, sparql: str) -> None:
    with open_store(bait, read_only=True) as store:
        list(store.query(sparql).rows())


def test_an_answer_is_never_left_to_the_garbage_collector_by_the_service_check(bait: Path) -> None:
    """The check parses a query that names the word with rdflib's parser, whose exceptions form
    reference cycles that reach the caller's frames: an engine's answer held there would be freed
    by the collector on whichever thread it runs ("unsendable, but is being dropped on another
    thread"), and a program querying from several threads would see it fail."""
    import gc

    with open_store(bait, read_only=True) as store:
        gc.collect()
        list(store.query(NOT_SERVICE[8]).rows())
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            left = [type(o).__name__ for o in gc.garbage if type(o).__module__ == "pyoxigraph"]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert "service" in NOT_SERVICE[8] and left == [], left


def test_the_service_check_reads_a_megabyte_in_seconds() -> None:
    from konbini_ld.query.guard import check_safe_query

    big = "# service\nASK { VALUES ?x { " + " ".join(str(i) for i in range(150_000)) + " } }"
    started = time.monotonic()
    check_safe_query(big)
    assert time.monotonic() - started < 10


def _fragments() -> Any:
    """Pieces of a group graph pattern that trip naive lexers, each valid for Oxigraph."""
    from hypothesis import strategies as st

    words = st.text(st.sampled_from(list("ab service SERVICE#'\"<>(){}\\\r\n?.")), max_size=16)

    def short(text: str, quote: str) -> str:
        escaped = text.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n").replace("\r", "\\r")
        return quote + escaped + quote

    def long(text: str, quote: str) -> str:
        return quote * 3 + text.replace("\\", "").replace(quote, "") + quote * 3

    path = st.text(st.sampled_from(list("abS/service")), max_size=12)
    iri_words = st.tuples(path, st.sampled_from(["", "#", "#service", "#S"])).map("".join)
    name = st.text(st.sampled_from(list("ab_service")), min_size=1, max_size=12)
    comment_ends = st.sampled_from(["\n", "\r", "\r\n"])
    return st.one_of(
        iri_words.map(lambda w: f"?s <http://e/{w}> ?o ."),
        st.tuples(words, comment_ends).map(lambda t: "#" + t[0].replace("\n", " ").replace("\r", " ") + t[1]),
        st.tuples(words, st.sampled_from(['"', "'"])).map(lambda t: f"FILTER(?o != {short(*t)})"),
        st.tuples(words, st.sampled_from(['"', "'"])).map(lambda t: f"FILTER(?o != {long(*t)})"),
        st.sampled_from(["", " "]).map(lambda w: f"FILTER(?o{w}<{w}?p)"),
        iri_words.map(lambda w: f"FILTER(?p IN (<http://e/{w}>))"),
        st.tuples(iri_words, iri_words).map(lambda t: f"VALUES (?a ?b) {{ (<http://e/{t[0]}> <http://e/{t[1]}>) }}"),
        name.map(lambda w: f"?s ex:{w} ?o ."),
        st.just("?s ?p true."),
        st.sampled_from(["FILTER(1<2&&'>'!=\"x\")", "FILTER(''='')", "FILTER(?o<?p||\"<\"=\">\")"]),
        st.sampled_from(["service", "SERVICE", "aservice", "sErViCe"]).map(lambda w: f'?s ?p "x"@en-{w} .'),
    )


def _service_call() -> Any:
    """A SERVICE call, glued to what comes before and after it the ways lexers trip on."""
    from hypothesis import strategies as st

    keyword = st.sampled_from(["SERVICE", "service", "SeRvIcE"])
    call = keyword.flatmap(lambda kw: st.sampled_from([
        f"{kw} <http://127.0.0.1:9/s> {{ }}", f"{kw}<http://127.0.0.1:9/s>{{}}", f"{kw} SILENT ?e {{ }}",
        f"{kw}?e#>\n{{}}"]))
    before = st.sampled_from(["", "FILTER(?o<?p)", "FILTER(1<2&&'>'!=\"x\")", "?s ?p true.", "?s ?p ?o #x\r",
                              "?s ?p ex:a.b.", "?s ?p '''a''b''' ."])
    after = st.sampled_from(["", "FILTER(''='')", "FILTER(?o<?p)"])
    return st.tuples(before, call, after).map(lambda t: t[0] + t[1] + t[2])


def test_the_service_check_agrees_with_oxigraph() -> None:
    """Generated queries: refused exactly when Oxigraph reads a SERVICE keyword in them."""
    import pyoxigraph as ox
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from konbini_ld.query.guard import check_safe_query

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
    @given(st.lists(_fragments(), max_size=6), st.none() | _service_call(), st.integers(0, 6),
           st.sampled_from([" ", "\n", ""]))
    def check(parts: list[str], call: str | None, at: int, sep: str) -> None:
        if call is not None:
            parts = [*parts[:at], call, *parts[at:]]
        query = "PREFIX ex: <http://e/> SELECT * WHERE { " + sep.join(parts) + " }"
        try:
            list(ox.Store().query(query))  # valid as generated (a SERVICE call fails: port 9 is refused)
        except SyntaxError:
            raise
        except Exception:  # noqa: BLE001 - an evaluation error (the SERVICE call) is not the point
            pass
        refused = False
        try:
            check_safe_query(query)
        except QueryError:
            refused = True
        assert refused == (call is not None), query

    check()


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
        # every IRI links to its page on this server; only http(s) IRIs also link out (the audios)
        outside = [h for h in links if not h.startswith(served.url + "/resource?iri=")]
        assert outside and all(h.startswith("https://") for h in outside)
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
        while (any(t.is_alive() for t in threads) or len(latencies) < 5) and len(latencies) < 40:
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
