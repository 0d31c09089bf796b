"""RDF/XML and the SPARQL XML results: what they write is read back exactly by an XML parser
(expat, through rdflib and the standard library), or refused with the character named and the
formats that carry it. JSON and RDF hold characters XML 1.0 has no room for (U+0000, U+FFFE…),
and a parser reads a carriage return written as it is as a line feed."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest
import requests
import rdflib
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from test_server import Served

from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.errors import NotInFormatError
from konbini_ld.io.formats import Format
from konbini_ld.io.results import write_solutions
from konbini_ld.query.run import QueryResult
from konbini_ld.sources.konbini.corpus import videos_page

_RESULTS = "{http://www.w3.org/2005/sparql-results#}"
_NOT_XML = set(range(0x20)) - {0x09, 0x0A, 0x0D} | {0xFFFE, 0xFFFF}
_S, _P = ox.NamedNode("https://www.tiktok.com/@u/video/1"), ox.NamedNode("https://schema.org/description")

texts = st.text(st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ["a\r\nb", "\r", "a\x00b", "\ufffe", "\uffff", "\x0b\x0c", "]]>&<'\"", "\x85\u2028", "\U0001f525\r"])


def _not_xml(text: str) -> bool:
    return any(ord(c) in _NOT_XML for c in text)


def _read_results(data: bytes) -> str:
    literal = ET.fromstring(data).find(f".//{_RESULTS}literal")
    assert literal is not None
    return literal.text or ""


@settings(max_examples=300, deadline=None)
@given(texts)
def test_the_xml_results_read_back_exactly_or_refuse_what_xml_cannot_carry(text: str) -> None:
    """Both writers: the engine's own (a query's result streamed) and ours (capped rows, `serve`)."""
    store = ox.Store()
    store.add(ox.Quad(_S, _P, ox.Literal(text)))
    native = QueryResult("SELECT", ["o"], native=store.query("SELECT ?o WHERE { ?s ?p ?o }"))
    capped = QueryResult.from_rows(["o"], [(ox.Literal(text),)])
    for result in (native, capped):
        out = io.BytesIO()
        if _not_xml(text):
            with pytest.raises(NotInFormatError, match=r"U\+[0-9A-F]{4}.*json"):
                result.write(out, "xml")
            assert not any(ord(c) in _NOT_XML for c in out.getvalue().decode("utf-8", "replace"))
        else:
            result.write(out, "xml")
            assert _read_results(out.getvalue()) == text
    if _not_xml(text):
        with pytest.raises(NotInFormatError):
            write_solutions(["o"], [(ox.Literal(text),)], "xml")
    else:
        assert _read_results(write_solutions(["o"], [(ox.Literal(text),)], "xml")) == text


@settings(max_examples=300, deadline=None)
@given(texts)
def test_rdf_xml_reads_back_exactly_or_refuses_what_xml_cannot_carry(text: str) -> None:
    triple = ox.Triple(_S, _P, ox.Literal(text))
    result = QueryResult("CONSTRUCT", native=[triple])
    out = io.BytesIO()
    if _not_xml(text):
        with pytest.raises(NotInFormatError, match=r"U\+[0-9A-F]{4}.*turtle"):
            result.write(out, Format.RDFXML)
        return
    result.write(out, Format.RDFXML)
    g = rdflib.Graph().parse(data=out.getvalue(), format="xml")  # (expat)
    assert [str(o) for o in g.objects()] == [text]


@pytest.fixture(scope="module")
def odd_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose captions hold a carriage return, U+0000 and U+FFFE."""
    root = tmp_path_factory.mktemp("xml")
    page = videos_page(1, 0, per_page=3)
    items = page["data"]["orderedItems"]
    items[0]["content"] = "typed on windows\r\nsecond line"
    items[1]["content"] = "a nul \x00 here"
    items[2]["content"] = "not a character \ufffe"
    (root / "page.json").write_text(json.dumps(page))
    with open_store(root / "store") as store:
        assert store.load([root / "page.json"]).loaded == 1
    return root


