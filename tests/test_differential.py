"""Every shortcut of the ingest path agrees with plain pyld, document by document: the same
N-Triples lines in the same upsert groups."""

from __future__ import annotations

import json
from typing import Any

from helpers import NEWER, SEED, VIDEOS
import pytest
from hypothesis import HealthCheck, given, settings
from strategies import responses

from konbini_ld.mapping.prepare import prepare
from konbini_ld.mapping.templates import _COMPILE_AFTER, ShapeCache
from konbini_ld.model import Response
from konbini_ld.sources.konbini.corpus import corpus_lines, videos_page


def _plain(body: str) -> dict[tuple[str, str], set[str]]:
    p = prepare(Response(body, "x"), shape_cache=False)
    assert p.ok, p.error
    return {k: set(v) for k, v in p.groups.items()}


def _groups(body: str, cache: ShapeCache) -> Any:
    import konbini_ld.mapping.prepare as ingest

    saved = ingest.default_cache
    ingest.default_cache = lambda: cache  # type: ignore[assignment]
    try:
        p = prepare(Response(body, "x"))
    finally:
        ingest.default_cache = saved  # type: ignore[assignment]
    return p.groups if p.ok else type(p.error)


def _cached(body: str, cache: ShapeCache) -> dict[tuple[str, str], set[str]]:
    groups = _groups(body, cache)
    assert isinstance(groups, dict), groups
    return {k: set(v) for k, v in groups.items()}


def test_shape_templates_agree_with_pyld_on_the_corpus() -> None:
    bodies = list(corpus_lines(1500)) + [json.dumps(videos_page(i, c)) for i in range(6) for c in range(3)]
    bodies += [p.read_text() for p in (SEED, NEWER, VIDEOS)]
    cache = ShapeCache()
    plain = [_plain(body) for body in bodies]
    for body, expected in zip(bodies, plain, strict=True):  # each shape's first response: its probe's template
        assert _cached(body, cache) == expected
    hits = cache.hits
    for body, expected in zip(bodies, plain, strict=True):
        assert _cached(body, cache) == expected
    assert cache.hits - hits > 0.9 * len(bodies)  # the comparison really exercised the templates


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses)
def test_shape_templates_agree_with_pyld_on_generated_responses(response: dict[str, Any]) -> None:
    cache = ShapeCache()
    body = json.dumps(response)
    assert _cached(body, cache) == _plain(body)  # the template built from a probe, filled at once
    assert _cached(body, cache) == _plain(body)  # the cached template
    assert cache.misses == 1 and cache.hits + cache.fallbacks == 1


def _part_by_part() -> ShapeCache:
    cache = ShapeCache()
    cache._fill = cache._fill_parts  # type: ignore[method-assign]
    return cache


def test_compiled_templates_fill_exactly_as_part_by_part_on_the_corpus() -> None:
    """The same groups, the same lines in the same order, for every shape of the corpus."""
    bodies = list(corpus_lines(300)) + [json.dumps(videos_page(i, c)) for i in range(4) for c in range(2)]
    bodies += [p.read_text() for p in (SEED, NEWER, VIDEOS)]
    compiled, parts = ShapeCache(), _part_by_part()
    for _ in range(2):  # (a shape's first document, then its cached template)
        for body in bodies:
            assert _groups(body, compiled) == _groups(body, parts)
    assert compiled.hits > len(bodies) // 2


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses)
def test_compiled_templates_fill_exactly_as_part_by_part(response: dict[str, Any]) -> None:
    compiled, parts = ShapeCache(), _part_by_part()
    body = json.dumps(response)
    for _ in range(_COMPILE_AFTER + 2):  # (part by part at first; compiled from then on)
        assert _groups(body, compiled) == _groups(body, parts)


