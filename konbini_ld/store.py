"""The konbini-ld graph: ingest with upsert and provenance, query, export, rebuild.

Layout of a store directory::

    <store>/
      oxigraph/     the embedded Oxigraph database (RocksDB)
      archive/      every raw response ingested (gzip JSON Lines, append-only)
      state.json    how far into the archive the graph is applied

Graphs: mapped data in ``urn:konbini-ld:graph:data``, PROV-O provenance in
``urn:konbini-ld:graph:provenance``; queries see their union as the default graph.

The upsert rule, per batch of responses: for every entity (a subject with a
real IRI) and every property a response carries for it, the stored values are
replaced by the new ones; properties it does not carry keep their values;
skolemised objects (images, links…) hanging off a replaced value are removed
with it, so nothing is orphaned. Reloading identical data writes nothing new.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyoxigraph as ox

from .archive import Archive, ArchiveRecord, Damage, Scan
from .upsert import Planner, prov_groups
from .backends import Backend, OxigraphBackend, WriteRejected
from .errors import ExpandError, InputError, StoreError
from . import storedir
from .storedir import WriterLock, read_applied, settle, write_applied
from .expand import nt_iri, nt_literal
from .ingest import (  # noqa: F401 - text_stream is used by the doctest
    PreparePool,
    Prepared,
    batches,
    Response,
    body_sha256,
    group_lines,
    iter_sources,
    prepare,
    prepare_for_store,
    source_iri,
    text_stream,
)
from .namespaces import DATA_GRAPH, GENID, KS, OBSERVATION, PROV, PROV_GRAPH, RDF, XSD

__all__ = ["ArchiveDamageError", "KonbiniStore", "LoadReport", "Stats", "open_store", "rebuild_store"]

log = logging.getLogger(__name__)

_DATA = ox.NamedNode(DATA_GRAPH)
_PROV = ox.NamedNode(PROV_GRAPH)
_RDF_TYPE = f"<{RDF}type>"
_GENERATED_BY = f"<{PROV}wasGeneratedBy>"
_ACTIVITY = f"<{PROV}Activity>"
_USED = f"<{PROV}used>"
_ENDED = f"<{PROV}endedAtTime>"
_SHA = f"<{KS}responseSha256>"
_LINE = f"<{KS}sourceLine>"
_CREDITS_USED = f"<{KS}creditsUsed>"
_CREDITS_REMAINING = f"<{KS}creditsRemaining>"
_STATUS = f"<{KS}httpStatus>"
_REQUESTED = f"<{KS}requested>"
_NEXT_CURSOR = f"<{KS}nextCursor>"
_MAPPING_FAILED = f"<{KS}mappingFailed>"

DEFAULT_BATCH = 2000


@dataclass(slots=True)
class LoadReport:
    """What an ingest did.

    :ivar loaded: responses loaded into the graph.
    :ivar failed: one :class:`InputError` per response or file that could not be loaded.
    :ivar triples: triples produced by the loaded responses (before de-duplication).
    :ivar unknown_keys: keys no context defines, ``"Type.key"`` → IRI they were kept under.
    :ivar added: data triples added to the graph; ``removed``: data triples the upsert removed
        (a reload that changes nothing adds and removes none).
    :ivar observations: provenance records written (one per response, reloads included).
    :ivar damage: damaged archive spans met while replaying or rebuilding.
    """

    loaded: int = 0
    failed: list[InputError] = field(default_factory=list)
    triples: int = 0
    unknown_keys: dict[str, str] = field(default_factory=dict)
    added: int = 0
    removed: int = 0
    observations: int = 0
    damage: list[Damage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def merge(self, other: LoadReport) -> None:
        self.loaded += other.loaded
        self.failed.extend(other.failed)
        self.triples += other.triples
        self.added += other.added
        self.removed += other.removed
        self.observations += other.observations
        self.damage.extend(other.damage)
        for k, v in other.unknown_keys.items():
            self.unknown_keys.setdefault(k, v)


@dataclass(slots=True)
class Stats:
    """A summary of the graph (``konbini-ld stats``)."""

    audios: int
    persons: int
    videos: int
    triples: int
    responses: int
    archived: int
    last_observed: str | None
    last_fetch: str | None
    credits_spent: int

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


def _observation_iri(source: str, line: int | None, sha: str) -> str:
    import hashlib

    return OBSERVATION + hashlib.sha256(f"{source}\x00{line}\x00{sha}".encode()).hexdigest()[:32]


def response_of(record: ArchiveRecord) -> Response:
    """The response an archive record holds."""
    return Response(
        body=record.body, source=record.source, line=record.line, observed_at=record.at, status=record.status,
        credits_used=record.credits_used, credits_remaining=record.credits_remaining, key=record.key,
    )


def _has_data(path: Path) -> bool:
    """Whether the Oxigraph directory at ``path`` holds any quad (cheap: reads one)."""
    if not path.is_dir():
        return False
    try:
        store = ox.Store.read_only(str(path))
    except (OSError, RuntimeError):
        return True  # damaged, not empty: opening it says so
    try:
        return next(iter(store.quads_for_pattern(None, None, None, None)), None) is not None
    except (OSError, RuntimeError):
        return True
    finally:
        del store


def _int(value: int) -> str:
    return f'"{int(value)}"^^<{XSD}integer>'


class KonbiniStore:
    """A konbini-ld graph on disk (or in memory), with its archive.

    Open one with :func:`open_store`. Use as a context manager to release the
    store's lock when done.

    :param location: directory of the store; ``None`` for a throwaway in-memory
        store without archive (tests, notebooks).
    :param read_only: open without taking the writer's lock (queries, exports).
    """

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        archive: str | os.PathLike[str] | None = None,
        update_url: str | None = None,
        gsp_url: str | None = None,
        _rebuilding: bool = False,
    ) -> None:
        self.read_only = read_only
        self.location: Path | None = None
        self._state_dir: Path | None = None
        self._lock: WriterLock | None = None
        self.backend: Backend
        text = str(location) if location is not None else None
        try:
            if text is not None and text.startswith(("http://", "https://")):
                from .remote import SparqlBackend, derive_endpoints

                self.backend = SparqlBackend(derive_endpoints(text, update=update_url, gsp=gsp_url))
                self._state_dir = Path(archive) if archive is not None else None
                if not read_only and self._state_dir is not None:
                    self._take_lock(self._state_dir)
            elif location is not None:
                self.location = Path(location)
                if self.location.exists() and not self.location.is_dir():
                    raise StoreError(f"--store {self.location} exists and is not a directory")
                self._state_dir = Path(archive) if archive is not None else self.location
                if read_only:
                    if not (self.location / "oxigraph").is_dir():
                        raise StoreError(self._missing_graph_message())
                else:
                    self._take_lock(self.location)
                    settle(self.location, self._state_dir)
                    if not _rebuilding:
                        self._check_graph_present()
                try:
                    self.backend = self._open_oxigraph(self.location / "oxigraph", read_only)
                except StoreError:
                    if not _rebuilding:
                        raise
                    self.backend = OxigraphBackend(None)  # the damaged graph is replaced, never read
            else:
                self.backend = OxigraphBackend(None)
        except BaseException:
            self._release_lock()
            raise
        self.archive: Archive | None = (
            Archive(self._state_dir / "archive") if self._state_dir is not None else None
        )
        self._graph: Any = None
        self._known_subjects: dict[str, set[str]] = {}
        self._seen: dict[str, int] = {}
        self._writer: Any = None
        self._writer_error: BaseException | None = None
        self._writer_job: tuple[Sequence[Prepared], int | None, LoadReport] | None = None
        self._late = LoadReport()
        self._pending: set[str] = set()
        self._graphs = (_DATA, _PROV)
        self._marking = True  # record how far the archive is applied (not while a rebuild builds)
        #: what opening the store replayed from the archive (responses a kill left unapplied)
        self.recovered = LoadReport()
        if not read_only and not _rebuilding:
            try:
                self.recovered = self.recover()
            except BaseException:
                self.close()
                raise

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> KonbiniStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush and release the store (its lock is freed for other processes)."""
        try:
            self._sync()
        finally:
            self._graph = None
            self.backend.close()
            self._release_lock()

    def _take_lock(self, where: Path) -> None:
        self._lock = WriterLock(where)
        self._lock.acquire()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _archived_count(self) -> int:
        if self._state_dir is None:
            return 0
        return Archive(self._state_dir / "archive").last_seq

    def _missing_graph_message(self) -> str:
        archived = self._archived_count()
        if archived:
            return (
                f"the store at {self.location} has no graph (oxigraph/ is missing) but its archive holds "
                f"{archived} responses: `konbini-ld rebuild` re-derives the graph from them (no credits are spent)"
            )
        return f"there is no konbini-ld store at {self.location} (load something first)"

    def _check_graph_present(self) -> None:
        """Refuse to open an empty graph beside an archive the state says was applied."""
        assert self.location is not None and self._state_dir is not None
        applied = read_applied(self._state_dir)
        if applied and not _has_data(self.location / "oxigraph"):
            raise StoreError(self._missing_graph_message().replace("has no graph (oxigraph/ is missing)",
                                                                    "has lost its graph (oxigraph/ is missing or empty)"))

    def _open_oxigraph(self, path: Path, read_only: bool) -> OxigraphBackend:
        try:
            return OxigraphBackend(path, read_only=read_only)
        except StoreError as exc:
            archived = self._archived_count()
            if archived and "damaged" in str(exc):
                raise StoreError(
                    f"{exc}. Its archive holds {archived} responses: `konbini-ld rebuild` re-derives the graph "
                    "from them (no credits are spent)"
                ) from exc
            raise

    @property
    def _state_path(self) -> Path | None:
        return self._state_dir / "state.json" if self._state_dir is not None else None

    def _applied(self) -> int:
        return read_applied(self._state_dir) if self._state_dir is not None else 0

    def _set_applied(self, seq: int) -> None:
        if self._state_dir is not None and self._marking:
            write_applied(self._state_dir, seq)

    def recover(self) -> LoadReport:
        """Apply archived responses the graph does not have yet (after a crash or kill).

        Damaged archive records are skipped and reported in :attr:`LoadReport.damage`;
        a response that cannot be written is reported and skipped: replay never leaves a
        store that cannot be opened.
        """
        report = LoadReport()
        if self.archive is None:
            return report
        self.archive.repair()
        applied = self._applied()
        if self.archive.last_seq > applied:
            scan = Scan()
            report = self._ingest_records(self.archive.records(after=applied, scan=scan), progress=None)
            report.damage.extend(scan.damage)
            self._set_applied(max(self.archive.last_seq, self._applied()))
        return report

    # -- ingest --------------------------------------------------------------

    def load(
        self,
        sources: Iterable[str | os.PathLike[str] | IO[str]],
        *,
        batch_size: int = DEFAULT_BATCH,
        progress: Callable[[int], None] | None = None,
    ) -> LoadReport:
        """Ingest saved responses from files (JSON or JSON Lines), ``-`` or open text streams.

        Bad items are reported in :attr:`LoadReport.failed`; good items in the same run still load.
        """
        return self.ingest(iter_sources(sources), batch_size=batch_size, progress=progress)

    def ingest(
        self,
        responses: Iterable[Response | InputError],
        *,
        batch_size: int = DEFAULT_BATCH,
        archive_failed: bool = False,
        progress: Callable[[int], None] | None = None,
        workers: int | None = None,
    ) -> LoadReport:
        """Ingest raw responses: prepare, archive, upsert, in batches.

        Each batch is prepared (parsed, normalised, expanded) while the previous one is
        written, so at most two batches are in memory; on machines with more than two
        cores, worker processes do the preparing.

        :param archive_failed: archive responses even when they cannot be mapped (API
            responses that were paid for), so that ``rebuild`` can recover them later.
        :param progress: called with the number of responses handled after each batch.
        :param workers: preparing processes (``None``: one per CPU beyond two; ``0``: none, all in-process).
        """
        self._writable()
        report = LoadReport()
        pool = PreparePool(workers)
        pending: Any = None

        def finish(job: Any) -> None:
            batch, prepared = job
            prepared = prepared.get() if hasattr(prepared, "get") else prepared
            done = self._ingest_prepared(prepared, archive_failed=archive_failed)
            report.merge(done)
            log.info("batch of %d responses: %d mapped, %d failed, %d triples", len(batch), done.loaded,
                     len(done.failed), done.triples)
            for error in done.failed:
                log.debug("refused %s", error)
            if progress:
                progress(len(batch))

        try:
            for batch in batches(responses, batch_size, report.failed):
                job = (batch, pool.prepare(batch))
                if pending is not None:
                    finish(pending)
                pending = job
            if pending is not None:
                finish(pending)
        finally:
            pool.close()
            self._sync()
        report.merge(self._take_late())
        return report

    def _ingest_prepared(self, prepared: list[Prepared], *, archive_failed: bool) -> LoadReport:
        records = self.archive_responses([p.response for p in prepared if p.ok or archive_failed])
        return self._apply(prepared, records[-1].seq if records else None, background=True)

    def archive_responses(self, responses: Sequence[Response]) -> list[ArchiveRecord]:
        """Durably append raw responses to the archive (before they reach the graph).

        Responses archived but not yet applied are replayed the next time the store opens.
        """
        if self.archive is None or not responses:
            return []
        return self.archive.append(
            ArchiveRecord(
                0,
                at=r.observed_at,
                source=source_iri(r.source),
                body=r.body,
                line=r.line,
                status=r.status,
                credits_used=r.credits_used,
                credits_remaining=r.credits_remaining,
                key=r.key,
            )
            for r in responses
        )

    def apply_archived(self, records: Sequence[ArchiveRecord], responses: Sequence[Response]) -> LoadReport:
        """Map and upsert responses already archived as ``records`` (same order)."""
        self._writable()
        report = self._apply([prepare(r) for r in responses], records[-1].seq if records else None)
        report.merge(self._take_late())
        return report

    def _ingest_records(self, records: Iterable[ArchiveRecord], progress: Callable[[int], None] | None) -> LoadReport:
        report = LoadReport()
        batch: list[Response] = []
        last = 0

        def flush() -> None:
            report.merge(self._apply([prepare(r) for r in batch], last, background=True))
            if progress:
                progress(len(batch))
            batch.clear()

        for record in records:
            last = record.seq
            if record.status is not None and record.status not in (200, 404):
                continue
            batch.append(response_of(record))
            if len(batch) >= DEFAULT_BATCH:
                flush()
        if batch or last:
            flush()
        self._sync()
        report.merge(self._take_late())
        return report

    def _apply(
        self, prepared: Sequence[Prepared], applied_seq: int | None = None, *, background: bool = False,
        isolate: bool = True,
    ) -> LoadReport:
        """Plan the upsert of ``prepared`` and write it (in the background when allowed: the next
        batch is planned meanwhile; reads that could see the write in progress wait for it).

        :param isolate: if the store rejects the batch, write it again response by response.
        """
        report = LoadReport()
        data_graph, prov_graph = self._graphs
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
            obs, triples = self._provenance(p)
            prov.add(prov_groups(triples))
            report.observations += 1
            links.extend(f"{e} {_GENERATED_BY} {obs} .\n" for e in entities)
        deletes, inserts = data.plan(self.backend, self._before_read)
        pdeletes, pinserts = prov.plan(self.backend, self._before_read)
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

    # -- write-behind ----------------------------------------------------------

    def _before_read(self, subjects: Iterable[str]) -> None:
        if self._writer is not None and not self._pending.isdisjoint(subjects):
            self._sync()

    def _sync(self) -> None:
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

    def _isolate(self, prepared: Sequence[Prepared], applied_seq: int | None, original: LoadReport) -> None:
        self._seen.clear()  # what the rejected batch would have written is unknown now
        redo = LoadReport()
        for p in prepared:
            try:
                redo.merge(self._apply([p], None, isolate=False))
            except WriteRejected as exc:
                log.debug("write of %s rejected", p.response.where, exc_info=True)
                error = ExpandError(
                    f"the store refused its triples ({exc}); it is kept in the archive",
                    source=p.response.source, line=p.response.line,
                )
                failed = Prepared(p.response, error=error, source_url=p.source_url,
                                  credits_used=p.credits_used, credits_remaining=p.credits_remaining)
                redo.merge(self._apply([failed], None, isolate=False))
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
            self._set_applied(applied_seq)

    def _take_late(self) -> LoadReport:
        late, self._late = self._late, LoadReport()
        return late

    def _write(
        self,
        deletes: list[ox.Quad],
        inserts: dict[ox.NamedNode, list[str]],
        subjects: set[str],
        applied_seq: int | None,
        background: bool,
        job: tuple[Sequence[Prepared], int | None, LoadReport] | None = None,
    ) -> None:
        def run() -> None:
            try:
                if deletes or any(inserts.values()):
                    self.backend.apply(deletes, inserts)
                if applied_seq is not None:
                    self._set_applied(applied_seq)
            except BaseException as exc:  # surfaced by the next _sync()
                self._writer_error = exc

        self._sync()  # one write at a time, in order
        self._writer_job = job
        if background and self.backend.capabilities.write_behind:
            import threading

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
        if not self.backend.capabilities.exclusive_writer:
            return None
        known = self._known_subjects.get(graph.value)
        if known is None:
            rows = self.backend.query(
                f"SELECT DISTINCT ?s WHERE {{ GRAPH {graph} {{ ?s ?p ?o }} "
                f'FILTER(!STRSTARTS(STR(?s), "{GENID}")) }}', union=False
            )
            known = self._known_subjects[graph.value] = {str(row[0]) for row in rows}  # type: ignore[union-attr]
        return known

    def _provenance(self, p: Prepared) -> tuple[str, list[tuple[str, str, str]]]:
        """The observation (a ``prov:Activity``) of one response: its IRI and description."""
        r = p.response
        used = source_iri(p.source_url or r.source)
        sha = body_sha256(r.body)
        obs = f"<{_observation_iri(used, r.line, sha)}>"
        triples = [
            (obs, _RDF_TYPE, _ACTIVITY),
            (obs, _USED, nt_iri(used)),
            (obs, _ENDED, nt_literal(r.observed_at, XSD + "dateTime")),
            (obs, _SHA, nt_literal(sha)),
        ]
        if r.line is not None:
            triples.append((obs, _LINE, _int(r.line)))
        if p.credits_used is not None:
            triples.append((obs, _CREDITS_USED, _int(p.credits_used)))
        if p.credits_remaining is not None:
            triples.append((obs, _CREDITS_REMAINING, _int(p.credits_remaining)))
        if r.key is not None:
            triples.append((obs, _REQUESTED, nt_literal(r.key)))
        if r.status is not None:
            triples.append((obs, _STATUS, _int(r.status)))
        if not p.ok and not p.not_found:
            triples.append((obs, _MAPPING_FAILED, nt_literal("true", XSD + "boolean")))
        if p.next_cursor is not None:
            triples.append((obs, _NEXT_CURSOR, nt_literal(p.next_cursor)))
        return obs, triples

    def fetch_ledger(self) -> dict[str, LedgerEntry]:
        """What earlier fetches already bought: request key → status and next page cursor.

        Keys are ``audio:<id>`` and ``videos:<id>:<cursor>``. Status 404 means "not found"
        (billed, so not asked again). A response that arrived but could not be mapped is in
        the ledger too (``ks:mappingFailed``): it is in the archive, and ``rebuild`` after an
        upgrade recovers it without buying it again.
        """
        ledger: dict[str, LedgerEntry] = {}
        for row in self.backend.query(_LEDGER_QUERY, union=False):  # type: ignore[union-attr]
            key, status, cursor = row["key"], row["status"], row["next"]
            entry = LedgerEntry(int(status.value) if status is not None else 200, cursor.value if cursor else None)
            previous = ledger.get(key.value)
            if previous is None or previous.status != 200:
                ledger[key.value] = entry
        return ledger

    def rebuild(self, *, progress: Callable[[int], None] | None = None, accept_damage: bool = False) -> LoadReport:
        """Re-derive the graph from the archive (after a context or mapping change, or to
        recover a damaged store).

        Every archived response is mapped again, in the order it was first ingested, with
        its original time, into a new graph; the live graph is replaced only once the new
        one is complete, so an interrupted rebuild leaves the old graph (embedded store: a
        directory swap; remote store: temporary graphs moved over ours in one update).

        :param accept_damage: rebuild from the readable records of a damaged archive.
        :raises ArchiveDamageError: the archive does not read back whole (nothing is changed).
        :raises StoreError: on a remote store, it holds observations this archive did not
            record (someone else's data, which a rebuild would delete).
        """
        self._writable()
        if self.archive is None:
            raise StoreError("an in-memory store has no archive to rebuild from")
        self._sync()
        scan = self.archive.verify()
        if scan.damage and not accept_damage:
            raise ArchiveDamageError(scan)
        last = max(self.archive.last_seq, scan.last_seq)
        if self.location is not None:
            report = self._rebuild_embedded(progress, last)
        else:
            report = self._rebuild_remote(progress, last)
        report.damage = scan.damage
        return report

    def _rebuild_embedded(self, progress: Callable[[int], None] | None, last: int) -> LoadReport:
        assert self.location is not None and self.archive is not None and self._state_dir is not None
        building = self.location / storedir.BUILDING
        shutil.rmtree(building, ignore_errors=True)
        live, self.backend = self.backend, OxigraphBackend(building)
        self._reset_caches()
        self._marking = False
        try:
            report = self._ingest_records(self.archive.records(), progress=progress)
            self.backend.close()
        except BaseException:
            self._writer = None
            self.backend.close()
            self.backend = live
            shutil.rmtree(building, ignore_errors=True)
            raise
        finally:
            self._marking = True
            self._reset_caches()
        live.close()
        storedir.commit_rebuild(self.location, self._state_dir, last)
        self.backend = self._open_oxigraph(self.location / storedir.LIVE, False)
        return report

    def _rebuild_remote(self, progress: Callable[[int], None] | None, last: int) -> LoadReport:
        assert self.archive is not None
        ours = {body_sha256(r.body) for r in self.archive.records()}
        theirs = [row[0].value for row in self.backend.query(_SHA_QUERY, union=False)]  # type: ignore[union-attr]
        foreign = [sha for sha in theirs if sha not in ours]
        if foreign:
            raise StoreError(
                f"{self.backend.description} holds {len(foreign)} observations that the archive at "
                f"{self.archive.path} did not record (pushed or loaded from another archive); a rebuild from "
                "this archive would delete them. Rebuild the store that recorded them and `push` it, or point "
                "--archive at the archive that holds every response"
            )
        temporary = (ox.NamedNode(DATA_GRAPH + ":rebuild"), ox.NamedNode(PROV_GRAPH + ":rebuild"))
        for graph in temporary:
            self.backend.clear_graph(graph)
        self._graphs = temporary
        self._reset_caches()
        self._marking = False
        try:
            report = self._ingest_records(self.archive.records(), progress=progress)
        finally:
            self._graphs = (_DATA, _PROV)
            self._marking = True
        self.backend.move_graphs({temporary[0]: _DATA, temporary[1]: _PROV})  # type: ignore[attr-defined]
        self._set_applied(last)
        return report

    def _reset_caches(self) -> None:
        self._known_subjects.clear()
        self._seen.clear()

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError("this store was opened read-only")

    # -- reads ---------------------------------------------------------------

    @property
    def graph(self) -> Any:
        """An :class:`rdflib.Dataset` view of the store (default graph = union of all graphs).

        SPARQL run through it is evaluated by the backend natively.
        """
        if self._graph is None:
            from .rdflib_view import dataset_for

            self._graph = dataset_for(self.backend)
        return self._graph

    def query(
        self, sparql: str, params: Mapping[str, Any] | None = None, *, name: str | None = None
    ) -> Any:
        """Run a SPARQL query; ``params`` are bound as RDF terms (never spliced into the text).

        :returns: a :class:`konbini_ld.queries.QueryResult`.
        """
        from .queries import run_query

        return run_query(self.backend, sparql, params or {}, name=name)

    def run_named(self, name: str, params: Mapping[str, str] | None = None) -> Any:
        """Run a named query from ``queries/`` with string parameters bound by their declared types."""
        from .queries import get_named_query, run_query

        nq = get_named_query(name)
        return run_query(self.backend, nq.text, nq.bind(params or {}), name=nq.name)

    def export(self, fmt: Any, output: IO[bytes]) -> None:
        """Write the whole graph to ``output`` in ``fmt`` (an :class:`~konbini_ld.export.ExportFormat`)."""
        from .export import export

        export(self.backend, fmt, output)

    def __len__(self) -> int:
        return self.backend.count()

    def stats(self) -> Stats:
        """Counts of audios, persons, videos and triples; last observation; credits spent."""
        self._sync()

        def one(sparql: str) -> Any:
            row = next(iter(self.backend.query(_STATS_PREFIXES + sparql, union=False)))  # type: ignore[arg-type]
            return row[0]

        def num(term: Any) -> int:
            return int(term.value) if term is not None else 0

        last = one(f"SELECT (MAX(?t) AS ?v) WHERE {{ GRAPH <{PROV_GRAPH}> {{ ?o prov:endedAtTime ?t }} }}")
        last_fetch = one(
            f"SELECT (MAX(?t) AS ?v) WHERE {{ GRAPH <{PROV_GRAPH}> {{ ?o ks:requested ?k ; prov:endedAtTime ?t }} }}"
        )
        return Stats(
            audios=num(one(f"SELECT (COUNT(DISTINCT ?a) AS ?v) WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?a a as:Audio }} }}")),
            persons=num(one(f"SELECT (COUNT(DISTINCT ?p) AS ?v) WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?p a as:Person }} }}")),
            # videos that use an audio (attachments typed as:Video are media files)
            videos=num(one(f"SELECT (COUNT(DISTINCT ?v) AS ?v2) WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?v ks:audio ?a }} }}")),
            triples=self.backend.count(),
            responses=num(one(f"SELECT (COUNT(?o) AS ?v) WHERE {{ GRAPH <{PROV_GRAPH}> {{ ?o prov:endedAtTime ?t }} }}")),
            archived=self.archive.last_seq if self.archive is not None else 0,
            last_observed=last.value if last is not None else None,
            last_fetch=last_fetch.value if last_fetch is not None else None,
            credits_spent=num(one(f"SELECT (SUM(?c) AS ?v) WHERE {{ GRAPH <{PROV_GRAPH}> {{ ?o ks:creditsUsed ?c }} }}")),
        )


