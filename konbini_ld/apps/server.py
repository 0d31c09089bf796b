"""``konbini-ld serve``: a read-only SPARQL 1.1 Protocol endpoint and a small query page.

* ``/sparql`` — GET ``?query=``, POST form, POST ``application/sparql-query``.
  SELECT/ASK negotiate JSON, XML, CSV, TSV; CONSTRUCT/DESCRIBE Turtle, N-Triples,
  JSON-LD (``Accept`` header, or ``?format=``). Malformed or refused queries are
  400, updates 403, queries over the time or memory limit 503. An answer is whole or it
  is an error: there is no row cap on the protocol (``max_rows`` is the query page's, which
  says when it shows fewer rows than the answer holds).
* ``/queries`` — the named queries (JSON); ``/queries/{name}?param=value`` runs one
  with its parameters bound as RDF terms.
* ``/`` — the query page (self-contained: no CDN, no external requests).
* ``/resource?iri=IRI`` — an entity's page (HTML) or description (Turtle, N-Triples, JSON-LD,
  RDF/XML), negotiated; 404 for an IRI the store does not know (:mod:`.pages`).
* ``/void`` — the dataset's description (VoID, DCAT); its figures are kept per archive position
  (:class:`.describe.FiguresCache`). ``/dumps/NAME`` — the dumps of ``serve --dumps DIR``.

Queries on the embedded store run in worker processes holding read-only views of
the store (:mod:`.worker_pool`), so a query over its time or memory limit is stopped for
real (its worker is replaced) and a writer (``load``, ``fetch``) can keep working beside
the server. Everything a query costs, its ``SERVICE`` check included, happens there, under
its time limit: the event loop only reads requests and moves answers. The workers cannot
open internet sockets (:mod:`konbini_ld.engines.sandbox`), so no query can make the server
connect anywhere.

No client can hold the server: a request body holds at most ``max_body`` bytes (413), must
arrive within ``body_seconds`` (30 s), and the bodies held at once are bounded
(:data:`BODY_BUDGET`); a request has at most 1,000 parameters (:mod:`.protocol`); connections,
request heads and slow readers are bounded by :mod:`.http`.

Only requests whose ``Host`` is the address the server is bound to (or a name
given with ``allow_hosts``) are answered: a page on another site cannot reach
the endpoint through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..errors import UsageError
from ..query.dataset import DatasetFigures
from ..query.entity import DEFAULT_LIMIT, check_iri
from .describe import FiguresCache, archive_position, list_dumps, service_description, void_description
from .http import HostCheck, Limits, allowed_hosts, host_name, quiet_out_of_files, raise_open_files_limit
from .pages import PAGE_CSP, PAGE_FORMATS, ServedLinks
from .protocol import BadRequest, NotAcceptable, ProtocolRequest, TooManyParameters, negotiate, negotiate_page, read_request
from .query_workers import STOPPING, Answer, Cut, Job, ServeOptions, media_type
from .resource_jobs import figures_job, resource_job
from .worker_pool import runner_for

__all__ = ["BODY_BUDGET", "ServeOptions", "allowed_hosts", "create_app", "host_name", "negotiate", "serve"]

log = logging.getLogger(__name__)

#: Bytes of request bodies held at once, all requests together (at least 16 bodies of the
#: largest size): past it, a request is answered 503 before its body is read.
BODY_BUDGET = 64 * 1024 * 1024
#: Seconds a client may take to read a whole answer.
SEND_SECONDS = 120.0

# -- the app -------------------------------------------------------------------------------------


def create_app(opts: ServeOptions) -> Starlette:
    """The ASGI app (run it with uvicorn, or ``konbini-ld serve``)."""
    from contextlib import asynccontextmanager

    from ..query.catalog import named_queries

    runner = runner_for(opts)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        quiet_out_of_files(asyncio.get_running_loop())
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    body_budget = max(BODY_BUDGET, 16 * opts.max_body)
    held = [0]  # bytes of request bodies held now

    async def answer(sparql: str, params: dict[str, Any], request: Request, req: ProtocolRequest,
                     name: str | None = None) -> Response:
        dataset = (req.default_graphs, req.named_graphs) if req.default_graphs or req.named_graphs else None
        started = time.perf_counter()
        job = Job(sparql, {k: str(v) for k, v in params.items()}, request.headers.get("accept"), req.formats,
                  name, dataset, req.inline_context, base_iri=_base(request) + request.url.path)
        status, payload = await runner.run(job, request.is_disconnected)
        if status == "error":
            return _error(payload)
        headers = {"X-Query-Time": f"{time.perf_counter() - started:.4f}", "Vary": "Accept"}
        return _Streamed(payload, headers)

    async def read_body(request: Request) -> bytes:
        """The request's body, within the size and time limits (:class:`_Refusal` otherwise)."""
        length = request.headers.get("content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > opts.max_body):
            raise _Refusal(_too_large(opts.max_body))
        chunks: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(opts.body_seconds):
                async for chunk in request.stream():
                    if size + len(chunk) > opts.max_body:
                        raise _Refusal(_too_large(opts.max_body))
                    if held[0] + len(chunk) > body_budget:
                        raise _Refusal(PlainTextResponse(
                            "Service Unavailable: too many request bodies at once; try again shortly\n",
                            status_code=503, headers={"Connection": "close", "Retry-After": "1"}))
                    size += len(chunk)
                    held[0] += len(chunk)
                    chunks.append(chunk)
        except TimeoutError:
            raise _Refusal(PlainTextResponse(f"Request Timeout: the body must arrive within {opts.body_seconds:g} s\n",
                                             status_code=408, headers={"Connection": "close"})) from None
        except ClientDisconnect:  # (gone mid-body, or a body its framing broke): nobody to answer
            raise _Refusal(PlainTextResponse("Bad Request: the body did not arrive whole\n", status_code=400,
                                             headers={"Connection": "close"})) from None
        finally:
            held[0] -= size
        return b"".join(chunks)

    async def sparql(request: Request) -> Response:
        try:
            body = await read_body(request) if request.method == "POST" else b""
            req = read_request(request.method, request.url.query, request.headers.get("content-type", ""), body)
        except _Refusal as refusal:
            return refusal.response
        except BadRequest as exc:
            return PlainTextResponse(f"Bad request: {exc}\n", status_code=400)
        except UsageError as exc:
            return PlainTextResponse(f"Unsupported Media Type: {exc}\n", status_code=415)
        del body
        if req.update:
            return _read_only()
        if not req.query:
            if request.method == "GET":  # the Service Description
                try:
                    fmt = negotiate(request.headers.get("accept"), "CONSTRUCT", req.formats)
                except NotAcceptable as exc:
                    return PlainTextResponse(f"Not Acceptable: {exc}\n", status_code=406)
                text = service_description(_base(request), fmt)
                return Response(text, media_type=media_type(fmt), headers={"Vary": "Accept"})
            return PlainTextResponse("Bad request: give a SPARQL query in the query parameter\n", status_code=400)
        return await answer(req.query, {}, request, req)

    figures_cache = FiguresCache()
    state_dir = _state_dir(opts)
    dumps_dir = Path(opts.dumps) if opts.dumps else None

    async def void(request: Request) -> Response:
        try:
            req = read_request("GET", request.url.query, "", b"")
        except BadRequest as exc:
            return PlainTextResponse(f"Bad request: {exc}\n", status_code=400)
        position = archive_position(state_dir)
        figures = figures_cache.get(position)
        if figures is None:
            status, payload = await runner.run(figures_job())
            if status == "error":
                return _error(payload)
            complete = False
            try:
                body = b"".join([chunk async for chunk in payload.chunks])
                complete = True
            finally:
                payload.close(complete)
            figures = DatasetFigures.from_json(json.loads(body))
            figures_cache.put(position, figures)
        fmt = negotiate(request.headers.get("accept"), "CONSTRUCT", req.formats)
        base = _base(request)
        text = void_description(figures, base, fmt, dumps=list_dumps(dumps_dir),
                                lookup=f"{base}/resource?iri=")
        return Response(text, media_type=media_type(fmt), headers={"Vary": "Accept"})

    async def dump(request: Request) -> Response:
        name = request.path_params["name"]
        found = {d.name: d for d in list_dumps(dumps_dir)}
        if name not in found or dumps_dir is None:
            return PlainTextResponse(f"No dump {name[:200]!r}\n", status_code=404)
        from starlette.responses import FileResponse

        return FileResponse(dumps_dir / name, media_type=media_type(found[name].fmt))

    async def resource(request: Request) -> Response:
        try:
            req = read_request("GET", request.url.query, "", b"")
        except TooManyParameters as exc:
            return PlainTextResponse(f"Bad request: {exc}\n", status_code=400)
        iri = req.other.get("iri", "")
        if not iri:
            return PlainTextResponse("Bad request: give the entity's IRI in the iri parameter\n", status_code=400)
        page_text = req.other.get("page", "1")
        if not (page_text.isdigit() and 1 <= int(page_text) <= MAX_PAGE):
            return PlainTextResponse(f"Bad request: page is a number from 1 to {MAX_PAGE}\n", status_code=400)
        try:
            checked = check_iri(iri).value
        except UsageError as exc:
            return PlainTextResponse(f"Bad request: {exc}\n", status_code=400)
        fmt = negotiate_page(request.headers.get("accept"), req.formats)
        started = time.perf_counter()
        status, payload = await runner.run(resource_job(checked, int(page_text), _base(request), fmt, DEFAULT_LIMIT))
        if status == "error":
            return _error(payload)
        headers = {"X-Query-Time": f"{time.perf_counter() - started:.4f}", "Vary": "Accept"}
        if fmt is None:
            headers.update({"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                            "Referrer-Policy": "no-referrer"})
        own = ServedLinks().page(checked, int(page_text))
        headers["Link"] = ", ".join(f'<{own}&format={f.label}>; rel="alternate"; type="{f.media_type}"'
                                    for f in PAGE_FORMATS)
        return _Streamed(payload, headers)

    async def list_queries(request: Request) -> Response:
        return JSONResponse([q.describe() for q in named_queries().values()])

    async def run_named(request: Request) -> Response:
        name = request.path_params["name"]
        queries = named_queries()
        if name not in queries:
            return PlainTextResponse(f"No named query {name!r}\n", status_code=404)
        q = queries[name]
        try:
            req = read_request("GET", request.url.query, "", b"")
        except BadRequest as exc:
            return PlainTextResponse(f"Bad request: {exc}\n", status_code=400)
        values = {k: v for k, v in req.other.items() if v != ""}
        try:
            bound = q.bind(values)
        except UsageError as exc:
            return PlainTextResponse(f"Bad request: {exc}\n", status_code=400)
        return await answer(q.text, bound, request, req, name=name)

    async def prefixes(request: Request) -> Response:
        from ..vocab import PREFIXES

        return JSONResponse(PREFIXES)

    async def page(request: Request) -> Response:
        return _asset("index.html", "text/html; charset=utf-8", {"{{max_rows}}": str(opts.max_rows)})

    async def script(request: Request) -> Response:
        return _asset("app.js", "text/javascript; charset=utf-8")

    async def style(request: Request) -> Response:
        return _asset("app.css", "text/css; charset=utf-8")

    routes = [
        Route("/", page),
        Route("/app.js", script),
        Route("/app.css", style),
        Route("/sparql", sparql, methods=["GET", "POST"]),
        Route("/void", void),
        Route("/resource", resource),
        Route("/dumps/{name}", dump),
        Route("/queries", list_queries),
        Route("/prefixes", prefixes),
        Route("/queries/{name}", run_named),
    ]
    from starlette.middleware import Middleware

    middleware = [Middleware(HostCheck, allowed=allowed_hosts(opts.host, opts.allow_hosts))]
    if opts.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        middleware.append(Middleware(CORSMiddleware, allow_origins=list(opts.cors_origins), allow_methods=["GET", "POST"],
                                     allow_headers=["Accept", "Content-Type"]))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.runner = runner  # (serve tells it when the server begins to stop)
    return app


#: Pages of links to an entity that may be asked for.
MAX_PAGE = 100_000


def _state_dir(opts: ServeOptions) -> Path | None:
    """Where the store records how far its archive is applied (none for a remote store without archive)."""
    archive = opts.store_options.get("archive")
    if archive:
        return Path(archive)
    if opts.location.startswith(("http://", "https://")):
        return None
    return Path(opts.location)


class _Refusal(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _too_large(limit: int) -> Response:
    return PlainTextResponse(f"Content Too Large: a request body may hold {_size(limit)} (serve --max-body-size)\n",
                             status_code=413, headers={"Connection": "close"})


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:g} {unit}"
    return f"{n} bytes"


class _Streamed(Response):
    """An answer sent as the client takes it (from its spool); a cut answer cuts the connection
    (the client sees fewer bytes than ``Content-Length`` says: never a silently short answer)."""

    def __init__(self, answer: Answer, headers: dict[str, str]) -> None:
        super().__init__(None, status_code=answer.status, media_type=answer.media, headers=headers)
        self.answer = answer
        self.headers["content-length"] = str(answer.length)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        abort = (scope.get("extensions") or {}).get("konbini.abort")
        complete = False
        started = time.monotonic()
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.answer.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if time.monotonic() - started > SEND_SECONDS:
                    raise Cut(f"the client took more than {SEND_SECONDS:g} s to read the answer")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            complete = True
        except Cut as exc:
            log.info("answer cut: %s", exc)
            if abort is None:
                raise
            abort()
        finally:
            self.answer.close(complete)


#: The query page and its two files: no inline script or style, nothing from elsewhere.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _error(payload: Any) -> Response:
    """A worker's error as a response: where a query's text is at fault, the line and column; a
    query not run because the server is stopping, when to try again."""
    code, message, *where = payload
    headers = {}
    if len(where) == 2 and where[0] is not None:
        headers = {"X-Error-Line": str(where[0]), "X-Error-Column": str(where[1])}
    if (code, message) == STOPPING:
        headers["Retry-After"] = str(GRACE_SECONDS)
    return PlainTextResponse(message + "\n", status_code=code, headers=headers)


def _asset(name: str, media_type: str, fill: dict[str, str] | None = None) -> Response:
    body = resources.files("konbini_ld.apps").joinpath(f"web/{name}").read_bytes()
    for mark, value in (fill or {}).items():
        body = body.replace(mark.encode(), value.encode())
    return Response(body, media_type=media_type, headers={
        "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    })


def _base(request: Request) -> str:
    """The server's own base URL, as the client addressed it."""
    return f"{request.url.scheme}://{request.url.netloc}"


def _read_only() -> Response:
    return PlainTextResponse("Forbidden: this endpoint is read-only; updates are not accepted\n", status_code=403)


def serve(opts: ServeOptions, *, host: str = "127.0.0.1", port: int = 7878,
          announce: Any = None, limits: Limits | None = None) -> None:
    """Run the endpoint with uvicorn until interrupted.

    The listening socket is bound first, so ``port`` 0 picks a free port: ``announce`` is
    called with the URL actually bound, once it accepts connections. The process's open-file limit is raised to its hard
    limit, and the connections accepted at once are kept below it.

    :raises KonbiniError: the address cannot be listened on.
    """
    import dataclasses
    import socket

    import uvicorn

    from ..errors import KonbiniError
    from .http import guarded_protocol

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    files = raise_open_files_limit()
    limits = limits or Limits()
    # connections are accepted a backlog at a time before any is closed: keep three below the limit,
    # beside the workers' pipes and the store's files
    backlog = min(2048, max(16, files // 8))
    reserve = 64 + 4 * (2 * max(1, opts.workers) + 1) + 3 * backlog
    limits = dataclasses.replace(limits, connections=max(16, min(limits.connections, files - reserve)))
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise KonbiniError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = sock.getsockname()[1]
    name = f"[{host}]" if ":" in host else host
    app = create_app(opts)
    config = uvicorn.Config(_QuietWhenStopping(app), log_level="warning", lifespan="on", http=guarded_protocol(limits),
                            h11_max_incomplete_event_size=limits.head_bytes, timeout_keep_alive=5, backlog=backlog,
                            timeout_graceful_shutdown=GRACE_SECONDS)
    server = _server_class()(config, app.state.runner.drain,
                             lambda: announce(f"http://{name}:{bound}/") if announce is not None else None)
    stopping = _WhileStopping(server)
    logging.getLogger("uvicorn.error").addFilter(stopping)
    try:
        server.run(sockets=[sock])
    finally:
        logging.getLogger("uvicorn.error").removeFilter(stopping)
    if server.signals:  # the first signal says how it ends (once uvicorn's event loop is closed: no traceback)
        signal.raise_signal(server.signals[0])


class _WhileStopping(logging.Filter):
    """uvicorn's own ERROR lines for what a stop does on purpose (queries past the grace cancelled,
    an answer under way cut) become one WARNING; at any other time they stand."""

    def __init__(self, server: Any) -> None:
        super().__init__()
        self.server = server

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.server.should_exit:
            return True
        message = str(record.msg)
        if message.startswith("Cancel ") and "graceful shutdown" in message:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = ("stopped %s queries still running after the %s s grace (answered 503 if "
                                       "not yet answering, cut otherwise)"), (len(self.server.server_state.tasks),
                                                                              GRACE_SECONDS)
            return True
        return "without completing response" not in message


#: Seconds queries still running when the server is asked to stop are given to finish.
GRACE_SECONDS = 5


def _server_class() -> Any:
    import contextlib
    import threading

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, stopping as ``serve`` promises:

        * the address is announced once connections are accepted (the workers have started);
        * from the first Ctrl-C or SIGTERM no query starts (those waiting for a worker are answered
          503 at once, none is run again, no worker is started), and the queries running get
          :data:`GRACE_SECONDS` seconds;
        * a second Ctrl-C skips that wait, and still ends the workers;
        * the first signal that stopped it is raised again once its event loop is closed (Ctrl-C:
          ``KeyboardInterrupt``; SIGTERM: its default action), never inside it.
        """

        def __init__(self, config: Any, drain: Any, announce: Any) -> None:
            super().__init__(config)
            self.drain, self.announce, self.drained = drain, announce, False
            self.signals: list[int] = []
            self.loop: asyncio.AbstractEventLoop | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            self.signals.append(sig)
            super().handle_exit(sig, frame)
            if self.loop is not None:  # no query starts from now on, not from uvicorn's next tick
                self.loop.call_soon_threadsafe(self._drain)

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

        async def startup(self, sockets: Any = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                self.announce()

        async def on_tick(self, counter: int) -> bool:
            stop = await super().on_tick(counter)
            if stop:
                self._drain()
            return stop

        def _drain(self) -> None:
            if not self.drained:
                self.drained = True
                self.drain()

        async def shutdown(self, sockets: Any = None) -> None:
            self._drain()
            await super().shutdown(sockets=sockets)
            if self.force_exit:  # (uvicorn skips the app's shutdown then: it ends the workers)
                await self.lifespan.shutdown()

    return Server


class _QuietWhenStopping:
    """The app, with requests still running when the server stops (Ctrl-C, SIGTERM, past the
    graceful shutdown's 5 s, or a second Ctrl-C) ending quietly: those not yet answered are
    answered 503 (an answer already under way is cut), their connections close with the server,
    and the log holds no traceback for them. Every answer says ``X-Content-Type-Options: nosniff`` (an
    error that quotes a query is text, never read as a page)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = False

        async def send_marked(message: Any) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]}
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_marked if scope.get("type") == "http" else send)
        except asyncio.CancelledError:
            if scope.get("type") != "http":
                raise
            if not started:
                await _stopped(send_marked)


async def _stopped(send: Any) -> None:
    """Answer 503 to a request the server stopped before answering (within a moment: the server
    is closing its connections)."""
    body = b"the server stopped before answering; try again shortly\n"
    try:
        with anyio.fail_after(1):
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close"),
                                    (b"retry-after", b"5"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
    except (TimeoutError, OSError, RuntimeError):
        pass  # (its client went away, or the connection is closed already)
