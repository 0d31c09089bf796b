"""The one ingest pipeline: source → prepare → archive → apply.

``load`` feeds it responses read from files; ``fetch`` archives each answer as it
arrives and feeds it the archived records; opening a store after a crash, and
``rebuild``, feed it the archive itself. Every path goes through the same stages:

* **prepare** (:mod:`konbini_ld.mapping.prepare`): each response becomes an
  :class:`~konbini_ld.model.Observation` (worker processes a batch ahead where the
  machine has the cores; shape templates unless told to run plain pyld);
* **archive** (:mod:`.archive`): the raw responses are appended and fsynced before any
  of them reaches the graph (skipped for records that are already archived);
* **apply** (:mod:`.writer`): the upsert is planned and written, behind the caller,
  and the archive position written is recorded, so a kill replays only what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from ..errors import InputError, UsageError
from ..mapping.prepare import PreparePool, prepare
from ..model import LoadReport, Observation, Response
from ..store.log.archive import Archive, ArchiveRecord
from ..store.upsert import entity_digests
from ..store.writer import Writer
from ..units import check_not_future, format_time, parse_time

__all__ = ["DEFAULT_BATCH", "DEFAULT_BATCH_BYTES", "Pipeline", "batched", "observed", "oversize"]

log = logging.getLogger(__name__)

#: Responses per batch: prepared together, archived in one append, written in one write.
#: (500: the two batches in flight hold about 40 MiB less than two of 1,000, and a 100k load
#: is no slower; 250 saves 30 MiB more but writes more slowly)
DEFAULT_BATCH = 500
#: Response text a batch holds at most (a batch's memory follows it: about 100 times as much at
#: its peak, prepared and written; a page of 30 videos is ~57 kB, an audio ~1.6 kB). 2 MiB, not
#: 3: once a store outgrows RocksDB's caches (a few GiB: 5,000 audios with their pages a day,
#: from the second day) the process's peak reached 500–517 MiB at 3 MiB, and stays
#: below at 2 (450 MiB) for 5 % more time; 1.5 MiB would be 424 MiB and 13 % more time.
DEFAULT_BATCH_BYTES = 2 * 2**20

Item = Response | ArchiveRecord | InputError


def batched(items: Iterable[Item], size: int, failed: list[InputError], max_bytes: int | None = None,
            ) -> Iterator[list[Response | ArchiveRecord]]:
    """Group items into lists of ``size`` at most, and of ``max_bytes`` of response text at most
    (an item larger than that is a batch of its own); input errors go to ``failed``.

    What a batch costs in memory follows what its responses hold, not how many they are (a page
    of 30 videos is 35 audios' worth), so the bytes end a batch of pages long before the count.

    >>> from konbini_ld.model import Response
    >>> [len(b) for b in batched([Response("x" * n, "-") for n in (10, 10, 10, 40, 10, 5)], 5, [], max_bytes=25)]
    [2, 1, 1, 2]
    """
    batch: list[Response | ArchiveRecord] = []
    held = 0
    for item in items:
        if isinstance(item, InputError):
            failed.append(item)
            continue
        if batch and max_bytes is not None and held + len(item.body) > max_bytes:
            yield batch
            batch, held = [], 0
        batch.append(item)
        held += len(item.body)
        if len(batch) >= size or (max_bytes is not None and held >= max_bytes):
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


def observed(items: Iterable[Any], at: datetime | str, *, given: bool = True) -> Iterator[Any]:
    """``items``, each response among them marked as observed ``at`` (an aware datetime, or ISO
    8601 text; without a zone, UTC).

    :param given: the time is what the caller says (``False``: a default, which a recorded
        exchange's ``Date`` header still overrides).
    :raises UsageError: ``at`` is not a time, or is in the future (checked at once).
    """
    when = format_time(at) if isinstance(at, datetime) else parse_time(at)
    if given:
        check_not_future(when, what="--observed-at")
    return _observed(items, when, given)


def _observed(items: Iterable[Any], when: str, given: bool) -> Iterator[Any]:
    for item in items:
        if isinstance(item, Response) and (given or item.observed_at is None):
            item.observed_at, item.observed_given = when, given
        yield item


class Pipeline:
    """The stages, wired to one store's archive and writer.

    :param archive: where raw responses are kept (``None`` for an in-memory store).
    :param writer: what applies observations to the engine.
    :param workers: preparing processes (``None``: one per CPU beyond two; ``0``: none).
    :param templates: expand through shape templates (``False``: plain pyld for every response).
    :param write_behind: write each batch on a background thread while the next is prepared
        (where the engine allows it; ``False``: every write in line).
    """

    def __init__(self, archive: Archive | None, writer: Writer, *, workers: int | None = None,
                 templates: bool = True, write_behind: bool = True) -> None:
        self.archive = archive
        self.writer = writer
        self.workers = workers
        self.templates = templates
        self.write_behind = write_behind

    def archive_responses(self, responses: Sequence[Response]) -> list[ArchiveRecord]:
        """Durably append raw responses to the archive (before they reach the graph)."""
        if self.archive is None or not responses:
            return []
        return self.archive.append(ArchiveRecord.of(r) for r in responses)

    def run(
        self,
        items: Iterable[Item],
        *,
        archive: bool = True,
        archive_failed: bool = False,
        batch_size: int = DEFAULT_BATCH,
        batch_bytes: int | None = DEFAULT_BATCH_BYTES,
        progress: Callable[[int], None] | None = None,
        workers: int | None = None,
    ) -> LoadReport:
        """Take ``items`` through every stage, a batch at a time.

        Each batch is prepared while the previous one is written, so at most two batches are
        in memory. Items are responses to archive (``archive=True``) or archive records already
        kept (``archive=False``: replay).

        :param archive_failed: archive responses even when they cannot be mapped (API responses
            that were paid for), so that ``rebuild`` can recover them later.
        :param batch_size: responses a batch holds at most.
        :param batch_bytes: response text a batch holds at most (``None``: no bound but the count).
        :param progress: called with the number of items handled after each batch.
        :param workers: preparing processes for this run (default: the pipeline's).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch_size must be a whole number of at least 1, not {batch_size!r}")
        if batch_bytes is not None and (isinstance(batch_bytes, bool) or not isinstance(batch_bytes, int)
                                        or batch_bytes < 1):
            raise UsageError(f"batch_bytes must be a whole number of at least 1, not {batch_bytes!r}")
        report = LoadReport()
        pool = PreparePool(self.workers if workers is None else workers, templates=self.templates,
                           summarise=entity_digests)
        pending: Any = None

        seen: dict[str, tuple[str, ...]] = {}  # this run's bodies: the times each was taken at

        def finish(job: Any) -> None:
            batch, seq_from_batch, prepared, _ = job
            observations: list[Observation] = prepared.get() if hasattr(prepared, "get") else prepared
            if archive:
                new = self._new(observations, seen)
                report.unchanged += len(observations) - len(new)
                observations = new
                kept = self.archive_responses([o.response for o in observations if o.ok or archive_failed])
                seq = kept[-1].seq if kept else None
            else:
                seq = seq_from_batch
            done = self.writer.apply(observations, seq, background=self.write_behind)
            report.merge(done)
            log.info("batch of %d responses: %d mapped, %d already there, %d failed, %d triples", len(batch),
                     done.loaded, len(batch) - len(observations), len(done.failed), done.triples)
            for error in done.failed:
                log.debug("refused %s", error)
            if progress:
                progress(len(batch))

        try:
            for batch in batched(items, batch_size, report.failed, batch_bytes):
                responses = [_response(x) for x in batch if replayable(x)]
                seq = batch[-1].seq if isinstance(batch[-1], ArchiveRecord) else None
                alone = oversize(responses, batch_bytes) or (pending is not None and pending[3])
                if pending is not None and (alone or pool.in_line(responses)):
                    # prepared here, it cannot overlap the batch before: that one is planned and
                    # handed to the writer first, so two batches' observations are never held at once
                    finish(pending)
                    pending = None
                if alone:  # one answer past the bound overlaps nothing: its memory is the run's peak
                    self.writer.sync()
                job = (batch, seq, pool.prepare(responses), oversize(responses, batch_bytes))
                if pending is not None:
                    finish(pending)
                pending = job
            if pending is not None:
                finish(pending)
            pool.close(wait=True)  # (idle by now: none is left behind)
        finally:
            pool.close()
            self.writer.sync()
        report.merge(self.writer.take_late())
        return report

    def _new(self, observations: list[Observation], seen: dict[str, tuple[str, ...]]) -> list[Observation]:
        """The observations that are new: a body already archived is the same observation when
        taken again without an explicit time (``--observed-at``, a ``Date`` header), or with the
        time of one of its observations; with another time, older or newer, it is another."""
        from ..store.provenance import recorded_times

        digests = [o.body_digest() for o in observations]
        wanted = [d for d in dict.fromkeys(digests) if d not in seen]
        if wanted:
            self.writer.sync()  # (the previous batch's observations are in the graph first)
            seen.update({d: () for d in wanted})
            seen.update(recorded_times(self.writer.engine, wanted))
        out = []
        for o, digest in zip(observations, digests, strict=True):
            if o.ok:
                times, at = seen[digest], o.response.observed
                if times and (at in times or not o.response.observed_given):
                    continue  # already there
                seen[digest] = (*times, at)  # (a body is taken at a time or a few: no set for it)
            out.append(o)
        return out

    def apply_records(self, records: Sequence[ArchiveRecord]) -> LoadReport:
        """Prepare and apply records already archived, now."""
        observations = [prepare(r.response(), shape_cache=self.templates) for r in records if replayable(r)]
        return self.apply_prepared(observations, records[-1].seq if records else None)

    def apply_prepared(self, observations: list[Observation], seq: int | None, *, behind: bool = False,
                       before_write: Callable[[], None] | None = None) -> LoadReport:
        """Apply observations of archived records (up to archive position ``seq``), prepared already.

        :param behind: write on the writer's thread and return once the write is started (the
            caller prepares its next batch meanwhile); :meth:`settle` waits for it and says what it
            changed of the report (a batch the store rejected, written again response by response).
        :param before_write: called once the batch is planned, before anything is written
            (``fetch`` settles the batch written behind there: its errors are that batch's own).
        """
        report = self.writer.apply(observations, seq, background=behind, before_write=before_write)
        if not behind:
            report.merge(self.writer.take_late())
        return report

    def settle(self) -> LoadReport:
        """Wait for the write in progress (raising its error); what it changed of its report."""
        self.writer.sync()
        return self.writer.take_late()


def oversize(responses: Sequence[Response], batch_bytes: int | None) -> bool:
    """Whether one of ``responses`` holds more text than a batch may (it is alone in its batch):
    such a batch is prepared, planned and written overlapping no other, so that a run holds one
    such answer's work at a time (a page of 8,000 videos takes about 20 times its size on its way
    to the graph). Other batches overlap: one is prepared while the one before is written."""
    return batch_bytes is not None and any(len(r.body) > batch_bytes for r in responses)


def replayable(item: Response | ArchiveRecord) -> bool:
    """A response to apply: anything but an archived answer that holds nothing to apply."""
    return not isinstance(item, ArchiveRecord) or item.replayable


def _response(item: Response | ArchiveRecord) -> Response:
    return item.response() if isinstance(item, ArchiveRecord) else item
