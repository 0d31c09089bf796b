from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from helpers import seed_data

from konbini_ld.errors import ContextError, ExpandError
from konbini_ld.mapping.literals import duration_literal
from konbini_ld.mapping.normalize import normalize


def test_duration_becomes_xsd_duration_and_seconds() -> None:
    doc = normalize(seed_data()).document
    assert doc["duration"] == "PT23S"
    assert doc["durationSeconds"] == 23


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "PT0S"), (23, "PT23S"), (60, "PT1M"), (90, "PT1M30S"), (3600, "PT1H"), (90061.25, "P1DT1H1M1.25S")],
)
def test_duration_literal_is_canonical(seconds: float, expected: str) -> None:
    assert duration_literal(seconds) == expected


def test_string_duration_is_kept_and_seconds_derived() -> None:
    data = seed_data()
    data["duration"] = "PT1M5S"
    doc = normalize(data).document
    assert doc["duration"] == "PT1M5S" and doc["durationSeconds"] == 65


def test_ids_given_as_numbers_become_strings() -> None:
    data = seed_data()
    data["attributedTo"]["userId"] = 127905465618821121
    doc = normalize(data).document
    assert doc["attributedTo"]["userId"] == "127905465618821121"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("videoCount",), "500000", "expected an integer"),
        (("videoCount",), True, "expected an integer"),
        (("attributedTo", "isVerified"), "yes", "expected true or false"),
        (("attributedTo", "published"), "yesterday", "xsd:dateTime"),
        (("duration",), -3, "number of seconds"),
        (("duration",), "P99999999999999999999Y", "can compute with"),  # (months past 64 bits)
        (("duration",), "PT0.1234567890123456789S", "can compute with"),  # (19 decimals)
        (("duration",), 10**21, "can compute with"),  # (seconds past 128-bit decimals)
        (("duration",), "P9223372036854775808M", "can compute with"),
        (("url",), "not a url", "absolute IRI"),
        (("name",), 12, "expected a string"),
        (("icon", "width"), -1, "integer"),
    ],
)
def test_wrong_value_types_are_refused_with_their_path(path: tuple[str, ...], value: object, message: str) -> None:
    data = seed_data()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ExpandError) as info:
        normalize(data)
    assert message in str(info.value)
    assert path[-1] in str(info.value)


def test_unknown_keys_are_kept_and_reported() -> None:
    data = seed_data()
    data["newShinyField"] = 3
    data["weird key:x"] = "v"
    n = normalize(data)
    assert n.document["newShinyField"] == 3
    assert n.unknown_keys["Audio.newShinyField"] == "https://konbiniapi.com/ns/social#newShinyField"
    assert n.unknown_keys["Audio.weird key:x"] == "https://konbiniapi.com/ns/social#weird%20key%3Ax"


def test_nested_objects_get_deterministic_skolem_ids() -> None:
    a = normalize(seed_data()).document
    b = normalize(seed_data()).document
    assert a["icon"]["id"].startswith("urn:konbini-ld:genid:")
    assert a["icon"]["id"] == b["icon"]["id"]
    changed = seed_data()
    changed["icon"]["width"] = 1
    assert normalize(changed).document["icon"]["id"] != a["icon"]["id"]


def test_same_image_under_different_owners_gets_different_ids() -> None:
    doc = normalize(seed_data()).document
    assert doc["image"][0]["id"] != doc["attributedTo"]["image"][0]["id"]


def test_remote_context_is_refused() -> None:
    data = seed_data()
    data["@context"] = ["https://www.w3.org/ns/activitystreams", "https://evil.example/context.jsonld"]
    with pytest.raises(ContextError, match="evil.example"):
        normalize(data)


def test_context_urls_with_and_without_hash_are_accepted() -> None:
    for ctx in (
        ["https://www.w3.org/ns/activitystreams#", "https://konbiniapi.com/ns/social#"],
        ["https://www.w3.org/ns/activitystreams", "https://konbiniapi.com/ns/social"],
    ):
        data = seed_data()
        data["@context"] = ctx
        assert normalize(data).document["@context"] == ctx


def test_missing_context_gets_the_api_context() -> None:
    data = seed_data()
    del data["@context"]
    assert normalize(data).document["@context"][1] == "https://konbiniapi.com/ns/social#"


def test_collection_page_gets_an_id_from_part_of_and_cursor() -> None:
    doc = normalize({"type": "OrderedCollectionPage", "partOf": "https://api.konbiniapi.com/v1/x/videos", "cursor": "0"})
    assert doc.document["id"] == "https://api.konbiniapi.com/v1/x/videos?cursor=0"


def test_nulls_are_dropped() -> None:
    data = seed_data()
    data["album"] = None
    assert "album" not in normalize(data).document


