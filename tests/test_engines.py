"""One conformance suite, run against every engine: in memory, on disk, and a real SPARQL
1.1 server (``oxigraph serve``). What the store relies on, each engine does; what an engine
declares in its capabilities, it has."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from konbini_ld.engines.base import Capabilities, Dataset, WriteRejected
from konbini_ld.engines.oxigraph import OxigraphEngine
from konbini_ld.engines.sparql_http import SparqlHttpEngine, derive_endpoints
from konbini_ld.errors import QueryError
from servers import OxigraphServer

DATA = ox.NamedNode("urn:konbini-ld:graph:data")
PROV = ox.NamedNode("urn:konbini-ld:graph:provenance")
A, B = ox.NamedNode("https://x.example/a"), ox.NamedNode("https://x.example/b")
NAME = ox.NamedNode("https://www.w3.org/ns/activitystreams#name")
COUNT = ox.NamedNode("https://konbiniapi.com/ns/social#videoCount")
INT = ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OxigraphServer]:
    srv = OxigraphServer(tmp_path_factory.mktemp("engines"))
    yield srv
    srv.stop()


@pytest.fixture(params=["memory", "disk", "sparql-http", "sparql-http-without-graph-store"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        e: Any = OxigraphEngine(None)
    elif request.param == "disk":
        e = OxigraphEngine(tmp_path / "ox")
    else:
        srv = request.getfixturevalue("server")
        srv.clear()
        gsp = "none" if request.param.endswith("without-graph-store") else None
        e = SparqlHttpEngine(derive_endpoints(srv.query_url, gsp=gsp))
    yield e
    e.close()


def nt(s: ox.NamedNode, p: ox.NamedNode, o: Any) -> str:
    return f"{s} {p} {o} .\n"


def seed(engine: Any) -> None:
    engine.apply([], {
        DATA: [nt(A, NAME, ox.Literal("alpha")), nt(A, COUNT, ox.Literal("3", datatype=INT)),
               nt(B, NAME, ox.Literal("beta", language="en"))],
        PROV: [nt(A, ox.NamedNode("http://www.w3.org/ns/prov#wasGeneratedBy"), ox.NamedNode("urn:x:act"))],
    })


def test_declares_its_capabilities(engine: Any) -> None:
    assert isinstance(engine.capabilities, Capabilities)
    assert isinstance(engine.description, str) and engine.description


def test_writes_read_back_by_subject_graph_and_count(engine: Any) -> None:
    seed(engine)
    assert engine.count() == 4
    got = {(q.subject, q.predicate, q.object) for q in engine.quads_for_subjects([A], DATA)}
    assert got == {(A, NAME, ox.Literal("alpha")), (A, COUNT, ox.Literal("3", datatype=INT))}
    assert len(list(engine.iter_quads(PROV))) == 1
    assert len(list(engine.iter_quads())) == 4


def test_reads_by_subject_can_be_limited_to_some_predicates(engine: Any) -> None:
    seed(engine)
    got = {(q.subject, q.predicate, q.object) for q in engine.quads_for_subjects([A], DATA, [COUNT])}
    assert got == {(A, COUNT, ox.Literal("3", datatype=INT))}
    assert list(engine.quads_for_subjects([A], DATA, [])) == []


def test_deletes_then_inserts_in_one_apply(engine: Any) -> None:
    seed(engine)
    old = ox.Quad(A, COUNT, ox.Literal("3", datatype=INT), DATA)
    engine.apply([old], {DATA: [nt(A, COUNT, ox.Literal("4", datatype=INT))]})
    values = [q.object.value for q in engine.quads_for_subjects([A], DATA) if q.predicate == COUNT]
    assert values == ["4"]


def test_default_graph_is_the_union_unless_asked_otherwise(engine: Any) -> None:
    seed(engine)
    union = list(engine.query("SELECT ?s WHERE { ?s ?p ?o }"))
    assert len(union) == 4
    own = engine.query(f"SELECT ?s WHERE {{ GRAPH {PROV} {{ ?s ?p ?o }} }}", union=False)
    assert [row[0] for row in own] == [A]


def test_a_dataset_replaces_the_union_and_the_querys_own(engine: Any) -> None:
    """The protocol's dataset (``serve``'s default-graph-uri and named-graph-uri) wins over
    the union and over the query's own FROM, on every engine alike."""
    seed(engine)
    prov_only = Dataset(default_graphs=(PROV.value,))
    assert [r[0] for r in engine.query("SELECT ?s WHERE { ?s ?p ?o }", dataset=prov_only)] == [A]
    assert [r[0] for r in engine.query(f"SELECT ?s FROM {DATA} WHERE {{ ?s ?p ?o }}", dataset=prov_only)] == [A]
    assert list(engine.query("SELECT ?g WHERE { GRAPH ?g { ?s ?p ?o } }", dataset=prov_only)) == []
    named = Dataset(named_graphs=(DATA.value,))
    assert {r[0] for r in engine.query("SELECT ?g WHERE { GRAPH ?g { ?s ?p ?o } }", dataset=named)} == {DATA}
    assert not engine.query("ASK { ?s ?p ?o }", dataset=named)
    own = engine.query(f"SELECT ?s FROM {PROV} WHERE {{ ?s ?p ?o }}")
    assert [r[0] for r in own] == [A]


