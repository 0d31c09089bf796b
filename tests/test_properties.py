"""Property tests of the mapping: any valid response loads, round-trips, and loads idempotently."""

from __future__ import annotations

import io
import json
from typing import Any

from graphcheck import assert_leaves_in_graph, assert_no_blank_nodes, assert_well_typed
from hypothesis import HealthCheck, given, settings
from rdflib import Graph
from rdflib.compare import isomorphic
from strategies import responses

from konbini_ld import open_store, text_stream
from konbini_ld.engines.rdflib_view import to_rdflib
from konbini_ld.io.export import export
from konbini_ld.io.formats import Format

AT = "2026-11-01T12:00:00Z"
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load(response: dict[str, Any]) -> Any:
    store = open_store(None)
    report = store.load([text_stream(json.dumps(response))], observed_at=AT)
    assert report.ok, report.failed
    return store


def _graph(store: Any) -> Graph:
    g = Graph()
    for q in store.engine.iter_quads():
        g.add((to_rdflib(q.subject), to_rdflib(q.predicate), to_rdflib(q.object)))
    return g


def _dump(store: Any, fmt: Format, **kw: Any) -> bytes:
    out = io.BytesIO()
    export(store.engine, fmt, out, **kw)
    return out.getvalue()


@SETTINGS
@given(responses)
def test_any_valid_response_loads_completely(response: dict[str, Any]) -> None:
    store = _load(response)
    assert_no_blank_nodes(store)
    assert_well_typed(store)
    assert_leaves_in_graph(store, response["data"])


@SETTINGS
@given(responses)
def test_exports_round_trip(response: dict[str, Any]) -> None:
    store = _load(response)
    expected = _graph(store)
    assert isomorphic(Graph().parse(data=_dump(store, Format.TURTLE), format="turtle"), expected)
    assert isomorphic(Graph().parse(data=_dump(store, Format.JSONLD, inline_context=True), format="json-ld"), expected)
    # (pyld re-expansion is checked on the samples in test_export: JSON-LD's toRdf writes
    # xsd:double with 16 significant digits, so a 17-digit double would differ in its last digit)


@SETTINGS
@given(responses)
def test_loading_twice_is_idempotent(response: dict[str, Any]) -> None:
    store = _load(response)
    before = {str(q) for q in store.engine.iter_quads() if "endedAtTime" not in q.predicate.value}
    n = len(store)
    store.load([text_stream(json.dumps(response))], observed_at=AT)
    assert len(store) == n
    assert {str(q) for q in store.engine.iter_quads() if "endedAtTime" not in q.predicate.value} == before
