"""Bounded HTTP exchanges: every request ends by its deadline and never reads past its size limit.

``requests`` bounds each socket read, not a request: a server sending one byte a second
keeps a "30 s timeout" request alive for hours, and a small gzip body can inflate to
gigabytes before anyone looks at its size. This module closes both gaps:

* **Deadlines.** Every connection a :func:`bounded_session` opens registers with a
  watchdog thread while a request uses it. When the request's deadline passes (or
  :meth:`Watchdog.abort_all` is called, on a second Ctrl-C), the watchdog shuts the
  socket down, so the read in progress returns at once whatever the server does.
* **Sizes.** :func:`read_body` reads the raw bytes itself, a chunk at a time, counting
  bytes on the wire and bytes inflated (``gzip``/``deflate`` decompressed with a
  ``max_length``), and stops at the limit: nothing past it is ever held in memory.
* **Text.** JSON is UTF-8 (RFC 8259): :func:`decode_json_text` decodes the bytes as such
  whatever charset the ``Content-Type`` claims, so nothing is ever archived as mojibake.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["BodyTooLarge", "DeadlinePassed", "Watchdog", "bounded_session", "decode_json_text", "read_body"]

_CHUNK = 64 * 1024


class DeadlinePassed(Exception):
    """The request's whole-time limit passed (the watchdog closed its connection)."""


class BodyTooLarge(Exception):
    """The body passed the size limit, on the wire or once inflated."""

    def __init__(self, limit: int, inflated: bool) -> None:
        super().__init__(f"larger than {limit // (1024 * 1024)} MiB{' once decompressed' if inflated else ''}")
        self.limit = limit
        self.inflated = inflated


class _Entry:
    __slots__ = ("deadline", "connections", "expired", "aborted")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.connections: list[HTTPConnection] = []
        self.expired = False
        #: ended by :meth:`Watchdog.abort_all` (the run was interrupted), not by its deadline
        self.aborted = False


class Watchdog:
    """Shuts down the connections of requests past their deadline (one daemon thread)."""

    def __init__(self, period: float = 0.05) -> None:
        self.period = period
        self._lock = threading.Lock()
        self._entries: dict[int, _Entry] = {}
        self._thread: threading.Thread | None = None

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[_Entry]:
        """Bound what the calling thread does with the connections it uses to ``seconds``."""
        entry = _Entry(time.monotonic() + seconds)
        key = threading.get_ident()
        with self._lock:
            self._entries[key] = entry
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="konbini-deadlines", daemon=True)
                self._thread.start()
        try:
            yield entry
        finally:
            with self._lock:
                self._entries.pop(key, None)

    def using(self, connection: HTTPConnection) -> None:
        """(Called by the connections.) The calling thread's request uses ``connection``."""
        with self._lock:
            entry = self._entries.get(threading.get_ident())
            if entry is not None:
                entry.connections.append(connection)
                if entry.expired:  # too late already
                    _shut(connection)

    def connected(self, connection: HTTPConnection) -> None:
        """(Called by the connections once their socket is open.) A request whose time is up
        while it was connecting ends now (its socket did not exist when it was shut)."""
        with self._lock:
            entry = self._entries.get(threading.get_ident())
            if entry is not None and entry.expired:
                _shut(connection)

    def abort_all(self) -> None:
        """End every request in progress now (their reads fail at once)."""
        with self._lock:
            for entry in self._entries.values():
                entry.aborted = True
                self._expire(entry)

    def _expire(self, entry: _Entry) -> None:
        entry.expired = True
        for connection in entry.connections:
            _shut(connection)

    def _watch(self) -> None:
        while True:
            time.sleep(self.period)
            now = time.monotonic()
            with self._lock:
                for entry in self._entries.values():
                    if not entry.expired and now >= entry.deadline:
                        self._expire(entry)


def _shut(connection: HTTPConnection) -> None:
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _InterimSkipped(http.client.HTTPResponse):
    """A response that reads past interim answers (``102 Processing``, ``103 Early Hints``…) to the
    final one, as ``http.client`` does for ``100 Continue`` only: an interim answer taken as final
    would leave the real one on the connection, to be read as the answer to the next request."""

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if 101 < status < 200:
                http.client._read_headers(self.fp)  # type: ignore[attr-defined]
                continue
            return version, status, reason


def _watched(base: type[HTTPConnection], watchdog: Watchdog) -> type[HTTPConnection]:
    class Watched(base):  # type: ignore[valid-type,misc]
        response_class = _InterimSkipped

        def request(self, *args: Any, **kwargs: Any) -> Any:
            watchdog.using(self)
            return super().request(*args, **kwargs)

        def connect(self) -> None:
            super().connect()
            watchdog.connected(self)

    return Watched


class _Adapter(HTTPAdapter):
    """An adapter whose connections report to a :class:`Watchdog` while a request uses them."""

    def __init__(self, watchdog: Watchdog, **kwargs: Any) -> None:
        self._watchdog = watchdog
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        http = type("WatchedHTTPPool", (HTTPConnectionPool,),
                    {"ConnectionCls": _watched(HTTPConnection, self._watchdog)})
        https = type("WatchedHTTPSPool", (HTTPSConnectionPool,),
                     {"ConnectionCls": _watched(HTTPSConnection, self._watchdog)})
        self.poolmanager.pool_classes_by_scheme = {"http": http, "https": https}


