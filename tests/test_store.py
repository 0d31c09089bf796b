from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest
from graphcheck import assert_leaves_in_graph, assert_no_blank_nodes, assert_well_typed, quads
from helpers import AUDIO_IRI, KHABY, NEWER, SEED, VIDEOS, seed_data, write_json

from konbini_ld import open_store
from konbini_ld.errors import StoreError
from konbini_ld.sources.files import read_source, text_stream

KS = "https://konbiniapi.com/ns/social#"
AS = "https://www.w3.org/ns/activitystreams#"


def values(store: Any, s: str, p: str) -> list[str]:
    return sorted(
        q.object.value for q in store.engine.store.quads_for_pattern(ox.NamedNode(s), ox.NamedNode(p), None, None)
    )


def test_loading_the_same_file_twice_for_the_same_time_keeps_the_triple_count(store: Any) -> None:
    store.load([SEED, NEWER, VIDEOS], observed_at="2026-11-01T12:00:00Z")
    first = len(store)
    report = store.load([SEED, NEWER, VIDEOS], observed_at="2026-11-01T12:00:00Z")
    assert report.ok and (report.loaded, report.unchanged) == (0, 3)  # already there
    assert len(store) == first


def test_reloading_later_changes_nothing_but_times_the_series_and_the_record_of_observations(store: Any) -> None:
    def state() -> set[str]:
        return {str(q) for q in quads(store) if q.graph_name.value == "urn:konbini-ld:graph:data"}

    def history() -> int:
        return sum(1 for q in quads(store) if q.graph_name.value == "urn:konbini-ld:graph:history")

    def activities() -> int:
        return len(list(store.query("SELECT ?a WHERE { ?a a <http://www.w3.org/ns/prov#Activity> }").rows()))

    first = store.load([SEED, VIDEOS], observed_at="2026-11-01T12:00:00Z")
    before, points = state(), history()
    assert 0 < points <= 4 * first.points  # (both responses carry the audio's videoCount: one point)
    assert activities() == 2
    store.load([SEED, VIDEOS], observed_at="2026-11-02T12:00:00Z")
    assert state() == before
    assert history() == 2 * points  # one more point per counter
    assert activities() == 4  # a new observation of each response


def test_newer_response_replaces_property_values(store: Any, tmp_path: Path) -> None:
    store.load([SEED])
    newer = seed_data()
    newer["videoCount"] = 600000
    newer["attributedTo"]["followerCount"] = 170000000
    store.load([write_json(tmp_path / "newer.json", {"data": newer})])
    assert values(store, AUDIO_IRI, KS + "videoCount") == ["600000"]
    assert values(store, KHABY, KS + "followerCount") == ["170000000"]


def test_properties_missing_from_newer_response_keep_their_values(store: Any) -> None:
    store.load([SEED])  # has attributedTo and album
    store.load([NEWER])  # same audio, no attributedTo
    assert values(store, AUDIO_IRI, AS + "attributedTo") == [KHABY]
    assert values(store, AUDIO_IRI, KS + "entityId") == ["7493556331997071377"]


def test_replaced_nested_objects_leave_no_orphans(store: Any, tmp_path: Path) -> None:
    store.load([SEED])
    changed = seed_data()
    changed["icon"]["url"] = "https://p16-sign.tiktokcdn-us.com/tos-avt/new.jpeg"
    changed["attributedTo"]["attachment"] = [{"type": "Link", "href": "https://example.org/new"}]
    store.load([write_json(tmp_path / "c.json", {"data": changed})])
    icons = values(store, AUDIO_IRI, AS + "icon")
    assert len(icons) == 1
    image_urls = {q.object.value for q in quads(store) if q.predicate.value == AS + "url" and "tos-avt" in q.object.value}
    assert "https://p16-sign.tiktokcdn-us.com/tos-avt/123456~c5_100x100.jpeg" in image_urls  # person's icon stays
    # every skolem node is referenced by something
    referenced = {q.object for q in quads(store)}
    for q in quads(store):
        if q.subject.value.startswith("urn:konbini-ld:genid:"):
            assert q.subject in referenced, q
    hrefs = {q.object.value for q in quads(store) if q.predicate.value == AS + "href"}
    assert hrefs == {"https://example.org/new"}


def test_store_holds_no_blank_nodes_and_no_ill_typed_literals(store: Any) -> None:
    store.load([SEED, NEWER, VIDEOS])
    assert_no_blank_nodes(store)
    assert_well_typed(store)


