"""``konbini-ld serve``: a read-only SPARQL 1.1 Protocol endpoint and a small query page.

* ``/sparql`` — GET ``?query=``, POST form, POST ``application/sparql-query``.
  SELECT/ASK negotiate JSON, XML, CSV, TSV; CONSTRUCT/DESCRIBE Turtle, N-Triples,
  JSON-LD (``Accept`` header, or ``?format=``). Malformed or refused queries are
  400, updates 403, unacceptable formats 406, queries over the time limit 503.
  Results stop at the row cap (``X-Result-Truncated`` says so).
* ``/queries`` — the named queries (JSON); ``/queries/{name}?param=value`` runs one
  with its parameters bound as RDF terms.
* ``/`` — the query page (self-contained: no CDN, no external requests).

Queries on the embedded store run in worker processes holding read-only views of
the store, so a query over its time or memory limit is stopped for real (its
worker is replaced) and a writer (``load``, ``fetch``) can keep working beside
the server. The workers cannot open internet sockets (:mod:`konbini_ld.sandbox`),
so no query can make the server connect anywhere. While queries run long, spare
workers are started (up to twice ``workers``), so cheap queries keep being
answered beside runaways.

Only requests whose ``Host`` is the address the server is bound to (or a name
given with ``allow_hosts``) are answered: a page on another site cannot reach
the endpoint through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import islice
from pathlib import Path
from urllib.parse import parse_qs
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .errors import KonbiniError, QueryError, UsageError
from .sparql import query_form

__all__ = ["ServeOptions", "create_app"]

log = logging.getLogger(__name__)

_SOLUTION_TYPES = {
    "application/sparql-results+json": "json",
    "application/json": "json",
    "application/sparql-results+xml": "xml",
    "application/xml": "xml",
    "text/xml": "xml",
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
}
_GRAPH_TYPES = {
    "text/turtle": "turtle",
    "application/x-turtle": "turtle",
    "application/n-triples": "nt",
    "text/plain": "nt",
    "application/ld+json": "jsonld",
    "application/json": "jsonld",
}
_MEDIA = {
    "json": "application/sparql-results+json",
    "xml": "application/sparql-results+xml",
    "csv": "text/csv; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "turtle": "text/turtle; charset=utf-8",
    "nt": "application/n-triples",
    "jsonld": "application/ld+json",
}


#: Memory one query may use by default (a worker's resident size, store caches included).
DEFAULT_MAX_MEMORY = 1024 * 1024 * 1024
_POLL_SECONDS = 0.05
_SLOW_SECONDS = 0.25


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


# -- content negotiation ----------------------------------------------------------------


def negotiate(accept: str | None, kind: str, explicit: str | None = None) -> str | None:
    """Pick the result format for a query ``kind`` (``SELECT``, ``ASK``, ``CONSTRUCT``) from ``Accept``.

    >>> negotiate("text/csv;q=0.5, application/sparql-results+xml", "SELECT")
    'xml'
    >>> negotiate("*/*", "CONSTRUCT"), negotiate(None, "ASK")
    ('turtle', 'json')
    >>> negotiate("image/png", "SELECT") is None
    True
    """
    table = _GRAPH_TYPES if kind == "CONSTRUCT" else _SOLUTION_TYPES
    default = "turtle" if kind == "CONSTRUCT" else "json"
    if explicit:
        fmt = explicit.lower()
        return fmt if fmt in table.values() else None
    if not accept:
        return default
    choices = []
    for i, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        q = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        choices.append((-q, i, media))
    for neg_q, _, media in sorted(choices):
        if neg_q == 0:
            continue
        if media in table:
            return table[media]
        if media in ("*/*", "application/*", "text/*"):
            return default
    return None


# -- executing queries -----------------------------------------------------------------------


def _execute(store: Any, sparql: str, params: dict[str, Any], fmt: str, max_rows: int, name: str | None) -> tuple[int, str, bytes, bool]:
    """Run one query against an open store; return status, media type, body, truncated."""
    import io

    import pyoxigraph as ox

    from .export import write_jsonld_triples
    from .namespaces import PREFIXES
    from .queries import run_query
    from .resultio import write_boolean, write_solutions

    result = run_query(store.backend, sparql, params, name=name)
    if result.kind == "ASK":
        return 200, _MEDIA[fmt], write_boolean(bool(result.boolean), fmt), False
    if result.kind == "SELECT":
        rows = list(islice(result.rows(), max_rows + 1))
        return 200, _MEDIA[fmt], write_solutions(result.variables, rows[:max_rows], fmt), len(rows) > max_rows
    triples = list(islice(result.triples(), max_rows + 1))
    out = io.BytesIO()
    if fmt == "jsonld":
        write_jsonld_triples(triples[:max_rows], out)
    else:
        fmt_ox = ox.RdfFormat.TURTLE if fmt == "turtle" else ox.RdfFormat.N_TRIPLES
        ox.serialize(triples[:max_rows], out, fmt_ox, prefixes=PREFIXES)
    return 200, _MEDIA[fmt], out.getvalue(), len(triples) > max_rows


def _worker(conn: Any, location: str, store_options: dict[str, Any]) -> None:
    """Worker process: keeps a read-only view of the store, reopened when the store changes,
    and retried on a fresh view when a writer compacted files away under it."""
    from .sandbox import deny_network
    from .store import open_store

    deny_network()  # before anything runs: no query can open a connection from here
    store = None
    opened_at = -1.0
    state = Path(store_options.get("archive") or location) / "state.json"
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        sparql, params_nt, fmt, max_rows, name = job
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
                    answer = _execute(store, sparql, params, fmt, max_rows, name)
                    break
                except KonbiniError as exc:
                    if attempt + 1 == _READ_ATTEMPTS or not _is_stale_view(exc):
                        raise
            conn.send(("ok", answer))
        except KonbiniError as exc:
            conn.send(("error", (400 if isinstance(exc, (QueryError, UsageError)) else 500, str(exc))))
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
            answer = conn.recv()
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
        from .store import open_store

        self.store = open_store(self.opts.location, read_only=True, **self.opts.store_options)
        self.store.backend.timeout = self.opts.timeout

    async def stop(self) -> None:
        if self.store is not None:
            self.store.close()

    async def run(self, job: tuple[Any, ...]) -> tuple[str, Any]:
        sparql, params_nt, fmt, max_rows, name = job
        params = {k: _term_from_nt(v) for k, v in params_nt.items()}
        try:
            with anyio.fail_after(self.opts.timeout + 1):
                result = await anyio.to_thread.run_sync(_execute, self.store, sparql, params, fmt, max_rows, name)
            return "ok", result
        except TimeoutError:
            return "error", (503, f"query stopped after the {self.opts.timeout:g} s time limit")
        except KonbiniError as exc:
            return "error", (400 if isinstance(exc, (QueryError, UsageError)) else 502, str(exc))


# -- the app -------------------------------------------------------------------------------------


def create_app(opts: ServeOptions) -> Starlette:
    """The ASGI app (run it with uvicorn, or ``konbini-ld serve``)."""
    from contextlib import asynccontextmanager

    from .queries import named_queries

    remote = opts.location.startswith(("http://", "https://"))
    runner: Any = _Direct(opts) if remote else _Workers(opts)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    async def answer(sparql: str, params: dict[str, Any], request: Request, name: str | None = None) -> Response:
        from .sparql import check_safe_query

        try:
            check_safe_query(sparql, name=name)
        except QueryError as exc:
            return PlainTextResponse(f"Refused: {exc}\n", status_code=400)
        form = query_form(sparql)
        if form is None:
            return PlainTextResponse("Malformed query: no SELECT, ASK, CONSTRUCT or DESCRIBE\n", status_code=400)
        kind = "CONSTRUCT" if form in ("CONSTRUCT", "DESCRIBE") else form
        fmt = negotiate(request.headers.get("accept"), kind, request.query_params.get("format"))
        if fmt is None:
            offered = ", ".join(sorted(set((_GRAPH_TYPES if kind == "CONSTRUCT" else _SOLUTION_TYPES))))
            return PlainTextResponse(f"Not acceptable: a {form} result can be {offered}\n", status_code=406)
        started = time.perf_counter()
        status, payload = await runner.run((sparql, {k: str(v) for k, v in params.items()}, fmt, opts.max_rows, name))
        if status == "error":
            code, message = payload
            return PlainTextResponse(message + "\n", status_code=code)
        code, media, body, truncated = payload
        headers = {"X-Query-Time": f"{time.perf_counter() - started:.4f}"}
        if truncated:
            headers["X-Result-Truncated"] = str(opts.max_rows)
        return Response(body, status_code=code, media_type=media, headers=headers)

    async def sparql(request: Request) -> Response:
        if request.method == "GET":
            if "update" in request.query_params:
                return _read_only()
            query = request.query_params.get("query")
        else:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype == "application/sparql-update":
                return _read_only()
            if ctype == "application/sparql-query":
                query = (await request.body()).decode("utf-8", "replace")
            elif ctype == "application/x-www-form-urlencoded":
                form = parse_qs((await request.body()).decode("utf-8", "replace"))
                if "update" in form:
                    return _read_only()
                query = (form.get("query") or [None])[0]
            else:
                return PlainTextResponse(
                    "Unsupported Media Type: POST application/sparql-query or a form with query=\n", status_code=415
                )
        if not query:
            return PlainTextResponse("Bad request: give a SPARQL query in the query parameter\n", status_code=400)
        return await answer(query, {}, request)

    async def list_queries(request: Request) -> Response:
        return JSONResponse([
            {"name": q.name, "title": q.title, "description": q.description, "form": q.form, "text": q.text,
             "params": [{"name": p.name, "type": p.type, "required": p.required, "description": p.description}
                        for p in q.params]}
            for q in named_queries().values()
        ])

    async def run_named(request: Request) -> Response:
        name = request.path_params["name"]
        queries = named_queries()
        if name not in queries:
            return PlainTextResponse(f"No named query {name!r}\n", status_code=404)
        q = queries[name]
        values = {k: v for k, v in request.query_params.items() if k != "format" and v != ""}
        try:
            bound = q.bind(values)
        except UsageError as exc:
            return PlainTextResponse(f"Bad request: {exc}\n", status_code=400)
        return await answer(q.text, bound, request, name=name)

    async def page(request: Request) -> Response:
        return _asset("index.html", "text/html; charset=utf-8")

    async def script(request: Request) -> Response:
        return _asset("app.js", "text/javascript; charset=utf-8")

    async def style(request: Request) -> Response:
        return _asset("app.css", "text/css; charset=utf-8")

    routes = [
        Route("/", page),
        Route("/app.js", script),
        Route("/app.css", style),
        Route("/sparql", sparql, methods=["GET", "POST"]),
        Route("/queries", list_queries),
        Route("/queries/{name}", run_named),
    ]
    from starlette.middleware import Middleware

    middleware = [Middleware(_HostCheck, allowed=allowed_hosts(opts.host, opts.allow_hosts))]
    if opts.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        middleware.append(Middleware(CORSMiddleware, allow_origins=list(opts.cors_origins), allow_methods=["GET", "POST"],
                                     allow_headers=["Accept", "Content-Type"]))
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


#: The query page and its two files: no inline script or style, nothing from elsewhere.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _asset(name: str, media_type: str) -> Response:
    body = resources.files("konbini_ld").joinpath(f"web/{name}").read_bytes()
    return Response(body, media_type=media_type, headers={
        "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    })


def allowed_hosts(host: str, extra: Sequence[str] = ()) -> frozenset[str]:
    """The ``Host`` names the server answers to: the address it is bound to, its loopback
    names when it is bound to loopback, and ``extra``.

    >>> sorted(allowed_hosts("127.0.0.1"))
    ['127.0.0.1', '::1', 'localhost']
    """
    names = {host.lower().strip("[]")}
    if host in ("127.0.0.1", "localhost", "::1"):
        names |= {"127.0.0.1", "localhost", "::1"}
    names |= {h.lower().strip("[]") for h in extra}
    return frozenset(names)


def host_name(header: str) -> str:
    """The host part of a ``Host`` header, without port or IPv6 brackets.

    >>> host_name("[::1]:7878"), host_name("LocalHost:80"), host_name("example.org")
    ('::1', 'localhost', 'example.org')
    """
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _HostCheck:
    """Answer only requests addressed to this server by name (DNS rebinding defence)."""

    def __init__(self, app: Any, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and "*" not in self.allowed:
            headers = dict(scope.get("headers") or [])
            host = host_name(headers.get(b"host", b"").decode("latin-1"))
            if host not in self.allowed:
                response = PlainTextResponse(
                    f"Misdirected request: this endpoint answers to {', '.join(sorted(self.allowed))} "
                    "(serve --allow-host NAME adds a name)\n", status_code=421)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _read_only() -> Response:
    return PlainTextResponse("Forbidden: this endpoint is read-only; updates are not accepted\n", status_code=403)


def serve(opts: ServeOptions, *, host: str = "127.0.0.1", port: int = 7878) -> None:
    """Run the endpoint with uvicorn until interrupted."""
    import uvicorn

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    uvicorn.run(create_app(opts), host=host, port=port, log_level="warning", lifespan="on")
