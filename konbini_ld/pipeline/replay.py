"""Replay: what the archive holds and the graph does not (a kill between the two writes, answers a
full disk kept beside the archive) is applied when a store is opened for writing."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..model import LoadReport
from ..store.log import directory
from ..store.log.archive import Archive, Scan
from .ingest import Pipeline

__all__ = ["Replayable", "replay"]


class Replayable(Protocol):
    """What a replay needs of a store."""

    archive: Archive | None
    state_dir: Path | None
    pipeline: Pipeline

    def mark_applied(self, seq: int) -> None: ...


def replay(store: Replayable, *, recall: bool = True) -> LoadReport:
    """Apply archived responses the graph does not have yet. Damaged records and responses that
    cannot be written are reported and skipped: replay never bricks a store.

    :param recall: another process archived them (it was stopped): the rounds its runs took are
        read back from the history graph (:meth:`~konbini_ld.store.rounds.Rounds.recall`). This
        process's own stopped run (``False``): its writer remembers them.
    """
    archive = store.archive
    if archive is None:
        return LoadReport()
    archive.repair()
    archive.adopt()  # paid answers a full disk kept out of the archive
    applied = directory.read_applied(store.state_dir) if store.state_dir is not None else 0
    if archive.last_seq <= applied:
        return LoadReport()
    scan = Scan()
    writer = store.pipeline.writer
    if recall:  # (the run that archived them may have written points of their rounds)
        writer.recalling = _runs_end(archive, applied)
    try:
        report = store.pipeline.run(archive.records(after=applied, scan=scan), archive=False)
    finally:
        writer.recalling = None
    report.damage.extend(scan.damage)
    store.mark_applied(archive.last_seq)
    return report


def _runs_end(archive: Archive, applied: int) -> dict[str, str]:
    """Each run's latest observation among the records after ``applied``: the points a stopped
    run wrote are not later than its last answers (a load stamped later is not its)."""
    ends: dict[str, str] = {}
    for record in archive.records(after=applied, repair=False):
        response = record.response()
        if response.run is not None and response.observed_at is not None:
            ends[response.run] = max(ends.get(response.run, ""), response.observed_at)
    return ends
