"""The store users open: :class:`~konbini_ld.store.store.Store` with the verbs that make data flow
into it (load, ingest, replay, rebuild), through the one pipeline (:mod:`.ingest`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from ..model import LedgerEntry, LoadReport, Observation, Response
from ..sources.files import Source, iter_sources
from ..store.log import directory
from ..store.log.archive import ArchiveRecord
from ..store.store import Location, Store
from .ingest import DEFAULT_BATCH, DEFAULT_BATCH_BYTES, Pipeline, observed

__all__ = ["KonbiniStore", "open_store", "rebuild_store"]

log = logging.getLogger(__name__)

Progress = Callable[[int], None] | None


class KonbiniStore(Store):
    """A konbini-ld graph on disk, in memory, or on a SPARQL server, with its archive.

    Open one with :func:`open_store`; use it as a context manager to release the writer's
    lock when done. Opening it for writing replays what the archive holds and the graph does
    not (:attr:`recovered` says what).

    :param location: a directory; the query endpoint URL of a SPARQL 1.1 server; or ``None``
        for a throwaway in-memory store without archive.
    :param read_only: open without taking the writer's lock (queries, exports, ``serve``).
    :param archive: directory of the archive and state (default: inside a store directory;
        none for a remote store unless given).
    :param update_url: a remote store's SPARQL update endpoint (derived for known servers).
    :param gsp_url: a remote store's Graph Store endpoint (derived for known servers; ``"none"``
        for a server without the Graph Store Protocol).
    :param remote_timeout: seconds each request to a remote store may take, start to last byte
        (default 60).
    """

    def __init__(self, location: Location = None, *, read_only: bool = False, archive: Location = None,
                 update_url: str | None = None, gsp_url: str | None = None, remote_timeout: float | None = None,
                 _rebuilding: bool = False) -> None:
        super().__init__(location, read_only=read_only, archive=archive, update_url=update_url, gsp_url=gsp_url,
                         remote_timeout=remote_timeout, _rebuilding=_rebuilding)
        self.pipeline = Pipeline(self.archive, self.writer)
        #: what opening the store replayed from the archive (responses a kill left unapplied)
        self.recovered = LoadReport()
        if not read_only and not _rebuilding:
            try:
                self.recovered = self.recover()
                self._older_history_layout()
            except BaseException:
                self.close()
                raise

    def _older_history_layout(self) -> None:
        """Say so when the history graph was written by an older version (one node per counter):
        ``rebuild`` re-derives it from the archive in this version's layout."""
        from ..engines.base import Engine
        from ..vocab import HISTORY_GRAPH, SOSA

        engine: Engine = self.engine
        older = engine.query(f"ASK {{ GRAPH <{HISTORY_GRAPH}> {{ ?p <{SOSA}observedProperty> ?c }} }}", union=False)
        if bool(older):
            log.warning("the history graph at %s is in an older layout (one node per counter): `konbini-ld "
                        "rebuild` re-derives it from the archive in this version's (no credits are spent); until "
                        "then `history`, `trending` and `rising-creators` do not see the older points",
                        self.location or self.engine.description)

    def recover(self, *, recall: bool = True) -> LoadReport:
        """Apply archived responses the graph does not have yet (after a crash or a kill).

        :param recall: they were archived by another process (``False``: by this one, whose
            writer remembers what its stopped run wrote)."""
        from .replay import replay

        return replay(self, recall=recall)

    def catch_up(self) -> LoadReport:
        """Apply what an earlier run of this process archived and did not write (it was stopped:
        Ctrl-C, a deadline, a failed write) before anything newer: :meth:`load`, :meth:`ingest`
        and :func:`~konbini_ld.pipeline.fetch.fetch` do this first, as opening the store does.
        What it applies is added to :attr:`recovered`."""
        if self._closed:
            self._writable()  # (refused as any write to it)
        if self.read_only or self.archive is None or self.state_dir is None:
            return LoadReport()  # (a read-only store's writes are refused where they are asked for)
        if self.archive.last_seq <= directory.read_applied(self.state_dir) and not self.archive.spilled():
            return LoadReport()
        report = self.recover(recall=False)  # (every answer archived before this process opened it is applied)
        if report.loaded or report.failed:
            log.info("applied %d archived responses an earlier run left unwritten", report.loaded)
        for damage in report.damage:  # (a long-running process hears of it where it can)
            log.warning("the archive is damaged: %s", damage)
        self.recovered.merge(report)
        return report

    def unapplied_ledger(self) -> dict[str, LedgerEntry]:
        """What the answers archived and not yet in the graph bought (a stopped run's: the next
        write applies them first), as :meth:`fetch_ledger` says it; read, nothing written (a dry
        run counts them as bought)."""
        from ..mapping.prepare import prepare

        if self.archive is None or self.state_dir is None:
            return {}
        applied = directory.read_applied(self.state_dir)
        if self.archive.last_seq <= applied:
            return {}
        latest: dict[str, LedgerEntry] = {}
        for record in self.archive.records(after=applied, repair=False):
            response = record.response()
            if response.key is None or response.note is not None or not record.replayable:
                continue
            o = prepare(response, shape_cache=self.pipeline.templates)
            latest[response.key] = LedgerEntry(response.status or 200, o.next_cursor, response.observed_at)
        return latest

    def load(self, sources: Iterable[Source] | Source, *, batch_size: int = DEFAULT_BATCH,
             batch_bytes: int | None = DEFAULT_BATCH_BYTES, progress: Progress = None,
             observed_at: datetime | str | None = None, workers: int | None = None) -> LoadReport:
        """Ingest saved responses: paths to JSON or JSON Lines files, open streams, ``"-"`` or
        :data:`sys.stdin`, or responses as dicts (with or without the ``{"data": …}`` envelope).

        Standard input is read only when given. Bad items are reported in
        :attr:`LoadReport.failed`; good items in the same run still load.

        :param batch_size: responses one write to the graph takes at most.
        :param batch_bytes: response text one write takes at most (``None``: no bound but the
            count); what a load holds in memory follows it, whatever the kind of response.
        :param workers: processes preparing responses beside the writer (``None``: one per CPU
            beyond two; ``0``: none).
        :param observed_at: when the responses were observed (an aware ``datetime``, or ISO 8601
            text; without a zone, UTC); else a recorded exchange's ``Date`` header, else the time
            this load started. Each property shows its newest observation, in any load order.

        >>> with open_store(None) as store:
        ...     store.load({"data": {"type": "Audio", "id": "https://www.tiktok.com/music/a-1"}}).loaded
        1
        """
        return self.ingest(iter_sources(sources), batch_size=batch_size, batch_bytes=batch_bytes, progress=progress,
                           observed_at=observed_at, workers=workers)

    def ingest(self, responses: Iterable[Response | Any], *, batch_size: int = DEFAULT_BATCH,
               batch_bytes: int | None = DEFAULT_BATCH_BYTES, archive_failed: bool = False, progress: Progress = None, workers: int | None = None,
               observed_at: datetime | str | None = None) -> LoadReport:
        """Ingest raw :class:`~konbini_ld.model.Response` objects through the pipeline (prepare, archive, apply).

        :param archive_failed: archive responses even when they cannot be mapped (paid-for API
            responses), so that ``rebuild`` can recover them later.
        :param workers: preparing processes (``None``: one per CPU beyond two; ``0``: none).
        :param observed_at: when they were observed (see :meth:`load`).
        """
        self._writable()
        self.catch_up()  # (answers a stopped run left archived go first: the archive's order)
        # without a time, one for the whole run (a recorded Date still says otherwise)
        responses = observed(responses, observed_at or datetime.now(UTC), given=observed_at is not None)
        return self.pipeline.run(responses, archive=True, archive_failed=archive_failed, batch_size=batch_size,
                                 batch_bytes=batch_bytes, progress=progress, workers=workers)

    def archive_responses(self, responses: Sequence[Response]) -> list[ArchiveRecord]:
        """Durably append raw responses to the archive, before they reach the graph (``fetch``)."""
        return self.append(responses)

    def apply_archived(self, records: Sequence[ArchiveRecord]) -> LoadReport:
        """Map and upsert responses already archived as ``records``."""
        self._writable()
        return self.pipeline.apply_records(records)

    def apply_prepared(self, observations: list[Observation], seq: int | None, *, behind: bool = False,
                       before_write: Callable[[], None] | None = None) -> LoadReport:
        """Upsert observations of archived records, prepared already (up to archive position ``seq``).

        :param behind: return once the write has started (the next batch is prepared meanwhile);
            :meth:`settle_writes` waits for it.
        :param before_write: called once the batch is planned, before anything is written (``fetch``
            settles the batch written behind there: its errors are that batch's own).
        """
        self._writable()
        return self.pipeline.apply_prepared(observations, seq, behind=behind, before_write=before_write)

    def settle_writes(self) -> LoadReport:
        """Wait for a write :meth:`apply_prepared` left behind (raising its error): what it
        changed of that batch's report (a batch the store rejected, written again response by response)."""
        return self.pipeline.settle()

    def rebuild(self, *, progress: Progress = None, accept_damage: bool = False) -> LoadReport:
        """Re-derive the graph from the archive (after a mapping change, or to recover a damaged store).

        Every archived response is mapped again, with its original time, into a new graph (and
        text index) that replaces the live one only when complete.

        :param accept_damage: rebuild from the readable records of a damaged archive.
        :raises ArchiveDamageError: the archive does not read back whole (nothing is changed).
        :raises StoreError: on a remote store, it holds observations this archive did not
            record (someone else's data, which a rebuild would delete).
        """
        from .rebuild import rebuild

        self._writable()
        return rebuild(self, progress=progress, accept_damage=accept_damage)


