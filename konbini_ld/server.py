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
the store, so a query over its time limit is stopped for real (its worker is
replaced) and a writer (``load``, ``fetch``) can keep working beside the server.
"""

from __future__ import annotations

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
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
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


@dataclass(slots=True)
class ServeOptions:
    """How ``serve`` runs.

    :ivar location: store directory or remote query endpoint URL.
    :ivar store_options: ``archive``, ``update_url``, ``gsp_url`` for :func:`~konbini_ld.store.open_store`.
    :ivar timeout: seconds a query may run.
    :ivar max_rows: rows (or triples) returned at most.
    :ivar cors_origins: origins allowed to call the endpoint from a browser (none by default).
    :ivar workers: query worker processes (embedded store).
    """

    location: str
    store_options: dict[str, Any]
    timeout: float = 30.0
    max_rows: int = 10_000
    cors_origins: Sequence[str] = ()
    workers: int = 2


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
    """Worker process: keeps a read-only view of the store, reopened when the store changes."""
    from .store import open_store

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
            mtime = state.stat().st_mtime if state.exists() else 0.0
            if store is None or mtime != opened_at:
                if store is not None:
                    store.close()
                store = open_store(location, read_only=True, **store_options)
                opened_at = mtime
            params = {k: _term_from_nt(v) for k, v in params_nt.items()}
            conn.send(("ok", _execute(store, sparql, params, fmt, max_rows, name)))
        except KonbiniError as exc:
            conn.send(("error", (400 if isinstance(exc, (QueryError, UsageError)) else 500, str(exc))))
        except Exception as exc:  # pragma: no cover - defensive: report, keep serving
            conn.send(("error", (500, f"{type(exc).__name__}: {exc}")))


def _term_from_nt(text: str) -> Any:
    import pyoxigraph as ox

    quad = next(iter(ox.parse(f"<urn:s> <urn:p> {text} .", ox.RdfFormat.N_TRIPLES)))
    return quad.object


class _Workers:
    """A pool of query worker processes; a worker that overruns the time limit is killed and replaced."""

    def __init__(self, opts: ServeOptions) -> None:
        self.opts = opts
        self.ctx = mp.get_context("spawn")

    def _spawn(self) -> tuple[Any, Any]:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(child, self.opts.location, self.opts.store_options), daemon=True)
        proc.start()
        child.close()
        return proc, parent

    async def start(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[tuple[Any, Any]](max_buffer_size=self.opts.workers)
        for _ in range(max(1, self.opts.workers)):
            await self.send.send(self._spawn())

    async def stop(self) -> None:
        while True:
            try:
                proc, conn = self.receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            conn.close()
            proc.kill()

    async def run(self, job: tuple[Any, ...]) -> tuple[str, Any]:
        proc, conn = await self.receive.receive()
        conn.send(job)
        ready = await anyio.to_thread.run_sync(conn.poll, self.opts.timeout)
        if not ready or not proc.is_alive():
            proc.kill()
            proc.join(5)
            conn.close()
            await self.send.send(self._spawn())
            if not ready:
                return "error", (503, f"query stopped after the {self.opts.timeout:g} s time limit")
            return "error", (500, "query worker died")
        answer = conn.recv()
        await self.send.send((proc, conn))
        return answer


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
        html = resources.files("konbini_ld").joinpath("web/index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'"})

    routes = [
        Route("/", page),
        Route("/sparql", sparql, methods=["GET", "POST"]),
        Route("/queries", list_queries),
        Route("/queries/{name}", run_named),
    ]
    middleware = []
    if opts.cors_origins:
        from starlette.middleware import Middleware
        from starlette.middleware.cors import CORSMiddleware

        middleware.append(Middleware(CORSMiddleware, allow_origins=list(opts.cors_origins), allow_methods=["GET", "POST"],
                                     allow_headers=["Accept", "Content-Type"]))
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def _read_only() -> Response:
    return PlainTextResponse("Forbidden: this endpoint is read-only; updates are not accepted\n", status_code=403)


def serve(opts: ServeOptions, *, host: str = "127.0.0.1", port: int = 7878) -> None:
    """Run the endpoint with uvicorn until interrupted."""
    import uvicorn

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    uvicorn.run(create_app(opts), host=host, port=port, log_level="warning", lifespan="on")
