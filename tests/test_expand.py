from __future__ import annotations

import socket

import pytest
from helpers import seed_data

from konbini_ld.errors import ContextError
from konbini_ld.mapping.contexts import OfflineDocumentLoader, bundled_context, terms
from konbini_ld.mapping.literals import check_literal
from konbini_ld.mapping.normalize import normalize
from konbini_ld.mapping.to_rdf import expand, to_triples

KS = "https://konbiniapi.com/ns/social#"


def test_bundled_activitystreams_context_is_the_w3c_document_unchanged() -> None:
    from pyld.documentloader.frozen import BUNDLED_CONTEXTS

    ours = bundled_context("https://www.w3.org/ns/activitystreams#")
    import json

    assert ours == json.loads(BUNDLED_CONTEXTS["https://www.w3.org/ns/activitystreams"].read_text())


def test_konbini_context_covers_every_key_of_the_samples() -> None:
    import json
    from pathlib import Path

    defined = set(terms()) | {"id", "type", "@context"}
    free_maps = {"headers"}

    def keys(value: object, parent: str = "") -> set[str]:
        out: set[str] = set()
        if isinstance(value, dict):
            for k, v in value.items():
                if parent not in free_maps:
                    out.add(k)
                out |= keys(v, k)
        elif isinstance(value, list):
            for v in value:
                out |= keys(v, parent)
        return out

    samples = Path(__file__).parent / "data"
    for path in samples.glob("*.json"):
        body = json.loads(path.read_text())
        body = body.get("body", body)
        assert keys(body["data"]) <= defined, path.name


def test_loader_refuses_unknown_urls_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(socket, "create_connection", no_network)
    from pyld.jsonld import JsonLdError

    with pytest.raises(JsonLdError):
        OfflineDocumentLoader()("https://example.org/ctx", {})


def test_nested_remote_context_is_refused_by_expansion() -> None:
    doc = normalize(seed_data()).document
    doc["icon"]["@context"] = "https://example.org/other.jsonld"
    with pytest.raises(ContextError):
        to_triples(expand(doc))


def test_expansion_yields_no_blank_nodes_and_valid_literals() -> None:
    triples = to_triples(expand(normalize(seed_data()).document))
    import pyoxigraph as ox

    for t in triples:
        assert not isinstance(t.subject, ox.BlankNode) and not isinstance(t.object, ox.BlankNode)
        if isinstance(t.object, ox.Literal):
            assert check_literal(t.object.value, t.object.datatype.value)


def test_counts_are_integers_flags_booleans_ids_strings() -> None:
    triples = to_triples(expand(normalize(seed_data()).document))
    by_pred = {t.predicate.value: t.object for t in triples}
    assert by_pred[KS + "videoCount"].datatype.value.endswith("#integer")
    assert by_pred[KS + "isVerified"].datatype.value.endswith("#boolean")
    assert by_pred[KS + "userId"].datatype.value.endswith("#string")
    assert by_pred[KS + "userId"].value == "127905465618821121"
    assert by_pred["https://www.w3.org/ns/activitystreams#duration"].value == "PT23S"


def test_ordered_items_list_cells_are_skolemised_deterministically() -> None:
    import json

    from helpers import VIDEOS

    body = json.loads(VIDEOS.read_text())["body"]["data"]
    a = to_triples(expand(normalize(body).document))
    b = to_triples(expand(normalize(body).document))
    firsts = [t for t in a if t.predicate.value.endswith("#first")]
    assert firsts and all(t.subject.value.startswith("urn:konbini-ld:genid:") for t in firsts)
    assert set(map(str, a)) == set(map(str, b))


@pytest.mark.parametrize(
    ("value", "datatype", "ok"),
    [
        ("2020-03-15T00:00:00.000Z", "dateTime", True),
        ("2020-13-15T00:00:00Z", "dateTime", False),
        ("PT23S", "duration", True),
        ("23", "duration", False),
        ("-5", "integer", True),
        ("5.0", "integer", False),
    ],
)
def test_check_literal(value: str, datatype: str, ok: bool) -> None:
    assert check_literal(value, "http://www.w3.org/2001/XMLSchema#" + datatype) is ok