def test_two_groups_spelled_apart_that_are_one_group_are_merged_as_part_by_part() -> None:
    """Two nodes of one document with the same id (and different content) give one group where
    the template has two: the compiled fill merges them in the same order."""
    def page(same: bool) -> str:
        person = "https://www.tiktok.com/@a"
        audio = person if same else "https://www.tiktok.com/music/x-1"
        return json.dumps({"data": {"type": "Video", "id": "https://www.tiktok.com/@a/video/1",
                                    "attributedTo": {"id": person, "type": "Person", "name": "A"},
                                    "audio": {"id": audio, "type": "Audio", "name": "B"}}})

    compiled, parts = ShapeCache(), _part_by_part()
    for i in range(_COMPILE_AFTER + 3):
        for body in (page(False), page(True)):
            got = _groups(body, compiled)
            assert got == _groups(body, parts), i
    merged = _groups(page(True), compiled)
    assert isinstance(merged, dict)
    assert len(merged[("<https://www.tiktok.com/@a>", "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>")]) == 2


def test_compact_iris_in_iri_positions_fall_back_to_pyld() -> None:
    cache = ShapeCache()
    doc = {"data": {"type": "Audio", "id": "https://www.tiktok.com/music/a-1", "url": "https://x.org/a"}}
    _cached(json.dumps(doc), cache)
    doc["data"]["url"] = "as:thing"
    assert _cached(json.dumps(doc), cache) == _plain(json.dumps(doc))
    assert cache.fallbacks == 1


def test_the_pipeline_switches_give_the_same_graph(tmp_path: Any) -> None:
    """Templates, write-behind and worker processes are speed-ups only: switched off, the graph is the same."""
    from konbini_ld import open_store
    from konbini_ld.sources.files import read_source, text_stream

    lines = list(corpus_lines(400)) + [json.dumps(videos_page(i, 0)) for i in range(5)]
    text = "\n".join(line.rstrip("\n") for line in lines) + "\n"
    dumps = []
    for templates, write_behind, workers in [(True, True, 2), (False, False, 0)]:
        with open_store(tmp_path / f"s{templates}") as store:
            store.pipeline.templates = templates
            store.pipeline.write_behind = write_behind
            report = store.ingest(read_source(text_stream(text), name="corpus"), batch_size=150, workers=workers,
                                  observed_at="2026-11-01T12:00:00Z")
            assert report.ok and report.loaded == len(lines)
            dumps.append({q for q in store.engine.iter_quads() if "endedAtTime" not in q.predicate.value})
    assert dumps[0] == dumps[1]


def test_a_worker_prepares_what_the_writer_would_whatever_line_breaks_the_text_holds(
        caplog: pytest.LogCaptureFixture) -> None:
    """Observations prepared in a worker process come back as they are prepared in line: the same
    lines in the same groups, the same errors and times, on the caller's own responses, even for
    text holding characters that some readers take for line breaks (a worker's lines cross the
    pipe as one text)."""
    from konbini_ld.mapping.prepare import PreparePool, Prepared
    from konbini_ld.sources.konbini.corpus import audio_response

    breaks = "\u2028\u2029\x85\x0b\x0c\x1c\x1d\x1e\r\n"
    bodies = []
    for i, mark in enumerate(breaks):
        doc = audio_response(i)
        doc["data"]["name"] = f"line{mark}break {i}"
        doc["data"]["album"] = f"{breaks} album"
        bodies.append(json.dumps(doc))
    bodies += [json.dumps(videos_page(1, 0)), "{not json", json.dumps({"data": None})]
    pool = PreparePool(1, eager=True)
    try:
        batch = [Response(body, "x", line=i + 1) for i, body in enumerate(bodies)]
        prepared = pool.prepare(batch)
        assert isinstance(prepared, Prepared)  # (in the worker, not in line)
        with caplog.at_level("DEBUG", logger="konbini_ld.mapping.prepare"):
            shipped = prepared.get()
        assert not caplog.records  # (none of it prepared again in line)
    finally:
        pool.close(wait=True)
    in_line = [prepare(Response(body, "x", line=i + 1)) for i, body in enumerate(bodies)]
    for got, want, response in zip(shipped, in_line, batch, strict=True):
        assert got.response is response
        assert got.groups == want.groups
        assert (got.count, got.warnings, got.unknown_keys) == (want.count, want.warnings, want.unknown_keys)
        assert repr(got.error) == repr(want.error)
        assert response.observed_given == want.response.observed_given
    assert any("\u2028" in line for o in shipped for lines in o.groups.values() for line in lines)
    assert sum(o.ok for o in shipped) == len(breaks) + 1


