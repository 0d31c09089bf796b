"""Every entity's page and description on ``konbini-ld serve`` (``/resource?iri=``), and the
dataset's description (``/void``), read by real clients: requests, Jena's parsers (riot), pyld
with a document loader that refuses the network, rdflib, and a crawler following the links."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import requests
from helpers import AUDIO_IRI, KHABY, NEWER, SEED, VIDEOS, seed_data
from rdflib import Graph, Literal, URIRef
from test_server import Served

from konbini_ld import open_store

AS = "https://www.w3.org/ns/activitystreams#"
KS = "https://konbiniapi.com/ns/social#"
HYDRA = "http://www.w3.org/ns/hydra/core#"
SCHEMA = "https://schema.org/"
VOID = "http://rdfs.org/ns/void#"
DCAT = "http://www.w3.org/ns/dcat#"
DCTERMS = "http://purl.org/dc/terms/"
VIDEO = "https://www.tiktok.com/@khaby.lame/video/7611615657754381599"
HOSTILE = "https://www.tiktok.com/music/hostile-1"
HOSTILE_NAME = '</script><script>alert(1)</script><img src=x onerror="alert(2)">'
ORIGIN = "http://app.example"


def many_videos(n: int = 130, audio: str = AUDIO_IRI) -> list[dict[str, Any]]:
    """``n`` more videos by the same creator using ``audio``: more links than a page holds."""
    return [{"data": {"type": "Video", "id": f"https://www.tiktok.com/@khaby.lame/video/9{i:06d}",
                      "content": f"video {i}", "viewCount": i, "attributedTo": {"type": "Person", "id": KHABY},
                      "audio": {"type": "Audio", "id": audio}}} for i in range(n)]


def fill(path: Path, *, audio_of_videos: str = AUDIO_IRI) -> None:
    with open_store(path) as store:
        store.load([SEED, NEWER, VIDEOS])
        for day, count in ((1, 410_000), (2, 450_000), (3, 520_000)):  # a history, observed earlier
            store.load([{"data": {**seed_data(), "videoCount": count}}], observed_at=f"2026-11-0{day}T09:00:00Z")
        store.load(many_videos(audio=audio_of_videos))
        store.load([{"data": {"type": "Audio", "id": HOSTILE, "name": HOSTILE_NAME, "album": "javascript:alert(3)",
                              "attributedTo": {"type": "Person", "id": KHABY}}}])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("resource")
    fill(folder / "store")
    dumps = folder / "dumps"
    dumps.mkdir()
    with open_store(folder / "store", read_only=True) as store:
        for fmt in ("turtle", "nq"):
            store.export(dumps / f"konbini-ld.{'ttl' if fmt == 'turtle' else fmt}", fmt)
    server = Served(folder / "store", "--dumps", str(dumps), "--cors", ORIGIN)
    yield server
    server.stop()


def page_url(served: Served, iri: str, **params: str) -> str:
    return requests.Request("GET", served.url + "/resource", params={"iri": iri, **params}).prepare().url or ""


def get(served: Served, iri: str, accept: str = "text/html", **params: str) -> requests.Response:
    return requests.get(served.url + "/resource", params={"iri": iri, **params}, headers={"Accept": accept},
                        timeout=60)


class Links(HTMLParser):
    """The links and scripts of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[dict[str, str]] = []
        self.scripts: list[tuple[dict[str, str], str]] = []
        self.images: list[str] = []
        self._script: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "a":
            self.anchors.append(values)
        elif tag == "script":
            self._script = values
            self.scripts.append((values, ""))
        elif tag == "img":
            self.images.append(values.get("src", ""))

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None


def parse_html(text: str) -> Links:
    links = Links()
    links.feed(text)
    return links


def test_an_audio_page_shows_its_facts_what_points_to_it_its_provenance_and_history(served: Served) -> None:
    r = get(served, AUDIO_IRI)
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src" not in r.headers["content-security-policy"]  # no script runs on the page at all
    assert "Accept" in r.headers["vary"] and 'rel="alternate"; type="text/turtle"' in r.headers["link"]
    html = r.text
    assert '<h2 id="name">original sound</h2>' in html
    assert ">as:name</th>" in html and ">ks:videoCount</th>" in html  # prefixed names
    assert 'id="picture" src="https://p16-sign.tiktokcdn-us.com/' in html
    links = parse_html(html)
    entity_links = {parse_qs(urlparse(a["href"]).query)["iri"][0] for a in links.anchors if a.get("class") == "entity"}
    assert KHABY in entity_links and VIDEO in entity_links  # its creator, and the videos using it
    assert 'id="provenance"' in html and 'id="last-observed"' in html
    assert "from the request" in get(served, VIDEO).text  # observed in a page of videos the API answered
    assert "https://api.konbiniapi.com/v1/tiktok/audios/" in get(served, VIDEO).text
    assert 'class="panel"' in html and 'data-series="videoCount"' in html  # the chart of its counter


