"""Where ``serve`` runs queries: worker processes over read-only views of an embedded store
(sandboxed, with time and memory caps; shared as :mod:`.worker_pool` says), or the remote
SPARQL server itself.

Everything a query costs happens in a worker, under the query's time limit: the ``SERVICE``
check, reading the query's form, choosing the answer's format, evaluation and writing the
answer. The server's event loop only moves bytes. A worker says when it starts on a query (its
clock starts then), and sends an answer as a header (status, media type, length) and then its
bytes in pieces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ..errors import KonbiniError, QueryError, StaleViewError, UsageError
from ..io.formats import Format
from .protocol import Job, media_type
from .resource_jobs import PREFIX as JOB_PREFIX

__all__ = ["CHUNK", "STOPPING", "DEFAULT_MAX_MEMORY", "MIN_MEMORY", "PRELOAD", "Answer", "Cut", "Direct", "Job", "ServeOptions",
           "media_type"]

#: Memory one query may use by default (a worker's resident size, store caches included).
DEFAULT_MAX_MEMORY = 1024 * 1024 * 1024
#: Least ``max_memory`` accepted: a worker holds about 50 MiB before it runs anything.
MIN_MEMORY = 64 * 1024 * 1024
#: Bytes of an answer sent from a worker at a time (fits a pipe's buffer whole).
CHUNK = 60 * 1024


@dataclass(slots=True)
class ServeOptions:
    """How ``serve`` runs.

    :ivar location: store directory or remote query endpoint URL.
    :ivar store_options: ``archive``, ``update_url``, ``gsp_url`` for :func:`~konbini_ld.store.open_store`.
    :ivar timeout: seconds a query may run.
    :ivar max_rows: rows (or triples) the query page shows at most (the protocol endpoint
        always answers in full, or with an error status).
    :ivar cors_origins: origins allowed to call the endpoint from a browser (none by default).
    :ivar workers: query worker processes kept ready (embedded store); up to ``2 × workers``
        queries run at once.
    :ivar max_memory: bytes of memory one query may use (its worker's resident size).
    :ivar host: the address the server listens on (accepted as ``Host``).
    :ivar allow_hosts: further ``Host`` names to answer (``*`` for any).
    :ivar max_body: bytes a request body (a POSTed query or form) may hold.
    :ivar body_seconds: seconds a request body may take to arrive.
    :ivar dumps: a folder of dumps of the dataset (``export``'s files) to serve at ``/dumps/`` and
        describe as distributions in ``/void``.
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
    max_body: int = 1024 * 1024
    body_seconds: float = 30.0
    dumps: str | None = None


@dataclass(slots=True)
class Answer:
    """A query's answer on its way to the client: ``length`` bytes from ``chunks``.

    ``chunks`` raises :class:`Cut` when the answer cannot be completed (its worker was stopped);
    ``close`` gives the worker back (or stops it, when the answer was not read to its end).
    """

    status: int
    media: str
    length: int
    chunks: AsyncIterator[bytes]
    close: Any = None


class Cut(Exception):
    """An answer stopped before its end."""


# -- in the worker ---------------------------------------------------------------------------------


def _answer_job(store: Any, job: Job) -> tuple[str, Any]:
    """Check, read and run one job: ``("ok", (status, media, body))`` or ``("error", payload)``."""
    import pyoxigraph as ox

    from ..errors import NotInFormatError
    from ..query.guard import check_safe_query
    from ..sparql import query_form
    from .protocol import NotAcceptable, negotiate

    sparql, params_nt, accept, formats, name, dataset, inline, base_iri = job
    if name is not None and name.startswith(JOB_PREFIX):  # an entity's description, the dataset's figures
        from .resource_jobs import run_job

        return run_job(store, job)
    try:
        check_safe_query(sparql, name=name)
    except QueryError as exc:
        return "error", (400, f"Refused: {exc}")
    form = query_form(sparql)
    if form is None:
        return "error", (400, "Malformed query: no SELECT, ASK, CONSTRUCT or DESCRIBE")
    if form == "UPDATE":
        return "error", (400, "Refused: an update operation; queries are read-only")
    if dataset is not None:
        for key, graphs in (("default-graph-uri", dataset[0]), ("named-graph-uri", dataset[1])):
            for graph in graphs:
                try:
                    ox.NamedNode(graph)
                except ValueError:
                    return "error", (400, f"Bad request: {key} {graph[:200]!r} is not an IRI")
    try:
        fmt = negotiate(accept, "CONSTRUCT" if form in ("CONSTRUCT", "DESCRIBE") else form, formats)
    except NotAcceptable as exc:
        return "error", (406, f"Not Acceptable: {exc}")
    params = {k: _term_from_nt(v) for k, v in params_nt.items()}
    try:
        return "ok", _execute(store, sparql, params, fmt.label, name, dataset, inline, base_iri)
    except NotInFormatError as exc:  # (the answer exists, in another format: say which)
        return "error", (406, f"Not Acceptable: {exc}")


def _execute(store: Any, sparql: str, params: dict[str, Any], fmt_name: str, name: str | None,
             dataset: tuple[list[str], list[str]] | None = None,
             inline_context: bool = False, base_iri: str | None = None) -> tuple[int, str, bytes]:
    """Run one query against an open store; return status, media type and the whole answer
    (never a part of it: the time and memory limits bound what an answer may cost)."""
    import io

    from ..engines.base import Dataset
    from ..io.results import write_boolean, write_solutions
    from ..query.run import QueryResult, run_query

    fmt = Format.lookup(fmt_name)
    graphs = Dataset(tuple(dataset[0]), tuple(dataset[1])) if dataset is not None else None
    fast = store.answer(sparql, params) if graphs is None else None  # (the text index)
    result = fast or run_query(store.engine, sparql, params, name=name, dataset=graphs, base_iri=base_iri)
    if result.kind == "ASK":
        return 200, media_type(fmt), write_boolean(bool(result.boolean), fmt.label)
    if result.kind == "SELECT":
        return 200, media_type(fmt), write_solutions(result.variables, result.rows(), fmt.label)
    out = io.BytesIO()
    QueryResult("CONSTRUCT", native=list(result.triples())).write(out, fmt, inline_context=inline_context)
    return 200, media_type(fmt), out.getvalue()


def _follow(server: int) -> None:
    """End this worker the moment the server process ``server`` is gone, however it went
    (SIGKILL, a second Ctrl-C that skips the graceful stop): its time limits went with it, and a
    runaway query would otherwise run on for nobody. Watched from a thread (the engine lets go of
    the interpreter while it evaluates), on a pidfd where the kernel has them."""
    import os
    import select
    import threading
    import time

    def watch() -> None:
        try:
            fd = os.pidfd_open(server)
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            select.select([fd], [], [])  # readable once the process has ended
        else:
            while True:
                try:
                    os.kill(server, 0)
                except ProcessLookupError:
                    break
                except OSError:
                    pass
                time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="follow-server", daemon=True).start()


def _worker(conn: Any, location: str, store_options: dict[str, Any], server: int | None = None) -> None:
    """Worker process: keeps a read-only view of the store, reopened when the store changes,
    and retried on a fresh view when a writer compacted files away under it. An answer is
    sent as a header (status, media type, length) and then its bytes in pieces. It ends when
    the server process ``server`` does (see :func:`_follow`)."""
    import os
    import signal

    from ..engines.sandbox import deny_network, end_with_parent
    from ..pipeline.collection import open_store

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the whole group: serve stops us
    if end_with_parent():  # (the fork server ended before the call)
        os._exit(0)
    if server is not None:
        _follow(server)
    deny_network()  # before anything runs: no query can open a connection from here
    state = Path(store_options.get("archive") or location) / "state.json"
    store = None
    opened_at = -1.0
    try:  # ready before the first query
        opened_at = state.stat().st_mtime if state.exists() else 0.0
        store = open_store(location, read_only=True, **store_options)
    except Exception:  # noqa: BLE001 - reported with the first query that needs the store
        store = None
    while True:
        try:
            job = conn.recv()
            conn.send_bytes(_STARTED)  # the query's clock starts now, not while this process started
        except (EOFError, OSError):
            return
        try:
            for attempt in range(_READ_ATTEMPTS):
                try:
                    mtime = state.stat().st_mtime if state.exists() else 0.0
                    if store is None or mtime != opened_at or attempt:
                        if store is not None:
                            store.close()
                            store = None
                        store = open_store(location, read_only=True, **store_options)
                        opened_at = mtime
                    status, answer = _answer_job(store, job)
                    break
                except KonbiniError as exc:
                    if attempt + 1 == _READ_ATTEMPTS or not isinstance(exc, StaleViewError):
                        raise
        except KonbiniError as exc:
            status, answer = "error", _error_payload(exc, 500)
        except Exception as exc:  # noqa: BLE001 - defensive: report, keep serving
            status, answer = "error", (500, f"{type(exc).__name__}: {exc}")
        try:
            if status == "ok":
                code, media, body = answer
                conn.send(("ok", (code, media, len(body))))
                view = memoryview(body)
                for start in range(0, len(body), CHUNK):
                    conn.send_bytes(view[start:start + CHUNK])
            else:
                conn.send(("error", answer))
        except (BrokenPipeError, OSError):
            return  # the server went away, or stopped reading this answer


_READ_ATTEMPTS = 4
_STARTED = b"started"
#: What a new worker process has imported before it is forked (a fork server keeps them loaded,
#: so a worker starts in tens of milliseconds: stopping a runaway is cheap). The program's entry
#: point is among them: a worker prepares the program's main script, which imports it, and
#: would otherwise read it from disk, where an upgrade in place may have put a newer one.
PRELOAD = ["konbini_ld._entry", "konbini_ld.apps.query_workers", "konbini_ld.apps.protocol", "konbini_ld.store.store",
           "konbini_ld.query.run", "konbini_ld.query.guard", "konbini_ld.io.results", "konbini_ld.apps.resource_jobs",
           "konbini_ld.apps.pages", "konbini_ld.query.entity", "konbini_ld.query.dataset", "pyoxigraph"]


def _term_from_nt(text: str) -> Any:
    import pyoxigraph as ox

    quad = next(iter(ox.parse(f"<urn:s> <urn:p> {text} .", ox.RdfFormat.N_TRIPLES)))
    return quad.object


#: Whether the client that asked has gone (its connection closed): its query need not run on.
Gone = Callable[[], Awaitable[bool]]
#: What a query whose client has gone answers (nobody reads it; the log says so).
GONE = (499, "the client closed the connection; the query was stopped")
#: The answer to a query that arrives, or still waits for a worker, once the server is stopping.
STOPPING = (503, "the server is stopping: the query was not run; try again shortly")


class Direct:
    """Remote stores: the SPARQL server does the work; the request timeout bounds it."""

    def __init__(self, opts: ServeOptions) -> None:
        self.opts = opts
        self.store: Any = None
        self.stopping = False

    def drain(self) -> None:
        """The server is stopping: queries that arrive from now on are answered 503."""
        self.stopping = True

    async def start(self) -> None:
        from ..pipeline.collection import open_store

        self.store = open_store(self.opts.location, read_only=True, **self.opts.store_options)
        self.store.engine.timeout = self.opts.timeout

    async def stop(self) -> None:
        if self.store is not None:
            self.store.close()

    async def run(self, job: Job, gone: Gone | None = None) -> tuple[str, Any]:
        if self.stopping:
            return "error", STOPPING
        try:
            with anyio.fail_after(self.opts.timeout + 1):
                status, payload = await anyio.to_thread.run_sync(_answer_job, self.store, job,
                                                                  abandon_on_cancel=True)
        except TimeoutError:
            return "error", (503, f"query stopped after the {self.opts.timeout:g} s time limit")
        except KonbiniError as exc:
            return "error", _error_payload(exc, 502)
        if status != "ok":
            return status, payload
        code, media, body = payload

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), CHUNK):
                yield body[start:start + CHUNK]

        return "ok", Answer(code, media, len(body), chunks(), lambda complete: None)


def _error_payload(exc: KonbiniError, otherwise: int) -> tuple[int, str, int | None, int | None]:
    """Status, message, and where in the query a syntax error is (line, column)."""
    if isinstance(exc, (QueryError, UsageError)):
        return 400, str(exc), getattr(exc, "line", None), getattr(exc, "column", None)
    return otherwise, str(exc), None, None

