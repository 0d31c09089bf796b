"""Faults at small scale: kills, damaged archives and stores, records the store cannot take.

``bench/faults.py`` runs the same injections at scale and prints a table.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import SEED, kill_mid_work, writing

from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.errors import StoreError
from konbini_ld.sources.konbini.corpus import corpus_lines
from konbini_ld.store.log.archive import Archive, ArchiveRecord
from konbini_ld.store.log.archive_format import member as _member


def cli(store: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--store", str(store), *args], catch_exceptions=False)


def audios(store: Path) -> int:
    r = cli(store, "stats", "--json")
    assert r.exit_code == 0, r.stderr
    return int(json.loads(r.stdout)["audios"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus_file(tmp_path_factory)


def corpus_file(factory: pytest.TempPathFactory) -> Path:
    """1,500 responses, one a line (each module that needs them writes its own)."""
    path = factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(line.rstrip("\n") + "\n" for line in corpus_lines(1500)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    store = tmp_path_factory.mktemp("loaded") / "store"
    assert cli(store, "load", str(corpus)).exit_code == 0
    return store


@pytest.fixture
def copy(loaded: Path, tmp_path: Path) -> Path:
    target = tmp_path / "store"
    shutil.copytree(loaded, target)
    return target


def segment(store: Path) -> Path:
    return sorted((store / "archive").glob("*.jsonl.gz"))[0]


# -- kills ----------------------------------------------------------------------------


def _spawn(store: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "konbini_ld", "--store", str(store), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)


def test_a_rebuild_killed_at_random_points_never_loses_the_graph(copy: Path) -> None:
    rng = random.Random(8)
    for _ in range(4):
        proc = _spawn(copy, "rebuild")
        kill_mid_work(proc, writing(copy, proc), rng.uniform(0.1, 1.5), what="rebuild")
        # the next writer finds either the old graph or the rebuilt one, never a partial one
        r = cli(copy, "load", str(SEED))
        assert r.exit_code == 0, r.stderr
        assert audios(copy) == 1501
    assert not (copy / "oxigraph.rebuild").exists()


def test_a_rebuild_killed_after_its_commit_point_is_finished_by_the_next_open(copy: Path) -> None:
    from konbini_ld.store.log import directory as storedir

    before = audios(copy)
    # a complete rebuilt graph and the commit record, as a kill between them and the swap leaves them
    with open_store(copy) as store:
        store.engine.store.backup(str(copy / storedir.BUILDING))
    (copy / storedir.JOURNAL).write_text(json.dumps({"applied_seq": 1500}))
    assert audios(copy) == before  # readers are unaffected
    assert cli(copy, "load", str(SEED)).exit_code == 0
    assert not (copy / storedir.JOURNAL).exists() and not (copy / storedir.BUILDING).exists()
    assert audios(copy) == before + 1


def test_a_load_killed_at_random_points_converges(corpus: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    rng = random.Random(3)
    for _ in range(3):
        proc = _spawn(store, "load", str(corpus))
        kill_mid_work(proc, writing(store, proc), rng.uniform(0.05, 0.8), what="load")
    assert cli(store, "load", str(corpus)).exit_code == 0
    assert audios(store) == 1500
    r = cli(store, "rebuild")
    assert r.exit_code == 0 and audios(store) == 1500


# -- a record the store cannot take ------------------------------------------------------


def test_an_archived_record_that_cannot_be_mapped_never_bricks_the_store(copy: Path) -> None:
    """As an older version would have archived it: a response with a lone surrogate, not yet applied."""
    archive = Archive(copy / "archive")
    body = json.dumps({"data": {"type": "Audio", "id": "https://www.tiktok.com/music/x-1", "name": "\ud83d"}})
    archive.append([ArchiveRecord(0, at="2026-01-01T00:00:00Z", source="https://api.konbiniapi.com/v1/tiktok/audios/1",
                                  body=body, status=200, key="audio:1")])
    for args in (("load", str(SEED)), ("query", "top-audios"), ("stats",), ("export", "-f", "nt", "-o", os.devnull)):
        r = cli(copy, *args)
        assert r.exit_code == 0 and "Traceback" not in r.stderr, (args, r.stderr)
    r = cli(copy, "rebuild")
    assert r.exit_code == 1 and "lone surrogate" in r.stderr and "Traceback" not in r.stderr
    assert audios(copy) == 1501
    # it is remembered as bought, so a fetch does not pay for it again
    with open_store(copy) as store:
        assert "audio:1" in store.fetch_ledger()


def _defective_at_line_3(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mapping lets through, for the response on line 3, a line the store refuses (simulated:
    nothing real gets past the normaliser any more)."""
    import konbini_ld.mapping.prepare as mapping

    real = mapping.prepare

    def defective(response: Any, **kw: Any) -> Any:
        p = real(response, **kw)
        if p.ok and response.line == 3:
            key = next(iter(p.groups))
            p.groups[key] = p.groups[key] + ['<urn:x> <urn:p> "\ud800" .\n']
        return p

    monkeypatch.setattr(mapping, "prepare", defective)


