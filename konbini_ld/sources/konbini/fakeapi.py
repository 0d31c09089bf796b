"""A loopback stand-in for KonbiniAPI, for tests, benchmarks and offline demos.

It serves the synthetic corpus (:mod:`konbini_ld.corpus`) and any fixture you
register, speaks the API's error envelope and credit headers, and can be told
to misbehave: added latency, 5xx before success, HTML error pages, truncated
bodies, 402 once a credit budget is spent, 401 for a wrong key. It records every
request it sees (path and whether the key matched, never the key itself).

>>> with FakeKonbiniAPI(api_key="k") as api:
...     import requests
...     r = requests.get(api.url + "/v1/tiktok/audios/" + audio_id(1), headers={"Authorization": "Bearer k"})
...     r.status_code, r.headers["X-Credits-Used"], len(api.requests)
(200, '1', 1)
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .corpus import audio_id, audio_response, videos_page

__all__ = ["FakeKonbiniAPI", "Scripted", "audio_id"]

_AUDIO = re.compile(r"/v1/tiktok/audios/(\d+)")
_VIDEOS = re.compile(r"/v1/tiktok/audios/(\d+)/videos")


@dataclass(slots=True)
class Scripted:
    """One scripted answer: ``status`` with ``body`` (str, bytes or JSON value).

    :ivar truncate: send half the body, then close the connection.
    :ivar bill: add credit headers to an answer that would not carry them (200 and 404 do).
    :ivar headers: further headers (they override the credit headers: ``X-Credits-Used: -1``…).
    :ivar drip: seconds between single bytes of the body (a server that never quite stops).
    :ivar endless: after the body, keep sending chunks of spaces until the client hangs up.
    """

    status: int = 200
    body: Any = None
    truncate: bool = False
    content_type: str = "application/json"
    bill: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    drip: float = 0.0
    endless: bool = False


@dataclass
class _Seen:
    path: str
    query: dict[str, list[str]]
    authorized: bool
    at: float = field(default_factory=time.monotonic)


class FakeKonbiniAPI:
    """A threaded HTTP server on 127.0.0.1 that answers like KonbiniAPI.

    :param api_key: the key it accepts (401 otherwise).
    :param credits: credits available; once spent, answers 402.
    :param latency: seconds added to every answer.
    :param audios: how many synthetic audios exist (ids from :func:`audio_id`); others are 404.
    :param pages: pages of videos per audio.
    :param port: the port to listen on (0: any free one; :attr:`url` says which).

    :attr:`day` is the synthetic calendar: advance it and every counter grows as the corpus's
    growth model says (:func:`~konbini_ld.sources.konbini.corpus.audio_response`).
    """

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        credits: int = 1_000_000,
        latency: float = 0.0,
        audios: int = 100_000,
        pages: int = 3,
        per_page: int = 30,
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.credits = credits
        self.credits_used = 0
        self.latency = latency
        self.audios = audios
        self.pages = pages
        self.per_page = per_page
        self.day = 0
        self.fixtures: dict[str, Any] = {}
        self.scripts: dict[str, deque[Scripted]] = {}
        self.requests: list[_Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._index = {audio_id(i): i for i in range(min(audios, 200_000))}
        handler = type("Handler", (_Handler,), {"api": self})
        self.server = _Server(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------

    def start(self) -> FakeKonbiniAPI:
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-konbini-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeKonbiniAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self, *, credits: int | None = None) -> None:
        """Forget requests and scripts; optionally set a new credit budget.

        Waits (up to 5 s) for answers still in progress, so they cannot bill the new budget.
        """
        deadline = time.monotonic() + 5
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            self.requests.clear()
            self.scripts.clear()
            self.credits_used = 0
            self.max_in_flight = 0
            if credits is not None:
                self.credits = credits

    def script(self, path: str, *answers: Scripted) -> None:
        """Answer the next requests to ``path`` (e.g. ``/v1/tiktok/audios/123``) with ``answers`` in order."""
        self.scripts.setdefault(path, deque()).extend(answers)

    def add_audio(self, audio: dict[str, Any], id_: str) -> None:
        """Serve ``{"data": audio}`` for ``GET /v1/tiktok/audios/{id_}``."""
        self.fixtures[f"/v1/tiktok/audios/{id_}"] = {"data": audio}

    def count(self, path_prefix: str = "/v1/") -> int:
        """Requests seen whose path starts with ``path_prefix``."""
        return sum(1 for r in self.requests if r.path.startswith(path_prefix))

    # -- answering -------------------------------------------------------------

    def answer(self, path: str, query: dict[str, list[str]], authorized: bool
               ) -> tuple[int, dict[str, str], bytes, bool, Scripted | None]:
        with self._lock:
            self.requests.append(_Seen(path, query, authorized))
            scripted = self.scripts.get(path)
            script = scripted.popleft() if scripted else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            return (*self._answer(path, query, authorized, script), script)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(
        self, path: str, query: dict[str, list[str]], authorized: bool, script: Scripted | None
    ) -> tuple[int, dict[str, str], bytes, bool]:
        if not authorized:
            return self._error(401, "unauthorized", "Missing or invalid API key", bill=False)
        if script is not None:
            body = script.body if isinstance(script.body, (str, bytes)) else json.dumps(script.body)
            data = body.encode() if isinstance(body, str) else body
            headers = {"Content-Type": script.content_type}
            if script.bill or script.status in (200, 404):
                headers.update(self._bill())
            headers.update(script.headers)
            return script.status, headers, data, script.truncate
        with self._lock:
            if self.credits_used >= self.credits:
                return self._error(402, "credits_exhausted", "No credits left on this key", bill=False)
        if not (_AUDIO.fullmatch(path) or _VIDEOS.fullmatch(path)) and path not in self.fixtures:
            return self._error(404, "route_not_found", f"No route for GET {path}", bill=False)
        payload = self._body(path, tuple(sorted((k, tuple(v)) for k, v in query.items())), self.day)
        if payload is None:
            return self._error(404, "not_found", "Audio not found", bill=True)
        return 200, {"Content-Type": "application/json", **self._bill()}, payload, False

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - the server lives as long as its cache should
    def _body(self, path: str, query: tuple[tuple[str, tuple[str, ...]], ...], day: int) -> bytes | None:
        payload = self._payload(path, {k: list(v) for k, v in query}, day)
        return None if payload is None else json.dumps(payload).encode()

    def _payload(self, path: str, query: dict[str, list[str]], day: int) -> Any:
        if path in self.fixtures:
            return self.fixtures[path]
        m = _VIDEOS.fullmatch(path)
        if m:
            i = self._index.get(m.group(1))
            if i is None:
                return None
            cursor = int((query.get("cursor") or ["0"])[0] or 0)
            if cursor >= self.pages:
                return None
            return videos_page(i, cursor, per_page=self.per_page, pages=self.pages, observation=day)
        m = _AUDIO.fullmatch(path)
        if m:
            i = self._index.get(m.group(1))
            return audio_response(i, observation=day) if i is not None else None
        return None

    def _bill(self) -> dict[str, str]:
        with self._lock:
            self.credits_used += 1
            return {"X-Credits-Used": "1", "X-Credits-Remaining": str(max(0, self.credits - self.credits_used))}

    def _error(self, status: int, code: str, message: str, *, bill: bool) -> tuple[int, dict[str, str], bytes, bool]:
        headers = {"Content-Type": "application/json"}
        if bill:
            headers.update(self._bill())
        body = json.dumps({"errors": [{"code": code, "message": message}], "data": None}).encode()
        return status, headers, body, False


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # many clients connect at once; the default backlog of 5 drops SYNs

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up early (timeouts, truncated bodies) are part of the game: stay quiet."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    api: FakeKonbiniAPI
    protocol_version = "HTTP/1.1"
    # one write per answer and no Nagle: otherwise delayed ACKs add ~40 ms to every request
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urlsplit(self.path)
        authorized = self.headers.get("Authorization") == f"Bearer {self.api.api_key}"
        status, headers, body, truncate, script = self.api.answer(parts.path, parse_qs(parts.query), authorized)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        endless = script is not None and script.endless
        if endless:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body)))
        if truncate or endless:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            if endless:
                self._endless(body)
            elif script is not None and script.drip:
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(script.drip)
            else:
                self.wfile.write(body[: len(body) // 2] if truncate else body)
                self.wfile.flush()
        except OSError:  # the client hung up (as it should, on a server like this)
            pass
        if truncate or endless:
            self.close_connection = True

    def _endless(self, body: bytes) -> None:
        chunk = b" " * 65536
        self.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
        while True:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr logging
        pass
