from __future__ import annotations

import io
import json
from typing import Any

import pyoxigraph as ox
import pytest
from helpers import AUDIO_IRI, KHABY, NEWER, SEED, VIDEOS

from konbini_ld.errors import QueryError, UsageError
from konbini_ld.io.formats import Format
from konbini_ld.query.catalog import named_queries
from konbini_ld.query.guard import check_safe_query
from konbini_ld.query.terms import parse_term

SPEC_QUERIES = {
    "top-audios", "audios-by-creator", "creators", "verified-creators", "original-vs-licensed",
    "search", "audio", "videos-using-audio", "provenance",
}
EXAMPLE_PARAMS = {"creator": KHABY, "text": "SOUND", "audio": AUDIO_IRI, "entity": KHABY}


@pytest.fixture
def loaded(store: Any) -> Any:
    store.load([SEED, NEWER, VIDEOS])
    return store


def test_every_spec_query_ships_with_a_header() -> None:
    qs = named_queries()
    assert SPEC_QUERIES <= set(qs)
    for q in qs.values():
        assert q.title and q.description, q.name


@pytest.mark.parametrize("name", sorted(SPEC_QUERIES))
def test_every_named_query_runs_and_finds_the_sample(loaded: Any, name: str) -> None:
    q = named_queries()[name]
    params = {p.name: EXAMPLE_PARAMS[p.name] for p in q.params}
    result = loaded.run_named(name, params)
    if result.kind == "CONSTRUCT":
        assert len(list(result.triples())) > 10
    else:
        assert list(result.rows()), name


def test_top_audios_lists_the_audio_with_its_creator(loaded: Any) -> None:
    rows = [[t.value if t is not None else None for t in r] for r in loaded.run_named("top-audios").rows()]
    assert rows == [[AUDIO_IRI, "original sound", "500000", KHABY, "khaby.lame"]]


def test_search_is_case_insensitive_and_binds_text_as_a_literal(loaded: Any) -> None:
    assert len(list(loaded.run_named("search", {"text": "OrIgInAl"}).rows())) == 1
    assert list(loaded.run_named("search", {"text": 'x" ) } DROP ALL #'}).rows()) == []


def test_audio_construct_has_creator_and_images(loaded: Any) -> None:
    triples = list(loaded.run_named("audio", {"audio": AUDIO_IRI}).triples())
    subjects = {t.subject.value for t in triples}
    assert AUDIO_IRI in subjects and KHABY in subjects
    assert any(s.startswith("urn:konbini-ld:genid:") for s in subjects)


def test_required_parameter_missing_is_a_usage_error(loaded: Any) -> None:
    with pytest.raises(UsageError, match="-p creator"):
        loaded.run_named("audios-by-creator", {})


def test_unknown_parameter_is_a_usage_error(loaded: Any) -> None:
    with pytest.raises(UsageError, match="no parameter"):
        loaded.run_named("top-audios", {"limit": "5"})


def test_parameter_types_are_enforced() -> None:
    with pytest.raises(UsageError, match="not an absolute IRI"):
        named_queries()["audios-by-creator"].bind({"creator": "khaby"})


