"""A writer's memory of its store is bounded, and what it forgets is read again, never assumed."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from konbini_ld import open_store
from konbini_ld.sources.konbini.corpus import corpus_lines
from konbini_ld.store import memo
from konbini_ld.store.memo import MaybeHeld, Written

GRAPHS = ("urn:konbini-ld:graph:data", "urn:konbini-ld:graph:history")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), max_size=300, unique=True))
def test_a_filter_never_forgets_what_was_added(items: list[str]) -> None:
    held = MaybeHeld(complete=True)
    held.update(items)
    assert all(item in held for item in items)


def test_a_filter_grows_in_layers_and_stays_mostly_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MaybeHeld, "FIRST", 1000)
    held = MaybeHeld(complete=True)
    added = [f"https://www.tiktok.com/@creator.{i}" for i in range(20_000)]
    held.update(added)
    assert all(a in held for a in added)
    assert held.nbytes < 20_000 * 4  # two bytes a slot of layers that double: a few bytes an entity, not hundreds
    wrong = sum(f"https://www.tiktok.com/music/never-{i}" in held for i in range(10_000))
    assert wrong < 500  # a false "may hold" only costs a read


def test_an_incomplete_filter_says_every_entity_may_be_held() -> None:
    held = MaybeHeld(complete=False)
    held.add("a")
    assert "anything" in held and "a" in held


def test_written_keeps_the_most_recently_written_of_a_full_bucket() -> None:
    written = Written(slots=4)  # one bucket of four
    for i, entity in enumerate("abcd"):
        written.set_states({entity: (i + 1, i + 11, frozenset({"p"}))})
    written.set_time("a", "2026-11-25T10:00:00.000Z")  # a write: now the most recent
    written.set_states({"e": (5, 15, frozenset())})
    assert written.state("b") is None  # the least recently used went
    assert [written.state(k) for k in "acde"] == [(1, 11, frozenset({"p"})), (3, 13, frozenset({"p"})),
                                                  (4, 14, frozenset({"p"})), (5, 15, frozenset())]


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 64).map(lambda n: 4 * n),
       st.lists(st.tuples(st.sampled_from(["state", "time", "drop", "forget"]), st.integers(0, 200),
                          st.integers(1, 2**62), st.integers(0, 3)), max_size=400))
def test_written_forgets_but_never_answers_wrong(slots: int, ops: list[tuple[str, int, int, int]]) -> None:
    """Against a plain dict: each answer is the last thing set for that entity, or nothing; and
    while the table is not full, nothing is forgotten."""
    sets = [frozenset(), frozenset({"a"}), frozenset({"a", "b"}), frozenset({"c"})]
    written, states, times = Written(slots=slots), {}, {}
    for op, k, value, s in ops:
        entity = f"<https://www.tiktok.com/@creator.{k}>"
        if op == "state":
            written.set_states({entity: (value, value // 7, sets[s])})
            states[entity] = (value, value // 7, sets[s])
        elif op == "time":
            at = f"20{10 + s}-0{1 + s}-1{s}T0{s}:{value % 60:02d}:00.{value % 1000:03d}Z"
            written.set_time(entity, at)
            times[entity] = at
        elif op == "drop":
            written.drop_state(entity)
            states.pop(entity, None)
        else:
            written.set_time(entity, None)
            times.pop(entity, None)
        for e in {entity, f"<https://www.tiktok.com/@creator.{value % 200}>"}:
            assert written.state(e) in (None, states.get(e))
            assert written.time(e) in (None, times.get(e))
    roomy = Written(slots=4096)
    for e, state in states.items():
        roomy.set_states({e: state})
    for e, at in times.items():
        roomy.set_time(e, at)
    assert all(roomy.state(e) == v for e, v in states.items())
    assert all(roomy.time(e) == v for e, v in times.items())
    with tempfile.TemporaryDirectory() as where:  # saved, it is taken back whole by the next writer
        path = Path(where) / "written.memo"
        for table in (written, roomy):
            table.save(path, 7)
            again = Written.taken(path, 7)
            assert not path.exists()  # (taken: from now on only that writer knows what it writes)
            for e in set(states) | set(times):
                assert (again.state(e), again.time(e)) == (table.state(e), table.time(e))


def test_written_is_nine_tenths_full_before_it_doubles() -> None:
    # an entity whose two buckets are full moves one of their entries to its other bucket first:
    # doubling when both are full would leave the table half empty (twice the memory)
    written = Written()
    entities = [f"<https://www.tiktok.com/@creator.{i % 900}/video/{7_600_000_000_000_000_000 + i}>"
                for i in range(30_000)]
    written.set_states({e: (i + 1, i + 2, frozenset({"p"})) for i, e in enumerate(entities)})
    assert written.nbytes == 36 * 32_768  # 92 % full (without moving entries: 65,536 slots at 46 %)
    assert all(written.state(e) == (i + 1, i + 2, frozenset({"p"})) for i, e in enumerate(entities))


def test_written_costs_tens_of_bytes_an_entity_and_keeps_times_it_can_spell() -> None:
    written = Written(slots=1 << 18)
    entities = [f"<https://www.tiktok.com/@creator.{i}>" for i in range(150_000)]
    written.set_states({e: (i + 1, i + 2, frozenset({"p"})) for i, e in enumerate(entities)})
    assert written.nbytes <= 36 * (1 << 18)  # (the doubling stops at its size)
    kept = sum(written.state(e) is not None for e in entities)
    assert kept > 0.97 * len(entities)  # at a load of 57%, four slots a bucket rarely overflow
    written.set_time(entities[0], "2026-11-25T10:00:00.250Z")
    assert written.time(entities[0]) == "2026-11-25T10:00:00.250Z"
    for odd in ("1969-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z", "2026-11-25T10:00:00Z"):
        written.set_time(entities[1], odd)
        assert written.time(entities[1]) is None  # not spelled by konbini-ld or out of range: read


def _graphs(store: Any) -> dict[str, set[str]]:
    return {g: {str(q) for q in store.engine.iter_quads(ox.NamedNode(g))} for g in GRAPHS}


def test_a_writer_that_forgets_almost_everything_writes_the_same_store(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Out-of-order observations in small batches, over three processes' worth of opens: with
    room for four entities and a tiny filter, the graphs equal those of the default memory."""
    lines = list(corpus_lines(40, observations=3))
    random.Random(7).shuffle(lines)
    parts = [tmp_path / f"part{i}.jsonl" for i in range(3)]
    for i, part in enumerate(parts):
        part.write_text("".join(lines[i::3]))

    def load(where: Path) -> dict[str, set[str]]:
        for part in parts:  # each part from a fresh open: the later ones find a store that is not empty
            with open_store(where) as store:
                store.load([part], batch_size=7)
        with open_store(where, read_only=True) as store:
            return _graphs(store)

    roomy = load(tmp_path / "roomy")
    monkeypatch.setattr(memo, "WRITTEN_SLOTS", 4)
    monkeypatch.setattr(MaybeHeld, "FIRST", 4)
    tight = load(tmp_path / "tight")
    assert tight == roomy
    assert len(roomy["urn:konbini-ld:graph:history"]) > 400