def test_a_batch_the_store_rejects_costs_only_the_responses_at_fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mapping defect that lets through a line the store refuses (simulated: nothing real gets
    past the normaliser any more) costs that response, not its batch or the store."""
    _defective_at_line_3(monkeypatch)
    lines = [json.dumps({"data": {"type": "Audio", "id": f"https://www.tiktok.com/music/a-{i}", "name": "n"}})
             for i in range(10)]
    path = tmp_path / "ten.jsonl"
    path.write_text("\n".join(lines) + "\n")
    # ten archived responses the graph has not applied yet (a kill after archiving)
    Archive(tmp_path / "store" / "archive").append(
        [ArchiveRecord(0, at="2026-01-01T00:00:00Z", source=str(path), body=line, line=i + 1)
         for i, line in enumerate(lines)])
    with open_store(tmp_path / "store") as store:  # replays them, in one batch, through `defective`
        assert store.recovered.loaded == 9 and len(store.recovered.failed) == 1
        assert "refused its triples" in str(store.recovered.failed[0])
        assert store.stats().audios == 9


def test_points_a_rejected_batch_shared_with_the_next_are_still_written(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A creator seen only in the response at fault and in the next batch: the next batch still
    writes its counters' points (the rejected batch wrote none of them)."""
    _defective_at_line_3(monkeypatch)
    creator = {"type": "Person", "id": "https://www.tiktok.com/@shared", "followerCount": 42}
    lines = [json.dumps({"data": {"type": "Audio", "id": f"https://www.tiktok.com/music/a-{i}", "name": "n",
                                  **({"attributedTo": creator} if i in (2, 7) else {})}}) for i in range(10)]
    path = tmp_path / "ten.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with open_store(tmp_path / "store") as store:
        report = store.load([path], batch_size=5, observed_at="2026-11-01T00:00:00Z")
        assert report.loaded == 9 and len(report.failed) == 1
        rows = store.run_named("history", {"entity": creator["id"]}).records()
        assert [(r["counter"].rsplit("#")[-1], r["value"]) for r in rows] == [("followerCount", 42)]


# -- a damaged archive -----------------------------------------------------------------------


def _flip(path: Path, offset: int, n: int = 3) -> None:
    data = bytearray(path.read_bytes())
    for i in range(n):
        data[offset + i * 7] ^= 0x5A
    path.write_bytes(bytes(data))