def test_descriptions_in_every_rdf_format_parse_with_jena(served: Served, tmp_path: Path) -> None:
    from jena import classpath, riot

    cp = classpath(tmp_path)
    files = []
    for iri, extra in ((AUDIO_IRI, {}), (KHABY, {}), (KHABY, {"page": "2"}), (VIDEO, {}), (HOSTILE, {})):
        for accept, suffix in (("text/turtle", "ttl"), ("application/n-triples", "nt"),
                               ("application/ld+json", "jsonld"), ("application/rdf+xml", "rdf")):
            r = get(served, iri, accept, **extra)
            assert r.status_code == 200 and r.headers["content-type"].startswith(accept), (iri, accept)
            path = tmp_path / f"{len(files)}.{suffix}"
            path.write_bytes(r.content)
            files.append(path)
    for accept, suffix in (("text/turtle", "ttl"), ("application/rdf+xml", "rdf"), ("application/n-triples", "nt")):
        path = tmp_path / f"void.{suffix}"
        path.write_bytes(requests.get(served.url + "/void", headers={"Accept": accept}, timeout=60).content)
        files.append(path)
    done = riot(cp, files)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr[-3000:]
    # the JSON-LD stands alone: its contexts are inline, and a processor that may not fetch anything
    # reads the same triples as the N-Triples answer
    from pyld import jsonld

    def refuse(url: str, options: Any = None) -> Any:
        raise AssertionError(f"the description asked for {url}")

    for f in files:
        if f.suffix == ".jsonld":
            document = json.loads(f.read_text())
            assert not any(isinstance(c, str) for c in document["@context"])
            quads = jsonld.to_rdf(document, {"documentLoader": refuse, "format": "application/n-quads"})
            twin = f.with_name(f"{int(f.stem) - 1}.nt")
            assert len(set(quads.splitlines())) == len(set(twin.read_text().splitlines()))


def test_a_description_holds_the_facts_the_owned_objects_the_links_provenance_and_history(served: Served) -> None:
    g = Graph().parse(data=get(served, AUDIO_IRI, "text/turtle").text, format="turtle")
    audio, person, video = URIRef(AUDIO_IRI), URIRef(KHABY), URIRef(VIDEO)
    assert (audio, URIRef(AS + "attributedTo"), person) in g
    assert (video, URIRef(KS + "audio"), audio) in g  # what points to it
    assert (person, URIRef(AS + "name"), Literal("Khabane Lame")) in g  # its neighbours by name
    image = g.value(audio, URIRef(AS + "image"))
    assert image is not None and g.value(image, URIRef(AS + "url")) is not None  # the nested objects it owns
    assert g.value(audio, URIRef(KS + "lastObservedAt")) is not None
    assert len(list(g.objects(audio, URIRef("http://www.w3.org/ns/prov#wasGeneratedBy")))) >= 3
    times = sorted(str(t) for t in g.objects(None, URIRef("http://www.w3.org/ns/sosa/resultTime")))
    assert len(times) >= 4 and times[0].startswith("2026-11-01")
    document = URIRef(page_url(served, AUDIO_IRI))
    assert (document, URIRef("http://xmlns.com/foaf/0.1/primaryTopic"), audio) in g


def test_an_observation_named_on_a_page_has_a_page_of_its_own(served: Served) -> None:
    links = parse_html(get(served, VIDEO).text).anchors
    activity = next(a["href"] for a in links if a.get("class") == "activity")
    r = requests.get(urljoin(served.url + "/", activity), timeout=60)
    assert r.status_code == 200 and ">prov:used</th>" in r.text and "prov:Activity" in r.text


