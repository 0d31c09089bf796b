"""HTTP connections of ``serve``: no client can hold one open for nothing, or hold them all.

uvicorn's HTTP/1.1 protocol (h11), with what it lacks for a server facing any client:

* A request's line and headers must arrive within :attr:`Limits.head_seconds` of the moment
  the server starts waiting for them (the connection opened, or the previous answer sent),
  however slowly they trickle in: an idle connection, or one sending a header a byte at a
  time, is closed then (408 when part of a request came).
* The request line and headers hold at most :attr:`Limits.head_bytes`; more is answered 431.
* A request with both ``Content-Length`` and ``Transfer-Encoding`` (the shape of request
  smuggling behind a proxy) is answered 400 and its connection closed (RFC 9112, 6.3).
* At most :attr:`Limits.connections` connections are open at once. One more closes the
  connection that has waited longest for a request; when every connection has a request in
  progress, the new one is answered 503 and closed.
* A client that takes none of an answer for :attr:`Limits.stall_seconds` is cut off (the
  answer's worker is freed); the kernel holds at most :attr:`Limits.send_buffer` of what it
  has not taken.

Bodies are bounded by the app (a size and a time, :mod:`konbini_ld.apps.server`).

Only requests whose ``Host`` is the address the server is bound to (or a name given with
``allow_hosts``) are answered (:class:`HostCheck`): a page on another site cannot reach the
endpoint through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.responses import PlainTextResponse
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HostCheck", "Limits", "allowed_hosts", "guarded_protocol", "host_name", "quiet_out_of_files",
           "raise_open_files_limit"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one HTTP client may hold."""

    #: open connections at once
    connections: int = 1000
    #: seconds for a request's line and headers to arrive
    head_seconds: float = 10.0
    #: bytes of a request's line and headers
    head_bytes: int = 64 * 1024
    #: seconds a client may take none of an answer
    stall_seconds: float = 30.0
    #: bytes the kernel may hold of an answer a client has not taken (the socket's send buffer,
    #: fixed: left to grow, it reached 4 MiB per connection)
    send_buffer: int = 256 * 1024


def _raw(status: str, message: str) -> bytes:
    body = (message + "\n").encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


class _Guarded(H11Protocol):
    limits: ClassVar[Limits] = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._waiting_since: float | None = None
        self._seen: Any = None
        # bytes of the request head now arriving (None: not waiting for one), and its last 3 bytes
        self._head_count: int | None = None
        self._tail = b""

    # -- waiting for a request -----------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.limits.send_buffer)
            except OSError:
                pass
        if len(self.connections) > self.limits.connections:
            waiting = [c for c in self.connections if c is not self and isinstance(c, _Guarded)
                       and c._waiting_since is not None]
            if not waiting:
                self._close(_raw("503 Service Unavailable",
                                 "Service Unavailable: too many connections; try again shortly"))
                return
            min(waiting, key=lambda c: c._waiting_since or 0.0)._close(None)
        self._wait_for_head()

    def _wait_for_head(self) -> None:
        self._cancel_head()
        if self.transport.is_closing():
            return
        self._waiting_since = time.monotonic()
        self._head_timer = self.loop.call_later(self.limits.head_seconds, self._head_timeout)
        pending = self.conn.trailing_data[0]  # (what a pipelining client already sent)
        self._head_count, self._tail = (None, b"") if b"\r\n\r\n" in pending else (len(pending), pending[-3:])

    def _cancel_head(self) -> None:
        self._waiting_since = None
        self._head_count = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        partial = bool(self.conn.trailing_data[0])
        self._close(_raw("408 Request Timeout", f"Request Timeout: the request line and headers must arrive "
                                                f"within {self.limits.head_seconds:g} s") if partial else None)

    def _close(self, answer: bytes | None) -> None:
        self._cancel_head()
        if self.transport.is_closing():
            return
        if answer is not None:
            self.transport.write(answer)
            self.transport.close()
        else:
            self._abort()

    def _after_events(self) -> None:
        """A request whose head has arrived stops the clock; the app may cut its connection."""
        if self.cycle is not None and self.cycle is not self._seen and not self.cycle.response_complete:
            self._seen = self.cycle
            self._cancel_head()
            scope: dict[str, Any] = self.cycle.scope  # type: ignore[assignment]
            names = {name for name, _ in scope.get("headers") or ()}
            if b"transfer-encoding" in names and b"content-length" in names:
                self.cycle.disconnected = True  # (the app's answer goes nowhere)
                self._close(_raw("400 Bad Request", "Bad Request: a request may carry Content-Length or "
                                                    "Transfer-Encoding, not both; the connection is closed"))
                return
            scope.setdefault("extensions", {})["konbini.abort"] = self._abort

    def _abort(self) -> None:
        """Cut the connection at once: a reset, so the kernel drops what the client has not taken."""
        self._cancel_head()
        if not self.transport.is_closing():
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._head_count is not None and not self._head_fits(data):
            self._close(_raw("431 Request Header Fields Too Large",
                             f"Request Header Fields Too Large: the request line and headers may hold "
                             f"{self.limits.head_bytes // 1024} KiB (send a long query with POST)"))
            return
        super().data_received(data)
        self._after_events()

    def _head_fits(self, data: bytes) -> bool:
        """Count the bytes of the request head in ``data``: False once they pass the limit."""
        assert self._head_count is not None
        probe = self._tail + data
        end = probe.find(b"\r\n\r\n")
        if end == -1:
            self._head_count += len(data)
            self._tail = probe[-3:]
            return self._head_count <= self.limits.head_bytes
        size = self._head_count + end + 4 - len(self._tail)
        self._head_count, self._tail = None, b""
        return size <= self.limits.head_bytes

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._wait_for_head()
        self._after_events()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._close(_raw("400 Bad Request", f"Bad Request: {msg}"))

    # -- a client that takes nothing -----------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self.limits.stall_seconds, self._abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None


def guarded_protocol(limits: Limits) -> type[H11Protocol]:
    """uvicorn's h11 protocol under ``limits`` (pass it as ``uvicorn.Config(http=…)``)."""
    return type("GuardedH11Protocol", (_Guarded,), {"limits": limits})


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


class HostCheck:
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


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the limit now."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    except (ValueError, OSError):
        return soft


def quiet_out_of_files(loop: asyncio.AbstractEventLoop) -> None:
    """When the process runs out of file handles, accepting waits a second (asyncio does that):
    say so in one line a minute, not a traceback per connection refused."""
    default = loop.get_exception_handler()
    said = [0.0]

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == "socket.accept() out of system resource":
            if time.monotonic() - said[0] > 60:
                said[0] = time.monotonic()
                log.warning("out of file handles (%s): new connections wait", context.get("exception"))
            return
        if default is not None:
            default(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
