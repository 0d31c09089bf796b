"""The store: a facade over an engine, its archive (the log), the writer and the index beside the graph.

A store directory holds the embedded graph, the archive of every raw response, the record
of how far the graph is applied (:mod:`.directory`) and the text index (:mod:`.textindex`);
a remote store is a SPARQL 1.1 server with the archive kept locally. Graphs: data, PROV-O
provenance, counter history (:mod:`konbini_ld.vocab`); queries see their union as the
default graph. The upsert rule is :mod:`.upsert`'s; the order of observations, :mod:`.history`'s.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Self, cast

from ..engines.oxigraph import OxigraphEngine
from ..engines.remote_http import DEFAULT_TIMEOUT, check_timeout
from ..errors import StoreBusyError, StoreError, UsageError
from ..io.formats import Format
from ..model import LedgerEntry, Response, Stats
from .events import BatchWritten
from .index.textindex import TextIndex, open_index
from .log import directory
from .log.archive import Archive, ArchiveRecord
from .log.lock import WriterLock
from .log.owner import check_archive
from .provenance import ledger
from .writer import Writer

if TYPE_CHECKING:
    from rdflib import Dataset

    from ..engines.base import Engine
    from ..query.run import QueryResult

__all__ = ["MEMO_FILE", "Location", "Store"]

#: Beside the graph: what its last writer remembered of its writes (a cache; see :mod:`.memo`).
MEMO_FILE = "written.memo"

log = logging.getLogger(__name__)

Location = str | os.PathLike[str] | None


class Store:
    """A konbini-ld graph on disk, in memory, or on a SPARQL server, with its archive: what it
    holds and how to read it. What flows into it (load, fetch, replay, rebuild) is the
    pipeline's (:class:`konbini_ld.pipeline.KonbiniStore` adds those verbs).

    Use it as a context manager to release the writer's lock when done.

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
        self._closed = False
        self.location: Path | None = None
        self.state_dir: Path | None = Path(archive) if archive is not None else None
        self.marking = True  # record how far the archive is applied (not while a rebuild builds)
        self._lock: WriterLock | None = None
        self._graph: Any = None
        #: answers handed out that may still read the engine lazily (let go of before a repack)
        self._answers: weakref.WeakSet[QueryResult] = weakref.WeakSet()
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
        #: what the last writer of the graph remembered of its writes (:class:`.memo.Written`)
        self._memo = self.location / MEMO_FILE if self.location is not None and not read_only else None
        if self._memo is not None and _rebuilding:
            self._memo.unlink(missing_ok=True)
        elif self._memo is not None:
            try:
                stamp = self._applied()
            except StoreError:
                stamp = None
            self.writer.take_memo(self._memo, stamp)
        #: the index beside the graph (``None``: none, or it failed and is stale until the next writer)
        self.index: TextIndex | None = None
        try:
            if self.archive is not None:
                try:
                    applied = self._applied() or 0
                except StoreError:  # (a damaged state file: said when the graph is opened; rebuild mends it)
                    applied = 0
                if applied > self.archive.last_seq:  # the archive ends before what the graph holds: records lost
                    self.archive.floor = applied
            if not _rebuilding:  # (a rebuild makes its own text index)
                self.follow_with(open_index(self.engine, self.location, self._applied(), read_only=read_only))
        except BaseException:
            self.close()
            raise

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Finish writing and release the store (its lock is freed for other processes)."""
        try:
            self.writer.sync()
            if self._memo is not None and self.marking:
                self.writer.save_memo(self._memo, self._applied())
        finally:
            self._closed = True
            self._graph = None
            if self.index is not None:
                self.index.close()
                self.follow_with(None)
            self.engine.close()
            self._release_lock()

    def follow_with(self, index: TextIndex | None) -> None:
        """Keep ``index`` current with every batch the writer writes (``None``: no index)."""
        self.writer.unsubscribe(self._follow)
        self.index = index
        self.writer.on_writing = self._index_writing if index is not None else None
        if index is not None:
            self.writer.subscribe(self._follow)

    def _index_writing(self) -> None:
        """Before a batch changes the graph: the index says it is in the middle of one until the
        batch reaches it (a kill meanwhile leaves it rebuilt by the next writer, and readers off it)."""
        self._update_index(lambda index: index.writing())

    def _follow(self, event: BatchWritten) -> None:
        """Take a batch written into the index (an index is only kept beside an embedded graph)."""
        self._update_index(lambda index: index.follow(event, cast(OxigraphEngine, self.engine).store))

    def _update_index(self, update: Callable[[TextIndex], None]) -> None:
        """An index that fails is dropped (and rebuilt on the next open for writing)."""
        index = self.index
        if index is None:
            return
        try:
            update(index)
        except Exception as exc:
            log.warning("the text index could not be updated (%s); search reads the graph until the store "
                        "is next opened for writing, which rebuilds it", exc)
            log.debug("the text index update failed", exc_info=True)
            index.invalidate()
            self.follow_with(None)

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

    def _view_applied(self) -> int | None:
        """How far the archive was applied in the graph a read-only view reads (read when it
        opened: the index answers only if it is of that state, not of a writer's later batches)."""
        views = getattr(self.engine, "views", None)
        seen = views.applied if views is not None else None
        return seen if seen is not None else self._applied()

    def mark_applied(self, seq: int) -> None:
        """Record that archive records up to ``seq`` are in the graph."""
        if self.state_dir is not None and self.marking:
            directory.write_applied(self.state_dir, seq)

    def _writable(self) -> None:
        if self._closed:
            raise StoreError("this store is closed (open it again to write to it)")
        if self.read_only:
            raise StoreError("this store was opened read-only")

    # -- the log -------------------------------------------------------------

    def append(self, responses: Sequence[Response]) -> list[ArchiveRecord]:
        """Durably append raw responses to the archive, before they reach the graph.

        :raises StoreError: the archive cannot be written (full disk…), or the store has none.
        """
        self._writable()
        if self.archive is None or not responses:
            return []
        return self.archive.append(ArchiveRecord.of(r) for r in responses)

    def spill(self, responses: Sequence[Response]) -> Path:
        """Keep raw responses the archive could not take in a file of their own; the store adopts
        them into the archive the next time it is opened for writing.

        :raises StoreError: they could not be written anywhere.
        """
        if self.archive is None:
            raise StoreError("this store has no archive")
        return self.archive.spill([ArchiveRecord.of(r) for r in responses])

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
        return self._handed(run_query(self.engine, sparql, params, name=name))

    def _handed(self, result: QueryResult) -> QueryResult:
        self._answers.add(result)
        return result

    def run_named(self, name: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        """Run a named query from ``queries/``; string parameters are read by their declared types.

        :raises UsageError: no such query, or a parameter missing, unknown or ill-typed.
        """
        from ..query.catalog import get_named_query
        from ..query.run import run_query

        nq = get_named_query(name)
        bound = nq.bind(params or {})
        return self.answer(nq.text, bound) or self._handed(
            run_query(self.engine, nq.text, bound, name=nq.name, index=nq.index))

    def search(self, text: str, *, limit: int = 100) -> QueryResult:
        """Audios whose name, album or creators contain ``text``, most relevant first: the ``search``
        query, from the text index when the store has a current one (accents folded, BM25)."""
        from ..query.catalog import get_named_query

        nq = get_named_query("search")
        bound = nq.bind({"text": text})
        return self.answer(nq.text, bound, limit=limit) or self.query(nq.text, bound, name=nq.name)

    def answer(self, sparql: str, params: Mapping[str, Any], *, limit: int = 100) -> QueryResult | None:
        """The answer from the index beside the graph, if current and ``sparql`` declares a projection
        the index has for exactly that text (else ``None``: run it on the graph)."""
        from .index.projections import answer

        self.writer.sync()
        index = self.index
        if index is None:
            return None
        # (a reader's answer reads the index in several statements: all of them, and the check that
        # it is of the view's state, read one state of it, whatever a writer commits meanwhile)
        views = getattr(self.engine, "views", None)
        if self.read_only and views is not None and views.unlocked:
            return None  # (a view opened without the locks: of which state is unknown; the plain queries say)
        with index.snapshot() if index.read_only else contextlib.nullcontext():
            if self.read_only and (applied := self._view_applied()) is not None and not index.current(applied):
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
        if self.read_only and self.location is not None:  # (what the view reads: records past it are not in it)
            applied = self._view_applied()
        else:
            applied = directory.read_applied(self.state_dir) if self.state_dir is not None else None
        if self.archive is not None and applied is not None and self.archive.last_seq > applied:
            # archived, not in the graph yet (a run stopped before it caught up): paid for all the same
            from ..units import parse_credits

            for record in self.archive.records(after=applied, repair=False):
                if record.replayable:
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
            if self.index is not None:
                self.index.optimize()

    def repack(self) -> int:
        """Rewrite the embedded graph in its smallest form, and return the quads it holds.

        A graph written by many loads (a collector's daily runs) takes about twice the room
        Oxigraph's bulk loader gives the same quads, and merging its files does not bring that
        back. This copies every quad into a new graph in one bulk load beside the live one, which
        it replaces at a commit point, as ``rebuild`` does: a kill or a full disk on the way
        leaves the live graph as it was. The quads, the archive, the index and what the writer
        remembers are unchanged; readers beside it move to the new graph as they do after a
        rebuild. It needs free room of about twice the compacted graph's size while it writes.

        Answers this store handed out are read to their end first, and its :attr:`graph` view
        moves to the new graph; anything else still reading the old one (a result taken from
        ``store.engine`` directly) makes it refuse, with the graph unchanged.

        :raises StoreBusyError: something in this process still reads the graph being replaced.
        :raises StoreError: not an embedded store on disk, opened for writing; or the new
            graph could not be written (the live one is unchanged).
        """
        self._writable()
        if not isinstance(self.engine, OxigraphEngine) or self.location is None or self.state_dir is None:
            raise StoreError("only a store directory has files to rewrite (a SPARQL server keeps its own)")
        directory.check_replaceable(self.location)
        self.writer.sync()
        building = self.location / directory.BUILDING
        directory.remove_tree(building)
        try:
            copied = self.engine.copy_into(building)
            held = self.engine.count()
            if copied != held:  # pragma: no cover - a defect of the copy, never to go live
                raise StoreError(f"rewriting the graph copied {copied:,} of its {held:,} quads; it is unchanged")
        except BaseException:
            directory.remove_tree(building)
            raise
        self.replace_graph(building, self._applied() or 0)
        return copied

    def replace_graph(self, building: Path, applied: int, *, before_commit: Callable[[], None] | None = None) -> None:
        """Make the graph complete in ``building`` the live one (``repack``, ``rebuild``), and reopen it.

        Answers this store handed out are read to their end first; its engine (and so the writer
        and the :attr:`graph` view) reads the new graph after. The old graph must be closed for
        good before its directory is replaced (an instance left open would write its files into
        the new one's): if anything else in the process still reads it, ``building`` is removed,
        nothing is replaced, and the store opens its graph again on its next use.

        :param before_commit: called once nothing reads the old graph, just before the commit point.
        :raises StoreBusyError: something in this process still reads the live graph.
        """
        assert self.location is not None and self.state_dir is not None
        engine = cast(OxigraphEngine, self.engine)
        for answer in list(self._answers):
            try:
                answer.detach()
            except ValueError:  # ("generator already executing")
                directory.remove_tree(building)
                raise StoreBusyError("an answer of this store is being read in another thread: the graph is "
                                     "unchanged; repack when it is done") from None
        engine.swapping = True
        engine.close()
        gc.collect()  # (an answer dropped in a cycle would hold the old files open until then)
        try:
            directory.check_released(self.location)
        except BaseException as exc:
            engine.swapping = False
            directory.remove_tree(building)
            engine.open_again(now=False)  # (opening it now would be refused for the same reason)
            if isinstance(exc, StoreBusyError):
                raise StoreBusyError(
                    f"the graph at {self.location} is still read by something in this process (a query result "
                    "or a view taken from the store's engine), so it is not replaced and is unchanged: let go "
                    "of it and use the store again") from None
            raise
        if before_commit is not None:
            before_commit()
        try:
            directory.commit_rebuild(self.location, self.state_dir, applied)
        finally:
            engine.swapping = False
        if engine.path == self.location / directory.LIVE:
            engine.open_again()  # the new graph, in the same engine: the writer and the view follow it
        else:  # (a damaged graph being rebuilt was never opened: it had an empty stand-in)
            self.engine = self.writer.engine = self.open_engine(read_only=False)

    def __len__(self) -> int:
        self.writer.sync()
        return self.engine.count()