def test_a_creator_with_many_videos_is_described_a_page_of_links_at_a_time(served: Served) -> None:
    first = Graph().parse(data=get(served, KHABY, "text/turtle").text, format="turtle")
    person = URIRef(KHABY)
    document = URIRef(page_url(served, KHABY))
    total = int(first.value(document, URIRef(HYDRA + "totalItems")))  # type: ignore[arg-type]
    assert total == 130 + 1 + 2  # the videos, the sample's video, the two audios
    attributed = URIRef(AS + "attributedTo")
    linking = set(first.subjects(attributed, person))
    assert len(linking) == 100
    following = first.value(document, URIRef(HYDRA + "next"))
    assert following is not None and parse_qs(urlparse(str(following)).query)["page"] == ["2"]
    second = Graph().parse(data=requests.get(str(following), headers={"Accept": "text/turtle"}, timeout=60).text,
                           format="turtle")
    rest = set(second.subjects(attributed, person))
    assert len(rest) == total - 100 and not rest & linking
    assert second.value(URIRef(str(following)), URIRef(HYDRA + "next")) is None
    html = get(served, KHABY).text
    assert 'id="next-page"' in html and "133 links, 1 to 100 shown" in html


@pytest.mark.parametrize(("iri", "status"), [
    ("https://www.tiktok.com/music/never-seen-1", 404),
    ("not an iri", 400),
    ("https://exa mple.org/a b", 400),
    ("javascript:alert(document.domain)", 400),
    ("JaVaScRiPt:alert(1)", 400),
    ("data:text/html,<script>alert(1)</script>", 400),
    ("file:///etc/passwd", 400),
    ("https://www.tiktok.com/" + "a" * 5000, 400),
    ("", 400),
])
def test_hostile_iri_values_are_refused_or_not_found_as_plain_text(served: Served, iri: str, status: int) -> None:
    r = get(served, iri)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/plain")  # never HTML: nothing in it is markup
    assert len(r.text) < 600


def test_an_iri_larger_than_a_request_head_is_refused(served: Served) -> None:
    r = get(served, "https://www.tiktok.com/" + "a" * 70_000)
    assert r.status_code == 431


def test_bad_pages_are_refused(served: Served) -> None:
    for page in ("0", "-1", "abc", "1e3", "999999999"):
        assert get(served, AUDIO_IRI, page=page).status_code == 400, page
    assert get(served, KHABY, page="50").status_code == 200  # past the end: an empty page, not an error


def test_html_in_literals_is_escaped_and_only_http_iris_are_links(served: Served) -> None:
    r = get(served, HOSTILE)
    assert r.status_code == 200
    html = r.text
    assert HOSTILE_NAME not in html and "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in html
    links = parse_html(html)
    for a in links.anchors:
        target = urljoin(served.url + "/", a["href"])
        assert urlparse(target).scheme in ("http", "https"), a
    for attrs, text in links.scripts:  # the only script element is the JSON-LD block, and it stays one
        assert attrs.get("type") == "application/ld+json"
        assert "</script" not in text.lower() and json.loads(text)["name"] == HOSTILE_NAME
    assert "javascript:alert(3)" in html and 'href="javascript' not in html.lower()


def test_the_schema_org_block_reads_with_a_json_ld_processor_offline(served: Served) -> None:
    from pyld import jsonld

    def refuse(url: str, options: Any = None) -> Any:
        raise AssertionError(f"the block asked for {url}")

    kinds = {}
    for iri in (AUDIO_IRI, KHABY, VIDEO):
        scripts = [text for attrs, text in parse_html(get(served, iri).text).scripts
                   if attrs.get("type") == "application/ld+json"]
        assert len(scripts) == 1
        expanded = jsonld.expand(json.loads(scripts[0]), {"documentLoader": refuse})
        node = next(n for n in expanded if n.get("@id") == iri)
        kinds[iri] = set(node["@type"])
        assert node[SCHEMA + "name"][0]["@value"]
    assert kinds[AUDIO_IRI] == {SCHEMA + "MusicRecording", AS + "Audio"}
    assert kinds[KHABY] == {SCHEMA + "Person", AS + "Person"}
    assert kinds[VIDEO] == {SCHEMA + "VideoObject", AS + "Video"}
    audio = jsonld.expand(json.loads(next(t for a, t in parse_html(get(served, AUDIO_IRI).text).scripts)),
                          {"documentLoader": refuse})[0]
    assert audio[SCHEMA + "byArtist"][0]["@id"] == KHABY
    assert audio[KS + "videoCount"][0]["@value"] in ("500000", 500000)  # ours beside schema.org's


