"""Where ``serve`` runs queries: worker processes over read-only views of an embedded store
(sandboxed, with time and memory caps and spare workers for cheap queries), or the remote
SPARQL server itself.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import anyio

from ..errors import KonbiniError, QueryError, UsageError
from ..io.formats import Format

__all__ = ["DEFAULT_MAX_MEMORY", "ServeOptions", "runner_for"]

#: Memory one query may use by default (a worker's resident size, store caches included).
DEFAULT_MAX_MEMORY = 1024 * 1024 * 1024
_POLL_SECONDS = 0.05
_SLOW_SECONDS = 0.25

def media_type(fmt: Format) -> str:
    """The ``Content-Type`` a format is sent with."""
    text = fmt in (Format.CSV, Format.TSV, Format.TURTLE)
    return fmt.media_type + ("; charset=utf-8" if text else "")


@dataclass(slots=True)
class ServeOptions:
    """How ``serve`` runs.

    :ivar location: store directory or remote query endpoint URL.
    :ivar store_options: ``archive``, ``update_url``, ``gsp_url`` for :func:`~konbini_ld.store.open_store`.
    :ivar timeout: seconds a query may run.
    :ivar max_rows: rows (or triples) returned at most.
    :ivar cors_origins: origins allowed to call the endpoint from a browser (none by default).
    :ivar workers: query worker processes kept ready (embedded store); up to as many again
        are started while queries run long.
    :ivar max_memory: bytes of memory one query may use (its worker's resident size).
    :ivar host: the address the server listens on (accepted as ``Host``).
    :ivar allow_hosts: further ``Host`` names to answer (``*`` for any).
    """

    location: str
    store_options: dict[str, Any]
    timeout: float = 30.0
    max_rows: int = 10_000
    cors_origins: Sequence[str] = ()
    workers: int = 2
    max_memory: int = DEFAULT_MAX_MEMORY
    host: str = "127.0.0.1"
    allow_hosts: Sequence[str] = ()


def _execute(store: Any, sparql: str, params: dict[str, Any], fmt_name: str, max_rows: int, name: str | None,
             dataset: tuple[list[str], list[str]] | None = None,
             inline_context: bool = False) -> tuple[int, str, bytes, bool]:
    """Run one query against an open store; return status, media type, body, truncated."""
    import io

    from ..engines.base import Dataset
    from ..io.results import write_boolean, write_solutions
    from ..query.run import QueryResult, run_query

    fmt = Format.lookup(fmt_name)
    graphs = Dataset(tuple(dataset[0]), tuple(dataset[1])) if dataset is not None else None
    fast = store.answer(sparql, params) if graphs is None else None  # (the text index)
    result = fast or run_query(store.engine, sparql, params, name=name, dataset=graphs)
    if result.kind == "ASK":
        return 200, media_type(fmt), write_boolean(bool(result.boolean), fmt.label), False
    if result.kind == "SELECT":
        rows = list(islice(result.rows(), max_rows + 1))
        body = write_solutions(result.variables, rows[:max_rows], fmt.label)
        return 200, media_type(fmt), body, len(rows) > max_rows
    triples = list(islice(result.triples(), max_rows + 1))
    out = io.BytesIO()
    QueryResult("CONSTRUCT", native=triples[:max_rows]).write(out, fmt, inline_context=inline_context)
    return 200, media_type(fmt), out.getvalue(), len(triples) > max_rows


def _worker(conn: Any, location: str, store_options: dict[str, Any]) -> None:
    """Worker process: keeps a read-only view of the store, reopened when the store changes,
    and retried on a fresh view when a writer compacted files away under it."""
    from ..engines.sandbox import deny_network
    from ..store.store import open_store

    deny_network()  # before anything runs: no query can open a connection from here
    store = None
    opened_at = -1.0
    state = Path(store_options.get("archive") or location) / "state.json"
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        sparql, params_nt, fmt, max_rows, name, dataset, inline = job
        try:
            params = {k: _term_from_nt(v) for k, v in params_nt.items()}
            for attempt in range(_READ_ATTEMPTS):
                try:
                    mtime = state.stat().st_mtime if state.exists() else 0.0
                    if store is None or mtime != opened_at or attempt:
                        if store is not None:
                            store.close()
                            store = None
                        store = open_store(location, read_only=True, **store_options)
                        opened_at = mtime
                    answer = _execute(store, sparql, params, fmt, max_rows, name, dataset, inline)
                    break
                except KonbiniError as exc:
                    if attempt + 1 == _READ_ATTEMPTS or not _is_stale_view(exc):
                        raise
            conn.send(("ok", answer))
        except KonbiniError as exc:
            conn.send(("error", _error_payload(exc, 500)))
        except Exception as exc:  # pragma: no cover - defensive: report, keep serving
            conn.send(("error", (500, f"{type(exc).__name__}: {exc}")))


_READ_ATTEMPTS = 4


def _is_stale_view(exc: Exception) -> bool:
    """A read-only view a writer's compaction outran (its files are gone): worth a fresh view."""
    text = str(exc)
    return any(m in text for m in ("No such file", "Corruption", "IO error", "damaged"))


def _term_from_nt(text: str) -> Any:
    import pyoxigraph as ox

    quad = next(iter(ox.parse(f"<urn:s> <urn:p> {text} .", ox.RdfFormat.N_TRIPLES)))
    return quad.object


class _Workers:
    """Query worker processes. A worker over the time or memory limit is killed and replaced.

    ``workers`` are kept ready; when every ready worker is busy with a query that has run for
    a while, spares are started (up to ``workers`` more), so a cheap query is not stuck behind
    runaways. Spares are retired when they are no longer needed.
    """

    def __init__(self, opts: ServeOptions) -> None:
        self.opts = opts
        self.ctx = mp.get_context("spawn")
        self.idle: list[tuple[Any, Any]] = []
        self.total = 0
        self.limit = max(1, opts.workers) * 2
        self._tasks: set[Any] = set()

    def _spawn(self) -> tuple[Any, Any]:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(child, self.opts.location, self.opts.store_options), daemon=True)
        proc.start()
        child.close()
        return proc, parent

    async def start(self) -> None:
        self.slots = anyio.Semaphore(self.limit)
        self.lock = anyio.Lock()
        for _ in range(max(1, self.opts.workers)):
            self.idle.append(self._spawn())
            self.total += 1

    async def stop(self) -> None:
        for proc, conn in self.idle:
            conn.close()
            proc.kill()
        self.idle.clear()

    async def _take(self) -> tuple[Any, Any]:
        async with self.lock:
            if self.idle:
                return self.idle.pop()
            self.total += 1
        return await anyio.to_thread.run_sync(self._spawn)

    async def _give_back(self, worker: tuple[Any, Any]) -> None:
        async with self.lock:
            if len(self.idle) < max(1, self.opts.workers):
                self.idle.append(worker)
                return
            self.total -= 1
        worker[1].close()
        worker[0].kill()

    def _discard(self, worker: tuple[Any, Any]) -> None:
        proc, conn = worker
        proc.kill()
        proc.join(5)
        conn.close()
        self.total -= 1

    async def _top_up(self) -> None:
        """Start a spare when every ready worker is taken (within the limit)."""
        async with self.lock:
            if self.idle or self.total >= self.limit:
                return
            self.total += 1
        worker = await anyio.to_thread.run_sync(self._spawn)
        await self._give_back(worker)

    async def run(self, job: tuple[Any, ...]) -> tuple[str, Any]:
        async with self.slots:
            worker = await self._take()
            proc, conn = worker
            conn.send(job)
            started = time.monotonic()
            deadline = started + self.opts.timeout
            topped = False
            while True:
                ready = await anyio.to_thread.run_sync(conn.poll, _POLL_SECONDS)
                if ready or not proc.is_alive():
                    break
                now = time.monotonic()
                if not topped and now > started + _SLOW_SECONDS:
                    topped = True  # this one runs long: make sure the next query finds a worker
                    task = asyncio.get_running_loop().create_task(self._top_up())
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                used = _resident_bytes(proc.pid)
                if used > self.opts.max_memory:
                    self._discard(worker)
                    return "error", (503, f"query stopped: it needed more than {_size(self.opts.max_memory)} of "
                                          "memory (serve --max-memory)")
                if now > deadline:
                    self._discard(worker)
                    return "error", (503, f"query stopped after the {self.opts.timeout:g} s time limit")
            if not ready:
                self._discard(worker)
                return "error", (500, "query worker died")
            answer: tuple[str, Any] = conn.recv()
            await self._give_back(worker)
            return answer


