"""The embedded engine: pyoxigraph, in memory or on disk (RocksDB), native SPARQL.

An engine knows nothing of API responses or upsert rules; the store decides what to
delete and insert and hands the engine whole batches. On disk, readers open read-only
views beside the one writer; a view a writer's compaction outran is reopened.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from itertools import chain
from pathlib import Path
from typing import IO, Any

import pyoxigraph as ox

from ..errors import QueryError, StaleViewError, StoreBusyError, StoreDamagedError, StoreError
from ..sparql import has_dataset_clause
from . import native_memory
from .views import ViewLock
from .base import Capabilities, Dataset, WriteRejected, first_line, translate_syntax_error

__all__ = ["BULK_THRESHOLD", "OxigraphEngine", "translate"]

#: From this many inserted quads on, write through Oxigraph's bulk loader (much faster than a
#: transaction; not atomic, which the archive's replay-on-open makes safe).
BULK_THRESHOLD = 5_000


_STALE_ATTEMPTS = 12
_END = " .\n"  # what an N-Triples line ends with (no term ends with a dot or a space)


def translate(exc: BaseException, where: str, *, read_only: bool, doing: str = "") -> StoreError:
    """The one seam where pyoxigraph's storage errors (``OSError``/``RuntimeError`` carrying
    RocksDB's text) become konbini-ld's typed errors: the only place their message is read.

    A file missing under a read-only view is a :class:`StaleViewError` (a writer compacted it
    away: a fresh view reads on); under a writer, or corrupt data, a :class:`StoreDamagedError`;
    the engine's lock held elsewhere, a :class:`StoreBusyError`.
    """
    text = str(exc)
    missing = "No such file" in text or ("Corruption" in text and ".sst" in text)
    if missing and read_only:
        return StaleViewError(f"the store at {where} changed under a read-only view ({first_line(text)})")
    if "current process" in text and "LOCK" in text:
        return StoreBusyError(f"the store at {where} is still open in this process (a store not closed, or a "
                              "query result or view still reading it): let go of it and try again")
    if "lock" in text.lower() and "LOCK" in text:
        return StoreBusyError(f"the store at {where} is open for writing in another process; "
                              "stop it or use another --store")
    if "Permission denied" in text:  # (not damage: nothing to rebuild)
        return StoreError(f"{doing or 'using'} the store at {where} failed: permission denied "
                          f"({first_line(text)}); check who owns its files")
    if missing or "Corruption" in text or "MANIFEST" in text or "CURRENT" in text:
        return StoreDamagedError(f"the store at {where} is damaged and cannot be opened ({first_line(text)})")
    if isinstance(exc, OSError) and exc.strerror:
        return StoreError(f"{doing or 'using'} the store at {where} failed: {exc.strerror}")
    return StoreError(f"{doing or 'using'} the store at {where} failed: {first_line(text)}")


def _quads(lines: Sequence[str], graph: ox.NamedNode) -> str:
    """N-Triples lines as N-Quads text in ``graph``.

    A line's only newline is its end (N-Triples escapes those of literals), so when every line
    ends the same way one replace over their text does it; otherwise line by line.
    """
    text = "".join(lines)
    if text.count(_END) == len(lines):
        return text.replace(_END, f" {graph}{_END}")
    return "".join(line.rstrip(_END) + f" {graph} .\n" for line in lines)  # pragma: no cover - defensive


#: Lines turned into bytes at a time (:func:`_nquads_bytes`).
ENCODE_LINES = 2048


def _nquads_bytes(inserts: Mapping[ox.NamedNode, Sequence[str]]) -> bytes:
    """The N-Quads of ``inserts`` as UTF-8, holding about twice their size while it runs.

    Joined whole first, the text would be a single string: one character outside Latin-1 (an
    emoji in a caption) makes Python store every character of it in four bytes, so a batch of
    10 MiB held 86 MiB on the way to its bytes. Encoded a few thousand lines at a time, only those
    few are ever wide.
    """
    return b"".join(_quads(lines[i:i + ENCODE_LINES], graph).encode("utf-8")
                    for graph, lines in inserts.items() for i in range(0, len(lines), ENCODE_LINES))


#: Quads one bulk load takes at most. Oxigraph's loader holds what it is given, parsed, until it
#: writes its files (about 400 bytes a quad): a batch is bounded by its answers' bytes (2 MiB of
#: answers: 15,000 to 70,000 quads) but for one answer larger than the bound (a page of 8,000
#: videos: 365,000 quads; an audio attributed to 19,000 persons: 700,000), which loads in parts.
BULK_CHUNK = 50_000


def _bulk_parts(inserts: Mapping[ox.NamedNode, Sequence[str]]) -> Iterator[dict[ox.NamedNode, Sequence[str]]]:
    """``inserts`` in parts of equal size, :data:`BULK_CHUNK` lines at most (one part when it is
    no larger: each load adds its own files to RocksDB's first level)."""
    total = sum(map(len, inserts.values()))
    size = -(-total // -(-total // BULK_CHUNK)) if total else 1
    part: dict[ox.NamedNode, Sequence[str]] = {}
    room = size
    for graph, lines in inserts.items():
        start = 0
        while len(lines) - start >= room:
            part[graph] = lines[start:start + room]
            yield part
            start += room
            part, room = {}, size
        if start < len(lines):
            part[graph] = lines[start:] if start else lines
            room -= len(lines) - start
    if part:
        yield part


#: Quads one ``DELETE DATA`` update removes at most (the update is parsed whole: about 300 bytes
#: a quad while it runs).
DELETE_CHUNK = 50_000


def _delete_data(quads: Sequence[ox.Quad]) -> tuple[list[str], list[ox.Quad]]:
    """``DELETE DATA`` updates removing ``quads`` (:data:`DELETE_CHUNK` at most each), and the
    quads they cannot say.

    Removing quads one call each lets go of the GIL and takes it back for each: on the writer's
    thread, beside a caller busy in Python, taking it back waits for the interpreter's switch
    interval (about 5 ms a quad: 100,000 removes took 480 s instead of 1). One update parses and
    removes them all with the GIL let go. A literal whose text holds a backslash stays out of it (a
    SPARQL parser reads ``\\u`` escapes before the string they are in: ``\\\\u0022`` would not say
    what it said), and so does anything but a quad of IRIs and literals in a named graph: those
    are removed one by one, as are all of them if the update is refused.
    """
    updates: list[str] = []
    # quads whose text is ASCII, and the others in updates of their own, a few thousand at a time
    # (one character outside Latin-1 makes Python hold every character of a text in four bytes)
    narrow: dict[ox.NamedNode, list[str]] = {}
    wide: dict[ox.NamedNode, list[str]] = {}
    held = [0, 0]
    odd: list[ox.Quad] = []
    for q in quads:
        g, o = q.graph_name, q.object
        if type(g) is not ox.NamedNode or type(q.subject) is not ox.NamedNode or not (
                type(o) is ox.NamedNode or (type(o) is ox.Literal and "\\" not in o.value)):
            odd.append(q)
            continue
        line = f"{q.subject} {q.predicate} {o} .\n"
        kind = 0 if line.isascii() else 1
        by_graph = wide if kind else narrow
        lines = by_graph.get(g)
        if lines is None:
            lines = by_graph[g] = []
        lines.append(line)
        held[kind] += 1
        if held[kind] >= (ENCODE_LINES if kind else DELETE_CHUNK):
            updates.append(_delete_text(by_graph))
            by_graph.clear()
            held[kind] = 0
    updates.extend(_delete_text(by_graph) for by_graph in (narrow, wide) if by_graph)
    return updates, odd


def _delete_text(by_graph: dict[ox.NamedNode, list[str]]) -> str:
    parts = ["DELETE DATA {\n"]
    for g, lines in by_graph.items():
        parts.append(f"GRAPH {g} {{\n")
        parts.extend(lines)
        parts.append("}\n")
    parts.append("}")
    return "".join(parts)  # (joined once: one copy of the lines' text)


def _materialized(result: Any) -> Any:
    """The whole answer, read now (so a writer's compaction cannot cut it short later)."""
    if isinstance(result, ox.QuerySolutions):
        data = io.BytesIO()
        result.serialize(data, ox.QueryResultsFormat.JSON)
        return ox.parse_query_results(data.getvalue(), ox.QueryResultsFormat.JSON)
    if isinstance(result, ox.QueryTriples):
        return list(result)
    return result


class OxigraphEngine:
    """The embedded store: pyoxigraph on disk, transactional writes, native SPARQL.

    :param path: the Oxigraph directory (created if missing); ``None`` for a throwaway in-memory store.
    :param read_only: open a read-only view that does not lock out a writer.
    :param views: the store directory's :class:`~.views.ViewLock`: a view opens only between
        the writer's batches (the writer holds it while it applies each, :meth:`writing`).
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, read_only: bool = False,
                 views: ViewLock | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.read_only = read_only
        self.views = views
        self.description = str(self.path) if self.path else "(in memory)"
        on_disk = self.path is not None
        self.capabilities = Capabilities(
            exclusive_writer=True, write_behind=True, substitution=True, transactions=False, bulk_load=True,
            read_only_views=on_disk, timeouts=False, persistent=on_disk,
        )
        if on_disk:
            native_memory.tune()  # a long-lived process: RocksDB's freed buffers go back to the system
        self._store: ox.Store | None = self._open()
        self._open_on_use = False
        #: the graph is being replaced (``Store.replace_graph``): closed for a moment, not for good
        self.swapping = False

    @property
    def store(self) -> ox.Store:
        """The open pyoxigraph store (opened again here after :meth:`open_again` with ``now=False``).

        :raises StoreError: closed; :class:`StoreBusyError` while it is being replaced, or when
            opening it again is refused because something in this process still holds the old one.
        """
        store = self._store
        if store is None:
            if self.swapping:
                raise StoreBusyError(f"the graph at {self.description} is being replaced by a repack in this "
                                     "process: try again when it is done")
            if not self._open_on_use:
                raise StoreError(f"the store at {self.description} is closed")
            self._store = store = self._open()
            self._open_on_use = False
        return store

    @store.setter
    def store(self, value: ox.Store) -> None:
        self._store = value

    def open_again(self, *, now: bool = True) -> None:
        """Open the graph at this engine's path again after :meth:`close` (it may be a new graph
        swapped in meanwhile); ``now=False``: on its next use."""
        if now:
            self._store = self._open()
        self._open_on_use = not now

    def _open(self) -> ox.Store:
        attempts = _STALE_ATTEMPTS if self.read_only else 1
        for attempt in range(attempts):
            try:
                if self.path is None:
                    return ox.Store()
                if self.read_only:
                    if self.views is None:
                        return ox.Store.read_only(str(self.path))
                    with self.views.opening():  # (the graph between two of a writer's batches)
                        return ox.Store.read_only(str(self.path))
                self.path.parent.mkdir(parents=True, exist_ok=True)
                return ox.Store(str(self.path))
            except (OSError, RuntimeError) as exc:
                error = translate(exc, str(self.path), read_only=self.read_only, doing="opening")
                if (isinstance(error, (StaleViewError, StoreDamagedError)) or type(error) is StoreError) \
                        and attempt + 1 < attempts and "Permission denied" not in str(exc):
                    # a writer compacted files away while we opened, or replaced the whole graph
                    # (compact, rebuild): files of the old one read beside the new one's manifest,
                    # or none for a moment (about 1.5 s in all, for a machine busy with the copy)
                    time.sleep(min(0.2, 0.02 * (attempt + 1)))
                    continue
                if type(error) is StoreError and "Permission denied" not in str(exc):  # (not a kind it knows)
                    error = StoreDamagedError(f"the store at {self.path} is damaged and cannot be opened "
                                              f"({first_line(str(exc))})")
                raise error from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def reopen(self) -> None:
        """Open a fresh read-only view (a writer beside it may have compacted files away)."""
        if self.path is not None and self.read_only:
            self._store = self._open()

    # -- writes --------------------------------------------------------------

    def writing(self) -> AbstractContextManager[None]:
        """Held while one batch is applied (its removes, its inserts, what they replace): a
        reader's view opens before it or after it, never in the middle."""
        if self.views is None or self.read_only:
            return nullcontext()
        return self.views.batch()

    def quads_for_subjects(self, subjects: Sequence[ox.NamedNode], graph: ox.NamedNode | None,
                           predicates: Sequence[ox.NamedNode] | None = None) -> Iterator[ox.Quad]:
        pattern = self.store.quads_for_pattern
        if predicates is None:
            return chain.from_iterable(pattern(s, None, None, graph) for s in subjects)
        # a seek per predicate: an entity may carry thousands of other quads
        return chain.from_iterable(pattern(s, p, None, graph) for s in subjects for p in predicates)

    def apply(self, deletes: Sequence[ox.Quad], inserts: Mapping[ox.NamedNode, Sequence[str]]) -> None:
        store = self.store
        try:
            if deletes:
                updates, odd = _delete_data(deletes)
                try:
                    for text in updates:
                        store.update(text)
                except SyntaxError:  # (what an update refused, it did not remove: the rest one by one)
                    odd = list(deletes)
                for quad in odd:
                    store.remove(quad)
            if sum(map(len, inserts.values())) >= BULK_THRESHOLD:
                # one bulk load for every graph: each load adds its own files to RocksDB's first
                # level, and a long load that adds them faster than they are merged slows down
                for part in _bulk_parts(inserts):
                    store.bulk_load(_nquads_bytes(part), ox.RdfFormat.N_QUADS)
                if self.path is not None:
                    native_memory.give_back()
                return
            for graph, lines in inserts.items():
                if lines:
                    store.load("".join(lines).encode("utf-8"), ox.RdfFormat.N_TRIPLES, to_graph=graph)
        except (SyntaxError, UnicodeError, MemoryError, ValueError) as exc:
            raise WriteRejected(f"{type(exc).__name__}: {first_line(str(exc))}") from exc
        except (OSError, RuntimeError) as exc:
            raise translate(exc, self.description, read_only=False, doing="writing to") from exc

    def clear_graph(self, graph: ox.NamedNode) -> None:
        try:
            self.store.clear_graph(graph)
        except (OSError, RuntimeError) as exc:
            raise translate(exc, self.description, read_only=False, doing=f"clearing {graph.value} in") from exc

    # -- reads ---------------------------------------------------------------

    def query(
        self, sparql: str, *, substitutions: dict[str, Any] | None = None, union: bool = True,
        dataset: Dataset | None = None, base_iri: str | None = None,
    ) -> ox.QuerySolutions | ox.QueryBoolean | ox.QueryTriples:
        """Run a query (relative IRIs in it resolve against ``base_iri``). On a read-only view the answer is read in full before it is returned,
        and read again from a fresh view if a writer beside it compacted files away meanwhile.

        :param dataset: default and named graphs (the protocol's ``default-graph-uri`` and
            ``named-graph-uri``), overriding the union and the query's own ``FROM``.
        """
        # a query naming its own dataset (FROM) gets exactly that, from graphs already stored
        as_union = union and not has_dataset_clause(sparql) and dataset is None
        bound = {ox.Variable(k): v for k, v in (substitutions or {}).items()}
        graphs: dict[str, Any] = {"base_iri": base_iri} if base_iri else {}
        if dataset is not None:
            graphs["default_graph"] = [ox.NamedNode(g) for g in dataset.default_graphs] or None
            graphs["named_graphs"] = [ox.NamedNode(g) for g in dataset.named_graphs]
        attempts = _STALE_ATTEMPTS if self.read_only and self.path is not None else 1
        for attempt in range(attempts):
            try:
                result = self.store.query(sparql, use_default_graph_as_union=as_union, substitutions=bound, **graphs)
                return _materialized(result) if attempts > 1 else result
            except SyntaxError as exc:
                raise translate_syntax_error(exc, text=sparql) from exc
            except (OSError, RuntimeError) as exc:
                text = str(exc)
                stale = isinstance(exc, OSError) and isinstance(
                    translate(exc, self.description, read_only=self.read_only), StaleViewError)
                if stale and attempt + 1 < attempts:
                    time.sleep(0.02 * (attempt + 1))
                    self.reopen()  # the one place a stale view is retried: a fresh view, the query again
                    continue
                if stale:
                    raise translate(exc, self.description, read_only=True) from exc
                m = re.search(r"variable \?(\w+) in its SELECT projection", text)
                if m:
                    raise QueryError(
                        f"parameter ?{m.group(1)} must be in the SELECT projection to be bound "
                        "(parameters are substituted as RDF terms, SEP-0007)"
                    ) from exc
                raise QueryError(f"query failed: {first_line(text)}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def iter_quads(self, graph: ox.NamedNode | None = None) -> Iterator[ox.Quad]:
        return iter(self.store.quads_for_pattern(None, None, None, graph))

    def graph_triples(self, graph: ox.NamedNode) -> Iterator[ox.Triple]:
        """Every triple of ``graph``, as :meth:`iter_quads` reads them, in about two thirds of the
        time on two cores: Oxigraph reads the store and writes it as N-Triples into a pipe on a
        thread of its own, without the interpreter, while this one takes the triples parsed back
        (reading a quad's terms from the store is most of what taking it costs: 7 µs a quad).

        :raises StaleViewError: a writer's compaction outran this read-only view.
        """
        import threading

        if not os.path.isdir("/dev/fd"):  # (no way to name a pipe's end: read them here)
            yield from (q.triple for q in self.iter_quads(graph))
            return
        read_fd, write_fd = os.pipe()
        failure: list[BaseException] = []

        def dump() -> None:
            try:  # (to a path: written by Oxigraph's own thread, the interpreter left to the reader)
                self.store.dump(f"/dev/fd/{write_fd}", ox.RdfFormat.N_TRIPLES, from_graph=graph)
            except BrokenPipeError:
                pass  # the reader stopped taking them
            except OSError as exc:
                if "(os error 22)" not in str(exc):  # (but the fsync a pipe does not take, once all is written)
                    failure.append(exc)
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                failure.append(exc)
            finally:
                os.close(write_fd)

        writer = threading.Thread(target=dump, name="konbini-ld-read", daemon=True)
        writer.start()
        triples: Any = None
        try:
            triples = ox.parse(path=f"/dev/fd/{read_fd}", format=ox.RdfFormat.N_TRIPLES)
            for q in triples:
                yield q.triple
        finally:
            del triples  # (its own end of the pipe closed: a writer still writing stops)
            os.close(read_fd)
            writer.join()
        if failure:
            exc = failure[0]
            if isinstance(exc, OSError) and ("IO error" in str(exc) or "Corruption" in str(exc)):
                raise translate(exc, self.description, read_only=self.read_only, doing="reading") from exc
            raise exc

    def dump(self, output: IO[bytes], fmt: ox.RdfFormat, *, prefixes: dict[str, str]) -> None:
        """Write every quad to ``output``. Not retried on a fresh view when a writer's compaction
        outruns a read-only one (what was written is out already): a :class:`StaleViewError`."""
        try:
            self.store.dump(output, fmt, prefixes=prefixes)
        except (OSError, RuntimeError) as exc:
            text = str(exc)
            if isinstance(exc, BrokenPipeError) or not ("IO error" in text or "Corruption" in text):
                raise  # (the output's own error: written to, not read from the store)
            raise translate(exc, self.description, read_only=self.read_only, doing="exporting") from exc

    def count(self) -> int:
        return len(self.store)

    def compact(self) -> None:
        """Merge the store's files (after large bulk loads: reads get faster)."""
        try:
            self.store.optimize()
        except (OSError, RuntimeError) as exc:
            raise translate(exc, self.description, read_only=False, doing="compacting") from exc

    def copy_into(self, path: Path) -> int:
        """Write every quad of this graph into a new store at ``path`` in one bulk load, and
        return how many there are.

        Oxigraph's bulk loader writes its files at the bottom of RocksDB's tree, compressed once:
        a graph written by thousands of loads and merged since takes about twice the room on disk
        (and compacting it does not bring that back). The quads stream through a pipe from the
        dump to the loader: nothing but the new store is written on the way.

        :raises StoreError: the new store cannot be written (a full disk); ``path`` is then
            whatever was written of it, for the caller to remove.
        """
        import threading

        if self.path is None:
            raise StoreError("an in-memory store has no files to rewrite")
        read_fd, write_fd = os.pipe()
        failure: list[BaseException] = []

        def dump() -> None:
            try:
                with open(write_fd, "wb", buffering=1 << 20) as out:
                    self.store.dump(out, ox.RdfFormat.N_QUADS)
            except BrokenPipeError:
                pass  # the loader stopped reading (also when closing): its error is the one to report
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                failure.append(exc)

        writer = threading.Thread(target=dump, name="konbini-ld-copy", daemon=True)
        target: ox.Store | None = None
        try:
            with open(read_fd, "rb", buffering=1 << 20) as source:
                writer.start()
                try:
                    target = ox.Store(str(path))
                    target.bulk_load(source, ox.RdfFormat.N_QUADS)
                    target.flush()
                finally:
                    source.close()  # a loader that failed: the dump ends on a broken pipe
                    writer.join()
            if failure:  # the graph could not be read: say so of the graph, not of the copy
                exc = failure[0]
                if isinstance(exc, (OSError, RuntimeError)):
                    raise translate(exc, self.description, read_only=False, doing="reading") from exc
                raise exc
            return len(target)
        except (OSError, RuntimeError) as exc:
            raise translate(exc, str(path), read_only=False, doing="rewriting the graph into") from exc
        finally:
            del target

    def close(self) -> None:
        self._open_on_use = False
        if self._store is not None:
            if not self.read_only:
                try:
                    self._store.flush()
                except OSError:  # pragma: no cover - disk failure at exit
                    pass
            self._store = None
        if self.views is not None:
            self.views.close()
