"""A small, careful client for the two KonbiniAPI endpoints konbini-ld uses.

* ``GET /v1/tiktok/audios/{id}`` — one audio.
* ``GET /v1/tiktok/audios/{id}/videos?count=C&cursor=K`` — a page of the videos using it.

Ids are checked before any request is built (a decimal string, or a TikTok music
URL it is extracted from), so nothing but digits ever reaches the URL path.
Every request has a timeout. Connection errors, timeouts, broken bodies and
500/502/503/504 are retried with exponential backoff and jitter (tenacity);
400/401/402/403/404 never are. The key travels only in the ``Authorization``
header: it is not part of any URL, message, log line or record.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_when_event_set, wait_exponential_jitter

from ...errors import AuthError, CreditsExhaustedError, FetchError, InvalidIdError, NotFoundError, UsageError
from ...units import format_time
from ...urls import redact
from .endpoints import DEFAULT_API_URL, audio_path, parse_audio_id, videos_path

__all__ = ["ApiResponse", "KonbiniClient", "api_key_from"]

_TRANSIENT_STATUS = {500, 502, 503, 504}


@dataclass(slots=True)
class ApiResponse:
    """One answered request (200 or 404; errors are raised).

    :ivar url: the request URL (no key in it).
    :ivar status: HTTP status.
    :ivar body: the raw response text.
    :ivar received_at: when the answer arrived (UTC, :func:`konbini_ld.units.format_time` spelling).
    """

    url: str
    status: int
    body: str
    credits_used: int | None
    credits_remaining: int | None
    received_at: str = field(default_factory=lambda: format_time(datetime.now(UTC)))


class _Transient(Exception):
    """A failure worth retrying; carries the :class:`FetchError` to raise if retries run out."""

    def __init__(self, error: FetchError) -> None:
        super().__init__(str(error))
        self.error = error


def _int_header(response: requests.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _api_error(response: requests.Response) -> tuple[str | None, str]:
    """The API's error code and message from its JSON envelope, or a description of the body."""
    text = response.text
    try:
        payload = json.loads(text)
    except ValueError:
        kind = "an HTML page" if text.lstrip().startswith("<") else "a non-JSON body"
        return None, f"{kind} instead of the API's JSON error envelope"
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return str(first.get("code") or "") or None, str(first.get("message") or first.get("code") or "error")
    return None, "error without the API's error envelope"


