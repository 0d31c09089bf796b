"""``compact``: the graph rewritten in one bulk load, in place of the one many loads wrote.

What a user notices: the store takes less room, holds exactly the same quads, answers the same,
keeps loading as before (a reload is a no-op), and a failure on the way (a full disk, a kill)
leaves the graph as it was.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest
from click.testing import CliRunner
from helpers import SEED

from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.sources.konbini.corpus import workload_lines


def cli(store: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--store", str(store), *args], catch_exceptions=False)


def quads(store: Path) -> list[str]:
    view = ox.Store.read_only(str(store / "oxigraph"))
    try:
        return sorted(str(q) for q in view)
    finally:
        del view


def graph_bytes(store: Path) -> int:
    return sum(f.stat().st_size for f in (store / "oxigraph").iterdir() if f.is_file())


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three days of a collector's workload: 40 audios and their page of videos."""
    folder = tmp_path_factory.mktemp("days")
    files = []
    for day in range(3):
        path = folder / f"day{day}.jsonl"
        path.write_text("".join(workload_lines(40, day)))
        files.append(path)
    return files


def _daily(store: Path, days: list[Path]) -> None:
    for path in days:  # small batches: many loads, as a collector's runs leave them
        assert cli(store, "load", "--batch-size", "10", str(path)).exit_code == 0


def test_compact_keeps_every_quad_and_takes_less_room(tmp_path: Path, days: list[Path]) -> None:
    store = tmp_path / "store"
    _daily(store, days)
    before, size = quads(store), graph_bytes(store)
    top = cli(store, "query", "top-audios", "-f", "json").stdout
    r = cli(store, "compact")
    assert r.exit_code == 0, r.stderr
    assert f"rewrote {len(before):,} quads" in r.stderr
    assert quads(store) == before
    assert graph_bytes(store) < size
    assert cli(store, "query", "top-audios", "-f", "json").stdout == top
    assert not (store / "oxigraph.rebuild").exists() and not (store / "oxigraph.old").exists()
    # the store goes on as before: the same input again changes nothing, a new day loads
    r = cli(store, "-v", "load", str(days[-1]))
    assert r.exit_code == 0 and quads(store) == before, r.stderr
    assert cli(store, "load", str(SEED)).exit_code == 0 and len(quads(store)) > len(before)


def test_compact_from_the_library_returns_the_quads_and_is_quiet(tmp_path: Path, days: list[Path]) -> None:
    with open_store(tmp_path / "store") as store:
        store.load(days[0])
        held = len(store)
        assert store.repack() == held == len(store)
        assert list(store.run_named("top-audios").records())  # reads the new graph
        assert store.load(days[0]).loaded == 0  # the writer still knows what the graph holds


def test_answers_and_views_held_across_a_repack_read_on_and_the_store_stays_sound(tmp_path: Path,
                                                                                 days: list[Path]) -> None:
    """A notebook keeps a half-read answer and the rdflib view while it compacts: both read on,
    the new graph is not written to by the old one, and the store opens sound afterwards."""
    from konbini_ld.errors import StoreBusyError

    location = tmp_path / "store"
    _daily(location, days[:2])
    with open_store(location) as store:
        everything = "SELECT ?s ?p ?o WHERE { ?s ?p ?o } ORDER BY ?s ?p ?o"
        half_read = store.query(everything)
        rows = half_read.rows()
        first = [next(rows) for _ in range(5)]
        never_read = store.query(everything)
        view = store.graph
        before = len(view)
        held = len(store)
        assert store.repack() == held
        assert first + list(rows) == list(never_read.rows()) and len(first) + 0 < held
        assert len(view) == before and len(store.graph) == before  # the view reads the new graph
        assert store.load(days[2]).loaded > 0  # and the writer writes it
        after = len(store)
        raw = store.engine.store.quads_for_pattern(None, None, None, None)  # (bypasses the store)
        next(raw)
        with pytest.raises(StoreBusyError, match="still read by something in this process.*use the store again"):
            store.repack()
        with pytest.raises(StoreBusyError):  # (still held: still refused, as an error of ours)
            len(store)
        del raw
        grown = len(view)  # (day 3 loaded since `before`)
        assert len(store) == after and store.repack() == after  # refused: unchanged, and usable again
        assert grown > before and len(view) == grown  # the view still reads, from the new graph
        assert store.load(days[2]).loaded == 0
    assert len(quads(location)) == after
    assert cli(location, "stats").exit_code == 0


