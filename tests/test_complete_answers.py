"""``serve`` answers in full or fails with an error status: no row cap cuts an answer short on
the protocol, whatever the client (requests, SPARQLWrapper, Jena's ``SERVICE``); the query
page's row cap is the page's and is shown there; a remote Virtuoso that cuts its answer at its
``ResultSetMaxRows`` is an error, not a short answer."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import NEWER, SEED, VIDEOS
from servers import VirtuosoServer, require_or_skip, virtuoso_available
from test_server import Served

from konbini_ld import open_store

#: 40,000 rows (of the store's triples taken three at a time), four times the 10,000 rows that
#: once were the most an answer held (an answer of 250,000 rows is in bench/figures.py).
PAIRS = "SELECT ?a ?c ?e WHERE { ?a ?p ?b . ?c ?q ?d . ?e ?r ?f } LIMIT 40000"
COUNT = f"SELECT (COUNT(*) AS ?n) WHERE {{ {{ {PAIRS} }} }}"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("complete") / "store"
    with open_store(path) as store:
        store.load([SEED, NEWER, VIDEOS])
    return path


@pytest.fixture(scope="module")
def served(store_path: Path) -> Iterator[Served]:
    server = Served(store_path, "--max-rows", "50")  # the page's cap: no part of the protocol's answers
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pairs(served: Served) -> int:
    r = requests.get(served.url + "/sparql", params={"query": COUNT}, headers={"Accept": "text/csv"}, timeout=60)
    n = int(r.text.split()[1])
    assert n == 40_000
    return n


def test_every_row_reaches_requests_and_no_header_is_needed(served: Served, pairs: int) -> None:
    r = requests.post(served.url + "/sparql", data={"query": PAIRS}, headers={"Accept": "text/csv"}, timeout=120)
    assert r.status_code == 200
    assert len(r.content) == int(r.headers["content-length"])
    assert r.text.count("\r\n") - 1 == pairs
    assert "x-result-truncated" not in r.headers


def test_every_row_reaches_sparqlwrapper(served: Served, pairs: int) -> None:
    from SPARQLWrapper import JSON, SPARQLWrapper

    client = SPARQLWrapper(served.url + "/sparql")
    client.setQuery(PAIRS)
    client.setReturnFormat(JSON)
    assert len(client.query().convert()["results"]["bindings"]) == pairs  # type: ignore[index,call-overload]


def test_every_triple_of_a_construct_is_sent(served: Served, pairs: int) -> None:
    query = "CONSTRUCT { ?a <urn:x:with> ?c } WHERE { ?a ?p ?b . ?c ?q ?d }"
    distinct = requests.get(served.url + "/sparql", headers={"Accept": "text/csv"}, timeout=60, params={
        "query": "SELECT (COUNT(DISTINCT *) AS ?n) WHERE { SELECT DISTINCT ?a ?c WHERE { ?a ?p ?b . ?c ?q ?d } }"})
    r = requests.get(served.url + "/sparql", params={"query": query}, headers={"Accept": "application/n-triples"},
                     timeout=120)
    assert r.status_code == 200
    assert len(r.text.splitlines()) == int(distinct.text.split()[1]) > 50


def test_jena_service_counts_every_row(served: Served, pairs: int, tmp_path: Path) -> None:
    """Jena joins our endpoint with ``SERVICE``: it counts what we hold, not 10,000."""
    from jena import classpath

    cp = classpath(tmp_path)
    query = tmp_path / "service.rq"
    query.write_text(f"SELECT (COUNT(*) AS ?n) WHERE {{ SERVICE <{served.url}/sparql> {{ {PAIRS} }} }}")
    out = subprocess.run(["java", "-cp", cp, "arq.sparql", "--query", str(query), "--results=csv"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[1]) == pairs


def test_the_page_shows_its_row_cap(served: Served, tmp_path: Path) -> None:
    from urllib.parse import quote

    from browser import chrome
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chrome(tmp_path / "profile") as driver:
        driver.get(served.url + "/?query=" + quote("SELECT ?s ?p ?o WHERE { ?s ?p ?o }"))
        WebDriverWait(driver, 30).until(lambda d: "ms" in d.find_element(By.ID, "status").text)
        status = driver.find_element(By.ID, "status").text
        assert len(driver.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")) == 50
    assert "the first 50 shown" in status, status


# -- a remote Virtuoso's own cap -------------------------------------------------------------------


@pytest.fixture(scope="module")
def virtuoso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    reason = virtuoso_available()
    if reason:
        require_or_skip(reason)
    srv = VirtuosoServer(tmp_path_factory.mktemp("virtuoso"))
    yield srv
    srv.stop()


def test_a_virtuoso_that_cuts_its_answer_is_an_error_status(virtuoso: Any, tmp_path: Path) -> None:
    """Its ``ResultSetMaxRows`` (10,000 here) cuts an answer; it says so in ``X-SPARQL-MaxRows``:
    ``serve`` over it answers 502 naming the limit, never 10,000 rows as if they were all."""
    with open_store(virtuoso.query_url, archive=tmp_path / "archive") as store:
        store.load([SEED, NEWER, VIDEOS])
    served = Served(virtuoso.query_url)
    try:
        r = requests.get(served.url + "/sparql", headers={"Accept": "text/csv"}, timeout=120, params={
            "query": "SELECT ?a ?c WHERE { ?a ?p ?b . ?c ?q ?d } LIMIT 20000"})
        assert r.status_code == 502, r.text[:300]
        assert "ResultSetMaxRows" in r.text
        small = requests.get(served.url + "/sparql", headers={"Accept": "text/csv"}, timeout=60, params={
            "query": "SELECT ?a WHERE { ?a ?p ?b } LIMIT 10"})
        assert small.status_code == 200
    finally:
        served.stop()
