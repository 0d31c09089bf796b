"""``konbini-ld publish DIR``: the entity pages as a static site, hosted by a plain http.server,
read by a crawler, Jena's parsers and rdflib."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import pyoxigraph as ox
import pytest
import requests
from click.testing import CliRunner
from helpers import AUDIO_IRI, KHABY
from rdflib import Graph, URIRef
from test_resource import HOSTILE_NAME, VIDEO, fill, parse_html

from konbini_ld import open_store, publish
from konbini_ld.apps.cli import main
from konbini_ld.apps.publish import entity_file_name

DCAT = "http://www.w3.org/ns/dcat#"
VOID = "http://rdfs.org/ns/void#"
FOAF = "http://xmlns.com/foaf/0.1/"
HYDRA = "http://www.w3.org/ns/hydra/core#"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("publish")
    fill(folder / "store")
    result = CliRunner().invoke(main, ["--store", str(folder / "store"), "publish", str(folder / "site"),
                                       "--dump", "turtle", "--dump", "nq"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("published ")
    return folder / "store", folder / "site"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def hosted(site: tuple[Path, Path]) -> Iterator[str]:
    """The site on a plain http.server on loopback."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(site[1])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_the_site_has_a_page_and_a_turtle_file_per_entity_an_index_dumps_and_void(site: tuple[Path, Path]) -> None:
    store_path, folder = site
    for name in ("index.html", "void.ttl", "app.css", "dumps/konbini-ld.ttl", "dumps/konbini-ld.nq"):
        assert (folder / name).is_file(), name
    for iri in (AUDIO_IRI, KHABY, VIDEO):
        stem = entity_file_name(iri)
        assert (folder / "r" / f"{stem}.html").is_file() and (folder / "r" / f"{stem}.ttl").is_file()
    assert (folder / "r" / f"{entity_file_name(KHABY)}-p2.html").is_file()  # the links past the first 100
    with open_store(store_path, read_only=True) as store:
        count = len(store)
    dump = ox.Store()
    dump.load(path=str(folder / "dumps" / "konbini-ld.nq"), format=ox.RdfFormat.N_QUADS)
    assert len(dump) == count


def test_every_turtle_file_of_the_site_parses_with_jena(site: tuple[Path, Path], tmp_path: Path) -> None:
    from jena import classpath, riot

    folder = site[1]
    files = sorted((folder / "r").glob("*.ttl")) + [folder / "void.ttl", folder / "dumps" / "konbini-ld.ttl"]
    done = riot(classpath(tmp_path), files, base="http://example.org/site/r/")
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr[-3000:]


def test_a_crawl_of_the_hosted_site_reaches_the_creator_and_videos(hosted: str) -> None:
    seen: dict[str, int] = {}
    todo = [hosted]
    while todo and len(seen) < 60:
        url = todo.pop(0)
        if url in seen:
            continue
        r = requests.get(url, timeout=30)
        seen[url] = r.status_code
        assert r.status_code == 200, url
        if not r.headers.get("content-type", "").startswith("text/html"):
            continue
        for a in parse_html(r.text).anchors:
            target = urljoin(url, a["href"])
            if urlparse(target).netloc == urlparse(hosted).netloc:
                todo.append(target)
            else:
                assert a.get("rel", "").startswith("noopener") or a.get("class") == "out", a
    pages = {u.rsplit("/", 1)[-1] for u in seen}
    audio = entity_file_name(AUDIO_IRI) + ".html"
    assert audio in pages and entity_file_name(KHABY) + ".html" in pages and entity_file_name(VIDEO) + ".html" in pages
    assert "void.ttl" in pages and "konbini-ld.ttl" in pages
    # and from the audio's page alone: its creator and its video
    from_audio = [urljoin(hosted + "r/", a["href"]) for a in parse_html(
        requests.get(hosted + "r/" + audio, timeout=30).text).anchors if a.get("class") == "entity"]
    assert hosted + "r/" + entity_file_name(KHABY) + ".html" in from_audio
    assert hosted + "r/" + entity_file_name(VIDEO) + ".html" in from_audio


def test_the_hosted_turtle_resolves_against_where_it_is_served(hosted: str) -> None:
    url = hosted + "r/" + entity_file_name(KHABY) + ".ttl"
    g = Graph().parse(data=requests.get(url, timeout=30).text, format="turtle", publicID=url)
    document = URIRef(url)
    assert g.value(document, URIRef(FOAF + "primaryTopic")) == URIRef(KHABY)
    following = g.value(document, URIRef(HYDRA + "next"))
    assert following is not None and requests.get(str(following), timeout=30).status_code == 200
    void = Graph().parse(data=requests.get(hosted + "void.ttl", timeout=30).text, format="turtle",
                         publicID=hosted + "void.ttl")
    dataset = URIRef(hosted + "void.ttl#dataset")
    assert g.value(document, URIRef("http://purl.org/dc/terms/isPartOf")) == dataset
    downloads = [void.value(d, URIRef(DCAT + "downloadURL")) for d in void.objects(dataset, URIRef(DCAT + "distribution"))]
    assert downloads and all(requests.get(str(d), timeout=30).status_code == 200 for d in downloads)
    assert void.value(dataset, URIRef(VOID + "sparqlEndpoint")) is None  # a static site has none


def test_the_static_pages_escape_what_they_show(site: tuple[Path, Path]) -> None:
    html = (site[1] / "r" / (entity_file_name("https://www.tiktok.com/music/hostile-1") + ".html")).read_text()
    assert HOSTILE_NAME not in html and "&lt;/script&gt;" in html
    assert '<meta http-equiv="Content-Security-Policy"' in html


def test_publish_is_a_library_function_with_a_base_url(tmp_path: Path) -> None:
    with open_store(None) as store:
        from helpers import NEWER, SEED, VIDEOS

        store.load([SEED, NEWER, VIDEOS])
        report = publish(store, tmp_path / "site", base_url="https://example.org/sounds", dump_formats=())
    assert report.entities >= 3 and not list((tmp_path / "site" / "dumps").iterdir())
    ttl = (tmp_path / "site" / "r" / (entity_file_name(AUDIO_IRI) + ".ttl")).read_text()
    g = Graph().parse(data=ttl, format="turtle")
    assert (None, URIRef(FOAF + "primaryTopic"), URIRef(AUDIO_IRI)) in g
    assert any(str(s).startswith("https://example.org/sounds/r/") for s in g.subjects(URIRef(FOAF + "primaryTopic")))