def test_compact_of_an_in_memory_or_remote_store_is_refused(tmp_path: Path) -> None:
    from konbini_ld.errors import StoreError

    with open_store(None) as store, pytest.raises(StoreError, match="store directory"):
        store.repack()
    r = cli(tmp_path / "none", "compact")
    assert r.exit_code != 0 and "Traceback" not in r.stderr
    r = CliRunner().invoke(main, ["--store", "http://127.0.0.1:9/sparql", "compact"])
    assert r.exit_code == 2 and "SPARQL server keeps its own" in r.stderr


def test_a_full_disk_during_compact_leaves_the_graph_as_it_was(tmp_path: Path, days: list[Path]) -> None:
    import resource

    store = tmp_path / "store"
    _daily(store, days)
    before = quads(store)
    limit = 200_000  # below the new graph's table file: its bulk load fails part way

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run([sys.executable, "-m", "konbini_ld", "--store", str(store), "compact"],
                       preexec_fn=full_disk, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "File too large" in r.stderr and "rewriting the graph" in r.stderr
    assert not (store / "oxigraph.rebuild").exists()
    assert quads(store) == before
    assert cli(store, "compact").exit_code == 0 and quads(store) == before


def test_a_kill_during_compact_leaves_the_graph_as_it_was(tmp_path: Path, days: list[Path]) -> None:
    store = tmp_path / "store"
    _daily(store, days)
    before = quads(store)
    proc = subprocess.Popen([sys.executable, "-m", "konbini_ld", "--store", str(store), "compact"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (store / "oxigraph.rebuild").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    with open_store(store) as writer:  # the next writer settles what the kill left
        assert len(writer) == len(before)
    assert quads(store) == before
    assert not (store / "oxigraph.rebuild").exists() and not (store / "oxigraph.old").exists()


def test_a_reader_beside_compact_reads_on(tmp_path: Path, days: list[Path]) -> None:
    store = tmp_path / "store"
    _daily(store, days)
    with open_store(store, read_only=True) as reader:
        first = list(reader.run_named("top-audios").records())
        assert cli(store, "compact").exit_code == 0
        assert list(reader.run_named("top-audios").records()) == first and first


def test_readers_opening_while_compact_swaps_graphs_never_see_a_damaged_or_missing_store(
        tmp_path: Path, days: list[Path]) -> None:
    """A dashboard opens the store read-only again and again while compact runs: the moment the
    new graph replaces the old one is never an error (files of both met in one open, or none)."""
    import threading

    location, day = tmp_path / "store", tmp_path / "day.jsonl"
    day.write_text("".join(workload_lines(6, 0)))
    with open_store(location) as store:
        store.load(day)
        stop, errors, opened = threading.Event(), [], [0]

        def reader() -> None:
            while not stop.is_set():
                try:
                    with open_store(location, read_only=True) as view:
                        assert len(view) == held
                    opened[0] += 1
                except Exception as exc:  # noqa: BLE001 - every failure is the finding
                    errors.append(f"{type(exc).__name__}: {exc}")

        held = len(store)
        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for _ in range(30):
                assert store.repack() == held
        finally:
            stop.set()
            thread.join()
    assert not errors and opened[0] > 30


def test_damage_met_while_copying_is_said_of_the_graph_and_nothing_is_replaced(tmp_path: Path,
                                                                               days: list[Path]) -> None:
    from konbini_ld.errors import StoreDamagedError

    class Damaged:  # the live graph, whose tables fail a checksum part way through the copy
        def __init__(self, real: Any) -> None:
            self.real = real

        def dump(self, output: Any, fmt: Any) -> None:
            output.write(b"<https://x.org/a> <https://x.org/b> <https://x.org/c> <https://x.org/g> .\n")
            raise OSError("Corruption: block checksum mismatch: stored = 1, computed = 2 in 000017.sst")

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    with open_store(tmp_path / "store") as store:
        store.load(days[0])
        before = len(store)
        store.engine.store = Damaged(store.engine.store)
        with pytest.raises(StoreDamagedError) as caught:
            store.repack()
        store.engine.store = store.engine.store.real
        assert f"{tmp_path / 'store' / 'oxigraph'} " in str(caught.value) and "oxigraph.rebuild" not in str(caught.value)
        assert not (tmp_path / "store" / "oxigraph.rebuild").exists() and len(store) == before


def test_a_stray_file_in_place_of_the_copy_is_tidied_and_compact_works(tmp_path: Path, days: list[Path]) -> None:
    store = tmp_path / "store"
    _daily(store, days[:1])
    before = quads(store)
    (store / "oxigraph.rebuild").write_text("left by something else")
    r = subprocess.run([sys.executable, "-m", "konbini_ld", "--store", str(store), "compact"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "Exception" not in r.stderr, r.stderr
    assert quads(store) == before and not (store / "oxigraph.rebuild").exists()


def test_a_graph_linked_from_another_disk_is_not_replaced_by_compact_or_rebuild(tmp_path: Path,
                                                                                days: list[Path]) -> None:
    """A user who put oxigraph/ on a bigger disk behind a link keeps it there: both commands say
    what to do instead of moving the graph into the store directory and leaving the old one."""
    store = tmp_path / "store"
    _daily(store, days[:1])
    elsewhere = tmp_path / "bigdisk" / "oxigraph"
    elsewhere.parent.mkdir()
    (store / "oxigraph").rename(elsewhere)
    (store / "oxigraph").symlink_to(elsewhere)
    before = quads(store)
    for command in ("compact", "rebuild"):
        r = CliRunner().invoke(main, ["--store", str(store), command])
        assert r.exit_code != 0 and "is a link" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert (store / "oxigraph").is_symlink() and quads(store) == before
    assert not (store / "oxigraph.rebuild").exists()
    assert cli(store, "stats").exit_code == 0


def _left_between_renames(store: Path) -> None:
    """The store as a swap killed between its two renames leaves it: past the commit point, the
    old graph moved aside, the new one not yet in place."""
    import json
    import shutil

    shutil.copytree(store / "oxigraph", store / "oxigraph.rebuild")
    applied = json.loads((store / "state.json").read_text())["applied_seq"]
    (store / "REBUILD").write_text(json.dumps({"applied_seq": applied}))
    (store / "oxigraph").rename(store / "oxigraph.old")


def test_a_swap_cut_between_its_renames_is_finished_by_the_next_reader(tmp_path: Path, days: list[Path]) -> None:
    """A kill (or a stalled writer) between moving the old graph aside and the new one in: a
    reader finishes the switch (or waits for the writer to) instead of calling the graph lost."""
    import threading

    from konbini_ld.store.log.lock import WriterLock

    store = tmp_path / "store"
    _daily(store, days[:1])
    before = quads(store)
    _left_between_renames(store)
    with open_store(store, read_only=True) as reader:  # (the writer died: nobody holds the store)
        assert len(reader) == len(before)
    assert quads(store) == before and not (store / "REBUILD").exists() and not (store / "oxigraph.old").exists()

    _left_between_renames(store)
    writer = WriterLock.take(store)  # a writer alive, stalled between its renames

    def finish() -> None:
        time.sleep(0.5)
        (store / "oxigraph.rebuild").rename(store / "oxigraph")
        writer.release()

    thread = threading.Thread(target=finish)
    thread.start()
    r = cli(store, "query", "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }", "--format", "csv")
    thread.join()
    assert r.exit_code == 0 and r.stdout.splitlines()[1] == str(len(before)), r.stderr


def test_a_closed_store_writes_nothing_more(tmp_path: Path, days: list[Path]) -> None:
    """A store object used after close (a notebook cell run again) must not write the directory
    another process may hold by then: no rebuild, no repack, no load."""
    from konbini_ld.errors import StoreError

    location = tmp_path / "store"
    _daily(location, days[:1])
    store = open_store(location)
    store.close()
    before = quads(location)
    for call in (store.rebuild, store.repack, lambda: store.load(days[1])):
        with pytest.raises(StoreError, match="closed"):
            call()
    assert quads(location) == before and not (location / "oxigraph.rebuild").exists()


def test_a_reader_that_may_not_write_reads_a_swap_cut_between_its_renames(tmp_path: Path, days: list[Path]) -> None:
    import os
    import shutil

    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs setpriv and root, to drop the right to write others' files")
    store = tmp_path / "store"
    _daily(store, days[:1])
    held = len(quads(store))
    _left_between_renames(store)
    dropped = "-dac_override,-dac_read_search,-fowner"
    script = "import sys; from konbini_ld import open_store; s = open_store(sys.argv[1], read_only=True); print(len(s))"
    (store / "writer.lock").chmod(0o444)
    store.chmod(0o555)
    try:
        r = subprocess.run([setpriv, f"--inh-caps={dropped}", f"--bounding-set={dropped}", sys.executable, "-c", script,
                            str(store)], capture_output=True, text=True, timeout=120)
    finally:
        store.chmod(0o755)
        (store / "writer.lock").chmod(0o644)
    assert r.returncode == 0 and r.stdout.strip() == str(held), r.stderr
    assert (store / "REBUILD").exists()  # (left for the next writer to finish)