def _resident_bytes(pid: int) -> int:
    """Resident memory of a process (Linux ``/proc``; 0 where it cannot be read)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= factor:
            return f"{n / factor:g} {unit}"
    return f"{n} bytes"


class _Direct:
    """Remote stores: the SPARQL server does the work; the request timeout bounds it."""

    def __init__(self, opts: ServeOptions) -> None:
        self.opts = opts
        self.store: Any = None

    async def start(self) -> None:
        from ..store.store import open_store

        self.store = open_store(self.opts.location, read_only=True, **self.opts.store_options)
        self.store.engine.timeout = self.opts.timeout

    async def stop(self) -> None:
        if self.store is not None:
            self.store.close()

    async def run(self, job: tuple[Any, ...]) -> tuple[str, Any]:
        sparql, params_nt, fmt, max_rows, name, dataset, inline = job
        params = {k: _term_from_nt(v) for k, v in params_nt.items()}
        try:
            with anyio.fail_after(self.opts.timeout + 1):
                result = await anyio.to_thread.run_sync(_execute, self.store, sparql, params, fmt, max_rows, name,
                                                          dataset, inline)
            return "ok", result
        except TimeoutError:
            return "error", (503, f"query stopped after the {self.opts.timeout:g} s time limit")
        except KonbiniError as exc:
            return "error", _error_payload(exc, 502)


def _error_payload(exc: KonbiniError, otherwise: int) -> tuple[int, str, int | None, int | None]:
    """Status, message, and where in the query a syntax error is (line, column)."""
    if isinstance(exc, (QueryError, UsageError)):
        return 400, str(exc), getattr(exc, "line", None), getattr(exc, "column", None)
    return otherwise, str(exc), None, None


def runner_for(opts: ServeOptions) -> Any:
    """Worker processes for an embedded store; the server itself for a remote one."""
    return _Direct(opts) if opts.location.startswith(("http://", "https://")) else _Workers(opts)