def test_a_node_repeated_in_a_document_maps_as_once_and_as_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A page repeats its audio in each of its videos, and a creator in each of theirs: each
    copy met again becomes a reference to the first, and the statements are the same as when
    every copy is mapped in full."""
    import json as _json

    from konbini_ld.mapping import normalize as module
    from konbini_ld.mapping.grouping import group_lines
    from konbini_ld.mapping.to_rdf import expand, to_lines
    from konbini_ld.sources.konbini.corpus import videos_page

    def lines(doc: dict[str, Any]) -> set[str]:
        normalized = module.normalize(doc)
        return {line for group in group_lines(to_lines(expand(normalized.document))).values() for line in group}

    pages = [videos_page(i, c, n_persons=5)["data"] for i in range(3) for c in range(2)]
    page = pages[0]
    assert page["orderedItems"][0]["audio"] == page["orderedItems"][1]["audio"]  # (the repetition in question)
    once = [lines(_json.loads(_json.dumps(p))) for p in pages]
    original = module._Walker.node

    def every_time(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.met = {}  # nothing is remembered: every copy is mapped in full
        return original(self, *args, **kwargs)

    monkeypatch.setattr(module._Walker, "node", every_time)
    assert [lines(_json.loads(_json.dumps(p))) for p in pages] == once
    # a copy that differs is no copy: both are mapped
    changed = _json.loads(_json.dumps(page))
    changed["orderedItems"][1]["audio"]["title"] = "another title"
    monkeypatch.setattr(module._Walker, "node", original)
    assert any('"another title"' in line for line in lines(changed))


@pytest.mark.parametrize("text", ["P768614336404564650Y7M", "PT170141183460469231731S", "PT0.123456789012345678S",
                                  "P1000000000000000D", "-P9223372036854775807M"])
def test_durations_at_the_edge_of_what_the_store_computes_with_are_kept(text: str) -> None:
    import pyoxigraph as ox

    data = seed_data()
    data["duration"] = text
    doc = normalize(data).document
    value = ox.Literal(doc["duration"], datatype=ox.NamedNode("http://www.w3.org/2001/XMLSchema#duration"))
    store = ox.Store()
    [[_, got]] = list(store.query("SELECT ?x ?d WHERE { BIND(<http://www.w3.org/2001/XMLSchema#duration>(STR(?x)) AS ?d) }",
                                  substitutions={ox.Variable("x"): value}))
    assert got is not None  # (the store computes with it)


def test_a_duration_without_fixed_seconds_clears_them_right_after_it() -> None:
    """A month has no fixed number of seconds: the response's groups say so with an empty group
    of seconds (what an older duration gave is not kept), placed right after the duration's."""
    import json as json_

    from konbini_ld.mapping.prepare import prepare
    from konbini_ld.model import Response

    body = {"data": {"type": "Audio", "id": "https://www.tiktok.com/music/a-1", "duration": "P1M", "name": "x"}}
    groups = prepare(Response(json_.dumps(body), "x")).groups
    assert [p.rsplit("#", 1)[-1][:-1] for _, p in groups] == ["type", "duration", "durationSeconds", "name"]
    assert groups[("<https://www.tiktok.com/music/a-1>", "<https://konbiniapi.com/ns/social#durationSeconds>")] == []


_TEXT = st.text(st.one_of(st.sampled_from(["\\", "u", "d", "\ud83d", "\udd25", "\udc00", "🔥", "é", '"', "a"]),
                          st.characters()), max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=4), st.booleans())
def test_only_a_text_that_could_hold_half_a_pair_is_checked_string_by_string(texts: list[str], ascii_: bool) -> None:
    # JSON text as encoders write it: emoji as escaped pairs (ASCII) or as themselves; a lone half
    # of a pair only ever as an escape. Every text that decodes to one must be caught (the strings
    # are then checked one by one); an escaped pair is not one.
    import json

    from konbini_ld.mapping.normalize import could_hold_bad_text

    data = {f"k{i}": t for i, t in enumerate(texts)}
    raw = json.dumps(data, ensure_ascii=ascii_)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in raw):
        raw = json.dumps(data)  # (raw halves are not UTF-8: text or an answer holds them escaped)
    lone = any(0xD800 <= ord(c) <= 0xDFFF for t in json.loads(raw).values() for c in t)
    assert could_hold_bad_text(raw) == lone, raw


def test_an_answer_whose_emoji_are_escaped_pairs_is_not_checked_string_by_string() -> None:
    import json

    from konbini_ld.mapping.normalize import could_hold_bad_text

    assert not could_hold_bad_text(json.dumps({"content": "dance \U0001f525 \u2728\U0001f3b6 #fyp"}))
    assert could_hold_bad_text(json.dumps({"content": "dance \ud83d #fyp"}))