def test_what_a_writer_wrote_is_not_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Responses observed again unchanged, in the same process: no entity's values or times are
    read from the store, unless the table has forgotten them (then they are, and the store is the same)."""
    source = tmp_path / "c.jsonl"
    source.write_text("".join(corpus_lines(60)))

    def reads(where: Path) -> list[tuple[str, int, bool]]:
        with open_store(where) as store:
            store.load([source], observed_at="2026-11-01T00:00:00Z")
            calls: list[tuple[str, int, bool]] = []
            read = store.engine.quads_for_subjects

            def counted(subjects: Any, graph: Any, predicates: Any = None) -> Any:
                subjects = list(subjects)
                calls.append((graph.value, len(subjects), predicates is not None))
                return read(subjects, graph, predicates)

            monkeypatch.setattr(store.engine, "quads_for_subjects", counted)
            assert store.load([source], observed_at="2026-11-02T00:00:00Z").loaded == 60
        return calls

    roomy = reads(tmp_path / "roomy")
    assert not [c for c in roomy if c[0] == GRAPHS[0] or c[2]]  # neither values nor times
    monkeypatch.setattr(memo, "WRITTEN_SLOTS", 4)
    tight = reads(tmp_path / "tight")
    assert [c for c in tight if c[0] == GRAPHS[0]] and [c for c in tight if c[2]]
    with open_store(tmp_path / "roomy", read_only=True) as a, open_store(tmp_path / "tight", read_only=True) as b:
        assert _graphs(a) == _graphs(b)


def memo_native_glibc() -> bool:
    from konbini_ld.engines import native_memory

    return bool(native_memory._glibc())


NATIVE_PROBE = r"""
import ctypes, json, sys
from konbini_ld.engines import native_memory

