"""The konbini-ld graph: a facade over an engine, its archive and the ingest pipeline.

A store directory holds the embedded graph, the archive of every raw response, the record
of how far the graph is applied (:mod:`.directory`) and the text index (:mod:`.textindex`);
a remote store is a SPARQL 1.1 server with the archive kept locally. Graphs: data, PROV-O
provenance, counter history (:mod:`konbini_ld.vocab`); queries see their union as the
default graph. The upsert rule is :mod:`.upsert`'s; the order of observations, :mod:`.history`'s.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..engines.oxigraph import OxigraphEngine
from ..engines.remote_http import DEFAULT_TIMEOUT, check_timeout
from ..errors import StoreError, UsageError
from ..io.formats import Format
from ..model import LedgerEntry, LoadReport, Response, Stats
from ..sources.files import Source, iter_sources
from . import directory
from .archive import Archive, ArchiveRecord, Scan
from .ingest import DEFAULT_BATCH, Pipeline, observed
from .lock import WriterLock
from .owner import check_archive
from .textindex import open_index
from .provenance import ledger
from .writer import Writer

if TYPE_CHECKING:
    from rdflib import Dataset

    from ..engines.base import Engine
    from ..query.run import QueryResult

__all__ = ["KonbiniStore", "open_store"]

log = logging.getLogger(__name__)

Location = str | os.PathLike[str] | None
Progress = Callable[[int], None] | None


class KonbiniStore:
    """A konbini-ld graph on disk, in memory, or on a SPARQL server, with its archive.

    Open one with :func:`open_store`; use it as a context manager to release the writer's
    lock when done.

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
        timeout = DEFAULT_TIMEOUT if remote_timeout is None else check_timeout(remote_timeout)
        self.read_only = read_only
        self.location: Path | None = None
        self.state_dir: Path | None = Path(archive) if archive is not None else None
        self.marking = True  # record how far the archive is applied (not while a rebuild builds)
        self._lock: WriterLock | None = None
        self._graph: Any = None
        text = str(location) if location is not None else None
        try:
            if text is not None and text.startswith(("http://", "https://")):
                from ..engines.sparql_http import SparqlHttpEngine, derive_endpoints

                self.engine: Engine = SparqlHttpEngine(derive_endpoints(text, update=update_url, gsp=gsp_url),
                                                       timeout=timeout)
                if self.state_dir is not None:  # (a remote store may have no archive)
                    self._lock = None if read_only else WriterLock.take(self.state_dir)
                    check_archive(None, self.state_dir, text, writable=not read_only)
            elif text is not None and (not text.strip() or re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text)):
                raise UsageError(f"{text!r} is not a directory or an http(s) SPARQL endpoint URL")
            elif location is not None:
                self.location = Path(location)
                self.state_dir = self.state_dir or self.location
                self.engine = directory.open_graph(self.location, self.state_dir, read_only=read_only, rebuilding=
                                                   _rebuilding, on_lock=lambda lock: setattr(self, "_lock", lock))
            else:
                self.engine = OxigraphEngine(None)
        except BaseException:
            self._release_lock()
            raise
        self.archive: Archive | None = Archive(self.state_dir / "archive") if self.state_dir is not None else None
        self.writer = Writer(self.engine, self.mark_applied)
        self.pipeline = Pipeline(self.archive, self.writer)
        #: what opening the store replayed from the archive (responses a kill left unapplied)
        self.recovered = LoadReport()
        try:
            if self.archive is not None:
                try:
                    applied = self._applied() or 0
                except StoreError:  # (a damaged state file: said when the graph is opened; rebuild mends it)
                    applied = 0
                if applied > self.archive.last_seq:  # the archive ends before what the graph holds: records lost
                    self.archive.floor = applied
            if not _rebuilding:  # (a rebuild makes its own text index)
                self.writer.index = open_index(self.engine, self.location, self._applied(), read_only=read_only)
                if not read_only:
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
        """Finish writing and release the store (its lock is freed for other processes)."""
        try:
            self.writer.sync()
        finally:
            self._graph = None
            if self.writer.index is not None:
                self.writer.index.close()
                self.writer.index = None
            self.engine.close()
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def open_engine(self, *, read_only: bool) -> OxigraphEngine:
        """(Re)open the embedded graph of this store directory."""
        assert self.location is not None and self.state_dir is not None
        return directory.open_oxigraph(self.location, self.state_dir, read_only)

    def _applied(self) -> int | None:
        return directory.read_applied(self.state_dir) if self.location and self.state_dir else None

    def mark_applied(self, seq: int) -> None:
        """Record that archive records up to ``seq`` are in the graph."""
        if self.state_dir is not None and self.marking:
            directory.write_applied(self.state_dir, seq)

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError("this store was opened read-only")

    # -- writing -------------------------------------------------------------

    def recover(self) -> LoadReport:
        """Apply archived responses the graph does not have yet (after a crash or a kill). Damaged records
        and responses that cannot be written are reported and skipped: replay never bricks a store."""
        if self.archive is None:
            return LoadReport()
        self.archive.repair()
        self.archive.adopt()  # paid answers a full disk kept out of the archive
        applied = directory.read_applied(self.state_dir) if self.state_dir is not None else 0
        if self.archive.last_seq <= applied:
            return LoadReport()
        scan = Scan()
        report = self.pipeline.run(self.archive.records(after=applied, scan=scan), archive=False)
        report.damage.extend(scan.damage)
        self.mark_applied(self.archive.last_seq)
        return report

    def load(self, sources: Iterable[Source] | Source, *, batch_size: int = DEFAULT_BATCH,
             progress: Progress = None, observed_at: datetime | str | None = None) -> LoadReport:
        """Ingest saved responses: paths to JSON or JSON Lines files, open streams, ``"-"`` or
        :data:`sys.stdin`, or responses as dicts (with or without the ``{"data": …}`` envelope).

        Standard input is read only when given. Bad items are reported in
        :attr:`LoadReport.failed`; good items in the same run still load.

        :param observed_at: when the responses were observed (an aware ``datetime``, or ISO 8601
            text; without a zone, UTC); else a recorded exchange's ``Date`` header, else the time
            this load started. Each property shows its newest observation, in any load order.

        >>> with open_store(None) as store:
        ...     store.load({"data": {"type": "Audio", "id": "https://www.tiktok.com/music/a-1"}}).loaded
        1
        """
        return self.ingest(iter_sources(sources), batch_size=batch_size, progress=progress, observed_at=observed_at)

    def ingest(self, responses: Iterable[Response | Any], *, batch_size: int = DEFAULT_BATCH,
               archive_failed: bool = False, progress: Progress = None, workers: int | None = None,
               observed_at: datetime | str | None = None) -> LoadReport:
        """Ingest raw :class:`~konbini_ld.model.Response` objects through the pipeline (prepare, archive, apply).

        :param archive_failed: archive responses even when they cannot be mapped (paid-for API
            responses), so that ``rebuild`` can recover them later.
        :param workers: preparing processes (``None``: one per CPU beyond two; ``0``: none).
        :param observed_at: when they were observed (see :meth:`load`).
        """
        self._writable()  # without a time, one for the whole run (a recorded Date still says otherwise)
        responses = observed(responses, observed_at or datetime.now(UTC), given=observed_at is not None)
        return self.pipeline.run(responses, archive=True, archive_failed=archive_failed, batch_size=batch_size,
                                 progress=progress, workers=workers)

    def archive_responses(self, responses: Sequence[Response]) -> list[ArchiveRecord]:
        """Durably append raw responses to the archive, before they reach the graph (``fetch``)."""
        self._writable()
        return self.pipeline.archive_responses(responses)

    def spill(self, responses: Sequence[Response]) -> Path:
        """Keep raw responses the archive could not take in a file of their own; the store adopts
        them into the archive the next time it is opened for writing.

        :raises StoreError: they could not be written anywhere.
        """
        if self.archive is None:
            raise StoreError("this store has no archive")
        return self.archive.spill([ArchiveRecord.of(r) for r in responses])

    def apply_archived(self, records: Sequence[ArchiveRecord]) -> LoadReport:
        """Map and upsert responses already archived as ``records``."""
        self._writable()
        return self.pipeline.apply_records(records)

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

    # -- reading -------------------------------------------------------------

    @property
    def graph(self) -> Dataset:
        """An :class:`rdflib.Dataset` view (default graph = union); its SPARQL runs in the engine."""
        if self._graph is None:
            from ..engines.rdflib_view import dataset_for

            self._graph = dataset_for(self.engine)
        graph: Dataset = self._graph
        return graph

    def query(self, sparql: str, params: Mapping[str, Any] | None = None, *, name: str | None = None) -> QueryResult:
        """Run a SPARQL query; ``params`` are bound as RDF terms (never spliced into the text).

        Values may be pyoxigraph or rdflib terms, or Python values (``str`` values that look
        like IRIs become IRIs; use a term to be explicit).

        :raises QueryError: refused (``SERVICE``, updates), malformed, or failed.
        """
        from ..query.run import run_query

        self.writer.sync()
        return run_query(self.engine, sparql, params, name=name)

    def run_named(self, name: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        """Run a named query from ``queries/``; string parameters are read by their declared types.

        :raises UsageError: no such query, or a parameter missing, unknown or ill-typed.
        """
        from ..query.catalog import get_named_query
        from ..query.run import run_query

        nq = get_named_query(name)
        bound = nq.bind(params or {})
        return self.answer(nq.text, bound) or run_query(self.engine, nq.text, bound, name=nq.name, index=nq.index)

    def search(self, text: str, *, limit: int = 100) -> QueryResult:
        """Audios whose name, album or creators contain ``text``, most relevant first: the ``search``
        query, from the text index when the store has a current one (accents folded, BM25)."""
        from ..query.catalog import get_named_query

        nq = get_named_query("search")
        bound = nq.bind({"text": text})
        return self.answer(nq.text, bound, limit=limit) or self.query(nq.text, bound, name=nq.name)

    def answer(self, sparql: str, params: Mapping[str, Any], *, limit: int = 100) -> QueryResult | None:
        """The answer from the index beside the graph, if current and ``sparql`` is one it answers."""
        from .answers import answer

        self.writer.sync()
        index = self.writer.index
        if index is None or (self.read_only and (applied := self._applied()) is not None
                             and not index.current(applied)):
            return None
        return answer(index, sparql, params, limit, self.engine)

    def export(self, output: IO[bytes] | str | os.PathLike[str], format: Format | str = Format.TURTLE, *,
               inline_context: bool = False) -> None:
        """Write the whole graph to a binary stream or a file path.

        :param format: a :class:`~konbini_ld.io.formats.Format` or its name (``turtle``, ``nt``,
            ``nq``, ``trig``, ``jsonld``, ``rdfxml``).
        :param inline_context: JSON-LD: embed the two contexts instead of naming their URLs.
        """
        from ..io.export import export

        self.writer.sync()
        if isinstance(output, (str, os.PathLike)):
            with open(output, "wb") as fh:
                export(self.engine, format, fh, inline_context=inline_context)
            return
        export(self.engine, format, output, inline_context=inline_context)

    def stats(self) -> Stats:
        """Counts of audios, persons, videos and triples; last observation; credits spent."""
        from .stats import stats

        self.writer.sync()
        result = stats(self.engine, self.archive.last_seq if self.archive is not None else 0)
        applied = self._applied() if self.location is not None else None
        if self.archive is not None and applied is not None and self.archive.last_seq > applied:
            # archived, not in the graph yet (a run stopped before it caught up): paid for all the same
            from ..units import parse_credits
            from .ingest import replayable

            for record in self.archive.records(after=applied, repair=False):
                if replayable(record):
                    result.unapplied += 1
                    result.credits_spent += parse_credits(record.credits_used) or 0
        return result

    def fetch_ledger(self) -> dict[str, LedgerEntry]:
        """What earlier fetches already bought: request key → status and next page cursor."""
        self.writer.sync()
        return ledger(self.engine)

    def compact(self) -> None:
        """Merge the store's files and its index's segments: faster reads after large loads (embedded only)."""
        self.writer.sync()
        if isinstance(self.engine, OxigraphEngine) and not self.read_only:
            self.engine.compact()
            if self.writer.index is not None:
                self.writer.index.optimize()

    def __len__(self) -> int:
        self.writer.sync()
        return self.engine.count()


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