def test_binds_parameters_as_terms(engine: Any) -> None:
    seed(engine)
    rows = list(engine.query("SELECT ?s ?n WHERE { ?s <https://www.w3.org/ns/activitystreams#name> ?n }",
                             substitutions={"s": A}))
    assert [(r["s"], r["n"]) for r in rows] == [(A, ox.Literal("alpha"))]
    # a value that would break out of the query text stays one literal
    hostile = ox.Literal('x" } } DROP ALL #')
    assert list(engine.query("SELECT ?n WHERE { ?s <https://www.w3.org/ns/activitystreams#name> ?n }",
                             substitutions={"n": hostile})) == []
    assert engine.count() == 4


def test_ask_construct_and_syntax_errors(engine: Any) -> None:
    seed(engine)
    assert bool(engine.query("ASK { ?s ?p ?o }"))
    triples = list(engine.query("CONSTRUCT { ?s <urn:x:p> ?o } WHERE { ?s <https://www.w3.org/ns/activitystreams#name> ?o }"))
    assert len(triples) == 2
    with pytest.raises(QueryError):
        engine.query("SELECT WHERE {")


def test_dump_round_trips_the_dataset(engine: Any) -> None:
    seed(engine)
    out = io.BytesIO()
    engine.dump(out, ox.RdfFormat.N_QUADS, prefixes={})
    quads = set(ox.parse(out.getvalue(), ox.RdfFormat.N_QUADS))
    assert quads == set(engine.iter_quads())


def test_clear_graph_clears_only_that_graph(engine: Any) -> None:
    seed(engine)
    engine.clear_graph(PROV)
    assert engine.count() == 3 and list(engine.iter_quads(PROV)) == []


def test_content_it_cannot_hold_is_rejected_as_such(engine: Any) -> None:
    with pytest.raises(WriteRejected):
        engine.apply([], {DATA: ['<https://x.example/a> <https://x.example/p> "\ud800" .\n']})
    assert engine.count() == 0


def test_persistence_is_as_declared(tmp_path: Path) -> None:
    disk = OxigraphEngine(tmp_path / "ox")
    seed(disk)
    assert disk.capabilities.persistent and disk.capabilities.read_only_views
    view = OxigraphEngine(tmp_path / "ox", read_only=True)  # beside the writer
    disk.close()
    assert view.count() == 4
    view.close()
    assert OxigraphEngine(tmp_path / "ox").count() == 4
    memory = OxigraphEngine(None)
    assert not memory.capabilities.persistent and not memory.capabilities.read_only_views


def test_write_behind_is_declared_only_where_the_store_can_cache(engine: Any) -> None:
    caps = engine.capabilities
    assert caps.write_behind <= caps.exclusive_writer  # a shared server is never written behind
    assert caps.substitution or not caps.exclusive_writer


_TEXTS = st.text(alphabet=st.sampled_from(['a', 'é', '"', "'", '\\', 'u', 'U', '0', '2', '{', '}', '.', '\n', '\r',
                                           '\t', '\x01', '\x7f', '\u2028', '😀', ' ', '#', '<', '>']), max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_TEXTS, min_size=1, max_size=6, unique=True), language=st.sampled_from([None, "en", "pt-br"]))
def test_any_literal_removed_in_a_batch_is_gone_and_nothing_else(texts: list[str], language: str | None) -> None:
    # removes go to the store in one update: whatever the text (quotes, backslashes, text that
    # reads like an escape), what was asked goes and what was not stays
    engine = OxigraphEngine(None)
    literals = [ox.Literal(t, language=language) for t in texts]
    keep = ox.Literal("kept\\u0022", datatype=INT) if language is None else ox.Literal("kept", language=language)
    engine.apply([], {DATA: [nt(A, NAME, o) for o in literals] + [nt(B, NAME, keep)],
                      PROV: [nt(A, NAME, literals[0])]})
    engine.apply([ox.Quad(A, NAME, o, DATA) for o in literals], {})
    assert set(engine.iter_quads()) == {ox.Quad(B, NAME, keep, DATA), ox.Quad(A, NAME, literals[0], PROV)}


