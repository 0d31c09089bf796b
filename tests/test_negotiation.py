"""Content negotiation (RFC 9110 §12.5.1): a format refused with ``q=0`` is never sent; when every
format a result can take is refused, 406. Property tests over Accept headers (python-mimeparse
is the oracle for what a header says of a media type), and the same through a real ``serve``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mimeparse
import pytest
import requests
from helpers import SEED
from hypothesis import given, settings
from hypothesis import strategies as st
from test_server import Served

from konbini_ld import open_store
from konbini_ld.apps.protocol import OFFERED, NotAcceptable, negotiate
from konbini_ld.io.formats import Format

KINDS = {"SELECT": "results", "ASK": "boolean", "CONSTRUCT": "graph"}
#: Media types that name a format in Accept beside its own (N3 is read as Turtle, as Fuseki reads it).
ALIASES = {Format.TURTLE: ("text/n3", "text/rdf+n3")}
MEDIA = sorted({m for formats in OFFERED.values() for f in formats for m in f.media_types}
               | {"*/*", "text/*", "application/*", "image/png", "text/html", "text/n3", "*"})

media_range = st.builds(
    lambda m, q, extra: m + (f";q={q}" if q is not None else "") + extra,
    st.sampled_from(MEDIA),
    st.one_of(st.none(), st.sampled_from(["0", "0.0", "0.000", "1", "0.5", "0.001", "0.9", "1.0"])),
    st.sampled_from(["", ";charset=utf-8", ";level=1"]),
)
accept_header = st.lists(media_range, min_size=1, max_size=8).map(", ".join)


def _said(media: str, header: str) -> tuple[float, float]:
    """What the header says of one media type: (quality, fitness), fitness -1 when nothing names it."""
    ranges = [mimeparse.parse_media_range(p.strip()) for p in header.split(",") if p.strip()]
    q, fitness = mimeparse.quality_and_fitness_parsed(media, ranges)
    return float(q), float(fitness)


@settings(max_examples=500, deadline=None)
@given(accept=accept_header, kind=st.sampled_from(sorted(KINDS)))
def test_a_refused_format_is_never_chosen(accept: str, kind: str) -> None:
    offered = OFFERED[KINDS[kind]]
    try:
        chosen = negotiate(accept, kind)
    except NotAcceptable:
        for fmt in offered:  # 406 only when every format is refused: none is acceptable, each is named
            assert _said(fmt.media_type, accept)[0] == 0
            assert any(_said(m, accept)[1] >= 0 for m in fmt.media_types)
        return
    assert chosen in offered
    q, fitness = _said(chosen.media_type, accept)
    assert not (fitness >= 0 and q == 0), f"{chosen.media_type} was refused: {accept}"
    best = max(_said(f.media_type, accept)[0] for f in offered)
    if best > 0:  # something acceptable: the chosen one is at least as acceptable as any
        named = (*chosen.media_types, *ALIASES.get(chosen, ()))
        assert q >= best or (fitness < 0 and any(_said(m, accept)[0] >= best for m in named))


@given(kind=st.sampled_from(sorted(KINDS)), extra=st.lists(st.sampled_from(["image/png", "text/html"]), max_size=3))
def test_refusing_everything_is_406_and_naming_nothing_is_the_default(kind: str, extra: list[str]) -> None:
    offered = OFFERED[KINDS[kind]]
    with pytest.raises(NotAcceptable):
        negotiate(", ".join([*extra, *(f"{f.media_type};q=0" for f in offered), "*/*;q=0"]), kind)
    assert negotiate(", ".join(extra) or None, kind) is offered[0]


@pytest.mark.parametrize(("accept", "kind", "expected"), [
    ("text/*;q=0.5, text/turtle;q=0", "CONSTRUCT", "application/n-triples"),
    ("*/*;q=0.1, text/turtle;q=0", "CONSTRUCT", "application/n-triples"),
    ("application/sparql-results+json;q=0, */*", "SELECT", "application/sparql-results+xml"),
    ("text/csv;q=0.5, application/sparql-results+xml", "SELECT", "application/sparql-results+xml"),
    ("text/tab-separated-values, text/csv", "SELECT", "text/tab-separated-values"),
])
def test_examples(accept: str, kind: str, expected: str) -> None:
    assert negotiate(accept, kind).media_type == expected


# -- through serve ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    path = tmp_path_factory.mktemp("negotiation") / "store"
    with open_store(path) as store:
        store.load([SEED])
    server = Served(path)
    yield server
    server.stop()


def test_serve_never_sends_a_refused_format(served: Served) -> None:
    construct = "CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o } LIMIT 3"
    r = requests.get(served.url + "/sparql", params={"query": construct}, timeout=30,
                     headers={"Accept": "text/*;q=0.5, text/turtle;q=0"})
    assert r.status_code == 200 and not r.headers["content-type"].startswith("text/turtle")
    refuse_all = ", ".join(f"{f.media_type};q=0" for f in OFFERED["graph"]) + ", */*;q=0"
    r = requests.get(served.url + "/sparql", params={"query": construct}, headers={"Accept": refuse_all}, timeout=30)
    assert r.status_code == 406 and "Accept" in r.text
    r = requests.get(served.url + "/sparql", headers={"Accept": refuse_all}, timeout=30)  # the Service Description
    assert r.status_code == 406
    r = requests.get(served.url + "/sparql", params={"query": "ASK {}"}, timeout=30,
                     headers={"Accept": "application/sparql-results+json;q=0, application/sparql-results+xml;q=0"})
    assert r.status_code == 406


def test_serve_answers_a_client_that_names_nothing_it_offers(served: Served, tmp_path: Path) -> None:
    r = requests.get(served.url + "/sparql", params={"query": "SELECT * WHERE { ?s ?p ?o } LIMIT 1"},
                     headers={"Accept": "image/png"}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/sparql-results+json")


def test_a_query_body_may_start_with_a_byte_order_mark() -> None:
    from konbini_ld.apps.protocol import read_request

    req = read_request("POST", "", "application/sparql-query", "\ufeffASK {}".encode())
    assert req.query == "ASK {}"