def test_flipped_bytes_are_damage_not_a_torn_tail(copy: Path) -> None:
    seg = segment(copy)
    _flip(seg, seg.stat().st_size // 2)
    r = cli(copy, "rebuild")
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    assert f"archive {seg.name} at byte" in r.stderr and "--accept-damage" in r.stderr
    assert re.search(r"\b\d+ (records? )?lost\b", r.stderr)  # (one record when the flip hits a small block)
    assert audios(copy) == 1500  # nothing was changed
    r = cli(copy, "rebuild", "--accept-damage")
    assert r.exit_code == 0 and "warning: archive" in r.stderr
    scan = Archive(copy / "archive").verify()
    # every readable record, after the damage too: none lost when the flips hit only a member's
    # frame (its checksum and the next one's time stamp, whose records still read back)
    assert scan.damage and scan.lost <= 128 and audios(copy) == 1500 - scan.lost


def test_a_truncated_segment_is_reported_and_never_appended_behind(copy: Path) -> None:
    seg = segment(copy)
    with open(seg, "r+b") as fh:
        fh.truncate(seg.stat().st_size * 2 // 3)
    assert cli(copy, "load", str(SEED)).exit_code == 0
    segments = sorted((copy / "archive").glob("*.jsonl.gz"))
    assert len(segments) == 2  # the new record went to a new segment
    scan = Archive(copy / "archive").verify()
    assert scan.read == 1500 - scan.lost + 1 and scan.lost > 0
    assert [d.segment for d in scan.damage] == [seg.name]
    r = cli(copy, "rebuild")
    assert r.exit_code == 1 and re.search(r"\b\d+ records? lost\b", r.stderr)


def test_a_torn_tail_is_cut_silently_and_whole_unacknowledged_appends_are_kept(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    archive.append([ArchiveRecord(0, at="t", source="s", body="{}") for _ in range(5)])
    seg = sorted(tmp_path.glob("*.jsonl.gz"))[0]
    # a crash after two whole members were fsynced, before HEAD caught up, in the middle of a third
    whole = _member([ArchiveRecord(6, at="t", source="s", body="{}")]) + _member([ArchiveRecord(7, at="t", source="s", body="{}")])
    torn = _member([ArchiveRecord(8, at="t", source="s", body="{}")])
    with open(seg, "ab") as fh:
        fh.write(whole + torn[: len(torn) // 2])
    scan = Archive(tmp_path).verify()
    assert scan.damage == [] and scan.read == 7
    assert Archive(tmp_path).append([ArchiveRecord(0, at="t", source="s", body="{}")])[0].seq == 8


def test_a_missing_segment_is_damage(copy: Path) -> None:
    for i in range(2):
        cli(copy, "load", str(SEED))
    segments = sorted((copy / "archive").glob("*.jsonl.gz"))
    assert len(segments) == 1
    # split the archive in two segments by hand, then lose the first
    archive = Archive(copy / "archive")
    before = archive.last_seq
    head = json.loads((copy / "archive" / "HEAD").read_text())
    (copy / "archive" / "HEAD").write_text(json.dumps({**head, "segment": "none"}))
    archive.append([ArchiveRecord(0, at="t", source="s", body="{}")])
    segments[0].unlink()
    scan = Archive(copy / "archive").verify()
    assert scan.lost == before and scan.read == 1


# -- a damaged or missing store directory -------------------------------------------------------


def test_a_deleted_graph_beside_a_full_archive_says_how_to_recover(copy: Path) -> None:
    shutil.rmtree(copy / "oxigraph")
    for args in (("load", str(SEED)), ("stats",), ("query", "top-audios")):
        r = cli(copy, *args)
        assert r.exit_code == 1 and "konbini-ld rebuild" in r.stderr and "1500 responses" in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert cli(copy, "rebuild").exit_code == 0
    assert audios(copy) == 1500


@pytest.mark.parametrize("damage", ["CURRENT", "MANIFEST", "sst"])
def test_a_damaged_graph_says_how_to_recover_and_rebuild_recovers_it(copy: Path, damage: str) -> None:
    ox_dir = copy / "oxigraph"
    if damage == "CURRENT":
        (ox_dir / "CURRENT").write_text("garbage\n")
    elif damage == "MANIFEST":
        manifest = next(ox_dir.glob("MANIFEST-*"))
        manifest.write_bytes(manifest.read_bytes()[:20] + os.urandom(200))
    else:
        tables = list(ox_dir.glob("*.sst"))  # (all of them: one alone may be a table compacted away, not yet deleted)
        assert tables
        for table in tables:
            table.unlink()
    r = cli(copy, "load", str(SEED))
    assert r.exit_code == 1 and "damaged" in r.stderr and "konbini-ld rebuild" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = cli(copy, "rebuild")
    assert r.exit_code == 0, r.stderr
    assert audios(copy) == 1500


def test_a_damaged_state_file_has_a_way_out(copy: Path) -> None:
    (copy / "state.json").write_text("{not json")
    r = cli(copy, "load", str(SEED))
    assert r.exit_code == 1 and "state.json is damaged" in r.stderr and "konbini-ld rebuild" in r.stderr
    assert cli(copy, "rebuild").exit_code == 0
    assert cli(copy, "load", str(SEED)).exit_code == 0 and audios(copy) == 1501


def test_a_store_path_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        open_store(tmp_path / "f")


# -- a full disk (simulated with a file-size limit: writes past it fail as they would on a full disk) --


@pytest.mark.parametrize("limit", [150_000, 1_000_000])  # the archive or the log; a table file (.sst)
def test_a_full_disk_stops_load_cleanly_and_the_next_run_recovers(tmp_path: Path, limit: int) -> None:
    import resource

    store = tmp_path / "store"
    assert cli(store, "load", str(SEED)).exit_code == 0

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    big = tmp_path / "big.jsonl"  # three observations of each audio, a day apart (each one new)
    big.write_text("".join(line.rstrip("\n") + "\n" for line in corpus_lines(400, observations=3)))
    r = subprocess.run([sys.executable, "-m", "konbini_ld", "--store", str(store), "load", "--batch-size", "500",
                        str(big)], preexec_fn=full_disk, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "File too large" in r.stderr and "Traceback" not in r.stderr, r.stderr
    archived = Archive(store / "archive").verify()
    assert archived.damage == []  # a torn append is cut, never read as data
    r2 = cli(store, "load", str(SEED))
    assert r2.exit_code == 0 and "Traceback" not in r2.stderr
    # every response that reached the archive is in the graph (one audio per distinct body)
    def audio_of(body: str) -> str:
        value = json.loads(body)
        return (value.get("body") or value)["data"]["id"]

    assert audios(store) == len({audio_of(r.body) for r in Archive(store / "archive").records()})
    assert cli(store, "load", str(big)).exit_code == 0 and audios(store) == 401  # the same input, once more


def test_a_batch_planned_beside_a_write_then_rejected_is_planned_again(tmp_path: Path) -> None:
    """``fetch`` plans a batch while the one before is written. When that write is rejected and
    written again response by response, what the writer remembered of it no longer holds: the
    batch planned beside it (which skipped a creator "already written so") is planned again, and
    the creator the rejected response alone would have written is in the graph."""
    from konbini_ld.mapping.prepare import prepare
    from konbini_ld.model import Response

    creator = {"type": "Person", "id": "https://www.tiktok.com/@shared", "name": "Shared", "followerCount": 42}

    def observed(i: int, *, defective: bool = False) -> Any:
        body = json.dumps({"data": {"type": "Audio", "id": f"https://www.tiktok.com/music/a-{i}", "name": "n",
                                    "attributedTo": creator}})
        p = prepare(Response(body, "-", line=i, observed_at="2026-11-01T00:00:00Z", observed_given=True))
        if defective:  # (the creator's lines ride in a group the store refuses whole)
            key = next(k for k in p.groups if k[0] == f"<https://www.tiktok.com/music/a-{i}>")
            p.groups[key] = p.groups[key] + ['<urn:x> <urn:p> "\ud800" .\n']
        return p

    with open_store(tmp_path / "store") as store:
        first = store.apply_prepared([observed(1, defective=True)], None, behind=True)
        second = store.apply_prepared([observed(2)], None, behind=True, before_write=store.settle_writes)
        first.merge(store.settle_writes())
        assert second.loaded == 1
        names = store.query("SELECT ?n WHERE { <https://www.tiktok.com/@shared> "
                            "<https://www.w3.org/ns/activitystreams#name> ?n }")
        assert [r[0].value for r in list(names.rows())] == ["Shared"]


#: A process that loads an audio, then its page of videos, and dies (as by ``kill -9``) inside the
#: page's write: between its removes and its inserts (``mid``), or after its inserts (``late``).
_DIES_WRITING = """
import os, sys
from konbini_ld import open_store
from konbini_ld.engines import oxigraph

store_dir, audio, page, mode = sys.argv[1:]
with open_store(store_dir) as store:
    store.load([audio])
    real, calls = oxigraph.OxigraphEngine.apply, []

    def dying(self, deletes, inserts):
        calls.append(None)
        if mode == "mid" and len(calls) == 1:
            real(self, deletes, {})
            os._exit(9)
        if mode == "late" and len(calls) == 2:
            os._exit(9)
        return real(self, deletes, inserts)

    oxigraph.OxigraphEngine.apply = dying
    store.load([page])
"""


@pytest.mark.parametrize("mode", ["mid", "late"])
def test_a_write_cut_short_by_a_kill_is_made_whole_by_the_next_writer(tmp_path: Path, mode: str) -> None:
    """A batch's removes and inserts are not one transaction: a process killed between them
    leaves part of its write. The next writer replays the batch: the store is then what a
    rebuild of its archive gives (an audio's creator known only from the audio, not from the
    copy of it in its page, keeps the time it was observed at)."""
    from konbini_ld.sources.konbini.corpus import audio_id, audio_response, videos_page

    def exchange(name: str, url: str, body: Any, date: str) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps({"request": {"method": "GET", "url": url}, "status": 200,
                                    "headers": {"Date": date}, "body": body}))
        return path

    url = "https://api.konbiniapi.com/v1/tiktok/audios/" + audio_id(1)
    audio = exchange("audio.json", url, audio_response(1), "Sun, 01 Nov 2026 09:00:00 GMT")
    page = exchange("page.json", url + "/videos", videos_page(1), "Sun, 01 Nov 2026 09:00:01 GMT")
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-c", _DIES_WRITING, str(store), str(audio), str(page), mode],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    with open_store(store) as s:  # (replays the page)
        replayed = s.stats()
        times = s.query("SELECT ?e ?p ?t WHERE { GRAPH <urn:konbini-ld:graph:provenance> { ?e ?p ?t "
                        "FILTER(?p IN (<https://konbiniapi.com/ns/social#lastObservedAt>, "
                        "<https://konbiniapi.com/ns/social#propertyTimes>)) } }").records()
        s.rebuild()
        rebuilt = s.stats()
        rebuilt_times = s.query("SELECT ?e ?p ?t WHERE { GRAPH <urn:konbini-ld:graph:provenance> { ?e ?p ?t "
                                "FILTER(?p IN (<https://konbiniapi.com/ns/social#lastObservedAt>, "
                                "<https://konbiniapi.com/ns/social#propertyTimes>)) } }").records()
    assert replayed.responses == 2 and replayed.unapplied == 0
    key = lambda r: (r["e"], r["p"], str(r["t"]))  # noqa: E731
    assert sorted(times, key=key) == sorted(rebuilt_times, key=key)
    assert (replayed.triples, replayed.points) == (rebuilt.triples, rebuilt.points)
