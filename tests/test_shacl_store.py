"""The lean store validation reads the data graph into answers every pattern as rdflib's own
store does, and pySHACL gives the same results on it, whatever the shapes use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyshacl
from helpers import SEED, VIDEOS, write_data
from hypothesis import given, settings
from hypothesis import strategies as st
from rdflib import BNode, Dataset, Graph, Literal, URIRef
from rdflib.namespace import SH, XSD

from konbini_ld.query import validate as validation
from konbini_ld.query.shacl_store import TripleIndex

_subjects = st.sampled_from([URIRef(f"urn:s{i}") for i in range(3)] + [BNode("b1")])
_predicates = st.sampled_from([URIRef(f"urn:p{i}") for i in range(2)])
_objects = st.one_of(_subjects, st.sampled_from([Literal(1), Literal("1"), Literal("x", lang="en"),
                                                 Literal("1", datatype=XSD.decimal)]),
                     st.integers(0, 40).map(Literal))  # (enough for one subject's values to pass 16)
_triples = st.tuples(_subjects, _predicates, _objects)
_masks = st.tuples(st.booleans(), st.booleans(), st.booleans())


def _both() -> tuple[Graph, Graph]:
    return TripleIndex.graph(), Graph()


def _canon(triples: Any) -> list[tuple[str, ...]]:
    """Triples in one order (literals of equal value but not equal terms sort alike: by their N3)."""
    return sorted(tuple(term.n3() for term in t) for t in triples)


def _pattern(data: Any, pool: list[Any]) -> tuple[Any, Any, Any]:
    """A pattern: an added triple (or any) with some of its terms left open."""
    triple = data.draw(st.sampled_from(pool) if pool and data.draw(st.booleans()) else _triples)
    mask = data.draw(_masks)
    return (triple[0] if mask[0] else None, triple[1] if mask[1] else None, triple[2] if mask[2] else None)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_pattern_matches_what_rdflibs_store_matches(data: Any) -> None:
    """Adds (again and again), removes by pattern and lookups of every pattern, in any order."""
    ours, theirs = _both()
    added: list[Any] = []
    for _ in range(data.draw(st.integers(1, 25))):
        step = data.draw(st.sampled_from(["add", "add", "many", "remove", "remove", "look"]))
        if step in ("add", "many"):
            if step == "many":  # one subject with many values of one property
                s_, p_, objects = data.draw(st.tuples(_subjects, _predicates, st.lists(_objects, min_size=10,
                                                                                        max_size=30)))
                triples = [(s_, p_, o) for o in objects]
            else:
                triples = data.draw(st.lists(_triples, min_size=1, max_size=3))
            for t in triples + triples[:3]:  # (added twice: held once)
                ours.add(t)
                theirs.add(t)
            added.extend(triples)
        elif step == "remove":
            pattern = _pattern(data, added)
            ours.remove(pattern)
            theirs.remove(pattern)
        else:
            pattern = _pattern(data, added)
            assert _canon(ours.triples(pattern)) == _canon(theirs.triples(pattern))
        assert len(ours) == len(theirs)
    for _ in range(6):
        pattern = _pattern(data, added)
        assert _canon(ours.triples(pattern)) == _canon(theirs.triples(pattern))
    for t in added:
        assert (t in ours) == (t in theirs)
    assert _canon(ours) == _canon(theirs)
    # contexts as rdflib's own store answers them: its one graph, and nothing of any other
    other = Graph(identifier=URIRef("urn:other"))
    pattern = _pattern(data, added)
    for g in (ours, theirs):
        assert list(g.store.triples(pattern, context=other)) == [] and g.store.__len__(context=other) == 0
        assert all(list(ctx) == [g] for _, ctx in g.store.triples(pattern, context=g))
    for node in {term for t in added for term in t if isinstance(term, BNode)}:  # (what the workers' merge asks)
        if (node, None, None) in theirs or (None, None, node) in theirs:
            assert ours.store.mentions(node)
    held = [[c.identifier == g.identifier for c in g.store.contexts()] for g in (ours, theirs)]
    assert held[0] == held[1]
    union = [Dataset(store=g.store, default_union=True) for g in (ours, theirs)]
    assert _canon(q[:3] for q in union[0].quads(pattern)) == _canon(q[:3] for q in union[1].quads(pattern))
    assert [list(d.triples(pattern)) for d in [Dataset(store=g.store) for g in (ours, theirs)]] == [[], []]


def test_a_value_added_again_after_removals_is_found() -> None:
    """Many values of one subject and property, some removed, one added: it is there."""
    s, p = URIRef("urn:s"), URIRef("urn:p")
    ours, theirs = _both()
    for g in (ours, theirs):
        for i in range(17):
            g.add((s, p, Literal(i)))
        g.remove((s, p, Literal(0)))
        g.remove((s, p, Literal(1)))
        g.add((s, p, Literal(99)))
        g.add((s, p, Literal(99)))
    assert (s, p, Literal(99)) in ours
    assert len(ours) == len(theirs) == 16
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


def test_a_blank_node_in_a_result_is_described_as_pyshacl_describes_it(store: Any, tmp_path: Path) -> None:
    """pySHACL finds a blank node it names in a message through the graph's contexts."""
    write_data(store, ['_:b <urn:p> "x" .\n', '_:b <urn:p> "y" .\n', '_:b <urn:q> _:c .\n', '_:c <urn:name> "vee" .\n'])
    shapes = tmp_path / "s.ttl"
    shapes.write_text("""
        @prefix sh: <http://www.w3.org/ns/shacl#> .
        <urn:S> a sh:NodeShape ; sh:targetSubjectsOf <urn:p> ;
            sh:property [ sh:path <urn:p> ; sh:maxCount 1 ; sh:severity sh:Warning ] ;
            sh:property [ sh:path <urn:q> ; sh:not [ sh:property [ sh:path <urn:name> ; sh:minCount 1 ] ] ] .
    """)
    ours = validation.validate(store, shapes=shapes)
    plain = Graph()
    for t in validation._data_graph(store):
        plain.add(t)
    _, report, _ = pyshacl.validate(plain, shacl_graph=Graph().parse(shapes), inference="none",
                                    abort_on_first=False, allow_warnings=True)
    theirs = sorted(str(m) for m in report.objects(None, SH.resultMessage))
    assert len(ours.results) == 2 and not ours.ok  # (a warning and a violation, not an error)
    assert sorted(r.message for r in ours.results) == theirs
    assert any("[ <urn:p>" in m for m in theirs) and any('"vee"' in m for m in theirs)  # described, not named
