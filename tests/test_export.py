from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest
from helpers import NEWER, SEED, VIDEOS
from pyld import jsonld
from rdflib import Dataset, Graph
from rdflib.compare import isomorphic

from konbini_ld.engines.rdflib_view import to_rdflib
from konbini_ld.io.export import export
from konbini_ld.io.formats import Format
from konbini_ld.mapping.contexts import document_loader


@pytest.fixture
def loaded(store: Any) -> Any:
    store.load([SEED, NEWER, VIDEOS])
    return store


def store_graph(store: Any) -> Graph:
    """The store as rdflib sees it through konbini-ld's rdflib view."""
    view = Graph()
    for t in store.graph.triples((None, None, None)):
        view.add(t)
    g = Graph()
    for q in store.engine.iter_quads():
        g.add((to_rdflib(q.subject), to_rdflib(q.predicate), to_rdflib(q.object)))
    assert isomorphic(g, view)
    return g


def dump(store: Any, fmt: Format, **kw: Any) -> bytes:
    out = io.BytesIO()
    export(store.engine, fmt, out, **kw)
    return out.getvalue()


@pytest.mark.parametrize(("fmt", "rdflib_format"), [
    (Format.TURTLE, "turtle"), (Format.NT, "nt"), (Format.RDFXML, "xml"),
])
def test_triple_formats_reload_isomorphic_with_rdflib(loaded: Any, fmt: Format, rdflib_format: str) -> None:
    g = Graph().parse(data=dump(loaded, fmt), format=rdflib_format)
    assert isomorphic(g, store_graph(loaded))


@pytest.mark.parametrize(("fmt", "rdflib_format"), [(Format.NQ, "nquads"), (Format.TRIG, "trig")])
def test_dataset_formats_keep_named_graphs(loaded: Any, fmt: Format, rdflib_format: str) -> None:
    ds = Dataset()
    ds.parse(data=dump(loaded, fmt), format=rdflib_format)
    names = {str(c.identifier) for c in ds.graphs() if len(c)}
    assert names == {"urn:konbini-ld:graph:data", "urn:konbini-ld:graph:provenance", "urn:konbini-ld:graph:history"}
    union = Graph()
    for s, p, o, _g in ds.quads((None, None, None, None)):
        union.add((s, p, o))
    assert isomorphic(union, store_graph(loaded))


@pytest.mark.parametrize("fmt", [Format.TURTLE, Format.TRIG, Format.NQ])
def test_exports_reload_with_pyoxigraph(loaded: Any, fmt: Format) -> None:
    formats = {Format.TURTLE: ox.RdfFormat.TURTLE, Format.TRIG: ox.RdfFormat.TRIG, Format.NQ: ox.RdfFormat.N_QUADS}
    reloaded = {str(q.triple) for q in ox.parse(dump(loaded, fmt), formats[fmt])}
    assert reloaded == {str(q.triple) for q in loaded.engine.iter_quads()}


def test_turtle_uses_prefixes(loaded: Any) -> None:
    text = dump(loaded, Format.TURTLE).decode()
    assert "@prefix as: <https://www.w3.org/ns/activitystreams#>" in text
    assert "ks:videoCount 500000" in text


def test_jsonld_names_the_api_contexts_and_reads_like_the_api(loaded: Any) -> None:
    doc = json.loads(dump(loaded, Format.JSONLD))
    assert doc["@context"] == ["https://www.w3.org/ns/activitystreams#", "https://konbiniapi.com/ns/social#"]
    audio = next(n for n in doc["@graph"] if n.get("type") == "Audio")
    assert audio["videoCount"] == 500000
    assert audio["attributedTo"] == "https://www.tiktok.com/@khaby.lame"
    assert audio["image"]["type"] == "Image" if isinstance(audio["image"], dict) else audio["image"][0]["type"] == "Image"
    assert audio["durationSeconds"] == 23


def test_jsonld_reloads_isomorphic_with_pyld_offline(loaded: Any) -> None:
    doc = json.loads(dump(loaded, Format.JSONLD))
    nquads = jsonld.to_rdf(doc, {"documentLoader": document_loader(), "format": "application/n-quads"})
    g = Graph().parse(data=nquads, format="nt")
    assert isomorphic(g, store_graph(loaded))


def test_jsonld_with_inline_contexts_reloads_isomorphic_with_rdflib(loaded: Any) -> None:
    data = dump(loaded, Format.JSONLD, inline_context=True)
    g = Graph().parse(data=data, format="json-ld")
    assert isomorphic(g, store_graph(loaded))


def test_export_format_lookup() -> None:
    assert Format.lookup("ttl") is Format.TURTLE
    assert Format.JSONLD.media_type == "application/ld+json"
    from konbini_ld.errors import UsageError

    with pytest.raises(UsageError, match="docx.*known: .*turtle"):
        Format.lookup("docx")


def test_doubles_are_spelled_alike_in_every_format_so_canonical_hashes_agree(tmp_path: Path) -> None:
    """JSON-LD processors write a double canonically (``2.35E1``): every export says it so, and the
    canonical (RDFC-1.0) hashes of the JSON-LD and N-Triples exports are equal."""
    import hashlib
    import json as _json

    from click.testing import CliRunner
    from konbini_ld.apps.cli import main

    doc = tmp_path / "d.json"
    doc.write_text(_json.dumps({"data": {"type": "Audio", "id": "https://www.tiktok.com/music/x-123456789",
                                         "entityId": "123456789", "duration": 23.5}}))
    store = str(tmp_path / "s")
    assert CliRunner().invoke(main, ["--store", store, "load", str(doc), "--observed-at", "2026-11-01T00:00:00Z"]
                              ).exit_code == 0
    out = {f: CliRunner().invoke(main, ["--store", store, "export", "-f", f, "--inline-context"]).stdout_bytes
           for f in ("nt", "nq", "turtle", "trig", "rdfxml", "jsonld")}
    for f, data in out.items():
        assert b"2.35E1" in data and b'"23.5"' not in data and b">23.5<" not in data, f
    nt = jsonld.normalize(out["nt"].decode(), {"algorithm": "URDNA2015", "inputFormat": "application/n-quads",
                                               "format": "application/n-quads"})
    from_jsonld = jsonld.normalize(_json.loads(out["jsonld"]), {"algorithm": "URDNA2015",
                                                                "format": "application/n-quads"})
    assert hashlib.sha256(nt.encode()).digest() == hashlib.sha256(from_jsonld.encode()).digest()