def open_store(location: Location, *, read_only: bool = False, archive: Location = None,
               update_url: str | None = None, gsp_url: str | None = None,
               remote_timeout: float | None = None) -> KonbiniStore:
    """Open (creating if needed) the store at ``location``: a directory path; the query endpoint
    URL of a SPARQL 1.1 server (``http://host:7878/query``); or ``None`` for a throwaway
    in-memory store. The other parameters are :class:`KonbiniStore`'s.

    :raises StoreError: the store cannot be opened (being written by another process, damaged…).
    """
    return KonbiniStore(location, read_only=read_only, archive=archive, update_url=update_url, gsp_url=gsp_url,
                        remote_timeout=remote_timeout)


def rebuild_store(location: str | os.PathLike[str], *, archive: str | os.PathLike[str] | None = None,
                  update_url: str | None = None, gsp_url: str | None = None, remote_timeout: float | None = None,
                  accept_damage: bool = False, progress: Progress = None) -> LoadReport:
    """Re-derive the graph at ``location`` from its archive (see :meth:`KonbiniStore.rebuild`).

    Unlike opening the store, this works when its graph is damaged or missing, or its
    ``state.json`` is: the graph is rebuilt beside the old one and replaces it.
    """
    with KonbiniStore(location, archive=archive, update_url=update_url, gsp_url=gsp_url, remote_timeout=remote_timeout,
                      _rebuilding=True) as store:
        return store.rebuild(progress=progress, accept_damage=accept_damage)
