"""Writing to the engine: the upsert planned and written batch by batch, behind the caller.

:meth:`Writer.apply` plans a batch of observations (:mod:`.upsert`) and writes it; on an
engine that allows it, the write runs on a background thread while the next batch is
prepared and planned. The writer owns ordering: one write at a time, in order, and a
plan that must read entities a write in progress is changing waits for it. A batch the
engine rejects (a value it cannot hold that slipped past the mapping) is written again
response by response, so only the responses at fault are lost to the graph.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pyoxigraph as ox

from ..engines.base import Engine, WriteRejected
from ..errors import ExpandError
from ..model import LoadReport, Observation
from .events import BatchWritten, Subscriber
from .history import HISTORY_G, ObservedTimes, Point, Rounds, Times, counted, points, series_points
from .index.index_rows import kinds
from .memo import MaybeHeld, Written
from .provenance import DATA, GENERATED_BY, PROV_G, describe
from .upsert import Planner, prov_groups

__all__ = ["Writer"]

log = logging.getLogger(__name__)


Graphs = tuple[ox.NamedNode, ox.NamedNode, ox.NamedNode]
#: The graphs a writer writes: current state, provenance, counter history.
GRAPHS: Graphs = (DATA, PROV_G, HISTORY_G)


class Writer:
    """Plans and writes batches of observations into an engine's data, provenance and history graphs.

    Observations are applied in the order of their observation times, whatever order they
    arrive in: the current state always shows the newest observation of each property
    (:mod:`.history`), and every counter of every observation is added to the history graph.

    :param engine: where to write.
    :param mark_applied: called with an archive sequence number once everything up to it is written.
    """

    def __init__(self, engine: Engine, mark_applied: Callable[[int], None]) -> None:
        self.engine = engine
        self.mark_applied = mark_applied
        self.graphs: Graphs = GRAPHS
        #: how many times what was written has been forgotten (a plan made before used what no longer holds)
        self.forgotten = 0
        self._forget_writes()
        #: which counters each run has observed already (one point a counter a run)
        self._rounds = Rounds()
        #: replaying what an earlier process archived and did not write: the rounds it took are read
        #: back (each run's latest observation: points of a run are not later)
        self.recalling: dict[str, str] | None = None
        self._known_subjects: dict[str, MaybeHeld] = {}
        self._writer: threading.Thread | None = None
        self._writer_error: BaseException | None = None
        self._writer_job: tuple[Sequence[Observation], int | None, LoadReport] | None = None
        self._late = LoadReport()
        self._pending: set[str] = set()
        #: who follows the graph (the index beside it): told of each batch once it is written
        self.subscribers: list[Subscriber] = []
        #: called before a batch that moves the applied mark changes the graph (the index marks
        #: itself in the middle of one: a writer killed before it is told of the batch leaves it
        #: saying so, not current to the mark before)
        self.on_writing: Callable[[], None] | None = None
        #: a write failed: what the graph holds may differ from what this process remembers
        self.spoiled = False
        self._unsure = False  # (a write failed since the last one planned: forget what was written)

    def reset(self, engine: Engine | None = None, graphs: Graphs | None = None) -> None:
        """Forget what the engine is known to hold (a new engine or graphs: a rebuild)."""
        self.sync()
        if engine is not None:
            self.engine = engine
        self.graphs = graphs or GRAPHS
        self._known_subjects.clear()
        self._forget_writes()
        self._rounds = Rounds(self._rounds.limit)

    def _forget_writes(self) -> None:
        """Remember nothing of what was written (the first engine, a new one, a rejected write)."""
        self.forgotten += 1
        #: what this process last wrote for each entity (the only writer: reads it can skip)
        self._written: Written | None = Written() if self.engine.capabilities.exclusive_writer else None
        self._times = ObservedTimes(self._written)

    def take_memo(self, path: Path, stamp: int | None) -> None:
        """Take back what a writer before this one saved of its writes (:meth:`save_memo`), if it
        was saved for the graph as it is now."""
        if self._written is not None:
            self._written = Written.taken(path, stamp)
            self._times = ObservedTimes(self._written)

    def save_memo(self, path: Path, stamp: int | None) -> None:
        """Save what this process wrote, for the next writer of the graph (not after a failed
        write: what the graph holds is then unknown)."""
        if self._written is not None and stamp is not None and not self.spoiled:
            self._written.save(path, stamp)

    def apply(
        self, prepared: Sequence[Observation], applied_seq: int | None = None, *, background: bool = False,
        isolate: bool = True, before_write: Callable[[], None] | None = None,
    ) -> LoadReport:
        """Plan the upsert of ``prepared`` and write it (in the background when allowed: the next
        batch is planned meanwhile; reads that could see the write in progress wait for it).

        :param isolate: if the store rejects the batch, write it again response by response.
        :param before_write: called once the batch is planned, before it is written (``fetch``
            settles the write in progress there, while its next batch was planned beside it; if
            that write was written again response by response, the batch is planned again).
        """
        if self._unsure:  # what a failed write left is unknown: nothing is skipped for what was planned
            self._unsure = False
            self._forget_writes()
        try:
            return self._apply(prepared, applied_seq, background=background, isolate=isolate,
                               before_write=before_write)
        except BaseException:
            self.spoiled = self._unsure = True
            raise

    def _apply(self, prepared: Sequence[Observation], applied_seq: int | None, *, background: bool,
               isolate: bool, before_write: Callable[[], None] | None = None) -> LoadReport:
        forgotten = self.forgotten
        report = LoadReport()
        data_graph, prov_graph, history_graph = self.graphs
        known = self._known(data_graph)
        data = Planner(data_graph, known, self._written)
        prov = Planner(prov_graph, self._known(prov_graph))
        links: list[str] = []  # prov:wasGeneratedBy links are appended: every observation is kept
        history: list[str] = []  # and so are the counters' points
        mapped: list[Observation] = []
        described: dict[str, str] = {}  # the audios and persons the index re-reads once the batch is written
        tracked: list[Point] = []  # and the points of the series it summarises
        rounds: dict[int, int] = {}  # the rounds this batch opens (their positions: see Rounds)
        waiting: list[tuple[Observation, set[tuple[str, str]]]] = []  # and those a write in progress may take
        if self.recalling is not None:
            self._rounds.recall(self.engine, prepared, self.recalling)
        for p in prepared:
            entities: set[str] = set()
            if p.ok and p.mappable:
                report.loaded += 1
                report.triples += p.count
                for k, v in p.unknown_keys.items():
                    report.unknown_keys.setdefault(k, v)
                for warning in p.warnings:
                    report.warn(warning)
                mapped.append(p)
                entities = {s for s, _ in p.groups}
                described.update(kinds(p.groups.items()))
                firsts, waits = self._rounds.firsts(p, rounds)
                history.extend(points(p, firsts))
                tracked.extend(series_points(p, firsts))
                if waits:
                    waiting.append((p, waits))
            elif p.mappable:
                assert p.error is not None
                report.failed.append(p.error)
                if p.response.key is None:
                    continue
            obs, triples = describe(p)
            prov.add(prov_groups(triples))
            report.observations += 1
            links.extend(f"{e} {GENERATED_BY} {obs} .\n" for e in entities)
        for p in mapped:
            data.add(p.groups, p.response.observed, p.summary)
        stored_times: dict[str, Times] = {}
        if data.newest:  # (what is read from the store first waits for a write in progress on it)
            stored_times = self._times.stored(self.engine, prov_graph, data.newest, self._before_read)
        deletes, inserts = data.plan(self.engine, self._before_read, stored_times)
        if data.seen is not None:  # observed exactly as last written: their rows stand (not read back)
            changed = data.final_subjects()
            described = {iri: kind for iri, kind in described.items() if f"<{iri}>" in changed}
        # (the last observation times they replace are removed in a write of their own, after it)
        time_deletes, time_inserts, late = self._times.update(prov_graph, data.times_changed)
        pdeletes, pinserts = prov.plan(self.engine, self._before_read)
        pdeletes.extend(time_deletes)
        pinserts.extend(links)
        pinserts.extend(time_inserts)
        written = set(data.final_subjects()) | set(prov.final_subjects())
        written.update(data.newest)  # their observation times move
        report.added = len(inserts)
        report.removed = len(deletes)
        report.points = counted(history)
        history = list(dict.fromkeys(history))  # a creator seen in many responses of one time: one node
        if before_write is not None:
            before_write()
            if self.forgotten != forgotten:  # planned on what the writer no longer holds true
                return self._apply(prepared, applied_seq, background=background, isolate=isolate)
        self._write(
            deletes + pdeletes, {data_graph: inserts, prov_graph: pinserts, history_graph: history}, written,
            applied_seq, background, job=(prepared, applied_seq, report) if isolate else None,
            event=BatchWritten(described, data.final, frozenset(data.new), prov.final, tracked, applied_seq),
            rounds=rounds, waiting=waiting, late=late,
        )
        data.committed()
        return report

    def _before_read(self, subjects: Iterable[str]) -> None:
        if self._writer is not None and not self._pending.isdisjoint(subjects):
            self.sync()

    def sync(self) -> None:
        """Wait for the write in progress, if any (and surface its error).

        A batch the store rejects (a value it cannot hold that slipped past the mapping) is
        written again response by response, so only the responses at fault are lost to the
        graph (they stay in the archive, and are reported).
        """
        try:
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.join()
                self._pending = set()
            job, self._writer_job = self._writer_job, None
            self._surface(job)
        except BaseException:
            self.spoiled = self._unsure = True
            raise  # (with no job to isolate, a rejected single response is raised to _isolate)

    def _isolate(self, prepared: Sequence[Observation], applied_seq: int | None, original: LoadReport) -> None:
        self._forget_writes()  # what the rejected batch would have written is unknown now
        redo = LoadReport()
        for p in prepared:
            try:
                redo.merge(self.apply([p], None, isolate=False))
            except WriteRejected as exc:
                log.debug("write of %s rejected", p.response.where, exc_info=True)
                error = ExpandError(
                    f"the store refused its triples ({exc}); it is kept in the archive",
                    source=p.response.source, line=p.response.line,
                )
                failed = Observation(p.response, error=error, source_url=p.source_url,
                                  credits_used=p.credits_used, credits_remaining=p.credits_remaining)
                redo.merge(self.apply([failed], None, isolate=False))
        # the batch was reported as if it had been written: report the difference
        self._late.merge(LoadReport(
            loaded=redo.loaded - original.loaded,
            failed=[e for e in redo.failed if not any(e is o for o in original.failed)],
            triples=redo.triples - original.triples,
            added=redo.added - original.added,
            removed=redo.removed - original.removed,
            observations=redo.observations - original.observations,
        ))
        if applied_seq is not None:
            self._publish(BatchWritten(seq=applied_seq))
            self.mark_applied(applied_seq)

    def subscribe(self, subscriber: Subscriber) -> None:
        """Tell ``subscriber`` of every batch once it is written (on the writing thread, in order)."""
        self.subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.remove(subscriber)

    def _publish(self, event: BatchWritten) -> None:
        if not event.empty:
            for subscriber in list(self.subscribers):
                subscriber(event)

    def take_late(self) -> LoadReport:
        late, self._late = self._late, LoadReport()
        return late

    def _write(
        self,
        deletes: list[ox.Quad],
        inserts: dict[ox.NamedNode, list[str]],
        subjects: set[str],
        applied_seq: int | None,
        background: bool,
        job: tuple[Sequence[Observation], int | None, LoadReport] | None = None,
        event: BatchWritten | None = None,
        rounds: dict[int, int] | None = None,
        waiting: list[tuple[Observation, set[tuple[str, str]]]] | None = None,
        late: list[ox.Quad] | None = None,
    ) -> None:
        def run() -> None:
            try:
                # (a reader's view opens before the batch or after it, with the index and the
                # applied mark that go with the graph it reads)
                with self.engine.writing():
                    if deletes or any(inserts.values()):
                        if applied_seq is not None and self.on_writing is not None:
                            self.on_writing()
                        self.engine.apply(deletes, inserts)
                    if late:  # (removed only once what replaces them is written)
                        self.engine.apply(late, {})
                    if rounds:
                        self._rounds.written(rounds)
                    self._publish(event or BatchWritten(seq=applied_seq))
                    if applied_seq is not None:
                        self.mark_applied(applied_seq)
            except BaseException as exc:  # surfaced by the next _sync()
                if rounds:
                    self._rounds.release(rounds)  # not written: those rounds are open again
                self._writer_error = exc

        self.sync()  # one write at a time, in order
        if waiting and rounds is not None:  # counters whose round the write just done did not take after all
            for o, pairs in self._rounds.claim(waiting, rounds):
                inserts[self.graphs[2]].extend(points(o, pairs))
                if event is not None:
                    event.points.extend(series_points(o, pairs))
        if rounds:
            self._rounds.reserve(rounds)
        self._writer_job = job
        if background and self.engine.capabilities.write_behind:
            self._pending = subjects
            self._writer = threading.Thread(target=run, name="konbini-store-writer", daemon=True)
            self._writer.start()
        else:
            run()
            self._writer_job = None
            self._surface(job)

    def _surface(self, job: tuple[Sequence[Observation], int | None, LoadReport] | None) -> None:
        """The error the write just done left, if any: a batch the store rejected is written again
        response by response (``job``), anything else raised. (The error is not held here past
        that: its frames reach this one, a reference cycle.)"""
        error, self._writer_error = self._writer_error, None
        if error is None:
            return
        if isinstance(error, WriteRejected) and job is not None:
            del error
            self._isolate(*job)
            return
        try:
            raise error
        finally:
            del error

    def _known(self, graph: ox.NamedNode) -> MaybeHeld | None:
        """Which entities ``graph`` may hold, when this process is the store's only writer: exact
        for a graph that was empty when first asked (a first load reads nothing for new entities)."""
        if not self.engine.capabilities.exclusive_writer:
            return None
        known = self._known_subjects.get(graph.value)
        if known is None:
            self.sync()
            empty = not self.engine.query(f"ASK {{ GRAPH {graph} {{ ?s ?p ?o }} }}", union=False)
            known = self._known_subjects[graph.value] = MaybeHeld(complete=bool(empty))
        return known