def test_many_removes_are_one_call_to_the_store(tmp_path: Path) -> None:
    # each call lets go of the GIL and takes it back: on the writer's thread beside a busy caller
    # that waits the interpreter's switch interval a call (100,000 removes: minutes, not a second)
    engine = OxigraphEngine(tmp_path / "ox")
    lines = [nt(A, COUNT, ox.Literal(str(i), datatype=INT)) for i in range(2000)]
    engine.apply([], {DATA: lines})
    calls: list[str] = []
    real = engine.store

    class Counting:
        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(real, name)

    engine.store = Counting()  # type: ignore[assignment]
    try:
        engine.apply([ox.Quad(A, COUNT, ox.Literal(str(i), datatype=INT), DATA) for i in range(2000)],
                     {DATA: [nt(A, COUNT, ox.Literal("-1", datatype=INT))]})
    finally:
        engine.store = real
    assert calls.count("remove") == 0 and calls.count("update") == 1  # (a chunk: 50,000 quads)
    assert [q.object.value for q in engine.iter_quads()] == ["-1"]
    engine.close()


def test_removes_past_one_update_go_in_several(monkeypatch: pytest.MonkeyPatch) -> None:
    from konbini_ld.engines import oxigraph

    monkeypatch.setattr(oxigraph, "DELETE_CHUNK", 7)
    engine = OxigraphEngine(None)
    engine.apply([], {DATA: [nt(A, COUNT, ox.Literal(str(i), datatype=INT)) for i in range(20)],
                      PROV: [nt(B, COUNT, ox.Literal(str(i), datatype=INT)) for i in range(3)]})
    updates, odd = oxigraph._delete_data([q for q in engine.iter_quads()])
    assert len(updates) == 4 and odd == []
    engine.apply([ox.Quad(A, COUNT, ox.Literal(str(i), datatype=INT), DATA) for i in range(19)]
                 + [ox.Quad(B, COUNT, ox.Literal("1", datatype=INT), PROV)], {})
    assert {(q.subject, q.object.value) for q in engine.iter_quads()} == {(A, "19"), (B, "0"), (B, "2")}


@pytest.mark.parametrize("error, expected", [
    (OSError("IO error: No such file or directory: While open a file for random read: x/000130.sst"), "stale"),
    (BrokenPipeError(32, "Broken pipe"), "as raised"),
])
def test_an_export_a_writer_outran_is_said_so_and_the_outputs_own_error_is_its_own(
        tmp_path: Path, error: OSError, expected: str) -> None:
    """A read-only view's dump whose files a writer's compaction removed fails as a stale view
    (not as the output failing: what was written is out, so it is not run again); an error of
    the output itself is raised as it is."""
    from konbini_ld.errors import StaleViewError

    OxigraphEngine(tmp_path / "g").close()
    view = OxigraphEngine(tmp_path / "g", read_only=True)

    class Outrun:
        def dump(self, *args: Any, **kwargs: Any) -> None:
            raise error

    real, view._store = view._store, Outrun()  # type: ignore[assignment]
    try:
        with pytest.raises(StaleViewError if expected == "stale" else BrokenPipeError):
            view.dump(io.BytesIO(), ox.RdfFormat.N_QUADS, prefixes={})
    finally:
        view._store = real
        view.close()


