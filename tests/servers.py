"""Real servers the tests start on 127.0.0.1: ``oxigraph serve`` (PyPI ``oxigraph``), Virtuoso,
RDF::Endpoint; and, in front of them, a proxy that changes what reaches the client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests


def _oxigraph_binary() -> str:
    candidate = Path(sys.executable).parent / "oxigraph"
    found = str(candidate) if candidate.exists() else shutil.which("oxigraph")
    if not found:
        pytest.fail("the `oxigraph` server binary (PyPI package oxigraph) is not installed")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OxigraphServer:
    """``oxigraph serve`` (PyPI ``oxigraph``) on 127.0.0.1."""

    name = "oxigraph"

    def __init__(self, location: Path, *, union_default_graph: bool = False) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [_oxigraph_binary(), "serve", "--location", str(location), "--bind", f"127.0.0.1:{self.port}",
             *(["--union-default-graph"] if union_default_graph else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.update_url = f"http://127.0.0.1:{self.port}/update"
        self.query_url = f"http://127.0.0.1:{self.port}/query"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(self.query_url, params={"query": "ASK {}"}, timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("oxigraph serve did not start")

    def clear(self) -> None:
        requests.post(f"http://127.0.0.1:{self.port}/update", data={"update": "CLEAR ALL"}, timeout=10).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)




# -- Virtuoso --------------------------------------------------------------------------------

VIRTUOSO_PACKAGE = "virtuoso-opensource"
_VIRTUOSO_INI = """[Database]
DatabaseFile = {dir}/virtuoso.db
ErrorLogFile = {dir}/virtuoso.log
LockFile = {dir}/virtuoso.lck
TransactionFile = {dir}/virtuoso.trx
xa_persistent_file = {dir}/virtuoso.pxa
ErrorLogLevel = 7
FileExtend = 200
Striping = 0
TempStorage = TempDatabase
[TempDatabase]
DatabaseFile = {dir}/virtuoso-temp.db
TransactionFile = {dir}/virtuoso-temp.trx
Striping = 0
[Parameters]
ServerPort = 127.0.0.1:{sql_port}
DisableUnixSocket = 1
MaxClientConnections = 10
CheckpointInterval = 60
CaseMode = 2
DirsAllowed = ., /usr/share/virtuoso-opensource-7/vad
NumberOfBuffers = 10000
MaxDirtyBuffers = 6000
MaxQueryMem = 500M
[HTTPServer]
ServerPort = 127.0.0.1:{http_port}
ServerRoot = {dir}
MaxClientConnections = 10
ServerThreads = 10
MaxKeepAlives = 10
KeepAliveTimeout = 10
Charset = UTF-8
EnabledGzipContent = 1
[SPARQL]
ResultSetMaxRows = 10000
MaxQueryCostEstimationTime = 400
MaxQueryExecutionTime = 60
"""
#: Anonymous (``SPARQL`` user) updates and graph writes, for a throw-away test database only.
_VIRTUOSO_GRANTS = (
    'GRANT SPARQL_UPDATE TO "SPARQL"; '
    'GRANT EXECUTE ON DB.DBA.SPARQL_INSERT_DICT_CONTENT TO "SPARQL"; '
    'GRANT EXECUTE ON DB.DBA.SPARQL_DELETE_DICT_CONTENT TO "SPARQL"; '
    "DB.DBA.RDF_DEFAULT_USER_PERMS_SET ('nobody', 7);"
)


def virtuoso_available() -> str | None:
    """Why Virtuoso cannot run here, or ``None`` when it can."""
    if not shutil.which("virtuoso-t") or not shutil.which("isql-vt"):
        return f"Virtuoso is not installed (Debian package {VIRTUOSO_PACKAGE})"
    return None


class VirtuosoServer:
    """A throw-away Virtuoso 7 (Debian's ``virtuoso-opensource``) on 127.0.0.1."""

    name = "virtuoso"

    def __init__(self, location: Path) -> None:
        location.mkdir(parents=True, exist_ok=True)
        self.location = location
        self.sql_port, self.port = free_port(), free_port()
        ini = location / "virtuoso.ini"
        ini.write_text(_VIRTUOSO_INI.format(dir=location, sql_port=self.sql_port, http_port=self.port))
        self.proc = subprocess.Popen(["virtuoso-t", "-f", "-c", str(ini)], cwd=location,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.query_url = f"http://127.0.0.1:{self.port}/sparql"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (location / "virtuoso.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"virtuoso-t exited: {log}")
            try:
                if requests.get(self.query_url, params={"query": "ASK {}"}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.25)
        else:
            self.stop()
            raise RuntimeError("Virtuoso did not start")
        subprocess.run(["isql-vt", f"127.0.0.1:{self.sql_port}", "dba", "dba", f"exec={_VIRTUOSO_GRANTS}"],
                       check=True, capture_output=True, timeout=60)

    def clear(self) -> None:
        graphs = ("data", "provenance", "history", "data:rebuild", "provenance:rebuild", "history:rebuild")
        update = " ; ".join(f"CLEAR SILENT GRAPH <urn:konbini-ld:graph:{g}>" for g in graphs)
        requests.post(self.query_url, data={"update": update}, timeout=60).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def require_or_skip(reason: str) -> None:
    """Skip a test whose tool is missing, naming what to install; fail instead where every test
    must run (``.ci/run`` sets ``KONBINI_LD_REQUIRE_ALL``)."""
    import os

    if os.environ.get("KONBINI_LD_REQUIRE_ALL"):
        pytest.fail(f"{reason}, and KONBINI_LD_REQUIRE_ALL says every test must run")
    pytest.skip(reason)


# -- RDF::Endpoint ---------------------------------------------------------------------------

RDF_ENDPOINT_PACKAGE = "librdf-endpoint-perl"
_RDF_ENDPOINT_PSGI = Path("/usr/share/librdf-endpoint-perl/endpoint.psgi")


def rdf_endpoint_available() -> str | None:
    """Why RDF::Endpoint cannot run here, or ``None`` when it can."""
    if not _RDF_ENDPOINT_PSGI.exists() or not shutil.which("plackup"):
        return f"RDF::Endpoint is not installed (Debian package {RDF_ENDPOINT_PACKAGE})"
    # (its endpoint.psgi needs Config::ZOMG, which the package only recommends)
    if subprocess.run(["perl", "-MConfig::ZOMG", "-e1"], capture_output=True).returncode:
        return "RDF::Endpoint's endpoint.psgi needs Config::ZOMG (Debian package libconfig-zomg-perl)"
    return None


class RdfEndpointServer:
    """RDF::Endpoint (Debian's ``librdf-endpoint-perl``, Perl's RDF::Query behind Plack) on
    127.0.0.1, with an in-memory store that takes updates: it answers SPARQL XML, has no Graph
    Store, dereferences ``default-graph-uri`` instead of reading it as a stored graph, ignores
    ``FROM``, and answers ``MOVE`` with success without moving anything."""

    name = "rdf-endpoint"

    def __init__(self, location: Path) -> None:
        location.mkdir(parents=True, exist_ok=True)  # (its working directory: no configuration file there)
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["plackup", "--host", "127.0.0.1", "--port", str(self.port), str(_RDF_ENDPOINT_PSGI)], cwd=location,
            env={**os.environ, "PERLRDF_STORE": "Memory"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.query_url = self.update_url = f"http://127.0.0.1:{self.port}/sparql"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("plackup exited")
            try:
                if requests.get(self.query_url, params={"query": "ASK {}"}, timeout=2).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("RDF::Endpoint did not start")

    def clear(self) -> None:
        requests.post(self.update_url, data={"update": "DROP ALL"}, timeout=30).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- in front of a server --------------------------------------------------------------------


class Proxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` (scheme and host of a server) that
    records each request and can change it on the way:

    :param drop: form and query-string parameters removed before forwarding (a server that
        does not read ``default-graph-uri``…).
    :param accept: ``(results, graph)`` media types that replace the client's ``Accept``
        (a server that answers in one format whatever is asked).
    """

    def __init__(self, upstream: str, *, drop: frozenset[str] = frozenset(),
                 accept: tuple[str, str] | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.drop = drop
        self.accept = accept
        self.requests: list[tuple[str, str, list[tuple[str, str]], str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                parts = urlsplit(self.path)
                params = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in proxy.drop]
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "accept-encoding", "connection")}
                if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                    form = [(k, v) for k, v in parse_qsl(body.decode(), keep_blank_values=True) if k not in proxy.drop]
                    proxy.requests.append((self.command, parts.path, params + form, headers.get("Accept", "")))
                    body = urlencode(form).encode()
                else:
                    proxy.requests.append((self.command, parts.path, params, headers.get("Accept", "")))
                if proxy.accept is not None and "Accept" in headers:
                    results, graph = proxy.accept
                    headers["Accept"] = results if "sparql-results" in headers["Accept"] else graph
                r = requests.request(self.command, proxy.upstream + parts.path, params=params, data=body,
                                     headers=headers, timeout=60)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward  # noqa: N815 - http.server's naming

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Scripted:
    """A fake SPARQL server on 127.0.0.1 whose every answer ``answer(method, path, params)``
    scripts: ``(status, headers, body)``, where a body may be a list of ``(delay, bytes)``
    parts sent with a pause before each (a server that answers slowly or never ends); with
    status 0, those parts are the whole answer, status line and headers included."""

    def __init__(self, answer: Callable[[str, str, dict[str, list[str]]], tuple[int, dict[str, str], Any]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                parts = urlsplit(self.path)
                pairs = parse_qsl(parts.query, keep_blank_values=True)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                    pairs += parse_qsl(body.decode(), keep_blank_values=True)
                params: dict[str, list[str]] = {}
                for k, v in pairs:
                    params.setdefault(k, []).append(v)
                status, headers, content = answer(self.command, parts.path, params)
                if status == 0:  # the raw bytes of the answer, status line and headers included
                    try:
                        for delay, part in content:
                            time.sleep(delay)
                            self.wfile.write(part)
                            self.wfile.flush()
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                try:
                    if isinstance(content, bytes):
                        self.send_header("Content-Length", str(len(content)))
                        self.end_headers()
                        self.wfile.write(content)
                        return
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for delay, part in content:
                        time.sleep(delay)
                        self.wfile.write(part)
                        self.wfile.flush()
                    self.close_connection = True
                except OSError:  # the client hung up (as it should, past its time)
                    self.close_connection = True

            do_GET = do_POST = do_PUT = _answer  # noqa: N815 - http.server's naming

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