class KonbiniClient:
    """Client for KonbiniAPI; safe to share between threads (one HTTP session per thread).

    :param api_key: the API key (sent as ``Authorization: Bearer …`` and nowhere else).
    :param base_url: API base URL (tests and proxies point it elsewhere).
    :param timeout: seconds to wait for each answer, or ``(connect, read)`` seconds (a single
        number also bounds connecting, at 10 s at most).
    :param retries: attempts for transient failures (1 = no retry).
    :param backoff: first backoff in seconds; doubles each attempt, plus up to as much jitter.
    :param max_backoff: cap on one backoff.
    :param session_factory: builds the ``requests.Session`` of each thread (inject one in tests).
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_API_URL,
        timeout: float | tuple[float, float] = (5.0, 30.0),
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        pool_size: int = 64,
        session_factory: Any = None,
    ) -> None:
        if not api_key:
            raise AuthError("no API key: set KONBINI_API_KEY (get one at https://konbiniapi.com)")
        self._key = api_key
        self.base_url = base_url.rstrip("/")
        if not re.match(r"https?://[^\s/]+", self.base_url):
            raise InvalidIdError(f"API URL {redact(base_url)!r} is not an http(s) URL")
        self.timeout = (min(10.0, timeout), timeout) if isinstance(timeout, (int, float)) else timeout
        self.retries = max(1, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.pool_size = pool_size
        self._session_factory = session_factory
        self._local = threading.local()
        #: set to stop retrying (a run being interrupted): backoffs end at once
        self.cancel: threading.Event | None = None

    def __repr__(self) -> str:  # never show the key
        return f"KonbiniClient(base_url={redact(self.base_url)!r})"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            if self._session_factory is not None:
                session = self._session_factory()
            else:
                session = requests.Session()
                adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=self.pool_size)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
            session.trust_env = False  # no .netrc credentials or proxies picked up behind the user's back
            self._local.session = session
        return session

    # -- endpoints -----------------------------------------------------------

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], *, api_url: str | None = None, **options: Any) -> KonbiniClient:
        """A client with the key from ``KONBINI_API_KEY`` and the URL from ``api_url``, else
        ``KONBINI_API_URL``, else the production API (what ``konbini-ld fetch`` does).

        :raises AuthError: no key. :raises UsageError: ``KONBINI_API_URL`` set but empty.
        """
        return cls(api_key_from(environ), base_url=api_url or api_url_from(environ), **options)

    def audio_url(self, audio_id: str) -> str:
        """The request URL for one audio (the id is validated first)."""
        return self.base_url + audio_path(parse_audio_id(audio_id))

    def videos_url(self, audio_id: str, cursor: str | None = None, count: int = 30) -> str:
        """The request URL for a page of videos using an audio."""
        return self.base_url + videos_path(parse_audio_id(audio_id), cursor, count)

    def get_audio(self, audio_id: str) -> ApiResponse:
        """``GET /v1/tiktok/audios/{id}``.

        :raises NotFoundError: 404 (billed: record it so it is not bought again).
        :raises AuthError: 401/403. :raises CreditsExhaustedError: 402.
        :raises FetchError: anything else, after retries for transient failures.
        """
        return self.get(self.audio_url(audio_id))

    def get_videos(self, audio_id: str, cursor: str | None = None, count: int = 30) -> ApiResponse:
        """``GET /v1/tiktok/audios/{id}/videos?count=C&cursor=K`` (same errors as :meth:`get_audio`)."""
        return self.get(self.videos_url(audio_id, cursor, count))

    # -- transport -------------------------------------------------------------

    def get(self, url: str) -> ApiResponse:
        """GET ``url`` with retries for transient failures only."""
        cancel = self.cancel
        stop = stop_after_attempt(self.retries)
        retrying = Retrying(
            stop=stop | stop_when_event_set(cancel) if cancel is not None else stop,
            wait=wait_exponential_jitter(multiplier=self.backoff, max=self.max_backoff, jitter=self.backoff),
            retry=retry_if_exception_type(_Transient),
            sleep=_sleeper(cancel),
            reraise=True,
        )
        try:
            return retrying(self._once, url)
        except _Transient as exc:
            error = exc.error
            if self.retries > 1:
                error.message += f" (gave up after {self.retries} attempts)"
            raise error from None

    def _once(self, request_url: str) -> ApiResponse:
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        url = redact(request_url)  # what messages and records say: never credentials from --api-url
        try:
            response = self._session().get(request_url, headers=headers, timeout=self.timeout)
            body = response.text  # reads the whole body: a truncated one raises here
        except requests.Timeout:
            raise _Transient(FetchError(f"timed out after {self.timeout[1]:g} s", url=url)) from None
        except requests.ConnectionError as exc:
            raise _Transient(FetchError(f"connection failed: {_reason(exc)}", url=url)) from None
        except requests.exceptions.ChunkedEncodingError:
            raise _Transient(FetchError("the response body was cut off", url=url)) from None
        except requests.RequestException as exc:
            raise FetchError(f"request failed: {type(exc).__name__}", url=url) from None
        status = response.status_code
        used, remaining = _int_header(response, "X-Credits-Used"), _int_header(response, "X-Credits-Remaining")
        if status == 200:
            return ApiResponse(url, status, body, used, remaining)
        code, message = _api_error(response)
        extra: dict[str, Any] = {"url": url, "status": status, "credits_used": used, "credits_remaining": remaining}
        if status in _TRANSIENT_STATUS:
            raise _Transient(FetchError(message, code=code, **extra))
        if status == 404:
            raise NotFoundError(message, code=code or "not_found", **extra)
        if status in (401, 403):
            raise AuthError(message, code=code, **extra)
        if status == 402:
            raise CreditsExhaustedError(message, code=code or "credits_exhausted", **extra)
        raise FetchError(message, code=code, **extra)


def _sleeper(cancel: threading.Event | None) -> Callable[[float], None]:
    """Backoff sleeps that end at once when ``cancel`` is set."""
    if cancel is None:
        return time.sleep

    def sleep(seconds: float) -> None:
        cancel.wait(seconds)

    return sleep


def api_key_from(environ: Mapping[str, str]) -> str:
    """The API key from ``KONBINI_API_KEY`` (the only documented place for it).

    :raises AuthError: it is not set.
    """
    key = environ.get("KONBINI_API_KEY", "")
    if not key:
        raise AuthError("no API key: set KONBINI_API_KEY (get one at https://konbiniapi.com)")
    return key


def api_url_from(environ: Mapping[str, str]) -> str:
    """The API base URL from ``KONBINI_API_URL``, else the production API.

    :raises UsageError: the variable is set but empty (it never silently means production).
    """
    url = environ.get("KONBINI_API_URL")
    if url is None:
        return DEFAULT_API_URL
    if not url.strip():
        raise UsageError("KONBINI_API_URL is set but empty: unset it to use https://api.konbiniapi.com, "
                         "or give the API's URL")
    return url


def _reason(exc: Exception) -> str:
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] ([^'\"\)]+)|(Connection refused|Name or service not known|Remote end closed[^'\")]*)", text)
    return (m.group(1) or m.group(2)).strip() if m else type(exc).__name__