def bounded_session(watchdog: Watchdog, pool_size: int = 64) -> requests.Session:
    """A session whose requests the watchdog can end (no proxies or ``.netrc`` from the environment)."""
    session = requests.Session()
    adapter = _Adapter(watchdog, pool_connections=4, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False
    return session


def _decompressor(encoding: str) -> Any:
    """A decompressor for ``Content-Encoding`` (``None`` for identity); ``ValueError`` for others."""
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if codings == ["gzip"] or codings == ["x-gzip"]:
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if codings == ["deflate"]:
        return _Deflate()
    raise ValueError(f"content encoding {encoding!r} is not one konbini-ld asked for")


class _Deflate:
    """``deflate`` as servers send it: zlib-wrapped, or (against the RFC, often) raw."""

    def __init__(self) -> None:
        self._inner: Any = None

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._inner is None:
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if data[:1] and (data[0] & 0x0F) == 8 else -zlib.MAX_WBITS)
        return bytes(self._inner.decompress(data, max_length))

    @property
    def unconsumed_tail(self) -> bytes:
        return self._inner.unconsumed_tail if self._inner is not None else b""

    @property
    def unused_data(self) -> bytes:
        return self._inner.unused_data if self._inner is not None else b""

    @property
    def eof(self) -> bool:
        return bool(self._inner is not None and self._inner.eof)

    def flush(self) -> bytes:
        return self._inner.flush() if self._inner is not None else b""


def read_body(response: requests.Response, limit: int, entry: Any = None) -> bytes:
    """The whole body of a streamed ``response``, inflated, at most ``limit`` bytes on the wire
    and inflated.

    :raises BodyTooLarge: past the limit (what was read is dropped, the connection closed).
    :raises DeadlinePassed: the watchdog ended the request (``entry`` says so).
    :raises ValueError: a content encoding that was not asked for, or a corrupt compressed stream.
    :raises requests.RequestException: the connection broke (cut-off bodies included).
    """
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        response.close()
        raise BodyTooLarge(limit, inflated=False)
    inflate = _decompressor(response.headers.get("Content-Encoding", ""))
    raw = response.raw
    parts: list[bytes] = []
    wire = size = 0
    large = False
    try:
        while True:
            if not large and size > LARGE_BODY:  # (a real answer is tens of kB: this one waits its turn)
                large = _take_large_turn(entry)
            try:
                chunk = raw.read(_CHUNK, decode_content=False)
            except Exception as exc:
                if entry is not None and entry.expired:
                    raise DeadlinePassed() from None
                raise _translated(exc) from exc
            if entry is not None and entry.expired:
                raise DeadlinePassed()
            if not chunk:
                break
            wire += len(chunk)
            if wire > limit:
                raise BodyTooLarge(limit, inflated=False)
            if inflate is None:
                parts.append(chunk)
                size += len(chunk)
                continue
            data = chunk
            while data:
                try:
                    out = inflate.decompress(data, limit + 1 - size)
                except zlib.error as exc:
                    raise ValueError(f"the compressed body is corrupt ({exc})") from None
                size += len(out)
                parts.append(out)
                if size > limit:
                    raise BodyTooLarge(limit, inflated=True)
                if not large and size > LARGE_BODY and data:
                    large = _take_large_turn(entry)
                data = inflate.unconsumed_tail
                if inflate.eof and inflate.unused_data:  # another gzip member follows, or trailing bytes
                    data = inflate.unused_data + data
                    if not data.startswith(b"\x1f\x8b"):
                        raise ValueError("bytes follow the end of the compressed body")
                    inflate = _decompressor("gzip")
                    continue
                if not out and data:  # (no progress: cannot happen with room left, but never spin)
                    break
        if entry is not None and entry.expired:
            raise DeadlinePassed()
        if inflate is not None and not inflate.eof:
            raise ValueError("the compressed body ends before its end marker (cut off)")
    except BaseException:
        response.close()
        raise
    finally:
        if large:
            _LARGE_TURNS.release()
    raw.release_conn()  # read to its end: the connection serves the next request
    return b"".join(parts)


#: Past this much inflated text, a body waits for one of :data:`LARGE_AT_ONCE` turns to be read
#: further: however many requests are in flight, at most that many bodies larger than this are
#: in memory at once (each up to the client's limit), so a server cannot make every request's
#: answer huge at the same time.
LARGE_BODY = 1 << 20
LARGE_AT_ONCE = 4
_LARGE_TURNS = threading.BoundedSemaphore(LARGE_AT_ONCE)


def _take_large_turn(entry: Any) -> bool:
    """Wait for a turn to read a large body (within the request's own deadline)."""
    while not _LARGE_TURNS.acquire(timeout=0.1):
        if entry is not None and entry.expired:
            raise DeadlinePassed()
    return True


def _translated(exc: Exception) -> Exception:
    """urllib3's errors while reading a body, as ``requests`` reports them (it does the same)."""
    from urllib3 import exceptions as u3

    if isinstance(exc, u3.ReadTimeoutError):
        return requests.exceptions.ReadTimeout(str(exc))
    if isinstance(exc, (u3.ProtocolError, OSError)):
        return requests.exceptions.ChunkedEncodingError(str(exc))
    return exc


def decode_json_text(data: bytes) -> str:
    """JSON bytes as text: UTF-8 whatever the ``Content-Type`` claims (RFC 8259 §8.1), a UTF-8
    byte order mark dropped.

    >>> decode_json_text('{"name": "Beyoncé"}'.encode())
    '{"name": "Beyoncé"}'

    :raises UnicodeDecodeError: the bytes are not UTF-8.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8")