@pytest.mark.parametrize("path", [SEED, NEWER, VIDEOS])
def test_every_json_leaf_value_is_in_the_graph(store: Any, path: Path) -> None:
    store.load([path])
    body = json.loads(path.read_text())
    body = body.get("body", body)
    assert_leaves_in_graph(store, body["data"])


def test_provenance_says_when_and_where_each_entity_was_observed(store: Any) -> None:
    store.load([SEED])
    rows = list(store.run_named("provenance", {"entity": KHABY}).rows())
    assert len(rows) == 1
    entity, _type, observed_at, source, _line, observations = rows[0]
    assert entity.value == KHABY
    assert source.value == SEED.resolve().as_uri()
    assert observed_at.datatype.value.endswith("#dateTime")
    assert observations.value == "1"


def test_provenance_keeps_every_observation_and_reports_the_latest(store: Any) -> None:
    store.load([SEED])
    store.load([SEED])  # the same response again: the same observation
    store.load([VIDEOS])  # the person again, from the API
    rows = list(store.run_named("provenance", {"entity": KHABY}).rows())
    assert len(rows) == 1
    assert rows[0][3].value.startswith("https://api.konbiniapi.com/") and rows[0][5].value == "2"


def test_provenance_of_api_recording_is_its_request_url(store: Any) -> None:
    store.load([NEWER])
    rows = list(store.run_named("provenance", {"entity": AUDIO_IRI}).rows())
    assert rows[0][3].value == "https://api.konbiniapi.com/v1/tiktok/audios/6988100049893232686"
    assert store.stats().credits_spent == 1


def test_default_graph_is_the_union(store: Any) -> None:
    store.load([SEED])
    ask = store.query(
        "ASK { ?a <https://konbiniapi.com/ns/social#videoCount> ?n . ?a <http://www.w3.org/ns/prov#wasGeneratedBy> ?o }"
    )
    assert ask.boolean is True


def test_every_raw_response_is_archived_and_rebuild_restores_the_graph(store_dir: Path, tmp_path: Path) -> None:
    with open_store(store_dir) as store:
        store.load([SEED, NEWER, VIDEOS])
        expected = {str(q) for q in quads(store)}
        assert store.archive is not None and len(store.archive) == 3
        bodies = [r.body for r in store.archive.records()]
        assert json.loads(bodies[0]) == json.loads(SEED.read_text())
        store.engine.clear_graph(ox.NamedNode("urn:konbini-ld:graph:data"))
        assert len(store) < len(expected)
        report = store.rebuild()
        assert report.ok and report.loaded == 3
        assert {str(q) for q in quads(store)} == expected


def test_unapplied_archive_records_are_replayed_on_open(store_dir: Path) -> None:
    """A crash between archiving and writing the graph loses nothing."""
    with open_store(store_dir) as store:
        store.load([SEED])
        n = len(store)
        store.engine.clear_graph(ox.NamedNode("urn:konbini-ld:graph:data"))
        store.engine.clear_graph(ox.NamedNode("urn:konbini-ld:graph:provenance"))
    (store_dir / "state.json").write_text('{"applied_seq": 0}')
    with open_store(store_dir) as store:
        assert len(store) == n


def test_torn_archive_tail_is_ignored_and_repaired(store_dir: Path) -> None:
    with open_store(store_dir) as store:
        store.load([SEED])
    segment = next((store_dir / "archive").glob("*.jsonl.gz"))
    with open(segment, "ab") as fh:
        fh.write(b"\x1f\x8b\x08\x00garbage")  # a crash mid-append
    with open_store(store_dir) as store:
        assert len(store.archive) == 1
        store.load([NEWER])
        assert [r.seq for r in store.archive.records()] == [1, 2]


