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
from konbini_ld.store.memo import MaybeHeld, Recent

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


def test_recent_keeps_the_most_recently_used() -> None:
    recent: Recent[str, int] = Recent(3)
    for i, k in enumerate("abc"):
        recent[k] = i
    assert recent.recall("a") == 0  # now the most recent
    recent["d"] = 3
    assert list(recent) == ["c", "a", "d"]
    recent.update({"e": 4, "c": 5})
    assert list(recent) == ["d", "e", "c"] and len(recent) == 3
    assert recent.recall("b") is None


def _graphs(store: Any) -> dict[str, set[str]]:
    return {g: {str(q) for q in store.engine.iter_quads(ox.NamedNode(g))} for g in GRAPHS}


def test_a_writer_that_forgets_almost_everything_writes_the_same_store(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Out-of-order observations in small batches, over three processes' worth of opens: with
    room for three entities and a tiny filter, the graphs equal those of the default memory."""
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
    monkeypatch.setattr(memo, "RECENT", 3)
    monkeypatch.setattr(MaybeHeld, "FIRST", 4)
    tight = load(tmp_path / "tight")
    assert tight == roomy
    assert len(roomy["urn:konbini-ld:graph:history"]) > 400


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