_OBJECTS = st.one_of(
    _TEXTS.map(ox.Literal),
    st.tuples(_TEXTS, st.sampled_from(["en", "pt-br", "ja"])).map(lambda t: ox.Literal(t[0], language=t[1])),
    _TEXTS.map(lambda t: ox.Literal(t, datatype=ox.NamedNode("https://example.org/type#x"))),
    st.integers(0, 50).map(lambda i: ox.NamedNode(f"https://example.org/é/{i}?a=b#c")),
    st.integers(0, 5).map(lambda i: ox.BlankNode(f"b{i}")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(objects=st.lists(_OBJECTS, min_size=0, max_size=30))
def test_a_graph_read_on_two_threads_is_the_graph_read_in_one(tmp_path: Path, objects: list[Any]) -> None:
    # `validate` reads the data graph through a pipe Oxigraph writes on a thread of its own: every
    # term (escapes, languages, datatypes, blank nodes, IRIs outside ASCII) comes back as it is
    # held, and only that graph's
    engine = OxigraphEngine(tmp_path / f"ox{len(list(tmp_path.iterdir()))}")
    for i, o in enumerate(objects):
        engine.store.add(ox.Quad(ox.BlankNode(f"s{i % 3}") if i % 4 == 0 else A, NAME, o, DATA))
    engine.store.add(ox.Quad(B, NAME, ox.Literal("elsewhere"), PROV))
    assert sorted(map(str, engine.graph_triples(DATA))) == sorted(str(q.triple) for q in engine.iter_quads(DATA))
    engine.close()


def test_a_graph_read_on_two_threads_can_be_left_half_read(tmp_path: Path) -> None:
    # a reader that stops early ends the thread writing the pipe (nothing is left blocked on it)
    import threading

    engine = OxigraphEngine(tmp_path / "ox")
    engine.apply([], {DATA: [nt(A, COUNT, ox.Literal(str(i), datatype=INT)) for i in range(200_000)]})
    before = threading.active_count()
    triples = engine.graph_triples(DATA)
    assert next(triples).predicate == COUNT
    triples.close()
    assert threading.active_count() == before
    assert sum(1 for _ in engine.graph_triples(DATA)) == 200_000
    engine.close()


def test_a_triple_term_in_the_graph_is_read_on_two_threads_as_in_one() -> None:
    engine = OxigraphEngine(None)
    engine.store.add(ox.Quad(A, NAME, ox.Triple(A, NAME, ox.Literal("x")), DATA))
    assert list(engine.graph_triples(DATA)) == [q.triple for q in engine.iter_quads(DATA)]


def test_a_store_failing_under_a_graph_read_on_two_threads_is_the_stores_error(tmp_path: Path) -> None:
    # what the writing thread meets (a file a writer's compaction removed under a read-only view,
    # damage) is raised to the reader as the store's own error, after what was read
    from konbini_ld.errors import StaleViewError, StoreDamagedError

    engine = OxigraphEngine(tmp_path / "ox")
    engine.apply([], {DATA: [nt(A, COUNT, ox.Literal(str(i), datatype=INT)) for i in range(10)]})
    engine.close()
    for read_only, message, error in ((True, "IO error: No such file or directory: 000012.sst", StaleViewError),
                                      (False, "Corruption: block checksum mismatch in 000012.sst", StoreDamagedError)):
        view = OxigraphEngine(tmp_path / "ox", read_only=read_only)
        real = view.store

        class Failing:
            def dump(self, *args: Any, **kwargs: Any) -> None:
                raise OSError(message)

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        view.store = Failing()  # type: ignore[assignment]
        with pytest.raises(error):
            list(view.graph_triples(DATA))
        view.store = real
        view.close()


# -- views open between a writer's batches -------------------------------------------------------


def test_a_reader_gets_its_turn_between_batches_written_back_to_back(tmp_path: Path) -> None:
    """A writer applying batch after batch leaves no gap to speak of: a waiting reader is let in
    before the next batch, and no batch is being written while the reader opens its view."""
    import threading

    from konbini_ld.engines.views import ViewLock

    writer, reader = ViewLock(tmp_path, writer=True), ViewLock(tmp_path, patience=30)
    writing, stop, batches = threading.Event(), threading.Event(), []

    def write() -> None:
        while not stop.is_set() and len(batches) < 400:
            with writer.batch():
                writing.set()
                time.sleep(0.02)
                batches.append(1)
                writing.clear()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        time.sleep(0.1)
        for _ in range(5):
            with reader.opening():
                assert not writing.is_set()
                time.sleep(0.01)
    finally:
        stop.set()
        thread.join()
        writer.close()
    assert len(batches) < 400  # (the reader got in while the writer was still writing)


def test_a_writer_stopped_in_the_middle_of_a_batch_makes_a_reader_say_the_store_is_busy(tmp_path: Path) -> None:
    from konbini_ld.engines.views import ViewLock
    from konbini_ld.errors import StoreBusyError

    writer = ViewLock(tmp_path, writer=True)
    with writer.batch():
        with pytest.raises(StoreBusyError, match="half written"):
            with ViewLock(tmp_path, patience=0.3).opening():
                pass
    with ViewLock(tmp_path, patience=0.3).opening():  # (the batch written: views open again)
        pass
    writer.close()



def test_a_reader_stopped_while_it_opens_its_view_does_not_stop_the_writer(tmp_path: Path, monkeypatch: Any,
                                                                          caplog: Any) -> None:
    """A reader holds the lock for the milliseconds its view takes to open; one stopped right then
    (Ctrl-Z) would hold it for as long as it stays stopped: the writer goes on without it."""
    import logging

    from konbini_ld.engines import views
    from konbini_ld.engines.views import ViewLock

    monkeypatch.setattr(views, "WRITER_PATIENCE", 0.3)
    writer = ViewLock(tmp_path, writer=True)
    written = []
    with ViewLock(tmp_path).opening(), caplog.at_level(logging.WARNING, logger="konbini_ld.engines.views"):
        with writer.batch():
            written.append(1)
    assert written == [1] and "writing without waiting" in caplog.text
    writer.close()
