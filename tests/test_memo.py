"""A writer's memory of its store is bounded, and what it forgets is read again, never assumed."""

from __future__ import annotations

import random
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
    assert held.nbytes < 20_000 * 3  # about two bytes an entity, not hundreds
    wrong = sum(f"https://www.tiktok.com/music/never-{i}" in held for i in range(10_000))
    assert wrong < 500  # a false "may hold" only costs a read


def test_an_incomplete_filter_says_every_entity_may_be_held() -> None:
    held = MaybeHeld(complete=False)
    held.add("a")
    assert "anything" in held and "a" in held


def test_written_keeps_the_most_recently_written_of_a_full_bucket() -> None:
    written = Written(slots=4)  # one bucket of four
    for i, entity in enumerate("abcd"):
        written.set_states({entity: (i + 1, frozenset({"p"}))})
    written.set_time("a", "2026-11-25T10:00:00.000Z")  # a write: now the most recent
    written.set_states({"e": (5, frozenset())})
    assert written.state("b") is None  # the least recently used went
    assert [written.state(k) for k in "acde"] == [(1, frozenset({"p"})), (3, frozenset({"p"})),
                                                  (4, frozenset({"p"})), (5, frozenset())]


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
            written.set_states({entity: (value, sets[s])})
            states[entity] = (value, sets[s])
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
    for e, (digest, props) in states.items():
        roomy.set_states({e: (digest, props)})
    for e, at in times.items():
        roomy.set_time(e, at)
    assert all(roomy.state(e) == v for e, v in states.items())
    assert all(roomy.time(e) == v for e, v in times.items())


def test_written_costs_tens_of_bytes_an_entity_and_keeps_times_it_can_spell() -> None:
    written = Written(slots=1 << 18)
    entities = [f"<https://www.tiktok.com/@creator.{i}>" for i in range(150_000)]
    written.set_states({e: (i + 1, frozenset({"p"})) for i, e in enumerate(entities)})
    assert written.nbytes <= 28 * (1 << 18)  # (the doubling stops at its size)
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
