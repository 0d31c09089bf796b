"""One HTTP exchange with a remote SPARQL server, bounded in time from start to last byte.

``requests`` bounds each socket read, not a request: a server that sends a byte a second
keeps a "60 s" request alive for hours. Here every exchange ends by its deadline whatever
the server sends: a timer shuts down the connection the request uses when the deadline
passes (while the request is sent and its status and headers read, however slowly they
come), and the body is read a chunk at a time with the socket's timeout set to what is left
of the request's time. Compressed answers are inflated here, so that each read of the wire
is checked against the deadline.
"""

from __future__ import annotations

import io
import math
import socket
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from typing import IO, Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..errors import StoreError, UsageError
from ..urls import redact

__all__ = ["DEFAULT_TIMEOUT", "MAX_TIMEOUT", "Answer", "bounded_session", "check_timeout", "exchange"]

#: Seconds a request to a remote store may take, unless told otherwise.
DEFAULT_TIMEOUT = 60.0
#: The longest time limit taken (a day): beyond it, it bounds nothing.
MAX_TIMEOUT = 86_400.0
_CONNECT = 10.0
_CHUNK = 1 << 16


def check_timeout(value: Any, option: str = "--remote-timeout") -> float:
    """``value`` as seconds a request may take: a number more than 0 and at most a day.

    >>> check_timeout("2.5")
    2.5

    :raises UsageError: it is not.
    """
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{option} must be a number of seconds, not {value!r}") from None
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMEOUT:
        raise UsageError(f"{option} must be more than 0 and at most {MAX_TIMEOUT:g} seconds, not {value!r}")
    return seconds


@dataclass
class Answer:
    """A server's answer, read whole: in memory (``body``) or spooled to a temporary file."""

    status: int
    headers: Any
    url: str
    body: bytes = b""
    file: IO[bytes] | None = None

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return str(value) if value is not None else None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class _Late(Exception):
    pass


#: The connections the calling thread's request uses (``connections``: a list while a request runs).
_using = threading.local()


def _tracked(base: type[HTTPConnection]) -> type[HTTPConnection]:
    class Tracked(base):  # type: ignore[valid-type,misc]
        def request(self, *args: Any, **kwargs: Any) -> Any:
            connections = getattr(_using, "connections", None)
            if connections is not None:
                connections.append(self)
            return super().request(*args, **kwargs)

    return Tracked


class _Adapter(HTTPAdapter):
    """An adapter whose connections say which request uses them (so that a timer can end it)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("TrackedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": _tracked(HTTPConnection)}),
            "https": type("TrackedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": _tracked(HTTPSConnection)}),
        }


def bounded_session(session: requests.Session | None = None) -> requests.Session:
    """``session`` (or a new one) made fit for :func:`exchange`: its connections can be ended
    at a deadline, and it takes no proxy or ``.netrc`` from the environment."""
    session = session or requests.Session()
    adapter = _Adapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False
    return session


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def exchange(session: requests.Session, method: str, url: str, *, what: str, timeout: float,
             spool: bool = False, **kw: Any) -> Answer:
    """Send one request and read its whole answer within ``timeout`` seconds.

    :param what: what the request does ("query", "update"…), for messages.
    :param spool: keep the body in a temporary file (whole graphs) instead of memory.
    :raises StoreError: no answer in time, the connection failed or broke off, or the body is
        encoded in a way that was not asked for.
    """
    deadline = time.monotonic() + timeout
    headers = {"Accept-Encoding": "gzip, deflate", **kw.pop("headers", {})}
    late = f"{what} at {redact(url)} took longer than {timeout:g} s (--remote-timeout)"
    connections: list[HTTPConnection] = []
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        for connection in list(connections):
            _shut(connection.sock)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    _using.connections = connections
    timer.start()
    try:
        try:
            r = session.request(method, url, headers=headers, timeout=(min(_CONNECT, timeout), timeout), stream=True,
                                **kw)
        except requests.RequestException as exc:
            if expired.is_set() or isinstance(exc, requests.Timeout):
                raise StoreError(late) from None
            raise StoreError(f"{what} at {redact(url)} failed: {type(exc).__name__}") from None
        sink: IO[bytes] = tempfile.TemporaryFile() if spool else io.BytesIO()
        try:
            _read(r, sink, deadline)
            if expired.is_set():  # (a connection shut down reads as the end of the body)
                raise _Late()
        except BaseException as exc:
            r.close()  # (the connection is in an unknown state: never reused)
            sink.close()
            if isinstance(exc, _Late) or expired.is_set():
                raise StoreError(late) from None
            if isinstance(exc, StoreError):
                raise StoreError(f"{what} at {redact(url)}: {exc}") from None
            raise
    finally:
        timer.cancel()
        _using.connections = None
    r.raw.release_conn()  # read to its end: the connection serves the next request
    answer = Answer(r.status_code, r.headers, r.url)
    if spool:
        sink.seek(0)
        answer.file = sink
    else:
        answer.body = sink.getvalue()  # type: ignore[attr-defined]
    return answer


def _socket(raw: Any) -> socket.socket | None:
    """The socket a response is read from (urllib3 drops the connection's own reference early)."""
    try:
        sock: socket.socket | None = raw._fp.fp.raw._sock
        return sock
    except AttributeError:
        return getattr(getattr(raw, "connection", None), "sock", None)


def _read(r: requests.Response, sink: IO[bytes], deadline: float) -> None:
    from urllib3.exceptions import HTTPError, ReadTimeoutError

    inflate = _decompressor(r.headers.get("Content-Encoding", ""))
    raw = r.raw
    sock = _socket(raw)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Late()
        if sock is not None:
            try:
                sock.settimeout(remaining)
            except OSError:  # (closed: what is left is in the reader's buffer)
                sock = None
        try:
            chunk = raw.read1(_CHUNK, decode_content=False)
        except (ReadTimeoutError, TimeoutError, socket.timeout):
            raise _Late() from None
        except (HTTPError, OSError) as exc:
            raise StoreError(f"the answer broke off ({type(exc).__name__})") from None
        if not chunk:
            break
        if inflate is None:
            sink.write(chunk)
            continue
        try:
            sink.write(inflate.decompress(chunk))
        except zlib.error:
            raise StoreError("the compressed answer is corrupt") from None
    if inflate is not None:
        sink.write(inflate.flush())
        if not inflate.eof:
            raise StoreError("the compressed answer ends before its end marker (cut off)")


def _decompressor(encoding: str) -> Any:
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip() and c.strip().lower() != "identity"]
    if not codings:
        return None
    if codings in (["gzip"], ["x-gzip"]):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if codings == ["deflate"]:
        return _Deflate()
    raise StoreError(f"the answer is encoded {encoding!r}, which konbini-ld did not ask for")


class _Deflate:
    """``deflate`` as servers send it: zlib-wrapped, or (against the RFC, often) raw."""

    def __init__(self) -> None:
        self._inner: Any = None

    def decompress(self, data: bytes) -> bytes:
        if self._inner is None:
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if data[:1] and (data[0] & 0x0F) == 8 else -zlib.MAX_WBITS)
        return bytes(self._inner.decompress(data))

    def flush(self) -> bytes:
        return self._inner.flush() if self._inner is not None else b""

    @property
    def eof(self) -> bool:
        return bool(self._inner is not None and self._inner.eof)
