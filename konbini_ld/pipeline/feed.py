"""Archived answers to the graph while a fetch goes on: ``fetch``'s writing half.

Answers are archived on the threads that receive them; :class:`GraphFeed` takes them, in
archive order, to the graph on a thread of its own, a batch at a time. Each batch is prepared
(in worker processes where the machine has a core to spare) while the one before it is
planned, and written behind while the next one is planned, so the graph keeps up with the
network; a batch is counted in the run's report once its write is done.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ..mapping.prepare import Abandoned, Prepared, PreparePool
from ..model import FetchReport, LoadReport
from ..store.log.archive import ArchiveRecord
from ..store.upsert import entity_digests
from .collection import KonbiniStore
from .ingest import DEFAULT_BATCH, DEFAULT_BATCH_BYTES, oversize

__all__ = ["GraphFeed", "default_workers"]

#: What one answer is taken to hold when batches are bounded by count alone (a page of videos).
_ANSWER_BYTES = 64 * 1024


def default_workers() -> int:
    """Preparing processes ``fetch`` starts by default: one per CPU beyond one (a fetching process
    spends most of its time waiting for answers, so its writer can spare a core a load's cannot)."""
    return max(0, (os.cpu_count() or 1) - 1)


class GraphFeed:
    """Takes archived records to the graph on its own thread, in the order they are :meth:`put`.

    :param halt: called with ``"store-error"`` when a write fails (the run stops buying).
    :ivar deadline: past this (``time.monotonic()``), batches are left to the next writer.
    :ivar error: the write error that stopped it (what was not written is replayed when the
        store is next opened for writing).
    """

    def __init__(self, store: KonbiniStore, report: FetchReport, halt: Callable[[str], None]) -> None:
        self.store = store
        self.report = report
        self.halt = halt
        self.batch_size = DEFAULT_BATCH
        self.batch_bytes: int | None = DEFAULT_BATCH_BYTES
        #: processes preparing answers beside the writer (``None``: :func:`default_workers`)
        self.workers: int | None = None
        #: called with the number of answers each batch written took to the graph
        self.progress: Callable[[int], None] | None = None
        self.deadline: float | None = None
        self.error: BaseException | None = None
        self.queue: queue.Queue[ArchiveRecord | None] = queue.Queue()
        #: response text put and not taken yet (what :meth:`full` bounds)
        self.queued_bytes = 0
        self._room = threading.Condition()
        #: a record taken that would have taken its batch past ``batch_bytes``: the next batch's first
        self._carried: ArchiveRecord | None = None
        #: the batch being written behind: its size and report (counted once the write is done)
        self.behind: tuple[int, LoadReport] | None = None
        self.pool: PreparePool | None = None
        #: set once the thread is done with the graph (waited on rather than the thread: a Ctrl-C
        #: landing in ``Thread.join`` can make a thread still running look ended)
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._run, name="konbini-apply", daemon=True)

    def start(self) -> None:
        """Start the preparing processes (from the main thread: see :meth:`PreparePool.start`) and the thread."""
        workers = default_workers() if self.workers is None else self.workers
        self.pool = PreparePool(workers, templates=self.store.pipeline.templates, eager=True, summarise=entity_digests)
        self.pool.start()
        self.thread.start()

    def wait(self) -> None:
        """Until the thread is done with the graph (a Ctrl-C meanwhile is raised to the caller)."""
        self.finished.wait()

    def put(self, record: ArchiveRecord) -> None:
        with self._room:
            self.queued_bytes += len(record.body)
        self.queue.put(record)

    def pending(self) -> int:
        """Records put and not taken yet."""
        return self.queue.qsize() + (self._carried is not None)

    def full(self) -> bool:
        """Whether the answers waiting for the graph hold two batches' worth of text already (the run
        asks for no more until they are taken: what a fetch holds follows ``batch_bytes`` when the
        network outruns the graph)."""
        limit = 2 * (self.batch_bytes if self.batch_bytes is not None else self.batch_size * _ANSWER_BYTES)
        return self.queued_bytes >= limit and not self.finished.is_set()

    def wait_room(self, timeout: float) -> None:
        """Until :meth:`full` may have changed (a batch was taken), ``timeout`` seconds at most."""
        with self._room:
            if self.full():
                self._room.wait(timeout)

    def _taken(self, record: ArchiveRecord) -> None:
        with self._room:
            self.queued_bytes -= len(record.body)
            self._room.notify_all()

    def end(self) -> None:
        """No more records: the thread ends once it has written (or left) those it has."""
        self.queue.put(None)

    def _run(self) -> None:
        try:
            self._feed()
        finally:
            self.finished.set()

    def _feed(self) -> None:
        pool = self.pool
        assert pool is not None
        pending: tuple[list[ArchiveRecord], Any] | None = None
        pending_alone = False
        done = False
        try:
            while not done or pending is not None:
                batch: list[ArchiveRecord] = []
                if not done and (pending is None or not self.queue.empty()):
                    done = self._take(batch)
                if batch:
                    if self.error is not None or self._late():
                        self.report.unapplied += len(batch)  # archived: applied when the store is next opened
                    else:  # prepared while the batch before it is planned (by workers; prepared here,
                        # the batch before goes to the writer first: two are never held at once)
                        responses = [r.response() for r in batch if r.replayable]
                        big = oversize(responses, self.batch_bytes)
                        alone = big or pending_alone  # (one answer past the bound overlaps no other batch)
                        if pending is not None and (alone or pool.in_line(responses)):
                            self._apply(*pending)
                            pending = None
                        if alone:
                            self._settle_quietly()
                        job = (batch, pool.prepare(responses))
                        if pending is not None:
                            self._apply(*pending)
                        pending, pending_alone = job, big
                        continue
                if pending is not None:  # nothing more has come: no reason to wait
                    self._apply(*pending)
                    pending = None
            pool.close(wait=True)  # (idle by now: none is left behind)
        finally:
            pool.close()
        self._settle_quietly()

    def _take(self, batch: list[ArchiveRecord]) -> bool:
        """Fill ``batch`` with what is queued (waiting for the first), never past ``batch_bytes`` but
        for an answer larger than that on its own; whether the queue is at its end."""
        held = 0
        item, self._carried = (self._carried, None) if self._carried is not None else (self.queue.get(), None)
        while True:
            if item is None:
                return True
            if batch and self.batch_bytes is not None and held + len(item.body) > self.batch_bytes:
                self._carried = item  # (still counted as queued: taken with the next batch)
                return False
            batch.append(item)
            self._taken(item)
            held += len(item.body)
            if len(batch) >= self.batch_size or (self.batch_bytes is not None and held >= self.batch_bytes):
                return False
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return False

    def _late(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def _apply(self, batch: list[ArchiveRecord], prepared: Any) -> None:
        if self.error is not None or self._late():
            self.report.unapplied += len(batch)
            return
        try:
            observations = prepared.get(self._late) if isinstance(prepared, Prepared) else prepared
            load = self.store.apply_prepared(observations, batch[-1].seq, behind=True, before_write=self._settle)
        except (_EarlierWriteFailed, Abandoned):  # (abandoned: a worker held it past the run's last grace)
            self.report.unapplied += len(batch)
            return
        except BaseException as exc:  # surfaced by the run; archived responses replay on next open
            self.error = exc
            self.report.unapplied += len(batch)
            self.halt("store-error")
            return
        self.behind = (len(batch), load)

    def _settle_quietly(self) -> None:
        """:meth:`_settle`, a failure being the feed's ``error`` (the batches after it are left)."""
        try:
            self._settle()
        except _EarlierWriteFailed:
            pass

    def _settle(self) -> None:
        """Wait for the batch written behind and count it (a failed write: not applied, replayed
        when the store is next opened; the run stops)."""
        if self.behind is None:
            return
        (count, load), self.behind = self.behind, None
        try:
            load.merge(self.store.settle_writes())
        except BaseException as exc:
            self.error = exc
            self.report.unapplied += count
            self.halt("store-error")
            raise _EarlierWriteFailed from exc
        self.report.load.merge(load)
        self.report.fetched -= len(load.failed)
        self.report.failed.extend(load.failed)
        if self.progress is not None:
            self.progress(count)


class _EarlierWriteFailed(Exception):
    """The batch written behind failed (its error is the feed's ``error``)."""