def test_export_to_rdf_xml_names_the_character_and_leaves_no_file(odd_store: Path) -> None:
    target = odd_store / "all.rdf"
    r = CliRunner().invoke(main, ["--store", str(odd_store / "store"), "export", "-f", "rdfxml", "-o", str(target)])
    assert r.exit_code == 1, r.output
    assert "U+0000 after 'a nul '" in r.stderr or "U+FFFE after 'not a character '" in r.stderr, r.stderr
    assert "turtle" in r.stderr and "Traceback" not in r.stderr
    assert not target.exists()
    r = CliRunner().invoke(main, ["--store", str(odd_store / "store"), "export", "-f", "nt"])
    assert r.exit_code == 0 and "a nul \\u0000 here" in r.stdout and "\\r\\nsecond" in r.stdout


def test_export_to_rdf_xml_keeps_carriage_returns(tmp_path: Path) -> None:
    page = videos_page(1, 0, per_page=2)
    page["data"]["orderedItems"][0]["content"] = "typed on windows\r\nsecond line\r"
    (tmp_path / "page.json").write_text(json.dumps(page))
    with open_store(tmp_path / "s") as store:
        store.load([tmp_path / "page.json"])
    r = CliRunner().invoke(main, ["--store", str(tmp_path / "s"), "export", "-f", "rdfxml", "-o", str(tmp_path / "a.rdf")])
    assert r.exit_code == 0, r.stderr
    g = rdflib.Graph().parse(tmp_path / "a.rdf", format="xml")
    assert "typed on windows\r\nsecond line\r" in {str(o) for o in g.objects()}


def test_query_to_xml_names_the_character_and_json_carries_it(odd_store: Path) -> None:
    query = "SELECT ?c WHERE { ?v <https://www.w3.org/ns/activitystreams#content> ?c } ORDER BY ?c"
    r = CliRunner().invoke(main, ["--store", str(odd_store / "store"), "query", query, "-f", "xml"])
    assert r.exit_code == 1 and "U+0000" in r.stderr and "json" in r.stderr, r.stderr
    r = CliRunner().invoke(main, ["--store", str(odd_store / "store"), "query", query, "-f", "json"])
    values = {b["c"]["value"] for b in json.loads(r.stdout)["results"]["bindings"]}
    assert {"a nul \x00 here", "not a character \ufffe", "typed on windows\r\nsecond line"} <= values
    construct = "CONSTRUCT { ?v <urn:c> ?c } WHERE { ?v <https://www.w3.org/ns/activitystreams#content> ?c }"
    r = CliRunner().invoke(main, ["--store", str(odd_store / "store"), "query", construct, "-f", "rdfxml"])
    assert r.exit_code == 1 and "U+" in r.stderr and "turtle" in r.stderr, r.stderr


def test_serve_answers_406_for_xml_it_cannot_write_and_the_rest_as_asked(odd_store: Path) -> None:
    server = Served(odd_store / "store")
    try:
        query = "SELECT ?c WHERE { ?v <https://www.w3.org/ns/activitystreams#content> ?c }"
        r = requests.get(server.url + "/sparql", params={"query": query},
                         headers={"Accept": "application/sparql-results+xml"}, timeout=30)
        assert r.status_code == 406 and "U+" in r.text and "json" in r.text, (r.status_code, r.text)
        r = requests.get(server.url + "/sparql", params={"query": query},
                         headers={"Accept": "application/sparql-results+json"}, timeout=30)
        assert r.status_code == 200 and "a nul \x00 here" in {b["c"]["value"] for b in r.json()["results"]["bindings"]}
        clean = "SELECT ?c WHERE { ?v <https://www.w3.org/ns/activitystreams#content> ?c FILTER(CONTAINS(?c, 'windows')) }"
        r = requests.get(server.url + "/sparql", params={"query": clean},
                         headers={"Accept": "application/sparql-results+xml"}, timeout=30)
        assert r.status_code == 200 and _read_results(r.content) == "typed on windows\r\nsecond line"
        video = _video_with(odd_store / "store", "a nul")
        r = requests.get(server.url + "/resource", params={"iri": video},
                         headers={"Accept": "application/rdf+xml"}, timeout=30)
        assert r.status_code == 406 and "U+0000" in r.text, (r.status_code, r.text)
        r = requests.get(server.url + "/resource", params={"iri": video}, headers={"Accept": "text/turtle"}, timeout=30)
        assert r.status_code == 200
    finally:
        server.stop()


def _video_with(store_dir: Path, words: str) -> Any:
    with open_store(store_dir, read_only=True) as store:
        rows = list(store.query("SELECT ?v WHERE { ?v <https://www.w3.org/ns/activitystreams#content> ?c "
                                f"FILTER(CONTAINS(?c, '{words}')) }}").rows())
    return rows[0][0].value


