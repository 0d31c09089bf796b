"""One HTTP exchange with a remote SPARQL server, bounded in time from start to last byte.

``requests`` bounds each socket read, not a request: a server that sends a byte a second
keeps a "60 s" request alive for hours. Here the answer's body is read a chunk at a time
with the socket's timeout set to what is left of the request's time, so every exchange
ends by its deadline once the server has started to answer (and waiting for the start is
bounded by the same time). Compressed answers are inflated here, so that each read of the
wire is checked against the deadline.
"""

from __future__ import annotations

import io
import math
import socket
import tempfile
import time
import zlib
from dataclasses import dataclass
from typing import IO, Any

import requests

from ..errors import StoreError, UsageError
from ..urls import redact

__all__ = ["DEFAULT_TIMEOUT", "MAX_TIMEOUT", "Answer", "check_timeout", "exchange"]

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
        return self.headers.get("Content-Type")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class _Late(Exception):
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
    try:
        r = session.request(method, url, headers=headers, timeout=(min(_CONNECT, timeout), timeout), stream=True, **kw)
    except requests.Timeout:
        raise StoreError(late) from None
    except requests.RequestException as exc:
        raise StoreError(f"{what} at {redact(url)} failed: {type(exc).__name__}") from None
    sink: IO[bytes] = tempfile.TemporaryFile() if spool else io.BytesIO()
    try:
        _read(r, sink, deadline)
    except BaseException as exc:
        r.close()  # (the connection is in an unknown state: never reused)
        sink.close()
        if isinstance(exc, _Late):
            raise StoreError(late) from None
        if isinstance(exc, StoreError):
            raise StoreError(f"{what} at {redact(url)}: {exc}") from None
        raise
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
        return raw._fp.fp.raw._sock
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
        return self._inner.decompress(data)

    def flush(self) -> bytes:
        return self._inner.flush() if self._inner is not None else b""

    @property
    def eof(self) -> bool:
        return bool(self._inner is not None and self._inner.eof)