def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) // 1024

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
tuned = native_memory.tune() if sys.argv[1] == "tuned" else False
start = anon()
# a native library's pattern: one large buffer freed (glibc then raises its mapping threshold),
# 400 buffers of 300 KiB, each followed by a small allocation that is kept, then the buffers
# freed (the kept ones sit between them: nothing can be returned by shrinking the heap)
libc.free(libc.malloc(4 << 20))
blocks, kept = [], []
for _ in range(400):
    blocks.append(libc.malloc(300 * 1024))
    kept.append(libc.malloc(1024))
for b in blocks:
    ctypes.memset(b, 1, 300 * 1024)
for b in blocks:
    libc.free(b)
if tuned:
    native_memory.give_back()
print(json.dumps({"tuned": tuned, "start": start, "after": anon()}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists() or not memo_native_glibc(), reason="glibc on Linux only")
def test_native_memory_freed_by_a_library_goes_back_to_the_system() -> None:
    import json
    import subprocess
    import sys

    def run(mode: str) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-c", NATIVE_PROBE, mode], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    tuned = run("tuned")
    assert tuned["tuned"]
    assert tuned["after"] - tuned["start"] < 30  # 117 MiB was written and freed: it went back
    plain = run("plain")  # glibc's defaults keep it
    assert plain["after"] - plain["start"] > 80


def test_a_saved_table_is_taken_only_for_the_graph_it_was_saved_for_and_only_whole(tmp_path: Path) -> None:
    """The next writer takes the table back only if the graph is where it was when it was saved,
    and the file is whole: any other file (another position, cut, flipped, not one at all) gives
    an empty table, and is removed, so what it says never outlives a writer that did not save."""
    path = tmp_path / "written.memo"
    written = Written(slots=64)
    written.set_states({"<urn:a>": (3, 4, frozenset({"<urn:p>"}))})
    written.set_time("<urn:a>", "2026-11-25T10:00:00.000Z")
    written.save(path, 12)
    good = path.read_bytes()
    assert Written.taken(path, 12).state("<urn:a>") == (3, 4, frozenset({"<urn:p>"}))
    damaged = [good[:-1], good[: len(good) // 2], good[:30] + bytes([good[30] ^ 1]) + good[31:],
               good[:-9] + bytes([good[-9] ^ 0x40]) + good[-8:], b"", b"not a table", good.replace(b'"stamp": 12', b'"stamp": 13')]
    for stamp, data in [(13, good), (None, good)] + [(12, d) for d in damaged]:
        path.write_bytes(data)
        taken = Written.taken(path, stamp)
        assert taken.state("<urn:a>") is None and taken.time("<urn:a>") is None, data[:60]
        assert not path.exists()
    assert Written.taken(path, 12).state("<urn:a>") is None  # (no file: an empty table)


def _workload_days(tmp_path: Path, days: int) -> list[Path]:
    from konbini_ld.sources.konbini.corpus import workload_lines

    paths = []
    for day in range(days):
        path = tmp_path / f"day{day}.jsonl"
        path.write_text("".join(workload_lines(12, day)), encoding="utf-8")
        paths.append(path)
    return paths


def test_a_refresh_in_a_new_process_reads_only_the_counters_and_writes_the_same_graph(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A collector's days (audios with their pages of videos, counters growing), one writer each:
    each writer takes back what the one before it wrote, so a refresh reads the counters of the
    entities whose counters alone changed, not all they hold, and the graph is the same quad for
    quad as when every writer reads everything."""
    from konbini_ld.engines.oxigraph import OxigraphEngine
    from konbini_ld.store.store import MEMO_FILE

    read: list[int] = []
    real = OxigraphEngine.quads_for_subjects

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        for q in real(self, *args, **kwargs):
            read[-1] += 1
            yield q

    monkeypatch.setattr(OxigraphEngine, "quads_for_subjects", counting)
    days = _workload_days(tmp_path, 3)
    dumps, reads = [], []
    for remembered in (True, False):
        where = tmp_path / f"store-{remembered}"
        day_reads = []
        for path in days:
            if not remembered:
                (where / MEMO_FILE).unlink(missing_ok=True)
            read.append(0)
            with open_store(where) as store:
                assert store.load(path).loaded == 24
            day_reads.append(read[-1])
            assert (where / MEMO_FILE).exists()
        reads.append(day_reads)
        with open_store(where, read_only=True) as store:
            dumps.append(sorted(str(q) for q in store.engine.store))  # type: ignore[attr-defined]
    assert dumps[0] == dumps[1]
    assert reads[1][1] > 0 and reads[0][1] * 3 < reads[1][1], reads  # (day 1 reads nothing: all is new)
    assert reads[0][2] * 3 < reads[1][2], reads


def test_a_counter_group_of_no_lines_does_not_make_an_entity_counters_only() -> None:
    """What a writer remembers decides which entities are read for their counters alone: one whose
    only counter group holds no line has no counter to write, so it is planned whole."""
    from konbini_ld.engines.oxigraph import OxigraphEngine
    from konbini_ld.store.memo import digest
    from konbini_ld.store.upsert import Planner

    graph = ox.NamedNode(GRAPHS[0])
    entity = "<https://www.tiktok.com/music/a-1>"
    name, videos = "<https://www.w3.org/ns/activitystreams#name>", "<https://konbiniapi.com/ns/social#videoCount>"
    named = f'{entity} {name} "x" .\n'
    counted = f'{entity} {videos} "5"^^<http://www.w3.org/2001/XMLSchema#integer> .\n'
    engine = OxigraphEngine(None)
    engine.apply([], {graph: [named, counted]})
    seen = Written()
    stable = digest("\x00".join([entity, named]))
    seen.set_states({entity: (digest("\x00".join([entity, named]) + "\x01" + counted), stable,
                              frozenset({name, videos}))})
    planner = Planner(graph, {entity}, seen)
    planner.add({(entity, name): [named], (entity, videos): []}, "2026-01-02T00:00:00.000Z")
    deletes, inserts = planner.plan(engine)
    assert [str(q.predicate) for q in deletes] == [videos] and inserts == []
    assert set(planner.final) == {(entity, name), (entity, videos)}  # planned whole, not its counters alone


_ENTITIES = [f"<https://www.tiktok.com/music/a-{i}>" for i in range(3)]
_PROPS = ["<https://www.w3.org/ns/activitystreams#name>", "<https://www.w3.org/ns/activitystreams#content>",
          "<https://konbiniapi.com/ns/social#videoCount>", "<https://konbiniapi.com/ns/social#likeCount>"]
_response = st.dictionaries(
    st.tuples(st.sampled_from(_ENTITIES), st.sampled_from(_PROPS)),
    st.lists(st.sampled_from(["1", "2", "x"]), max_size=2, unique=True), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_response, min_size=1, max_size=4), min_size=1, max_size=4))
def test_digests_worked_out_by_the_preparing_processes_plan_what_the_writer_would(
        batches: list[list[dict[tuple[str, str], list[str]]]]) -> None:
    """Workers work out each entity's digests beside its groups: the writer takes those of an
    entity only one response of its batch holds, so batch after batch the plans, the graph and
    what the writer remembers are those of a writer that works them all out itself (an entity in
    two responses of a batch included)."""
    from konbini_ld.engines.oxigraph import OxigraphEngine
    from konbini_ld.store.upsert import Planner, entity_digests
    from konbini_ld.vocab import COUNTERS

    assert {p[1:-1] for p in _PROPS[2:]} <= COUNTERS
    graph = ox.NamedNode(GRAPHS[0])
    runs = []
    for given_digests in (True, False):
        engine, seen, plans = OxigraphEngine(None), Written(), []
        held: set[str] = set()
        for day, batch in enumerate(batches):
            planner = Planner(graph, held, seen)
            for response in batch:
                groups = {(e, p): [f'{e} {p} "{v}" .\n' for v in values] for (e, p), values in response.items()}
                planner.add(groups, f"2026-01-0{day + 1}T00:00:00.000Z",
                            entity_digests(groups) if given_digests else None)
            deletes, inserts = planner.plan(engine)
            engine.apply(deletes, {graph: inserts})
            planner.committed()
            plans.append((sorted(map(str, deletes)), sorted(inserts)))
        runs.append((plans, sorted(map(str, engine.store)), [seen.state(e) for e in _ENTITIES]))  # type: ignore[attr-defined]
    assert runs[0] == runs[1]
