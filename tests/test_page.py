"""The query page, for people who look rather than read, in headless Chromium (with screenshots).

Screenshots go to ``$KONBINI_LD_SCREENSHOT_DIR`` when it is set (``.ci/run`` sets it and lists
them), else to the test's temporary directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from browser import chrome
from helpers import AUDIO_IRI, NEWER, SEED, VIDEOS, seed_data
from konbini_ld import open_store
from test_server import Served


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    path = tmp_path_factory.mktemp("page") / "store"
    with open_store(path) as store:
        store.load([SEED, NEWER, VIDEOS])
        for day, count in ((1, 410_000), (2, 450_000), (3, 520_000)):  # a history, observed earlier
            store.load([{"data": {**seed_data(), "videoCount": count}}], observed_at=f"2026-11-0{day}T09:00:00Z")
    server = Served(path)
    yield server
    server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chrome(tmp_path / "profile") as driver:
        yield driver


def shoot(driver: Any, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("KONBINI_LD_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path))
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000  # a rendered page, not an empty frame
    return path


def ready(driver: Any, url: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 20)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    return wait


def run_sparql(browser: Any, sparql: str) -> None:
    """Type ``sparql`` into the open query page and run it."""
    from selenium.webdriver.common.by import By

    area = browser.find_element(By.ID, "query")
    area.clear()
    area.send_keys(sparql)
    browser.find_element(By.ID, "run").click()


def run_in_page(browser: Any, url: str, sparql: str) -> Any:
    """Open the query page, run ``sparql`` in it; return the page's wait."""
    wait = ready(browser, url + "/")
    run_sparql(browser, sparql)
    return wait


def test_named_query_results_with_prefixes_downloads_and_timing(served: Served, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait = run_in_page(browser, served.url, "SELECT ?entity ?type WHERE { ?entity a ?type } ORDER BY ?type LIMIT 20")
    table = wait.until(ec.visibility_of_element_located((By.ID, "results-table")))
    cells = [td.text for td in table.find_elements(By.TAG_NAME, "td")]
    assert "as:Audio" in cells and "as:Person" in cells  # prefixed names, not full IRIs
    assert not any(c.startswith("https://www.w3.org/ns/activitystreams#") for c in cells)
    status = browser.find_element(By.ID, "status").text
    rows = len(table.find_elements(By.CSS_SELECTOR, "tbody tr"))
    assert status.startswith(f"{rows} rows in ") and status.endswith(" ms")
    links = {a.text: a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")}
    assert set(links) == {"CSV", "JSON"}
    csv = requests.get(links["CSV"], timeout=30)
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.splitlines()[0] == "entity,type"
    assert requests.get(links["JSON"], timeout=30).json()["head"]["vars"] == ["entity", "type"]
    shoot(browser, "page-results", tmp_path)


def test_a_parse_error_says_where(served: Served, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait = run_in_page(browser, served.url, "SELECT ?s WHERE { ?s ?p ?o } LIMT 5")
    box = wait.until(ec.visibility_of_element_located((By.ID, "error")))
    text = box.text
    assert text.startswith("Line 1, column ") and "syntax error" in text
    assert "expected one of" not in text and "[_]" not in text  # no grammar dump
    assert "^" in text.splitlines()[-1]  # a caret under the place
    shoot(browser, "page-error", tmp_path)


def test_a_construct_shows_the_graph_with_a_turtle_download(served: Served, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select

    wait = ready(browser, served.url + "/")
    Select(browser.find_element(By.ID, "named")).select_by_value("audio")
    browser.find_element(By.CSS_SELECTOR, "#params input[name=audio]").send_keys(AUDIO_IRI)
    browser.find_element(By.ID, "run").click()
    graph = wait.until(ec.visibility_of_element_located((By.ID, "graph")))
    assert "ks:videoCount" in graph.text and "original sound" in graph.text
    links = {a.text: a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")}
    assert "Turtle" in links
    turtle = requests.get(links["Turtle"], timeout=30)
    assert turtle.headers["content-type"].startswith("text/turtle") and "ks:videoCount" in turtle.text
    shoot(browser, "page-construct", tmp_path)


def test_a_permalink_reopens_the_query_with_its_parameters(served: Served, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select

    ready(browser, served.url + "/")
    Select(browser.find_element(By.ID, "named")).select_by_value("audios-by-creator")
    browser.find_element(By.CSS_SELECTOR, "#params input[name=creator]").send_keys("https://www.tiktok.com/@khaby.lame")
    browser.find_element(By.ID, "permalink").click()
    link = browser.find_element(By.ID, "status").text.removeprefix("permalink: ")
    assert "named=audios-by-creator" in link and "creator=" in link
    wait = ready(browser, link)  # a fresh page from the link runs the query by itself
    table = wait.until(ec.visibility_of_element_located((By.ID, "results-table")))
    assert AUDIO_IRI in [a.get_attribute("href") for a in table.find_elements(By.TAG_NAME, "a")]
    assert browser.find_element(By.CSS_SELECTOR, "#params input[name=creator]").get_attribute("value")


def test_history_results_are_charted_one_panel_per_counter(served: Served, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select

    wait = ready(browser, served.url + "/")
    Select(browser.find_element(By.ID, "named")).select_by_value("history")
    browser.find_element(By.CSS_SELECTOR, "#params input[name=entity]").send_keys(AUDIO_IRI)
    browser.find_element(By.ID, "run").click()
    chart = wait.until(ec.visibility_of_element_located((By.ID, "chart")))
    table = browser.find_element(By.ID, "results-table")
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")] for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    panels = chart.find_elements(By.CSS_SELECTOR, "svg.panel")
    assert [p.get_attribute("data-series") for p in panels] == ["videoCount"]
    dots = panels[0].find_elements(By.CSS_SELECTOR, "circle.dot")
    assert len(dots) == len(rows) >= 4  # every observation is a point on the line
    line = panels[0].find_element(By.CSS_SELECTOR, "polyline.line")
    assert len(line.get_attribute("points").split()) == len(rows)
    assert line.size["width"] > 300 and line.size["height"] > 20  # drawn, not collapsed
    ys = [float(d.get_attribute("cy")) for d in dots]
    assert ys[0] > ys[2]  # 410,000 then 520,000: the line rises (SVG y grows downwards)
    assert "series charted" in browser.find_element(By.ID, "status").text
    shoot(browser, "page-history-chart", tmp_path)
    # a result without times draws nothing
    run_sparql(browser, "SELECT ?s WHERE { ?s a ?t } LIMIT 3")
    wait.until(lambda d: not d.find_element(By.ID, "chart").is_displayed())
