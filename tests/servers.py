"""Real servers the tests start on 127.0.0.1: ``oxigraph serve`` (PyPI ``oxigraph``)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

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

    def __init__(self, location: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [_oxigraph_binary(), "serve", "--location", str(location), "--bind", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
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


def require_or_skip(reason: str) -> None:
    """Skip a test whose tool is missing, naming what to install; fail instead where every test
    must run (``.ci/run`` sets ``KONBINI_LD_REQUIRE_ALL``)."""
    import os

    if os.environ.get("KONBINI_LD_REQUIRE_ALL"):
        pytest.fail(f"{reason}, and KONBINI_LD_REQUIRE_ALL says every test must run")
    pytest.skip(reason)