def test_the_same_host_and_cors_rules_apply(served: Served) -> None:
    r = requests.get(page_url(served, AUDIO_IRI), headers={"Host": "evil.example"}, timeout=30)
    assert r.status_code == 421
    r = requests.get(page_url(served, AUDIO_IRI), headers={"Origin": ORIGIN, "Accept": "text/turtle"}, timeout=30)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    r = requests.get(page_url(served, AUDIO_IRI), headers={"Origin": "http://other.example"}, timeout=30)
    assert "access-control-allow-origin" not in r.headers


def test_a_crawl_from_an_audio_page_reaches_its_creator_and_videos(served: Served) -> None:
    seen = crawl(page_url(served, AUDIO_IRI), limit=40)
    iris = {parse_qs(urlparse(url).query)["iri"][0] for url in seen}
    assert KHABY in iris and VIDEO in iris and AUDIO_IRI in iris
    assert any(i.startswith("https://www.tiktok.com/@khaby.lame/video/9") for i in iris)


def crawl(start: str, *, limit: int) -> dict[str, int]:
    """Follow the entity links breadth first from ``start``: URL → status."""
    seen: dict[str, int] = {}
    todo = [start]
    while todo and len(seen) < limit:
        url = todo.pop(0)
        if url in seen:
            continue
        r = requests.get(url, headers={"Accept": "text/html"}, timeout=60)
        seen[url] = r.status_code
        assert r.status_code == 200, url
        for a in parse_html(r.text).anchors:
            if a.get("class") in ("entity",) or a.get("rel") == "next":
                todo.append(urljoin(url, a["href"]))
    return seen


def test_void_describes_the_dataset_in_void_and_dcat_with_its_dumps(served: Served) -> None:
    text = requests.get(served.url + "/void", headers={"Accept": "text/turtle"}, timeout=60).text
    g = Graph().parse(data=text, format="turtle")
    dataset = URIRef(served.url + "/void#dataset")
    types = set(g.objects(dataset, URIRef("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")))
    assert {URIRef(VOID + "Dataset"), URIRef(DCAT + "Dataset")} <= types
    assert g.value(dataset, URIRef(VOID + "sparqlEndpoint")) == URIRef(served.url + "/sparql")
    assert URIRef(AS) in set(g.objects(dataset, URIRef(VOID + "vocabulary")))
    classes = {str(g.value(p, URIRef(VOID + "class"))): int(g.value(p, URIRef(VOID + "entities")))  # type: ignore[arg-type]
               for p in g.objects(dataset, URIRef(VOID + "classPartition"))}
    assert classes[AS + "Audio"] == 2 and classes[AS + "Video"] == 131 + 1  # (and the video file a video owns)
    span = g.value(dataset, URIRef(DCTERMS + "temporal"))
    assert str(g.value(span, URIRef(DCAT + "startDate"))).startswith("2026-11-01")
    downloads = {str(g.value(d, URIRef(DCAT + "downloadURL"))) for d in g.objects(dataset, URIRef(DCAT + "distribution"))
                 if g.value(d, URIRef(DCAT + "downloadURL")) is not None}
    assert downloads == {served.url + "/dumps/konbini-ld.ttl", served.url + "/dumps/konbini-ld.nq"}
    dump = requests.get(served.url + "/dumps/konbini-ld.ttl", timeout=60)
    assert dump.status_code == 200 and dump.headers["content-type"].startswith("text/turtle")
    assert len(Graph().parse(data=dump.text, format="turtle")) > 100
    assert requests.get(served.url + "/dumps/..%2Fstore", timeout=30).status_code == 404
    assert requests.get(served.url + "/dumps/missing.ttl", timeout=30).status_code == 404


def test_void_figures_are_kept_until_a_write(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with open_store(path) as store:
        store.load([SEED, NEWER, VIDEOS])
    server = Served(path)
    try:
        def void() -> tuple[float, int]:
            started = time.perf_counter()
            text = requests.get(server.url + "/void", headers={"Accept": "text/turtle"}, timeout=60).text
            g = Graph().parse(data=text, format="turtle")
            triples = g.value(URIRef(server.url + "/void#dataset"), URIRef(VOID + "triples"))
            return time.perf_counter() - started, int(triples)  # type: ignore[arg-type]

        _, before = void()
        assert all(void()[1] == before for _ in range(3))  # kept for the archive position
        with open_store(path) as store:  # a writer beside the server
            store.load(many_videos(3))
            expected = len(store)
        _, after = void()
        assert after == expected and after > before
    finally:
        server.stop()
