"""Entity pages as people see them, in headless Chromium (with screenshots, as the query page's
tests take them), and the query page's links to them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from browser import chrome
from helpers import AUDIO_IRI, KHABY
from test_page import ready, run_sparql, shoot
from test_resource import fill, page_url
from test_server import Served


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    path = tmp_path_factory.mktemp("resource-page") / "store"
    fill(path, audio_of_videos="https://www.tiktok.com/music/another-sound-1")  # (the audio's page stays short)
    server = Served(path)
    yield server
    server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chrome(tmp_path / "profile", height=1400) as driver:
        yield driver


def whole_page(browser: Any) -> None:
    """Make the window as tall as the page (up to 4,000 pixels), for a screenshot of all of it."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 40, 4000))


def errors(browser: Any) -> list[str]:
    """What the browser's console said at error level (a refused script or style, a CSP report),
    apart from the pictures from elsewhere that cannot load without the network."""
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"
            and "tiktokcdn" not in e["message"] and "favicon.ico" not in e["message"]]


def test_an_audio_page_in_a_browser(served: Served, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(page_url(served, AUDIO_IRI))
    assert browser.find_element(By.ID, "name").text == "original sound"
    assert browser.title.startswith("original sound")
    facts = browser.find_element(By.ID, "facts")
    assert "as:attributedTo" in facts.text and "Khabane Lame" in facts.text
    panels = browser.find_elements(By.CSS_SELECTOR, "#chart svg.panel")
    assert [p.get_attribute("data-series") for p in panels] == ["videoCount"]
    line = panels[0].find_element(By.CSS_SELECTOR, "polyline.line")
    assert line.size["width"] > 300 and line.size["height"] > 20  # drawn with the page's style, not collapsed
    assert len(panels[0].find_elements(By.CSS_SELECTOR, "circle.dot")) >= 4
    inbound = browser.find_element(By.ID, "inbound")
    assert "ks:audio" in inbound.text and inbound.find_elements(By.CSS_SELECTOR, "a.entity")
    assert "simpler way" in inbound.text  # the video using it, by its caption
    assert browser.find_element(By.ID, "provenance").is_displayed()
    assert errors(browser) == []
    whole_page(browser)
    shoot(browser, "resource-audio", tmp_path)
    # its creator is a click away
    browser.find_element(By.CSS_SELECTOR, f'#facts a.entity[title="{KHABY}"]').click()
    assert browser.find_element(By.ID, "name").text == "Khabane Lame"


def test_a_creator_page_in_a_browser(served: Served, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(page_url(served, KHABY))
    assert browser.find_element(By.ID, "name").text == "Khabane Lame"
    inbound = browser.find_element(By.ID, "inbound")
    assert "133 links, 1 to 100 shown" in inbound.text
    assert len(inbound.find_elements(By.CSS_SELECTOR, "ul.links li")) == 100
    names = {a.text for a in inbound.find_elements(By.CSS_SELECTOR, "a.entity")}
    assert "original sound" in names  # the audios of a creator, by name
    assert errors(browser) == []
    whole_page(browser)
    shoot(browser, "resource-creator", tmp_path)
    browser.find_element(By.ID, "next-page").click()
    inbound = browser.find_element(By.ID, "inbound")
    assert "101 to 133 shown" in inbound.text and browser.find_elements(By.ID, "prev-page")


def test_query_results_link_every_iri_to_its_page(served: Served, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait = ready(browser, served.url + "/")
    assert browser.find_element(By.ID, "dataset-link").get_attribute("href") == served.url + "/void"
    run_sparql(browser, "SELECT ?audio ?creator WHERE { ?audio a <https://www.w3.org/ns/activitystreams#Audio> ; "
                        "<https://www.w3.org/ns/activitystreams#attributedTo> ?creator }")
    table = wait.until(ec.visibility_of_element_located((By.ID, "results-table")))
    pages = [a.get_attribute("href") for a in table.find_elements(By.CSS_SELECTOR, "a.entity")]
    assert pages and all(urlparse(p).path == "/resource" for p in pages)
    assert AUDIO_IRI in {parse_qs(urlparse(p).query)["iri"][0] for p in pages}
    table.find_element(By.CSS_SELECTOR, f'a.entity[title="{AUDIO_IRI}"]').click()
    assert browser.find_element(By.ID, "name").text == "original sound"