def test_a_prepared_line_holding_a_line_break_is_refused_on_its_way_back() -> None:
    """Should a worker's line ever hold a line break, its lines cannot be told apart on the way
    back: the part is refused (and prepared in line by its caller), never cut in the wrong places."""
    from konbini_ld.mapping.prepare import _unship
    from konbini_ld.model import Observation

    response = Response("{}", "x")
    key = ("<https://x/a>", "<https://x/p>")
    back = _unship(response, (Observation(response), None, False, [key], [1], '<https://x/a> <https://x/p> "a\u2028b" .\n'.encode()))
    assert back.groups == {key: ['<https://x/a> <https://x/p> "a\u2028b" .\n']}
    with pytest.raises(ValueError, match="line break"):
        _unship(response, (Observation(response), None, False, [key], [1], '<https://x/a> <https://x/p> "a\nb" .\n'.encode()))


def _attributed_to_many(n: int) -> dict[str, Any]:
    from konbini_ld.sources.konbini.corpus import audio_response, person

    doc = audio_response(1)
    people: list[Any] = [person(j) for j in range(n)]
    people += [person(0), "https://www.tiktok.com/@creator.1", {"id": "https://www.tiktok.com/@plain"},
               "https://www.tiktok.com/@plain", {"id": "https://www.tiktok.com/@creator.2", "name": "Another name"}]
    doc["data"]["attributedTo"] = people
    return doc


def test_many_values_of_one_property_agree_with_pyld() -> None:
    """Past a few dozen values, a property's values are expanded one at a time (pyld checks each
    value it adds against those there: 40,000 persons took 287 s, 20,000 tags 74 s): the same lines,
    the same groups, values given twice, as bare references or described again, included; persons,
    tags, images named by their content, literals of a key the contexts do not name."""
    from konbini_ld.sources.konbini.corpus import videos_page

    page = videos_page(1, 0, per_page=3)
    page["data"]["orderedItems"][1]["attributedTo"] = _attributed_to_many(60)["data"]["attributedTo"]
    one = videos_page(2, 0, per_page=1)  # (a page of one video with many tags)
    one["data"]["orderedItems"][0]["tag"] = [{"type": "Tag", "name": f"t{j % 50}", "id": f"https://www.tiktok.com/tag/t{j % 50}"}
                                             for j in range(70)]
    unknown = _attributed_to_many(2)
    unknown["data"]["someList"] = [j % 40 for j in range(60)] + ["x", 1.5, True]
    unknown["data"]["9"] = [f"v{j}" for j in range(40)]
    unknown["data"]["image"] = [{"type": "Image", "url": f"https://p16.tiktokcdn.com/{j % 30}.jpeg"} for j in range(45)]
    for doc in (_attributed_to_many(60), _attributed_to_many(2), page, one, unknown):
        body = json.dumps(doc)
        cache = ShapeCache()
        assert _cached(body, cache) == _plain(body)
        assert _cached(body, cache) == _plain(body)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(response=responses)
def test_every_set_of_references_expanded_a_value_at_a_time_agrees_with_pyld(
        response: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import konbini_ld.mapping.templates as templates

    monkeypatch.setattr(templates, "_MANY_VALUES", 1)  # (a list of two is expanded a value at a time)
    body = json.dumps(response)
    assert _cached(body, ShapeCache()) == _plain(body)
