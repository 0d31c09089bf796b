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
from typing import Any

import pyoxigraph as ox

from ..engines.base import WriteRejected
from ..errors import ExpandError
from ..model import LoadReport, Observation
from ..vocab import GENID
from .provenance import DATA, GENERATED_BY, PROV_G, describe
from .upsert import Planner, prov_groups

__all__ = ["Writer"]

log = logging.getLogger(__name__)


class Writer:
    """Plans and writes batches of observations into an engine's data and provenance graphs.

    :param engine: where to write.
    :param mark_applied: called with an archive sequence number once everything up to it is written.
    """

    def __init__(self, engine: Any, mark_applied: Callable[[int], None]) -> None:
        self.engine = engine
        self.mark_applied = mark_applied
        self.graphs: tuple[ox.NamedNode, ox.NamedNode] = (DATA, PROV_G)
        self._known_subjects: dict[str, set[str]] = {}
        self._seen: dict[str, int] = {}
        self._writer: threading.Thread | None = None
        self._writer_error: BaseException | None = None
        self._writer_job: tuple[Sequence[Observation], int | None, LoadReport] | None = None
        self._late = LoadReport()
        self._pending: set[str] = set()

    def reset(self, engine: Any | None = None, graphs: tuple[ox.NamedNode, ox.NamedNode] | None = None) -> None:
        """Forget what the engine is known to hold (a new engine or graphs: a rebuild)."""
        self.sync()
        if engine is not None:
            self.engine = engine
        self.graphs = graphs or (DATA, PROV_G)
        self._known_subjects.clear()
        self._seen.clear()

    def apply(
        self, prepared: Sequence[Observation], applied_seq: int | None = None, *, background: bool = False,
        isolate: bool = True,
    ) -> LoadReport:
        """Plan the upsert of ``prepared`` and write it (in the background when allowed: the next
        batch is planned meanwhile; reads that could see the write in progress wait for it).

        :param isolate: if the store rejects the batch, write it again response by response.
        """
        report = LoadReport()
        data_graph, prov_graph = self.graphs
        known = self._known(data_graph)
        data = Planner(data_graph, known, self._seen if known is not None else None)
        prov = Planner(prov_graph, self._known(prov_graph))
        links: list[str] = []  # prov:wasGeneratedBy links are appended: every observation is kept
        for p in prepared:
            entities: set[str] = set()
            if p.ok and not p.not_found:
                report.loaded += 1
                report.triples += p.count
                for k, v in p.unknown_keys.items():
                    report.unknown_keys.setdefault(k, v)
                data.add(p.groups)
                entities = {s for s, _ in p.groups}
            elif not p.not_found:
                assert p.error is not None
                report.failed.append(p.error)
                if p.response.key is None:
                    continue
            obs, triples = describe(p)
            prov.add(prov_groups(triples))
            report.observations += 1
            links.extend(f"{e} {GENERATED_BY} {obs} .\n" for e in entities)
        deletes, inserts = data.plan(self.engine, self._before_read)
        pdeletes, pinserts = prov.plan(self.engine, self._before_read)
        pinserts.extend(links)
        written = set(data.final_subjects()) | set(prov.final_subjects())
        report.added = len(inserts)
        report.removed = len(deletes)
        self._write(
            deletes + pdeletes, {data_graph: inserts, prov_graph: pinserts}, written, applied_seq, background,
            job=(prepared, applied_seq, report) if isolate else None,
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
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.join()
            self._pending = set()
        error, self._writer_error = self._writer_error, None
        job, self._writer_job = self._writer_job, None
        if isinstance(error, WriteRejected) and job is not None:
            self._isolate(*job)
        elif error is not None:
            raise error  # (with no job to isolate, a rejected single response is raised to _isolate)

    def _isolate(self, prepared: Sequence[Observation], applied_seq: int | None, original: LoadReport) -> None:
        self._seen.clear()  # what the rejected batch would have written is unknown now
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
            self.mark_applied(applied_seq)

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
    ) -> None:
        def run() -> None:
            try:
                if deletes or any(inserts.values()):
                    self.engine.apply(deletes, inserts)
                if applied_seq is not None:
                    self.mark_applied(applied_seq)
            except BaseException as exc:  # surfaced by the next _sync()
                self._writer_error = exc

        self.sync()  # one write at a time, in order
        self._writer_job = job
        if background and self.engine.capabilities.write_behind:
            self._pending = subjects
            self._writer = threading.Thread(target=run, name="konbini-store-writer", daemon=True)
            self._writer.start()
        else:
            run()
            error, self._writer_error = self._writer_error, None
            self._writer_job = None
            if isinstance(error, WriteRejected) and job is not None:
                self._isolate(*job)
            elif error is not None:
                raise error

    def _known(self, graph: ox.NamedNode) -> set[str] | None:
        """The entities of ``graph``, kept in memory when this process is the store's only writer."""
        if not self.engine.capabilities.exclusive_writer:
            return None
        known = self._known_subjects.get(graph.value)
        if known is None:
            rows = self.engine.query(
                f"SELECT DISTINCT ?s WHERE {{ GRAPH {graph} {{ ?s ?p ?o }} "
                f'FILTER(!STRSTARTS(STR(?s), "{GENID}")) }}', union=False
            )
            known = self._known_subjects[graph.value] = {str(row[0]) for row in rows}
        return known