_IRI_TAILS = st.text(st.sampled_from("aZ_9-.~%/#?=:é·\u0300\u2c00\U00010000\u4e00") , max_size=6)


@settings(max_examples=300, deadline=None)
@given(tail=_IRI_TAILS, as_class=st.booleans())
def test_rdf_xml_names_every_property_and_class_or_refuses_it(tail: str, as_class: bool) -> None:
    """A property (or a class `rdf:type` names) becomes an element's name in RDF/XML: an IRI that
    does not end with an XML name (`…#9`, `…/1`, `…/a/`) would make Oxigraph write `oxprefix:`,
    a document no parser reads. Either the graph reads back the same, or it is refused."""
    iri = "http://example.org/ns/" + tail
    try:
        node = ox.NamedNode(iri)
    except ValueError:
        return
    rdf_type = ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
    triple = ox.Triple(_S, rdf_type, node) if as_class else ox.Triple(_S, node, ox.Literal("v"))
    out = io.BytesIO()
    try:
        QueryResult("CONSTRUCT", native=[triple]).write(out, Format.RDFXML)
    except NotInFormatError as exc:
        assert f"<{iri}>" in str(exc) and "turtle" in str(exc)
        return
    g = rdflib.Graph().parse(data=out.getvalue(), format="xml")
    assert {(str(s), str(p), str(o)) for s, p, o in g} == {(triple.subject.value, triple.predicate.value, triple.object.value)}


def test_a_key_the_contexts_do_not_name_that_xml_cannot_name_is_refused_in_rdf_xml(tmp_path: Path) -> None:
    from konbini_ld.sources.konbini.corpus import audio_response

    audio = audio_response(9)
    audio["data"]["9"] = "nine"
    (tmp_path / "a.json").write_text(json.dumps(audio))
    store = tmp_path / "s"
    assert CliRunner().invoke(main, ["--store", str(store), "load", str(tmp_path / "a.json")]).exit_code == 0
    target = tmp_path / "all.rdf"
    r = CliRunner().invoke(main, ["--store", str(store), "export", "-f", "rdfxml", "-o", str(target)])
    assert r.exit_code == 1 and "<https://konbiniapi.com/ns/social#9>" in r.stderr and "turtle" in r.stderr, r.stderr
    assert not target.exists()
    r = CliRunner().invoke(main, ["--store", str(store), "query", "-f", "rdfxml",
                                  "CONSTRUCT { ?s <http://example.org/1> ?o } WHERE { ?s ?p ?o }"])
    assert r.exit_code == 1 and "<http://example.org/1>" in r.stderr, r.stderr
    server = Served(store)
    try:
        audio_iri = audio["data"]["id"]
        r = requests.get(server.url + "/resource", params={"iri": audio_iri},
                         headers={"Accept": "application/rdf+xml"}, timeout=30)
        assert r.status_code == 406 and "social#9" in r.text, (r.status_code, r.text)
        r = requests.get(server.url + "/sparql", params={"query": "CONSTRUCT { ?s <http://example.org/a/> ?o } WHERE { ?s ?p ?o } LIMIT 3"},
                         headers={"Accept": "application/rdf+xml"}, timeout=30)
        assert r.status_code == 406, (r.status_code, r.text)
        r = requests.get(server.url + "/resource", params={"iri": audio_iri}, headers={"Accept": "text/turtle"}, timeout=30)
        assert r.status_code == 200 and "nine" in r.text
    finally:
        server.stop()


@pytest.mark.parametrize("triple", [
    ox.Triple(_S, ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#li"), ox.Literal("x")),
    ox.Triple(_S, ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#about"), ox.Literal("x")),
    ox.Triple(_S, _P, ox.Triple(_S, _P, ox.Literal("x"))),
], ids=["rdf:li", "rdf:about", "a triple term"])
def test_what_rdf_xml_keeps_for_its_own_syntax_or_cannot_carry_is_refused(triple: ox.Triple) -> None:
    """Oxigraph refuses RDF/XML's own terms as properties with an I/O error (`serve` answered 500),
    and writes a triple term as RDF/XML 1.2, which RDF/XML parsers (rdflib's) do not read."""
    with pytest.raises(NotInFormatError, match="turtle"):
        QueryResult("CONSTRUCT", native=[triple]).write(io.BytesIO(), Format.RDFXML)