def test_bad_items_fail_alone(store: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    good = json.dumps({"data": seed_data()})
    bad.write_text("\n".join([good, '{"data": {"type": "Audio", "videoCount": "many"}}', "{trunc", good]) + "\n")
    report = store.load([bad, tmp_path / "missing.json"])
    assert (report.loaded, report.unchanged) == (1, 1)  # the good line twice: one observation
    where = sorted(f"{e.source}:{e.line}" for e in report.failed)
    assert where == [f"{bad}:2", f"{bad}:3", f"{tmp_path / 'missing.json'}:None"]


def test_second_writer_gets_a_clear_error(store_dir: Path) -> None:
    with open_store(store_dir):
        with pytest.raises(StoreError, match="being written by another process"):
            open_store(store_dir)


def test_reader_can_open_while_a_writer_holds_the_store(store_dir: Path) -> None:
    with open_store(store_dir) as writer:
        writer.load([SEED])
        with open_store(store_dir, read_only=True) as reader:
            assert reader.stats().audios == 1


def test_stdin_style_streams_load(store: Any) -> None:
    report = store.load([text_stream(json.dumps({"data": seed_data()}))])
    assert report.loaded == 1 and store.stats().audios == 1


def test_stats(store: Any) -> None:
    store.load([SEED, VIDEOS])
    s = store.stats()
    assert (s.audios, s.persons, s.videos) == (1, 1, 1)
    assert s.triples == len(store) and s.archived == 2


def test_rdflib_view_runs_sparql_natively(store: Any) -> None:
    store.load([SEED])
    g = store.graph
    rows = list(g.query(f"SELECT ?n WHERE {{ <{AUDIO_IRI}> <https://konbiniapi.com/ns/social#videoCount> ?n }}"))
    assert [int(r[0]) for r in rows] == [500000]
    assert len(g) == len(store)


def test_worker_processes_give_the_same_graph(tmp_path: Path) -> None:
    from konbini_ld.sources.konbini.corpus import corpus_lines

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(corpus_lines(450)))
    graphs = []
    for workers in (0, 2):
        with open_store(tmp_path / f"s{workers}") as s:
            report = s.ingest(read_source(corpus), batch_size=150, workers=workers, observed_at="2026-11-01T00:00:00Z")
            assert report.loaded == 450
            graphs.append({str(q) for q in quads(s) if "endedAtTime" not in q.predicate.value})
    assert graphs[0] == graphs[1]


def _page_of(videos: list[int], tmp_path: Path, name: str) -> Path:
    """The sample page of videos, holding copies of its one video under the ids given, in order."""
    page = json.loads(VIDEOS.read_text())
    template = page["body"]["data"]["orderedItems"][0]
    items = []
    for n in videos:
        item = json.loads(json.dumps(template).replace("7611615657754381599\"", f"76116156577543815{n:02d}\""))
        item["id"] = f"{KHABY}/video/76116156577543815{n:02d}"
        items.append(item)
    page["body"]["data"]["orderedItems"] = items
    return write_json(tmp_path / name, page)


@pytest.mark.parametrize("first, then", [([1, 2, 3], [2]), ([1, 2], [2, 1]), ([1], [3, 1, 2]), ([1, 2, 3], [])])
def test_a_page_whose_videos_change_lists_exactly_the_new_ones(store_dir: Path, tmp_path: Path, first: list[int],
                                                                then: list[int]) -> None:
    # a list's cells are named after the statement that points at them: the same name can hold
    # other items now, and what it held before must go with what it said
    def cells(s: Any) -> set[str]:  # (the videos no longer listed stay entities of their own)
        rdf = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
        return {str(q) for q in quads(s) if q.graph_name.value == "urn:konbini-ld:graph:data"
                and q.predicate.value in (rdf + "first", rdf + "rest")}

    old, new = _page_of(first, tmp_path, "old.json"), _page_of(then, tmp_path, "new.json")
    with open_store(tmp_path / "fresh") as fresh:
        fresh.load([new], observed_at="2026-11-02T12:00:00Z")
        expected = cells(fresh)
    with open_store(store_dir) as store:
        store.load([old], observed_at="2026-11-01T12:00:00Z")
        store.load([new], observed_at="2026-11-02T12:00:00Z")
        assert cells(store) == expected  # nothing of the old list is left
        items = store.query(
            "SELECT ?v WHERE { ?page <https://www.w3.org/ns/activitystreams#items>/"
            "<http://www.w3.org/1999/02/22-rdf-syntax-ns#rest>*/<http://www.w3.org/1999/02/22-rdf-syntax-ns#first> ?v }")
        assert sorted(r[0].value for r in list(items.rows())) == sorted(f"{KHABY}/video/76116156577543815{n:02d}" for n in then)


def test_seconds_derived_from_a_duration_go_when_the_duration_has_none(store: Any, tmp_path: Path) -> None:
    # a calendar duration has no fixed number of seconds: the seconds an older duration gave go
    def seconds() -> list[str]:
        return values(store, AUDIO_IRI, KS + "durationSeconds")

    for day, duration, expected in ((1, 23, ["23"]), (2, "P1Y", []), (3, "PT1M5S", ["65"]), (4, "P1M", [])):
        data = seed_data()
        data["duration"] = duration
        store.load([write_json(tmp_path / f"d{day}.json", {"data": data})], observed_at=f"2026-11-0{day}T12:00:00Z")
        assert seconds() == expected, (day, duration)
    assert len(values(store, AUDIO_IRI, AS + "duration")) == 1
