"""The lean store validation reads the data graph into answers every pattern as rdflib's own
store does, and pySHACL gives the same results on it, whatever the shapes use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyshacl
from helpers import SEED, VIDEOS
from hypothesis import given, settings
from hypothesis import strategies as st
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.namespace import SH, XSD

from konbini_ld.query import validate as validation
from konbini_ld.query.shacl_store import TripleIndex

_subjects = st.sampled_from([URIRef(f"urn:s{i}") for i in range(3)] + [BNode("b1")])
_predicates = st.sampled_from([URIRef(f"urn:p{i}") for i in range(2)])
_objects = st.one_of(_subjects, st.sampled_from([Literal(1), Literal("1"), Literal("x", lang="en"),
                                                 Literal("1", datatype=XSD.decimal)]))
_triples = st.tuples(_subjects, _predicates, _objects)
_masks = st.tuples(st.booleans(), st.booleans(), st.booleans())


def _both() -> tuple[Graph, Graph]:
    return Graph(store=TripleIndex()), Graph()


def _canon(triples: Any) -> list[tuple[str, ...]]:
    """Triples in one order (literals of equal value but not equal terms sort alike: by their N3)."""
    return sorted(tuple(term.n3() for term in t) for t in triples)


def _pattern(data: Any, pool: list[Any]) -> tuple[Any, Any, Any]:
    """A pattern: an added triple (or any) with some of its terms left open."""
    triple = data.draw(st.sampled_from(pool) if pool and data.draw(st.booleans()) else _triples)
    mask = data.draw(_masks)
    return (triple[0] if mask[0] else None, triple[1] if mask[1] else None, triple[2] if mask[2] else None)


@settings(max_examples=300, deadline=None)
@given(adds=st.lists(_triples, min_size=1, max_size=40), data=st.data())
def test_every_pattern_matches_what_rdflibs_store_matches(adds: list[Any], data: Any) -> None:
    ours, theirs = _both()
    for t in adds + adds[:5]:  # (added twice: held once)
        ours.add(t)
        theirs.add(t)
    for _ in range(data.draw(st.integers(0, 2))):
        pattern = _pattern(data, adds)
        ours.remove(pattern)
        theirs.remove(pattern)
    assert len(ours) == len(theirs)
    for _ in range(8):
        pattern = _pattern(data, adds)
        assert _canon(ours.triples(pattern)) == _canon(theirs.triples(pattern))
    assert _canon(ours) == _canon(theirs)


def test_many_objects_of_one_subject_are_held_once_each() -> None:
    ours, theirs = _both()
    s, p = URIRef("urn:s"), URIRef("urn:p")
    for round_ in range(2):
        for i in range(100):  # past the length where membership moves to a set
            ours.add((s, p, Literal(i)))
            theirs.add((s, p, Literal(i)))
    assert len(ours) == len(theirs) == 100
    ours.remove((s, p, Literal(50)))
    ours.add((s, p, Literal(50)))
    ours.add((s, p, Literal(50)))
    assert sorted(ours.objects(s, p)) == sorted(theirs.objects(s, p))


SHAPES = '''
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix as: <https://www.w3.org/ns/activitystreams#> .
@prefix ks: <https://konbiniapi.com/ns/social#> .
@prefix ex: <urn:ex:> .

ex:VideoShape a sh:NodeShape ;
    sh:targetClass as:Video ;
    sh:property [ sh:path ( ks:audio as:attributedTo ) ; sh:minCount 1 ; sh:nodeKind sh:IRI ] ;
    sh:property [ sh:path [ sh:alternativePath ( as:name as:content ) ] ; sh:maxCount 0 ] ;
    sh:property [ sh:path as:attributedTo ; sh:class as:Image ] ;
    sh:property [ sh:path as:attributedTo ; sh:node ex:PersonShape ] ;
    sh:sparql [ sh:message "a video of an audio" ;
                sh:select """SELECT $this ?value WHERE { $this <https://konbiniapi.com/ns/social#audio> ?value }""" ] .

ex:PersonShape a sh:NodeShape ;
    sh:property [ sh:path [ sh:inversePath as:attributedTo ] ; sh:minCount 5 ; sh:severity sh:Warning ] .

ex:People a sh:NodeShape ;
    sh:targetClass as:Person ;
    sh:property [ sh:path [ sh:oneOrMorePath [ sh:inversePath as:attributedTo ] ] ; sh:maxCount 1 ] ;
    sh:property [ sh:path [ sh:zeroOrMorePath as:attributedTo ] ; sh:minCount 2 ] .

ex:Everything a sh:NodeShape ;
    sh:targetSubjectsOf as:name ;
    sh:property [ sh:path as:name ; sh:maxLength 12 ; sh:severity sh:Info ] .
'''


def test_pyshacl_gives_the_same_results_on_it_for_shapes_of_every_kind(store: Any, tmp_path: Path) -> None:
    from rdflib.compare import isomorphic

    store.load([SEED, VIDEOS])
    data = validation._data_graph(store)
    assert isinstance(data.store, TripleIndex)
    plain = Graph()
    for t in data:
        plain.add(t)
    assert len(plain) == len(data) > 100
    shapes = Graph().parse(data=SHAPES, format="turtle")
    reports = []
    for graph in (data, plain):
        conforms, report, text = pyshacl.validate(graph, shacl_graph=shapes, inference="none",
                                                  abort_on_first=False, allow_warnings=True)
        reports.append((conforms, report, text))
    (ours, our_report, _), (theirs, their_report, _) = reports
    assert not ours and ours == theirs  # results of each kind, the same
    components = {str(o).rsplit("#", 1)[-1] for o in our_report.objects(None, SH.sourceConstraintComponent)}
    assert components >= {"MinCountConstraintComponent", "MaxCountConstraintComponent", "ClassConstraintComponent",
                          "NodeConstraintComponent", "SPARQLConstraintComponent", "MaxLengthConstraintComponent"}
    assert isomorphic(our_report, their_report)


def test_validate_answers_as_it_did_on_rdflibs_own_store(store: Any, monkeypatch: Any) -> None:
    store.load([SEED, VIDEOS])
    ours = validation.validate(store, workers=1)
    lean = validation._data_graph

    def plain(s: Any) -> Graph:
        g = Graph()
        for t in lean(s):
            g.add(t)
        return g

    monkeypatch.setattr(validation, "_data_graph", plain)
    theirs = validation.validate(store, workers=1)
    assert [str(r) for r in ours.results] == [str(r) for r in theirs.results]
    assert (ours.focus_nodes, ours.conforms, ours.ok) == (theirs.focus_nodes, theirs.conforms, theirs.ok)