_STATS_PREFIXES = f"""PREFIX as: <https://www.w3.org/ns/activitystreams#>
PREFIX ks: <{KS}>
PREFIX prov: <{PROV}>
"""


_SHA_QUERY = f"""
PREFIX ks: <{KS}>
SELECT DISTINCT ?sha WHERE {{ GRAPH <{PROV_GRAPH}> {{ ?o ks:responseSha256 ?sha }} }}
"""


class ArchiveDamageError(StoreError):
    """The archive does not read back whole; ``rebuild`` stops before changing anything.

    :ivar scan: what was read and the damaged spans.
    """

    def __init__(self, scan: Scan) -> None:
        spans = "; ".join(str(d) for d in scan.damage[:5])
        more = f" (and {len(scan.damage) - 5} more)" if len(scan.damage) > 5 else ""
        super().__init__(
            f"the archive is damaged: {spans}{more}. {scan.read} records read back, {scan.lost} lost. "
            "Nothing was changed; `rebuild --accept-damage` rebuilds from the readable records"
        )
        self.scan = scan


_LEDGER_QUERY = f"""
PREFIX ks: <{KS}>
SELECT ?key ?status ?next WHERE {{
  GRAPH <{PROV_GRAPH}> {{
    ?o ks:requested ?key .
    OPTIONAL {{ ?o ks:httpStatus ?status }}
    OPTIONAL {{ ?o ks:nextCursor ?next }}
  }}
}}
"""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One request an earlier fetch paid for."""

    status: int
    next_cursor: str | None





def rebuild_store(
    location: str | os.PathLike[str],
    *,
    archive: str | os.PathLike[str] | None = None,
    update_url: str | None = None,
    gsp_url: str | None = None,
    accept_damage: bool = False,
    progress: Callable[[int], None] | None = None,
) -> LoadReport:
    """Re-derive the graph at ``location`` from its archive (see :meth:`KonbiniStore.rebuild`).

    Unlike opening the store, this works when its graph is damaged or missing, or its
    ``state.json`` is: the graph is rebuilt beside the old one and replaces it.
    """
    with KonbiniStore(location, archive=archive, update_url=update_url, gsp_url=gsp_url, _rebuilding=True) as store:
        return store.rebuild(progress=progress, accept_damage=accept_damage)


def open_store(
    location: str | os.PathLike[str] | None,
    *,
    read_only: bool = False,
    archive: str | os.PathLike[str] | None = None,
    update_url: str | None = None,
    gsp_url: str | None = None,
) -> KonbiniStore:
    """Open (creating if needed) the store at ``location``.

    >>> with open_store(None) as store:
    ...     report = store.load([text_stream('{"data": {"type": "Audio", "id": "https://www.tiktok.com/music/a-1", "name": "a"}}')])
    ...     report.loaded
    1

    :param location: a directory path; the query endpoint URL of a SPARQL 1.1 server
        (``http://host:7878/query``); or ``None`` for a throwaway in-memory store.
    :param read_only: do not take the writer's lock (several readers and one writer may coexist).
    :param archive: directory of the archive and state (default: inside a store directory;
        for a remote store there is none unless given).
    :param update_url: SPARQL update endpoint of a remote store (derived for known servers).
    :param gsp_url: Graph Store Protocol endpoint of a remote store (derived for known servers).
    :raises StoreError: the store cannot be opened (in use by another writer, unreadable…).
    """
    return KonbiniStore(location, read_only=read_only, archive=archive, update_url=update_url, gsp_url=gsp_url)