@pytest.mark.parametrize(
    ("text", "type_", "expected"),
    [
        ("https://x.org/a", "term", ox.NamedNode("https://x.org/a")),
        ("<urn:a>", "term", ox.NamedNode("urn:a")),
        ('"chat"@fr', "term", ox.Literal("chat", language="fr")),
        ("hello", "term", ox.Literal("hello")),
        ("12", "integer", ox.Literal("12", datatype=ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer"))),
    ],
)
def test_parse_term(text: str, type_: str, expected: Any) -> None:
    assert parse_term(text, type_) == expected


@pytest.mark.parametrize(
    "sparql",
    [
        "SELECT * WHERE { SERVICE <http://127.0.0.1:9/sparql> { ?s ?p ?o } }",
        "select * where { service silent <http://example.org/> { ?s ?p ?o } }",
        "INSERT DATA { <urn:a> <urn:b> <urn:c> }",
        "LOAD <http://example.org/data.ttl>",
    ],
)
def test_unsafe_queries_are_refused(loaded: Any, sparql: str) -> None:
    with pytest.raises(QueryError):
        loaded.query(sparql)


def test_keywords_inside_strings_and_iris_do_not_count() -> None:
    check_safe_query('SELECT * WHERE { ?s ?p "SERVICE" . ?s <urn:service:load> ?o } # SERVICE')


def test_syntax_errors_carry_line_and_column(loaded: Any) -> None:
    with pytest.raises(QueryError) as info:
        loaded.query("SELECT * WHERE {\n  ?s ?p \n}")
    assert info.value.line == 3


@pytest.mark.parametrize("fmt", [Format.JSON, Format.CSV, Format.TSV, Format.XML, Format.TABLE])
def test_select_formats(loaded: Any, fmt: Format) -> None:
    out = io.BytesIO()
    loaded.run_named("top-audios").write(out, fmt)
    text = out.getvalue().decode()
    assert "original-sound-7611615657754381599" in text
    if fmt == Format.JSON:
        assert json.loads(text)["head"]["vars"][0] == "audio"


def test_construct_as_jsonld_uses_api_contexts(loaded: Any) -> None:
    out = io.BytesIO()
    loaded.run_named("audio", {"audio": AUDIO_IRI}).write(out, Format.JSONLD)
    doc = json.loads(out.getvalue())
    assert doc["@context"][1] == "https://konbiniapi.com/ns/social#"


def test_from_clauses_never_fetch(loaded: Any) -> None:
    # the socket guard fails the test if anything reaches out
    result = loaded.query("SELECT * FROM <http://example.org/remote.ttl> WHERE { ?s ?p ?o }")
    assert list(result.rows()) == []


def test_provenance_is_one_row_even_when_observations_tie(store: Any) -> None:
    from konbini_ld.model import Response

    body = SEED.read_text()
    at = "2026-03-01T12:00:00Z"
    store.ingest([Response(body, "a.json", observed_at=at), Response(body.replace("original sound", "x"), "b.json",
                                                                        observed_at=at)])
    rows = list(store.run_named("provenance", {"entity": AUDIO_IRI}).rows())
    assert len(rows) == 1
    assert rows[0][2].value == at and rows[0][5].value == "2"


def test_provenance_answers_as_its_first_formulation(store: Any) -> None:
    """`provenance` finds the latest activity from the entity (a lookup) instead of building its IRI
    and joining (a scan of every activity): the same rows, entity by entity, for audios and persons
    observed several times, at tied times too, and none for an entity never observed."""
    from konbini_ld.query.catalog import get_named_query
    from konbini_ld.query.run import run_query
    from konbini_ld.sources.konbini.corpus import corpus_lines

    lines = list(corpus_lines(40, observations=3))
    store.load([io.StringIO("".join(lines))])
    store.load([io.StringIO("".join(lines[:10]))], observed_at="2026-11-03T00:00:00Z")  # ties an observation
    nq = get_named_query("provenance")
    first = nq.text[nq.text.index("PREFIX"):nq.text.index("  # the activity that gave")] + (
        "  BIND (IRI(?latest) AS ?activity)\n  ?activity prov:used ?source .\n") + nq.text[nq.text.index(
            "  OPTIONAL { ?activity ks:sourceLine"):]
    entities = [r["e"] for r in store.query("SELECT DISTINCT ?e WHERE { ?e <http://www.w3.org/ns/prov#wasGeneratedBy> ?a }"
                                            ).records()]
    assert len(entities) > 40
    for entity in [*entities, "https://www.tiktok.com/@nobody"]:
        bound = nq.bind({"entity": entity})
        now = [tuple(map(str, r)) for r in store.run_named("provenance", {"entity": entity}).rows()]
        assert now == [tuple(map(str, r)) for r in run_query(store.engine, first, bound).rows()], entity
        assert len(now) == (entity != "https://www.tiktok.com/@nobody")
