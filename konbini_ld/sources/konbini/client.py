"""A small, careful client for the two KonbiniAPI endpoints konbini-ld uses.

* ``GET /v1/tiktok/audios/{id}`` — one audio.
* ``GET /v1/tiktok/audios/{id}/videos?count=C&cursor=K`` — a page of the videos using it.

Ids are checked before any request is built (a decimal string, or a TikTok music
URL it is extracted from), so nothing but digits ever reaches the URL path.
Connection errors, timeouts, broken bodies and 500/502/503/504 are retried with
exponential backoff and jitter (tenacity); 400/401/402/403/404 never are. The key
travels only in the ``Authorization`` header: it is not part of any URL, message,
log line or record.

What the API sends is evidence, not truth (:mod:`.transport` bounds the exchange):

* every request ends within its ``timeout`` (the whole request, not each read), and a
  body is read up to :data:`MAX_BODY_BYTES` on the wire and once inflated, no further;
* bodies are UTF-8 whatever their ``Content-Type`` says (RFC 8259);
* credit headers are believed only when they are whole numbers in range
  (:func:`konbini_ld.units.parse_credits`); other values are kept as evidence;
* only the API's own not-found answer (its JSON error envelope with code ``not_found``,
  billed) is a :class:`NotFoundError`; any other 404 (a proxy's page, a wrong
  ``--api-url``) is a failure, asked again next run;
* redirects are not followed, and an answer must be the one asked for
  (:func:`.endpoints.judge_answer`): anything else is a failure that carries the
  answer, for the archive to keep as evidence.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_when_event_set, wait_exponential_jitter

from ...errors import AuthError, CreditsExhaustedError, FetchError, InvalidIdError, NotFoundError, UsageError
from ...units import format_time, parse_credits
from ...urls import redact
from .redaction import base64_forms, json_strings, key_pattern, reveals, reveals_across
from .endpoints import DEFAULT_API_URL, audio_path, judge_answer, parse_audio_id, videos_path
from .transport import BodyTooLarge, DeadlinePassed, Watchdog, bounded_session, decode_json_text, read_body

__all__ = ["MAX_BODY_BYTES", "ApiResponse", "Budget", "BudgetSpent", "KonbiniClient", "api_key_from"]

_TRANSIENT_STATUS = {500, 502, 503, 504}
#: The largest answer read, on the wire and once decompressed (a page of 30 videos is ~100 KB).
MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class ApiResponse:
    """One answer the API (or whatever stood at its URL) gave.

    :ivar url: the request URL (no key in it).
    :ivar status: HTTP status.
    :ivar body: the response text (empty when it was refused unread: too large, not UTF-8).
    :ivar credits_used: ``X-Credits-Used`` when it is a believable number, else ``None``.
    :ivar credits_remaining: ``X-Credits-Remaining`` likewise.
    :ivar received_at: when the answer arrived (UTC, :func:`konbini_ld.units.format_time` spelling).
    :ivar header_evidence: credit header values that were not believed, as received (bounded).
    """

    url: str
    status: int
    body: str
    credits_used: int | None
    credits_remaining: int | None
    received_at: str = field(default_factory=lambda: format_time(datetime.now(UTC)))
    header_evidence: dict[str, str] | None = None
    #: the ``nextCursor`` of the page it holds, as sent (set once it is judged the answer asked for)
    next_cursor: Any = None

    @property
    def billed(self) -> int:
        """What this answer cost (the API's price is one credit a request): one for the answers
        the API bills (200 and 404) whatever their header says; for others, one when their
        ``X-Credits-Used`` says they were billed."""
        if self.status in (200, 404):
            return 1
        if self.credits_used is not None:
            return self.credits_used
        raw = (self.header_evidence or {}).get("X-Credits-Used", "").strip()
        return 1 if raw.isdigit() and int(raw) > 0 else 0


class Budget:
    """Requests a run may still send: one credit a request (the API's price), retries included.

    Counted when a request is sent, before any answer: whatever the answers say, a run never
    sends more than ``limit`` requests. Thread-safe.

    >>> b = Budget(2)
    >>> b.take(), b.take(), b.take(), b.sent
    (True, True, False, 2)
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.sent = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Count one request about to be sent; ``False`` (nothing counted) when none is left."""
        with self._lock:
            if self.limit is not None and self.sent >= self.limit:
                return False
            self.sent += 1
            return True

    def prepaid(self) -> Budget:
        """This budget, for a request whose first attempt was already counted (retries take more)."""
        return _Prepaid(self)


class _Prepaid(Budget):
    def __init__(self, budget: Budget) -> None:
        self._budget = budget
        self._first = True

    def take(self) -> bool:
        if self._first:
            self._first = False
            return True
        return self._budget.take()


class BudgetSpent(FetchError):
    """A request was not sent: the run's credit cap (``max_credits``) is reached."""


class _Transient(Exception):
    """A failure worth retrying; carries the :class:`FetchError` to raise if retries run out."""

    def __init__(self, error: FetchError) -> None:
        super().__init__(str(error))
        self.error = error


def _credit_headers(response: requests.Response) -> tuple[int | None, int | None, dict[str, str] | None]:
    """The believable credit headers, and the values that were not believed (as evidence)."""
    evidence: dict[str, str] = {}
    values: list[int | None] = []
    for name, balance in (("X-Credits-Used", False), ("X-Credits-Remaining", True)):
        raw = response.headers.get(name)
        value = parse_credits(raw, balance=balance)
        if value is None and raw is not None and "," in raw:  # (a header sent twice arrives joined: "1, 1")
            repeated = {parse_credits(part, balance=balance) for part in raw.split(",")}
            value = repeated.pop() if len(repeated) == 1 else None
        if raw is not None and value is None:
            evidence[name] = "".join(c if c.isprintable() else "?" for c in raw[:100])
        values.append(value)
    return values[0], values[1], evidence or None


def _api_error(text: str) -> tuple[str | None, str, bool]:
    """The API's error code and message from its JSON envelope (or a description of the body),
    and whether the body is that envelope."""
    try:
        payload = json.loads(text)
    except ValueError:
        kind = "an HTML page" if text.lstrip().startswith("<") else "a non-JSON body"
        return None, f"{kind} instead of the API's JSON error envelope", False
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if (isinstance(errors, list) and errors and isinstance(errors[0], dict) and "data" in payload
            and payload["data"] is None):
        first = errors[0]
        code = first.get("code")
        message = first.get("message") or code or "error"
        return (str(code)[:100] if code else None), str(message)[:300], True
    return None, "error without the API's error envelope", False


class KonbiniClient:
    """Client for KonbiniAPI; safe to share between threads (one HTTP session per thread).

    :param api_key: the API key (sent as ``Authorization: Bearer …`` and nowhere else).
    :param base_url: API base URL (tests and proxies point it elsewhere).
    :param timeout: seconds a request may take from start to last byte (connecting at most
        5 s of it); or ``(connect, total)`` seconds; above 0 and at most a day.
    :param retries: attempts for transient failures (1 = no retry).
    :param backoff: first backoff in seconds; doubles each attempt, plus up to as much jitter.
    :param max_backoff: cap on one backoff.
    :param session_factory: builds the ``requests.Session`` of each thread (inject one in tests).
    :param max_body: the largest body read, on the wire and once decompressed.
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
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        if not api_key:
            raise AuthError("no API key: set KONBINI_API_KEY (get one at https://konbiniapi.com)")
        self._key = api_key
        self._key_pattern = key_pattern(api_key)
        self._key_b64 = base64_forms(api_key)
        self.base_url = base_url.rstrip("/")
        if not re.match(r"https?://[^\s/]+", self.base_url):
            raise InvalidIdError(f"API URL {self._shown(base_url)!r} is not an http(s) URL")
        if "@" in (urlsplit(self.base_url).netloc or ""):
            # (requests would send them as Basic authorization in place of the key's Bearer one)
            raise UsageError(f"the API URL {self._shown(base_url)!r} holds credentials (user:password@): the API "
                             "key goes in KONBINI_API_KEY, and a request carries one Authorization header")
        self.timeout = (min(5.0, timeout), timeout) if isinstance(timeout, (int, float)) else timeout
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and 0 < t <= 86_400
                   for t in self.timeout):
            raise UsageError(f"timeout must be a number of seconds above 0 and at most a day, not {timeout!r}")
        if not api_key.isascii() or not api_key.isprintable() or api_key != api_key.strip():
            raise AuthError("the API key holds characters an HTTP header cannot carry (spaces around it, "
                            "non-ASCII or control characters): check KONBINI_API_KEY")
        self.retries = max(1, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.pool_size = pool_size
        self.max_body = max_body
        self._session_factory = session_factory
        self._local = threading.local()
        #: set to stop retrying (a run being interrupted): backoffs end at once
        self.cancel: threading.Event | None = None
        #: ends requests at their deadline (and all at once on :meth:`abort`)
        self.watchdog = Watchdog()

    def __repr__(self) -> str:  # never show the key
        return f"KonbiniClient(base_url={self._shown(self.base_url)!r})"

    def _shown(self, url: str) -> str:
        """``url`` as messages and records say it: without credentials, query parameters named
        like secrets, or the key itself wherever it is (an ``--api-url`` of a gateway that takes
        it in its path: ``https://gw.example/KEY/v1``)."""
        return redact(self._scrub(url))

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            if self._session_factory is not None:
                session = self._session_factory()
            else:
                session = bounded_session(self.watchdog, self.pool_size)
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

    def get_audio(self, audio_id: str, *, budget: Budget | None = None,
                  on_answer: Callable[[ApiResponse], None] | None = None) -> ApiResponse:
        """``GET /v1/tiktok/audios/{id}``, checked to describe that audio.

        :param budget: the run's requests left (each attempt takes one); ``None``: no cap.
        :param on_answer: called with every answer received, retried ones and refused ones
            included (the caller keeps what was billed).
        :raises NotFoundError: the API's own not-found answer (billed: record it so it is not
            bought again).
        :raises AuthError: 401/403. :raises CreditsExhaustedError: 402.
        :raises BudgetSpent: ``budget`` allowed no further request.
        :raises FetchError: anything else, after retries for transient failures; an answer
            that is not the one asked for carries it as ``exc.answer``.
        """
        pid = parse_audio_id(audio_id)
        return self._checked(self.get(self.audio_url(pid), budget=budget, on_answer=on_answer), "audio", pid, None)

    def get_videos(self, audio_id: str, cursor: str | None = None, count: int = 30, *, budget: Budget | None = None,
                   on_answer: Callable[[ApiResponse], None] | None = None) -> ApiResponse:
        """``GET /v1/tiktok/audios/{id}/videos?count=C&cursor=K``, checked to be that page of
        that audio's videos (same errors as :meth:`get_audio`)."""
        pid = parse_audio_id(audio_id)
        answer = self.get(self.videos_url(pid, cursor, count), budget=budget, on_answer=on_answer)
        return self._checked(answer, "videos", pid, cursor)

    def _checked(self, answer: ApiResponse, kind: str, audio_id: str, cursor: str | None) -> ApiResponse:
        hosts = {"api.konbiniapi.com", (urlsplit(self.base_url).hostname or "").lower()}
        reason, document = judge_answer(kind, audio_id, cursor, answer.body, api_hosts=hosts)
        if reason is not None or document is None:
            raise FetchError(f"{reason}: not the answer asked for; kept as evidence, asked again next run",
                             url=answer.url, status=answer.status, credits_used=answer.credits_used,
                             credits_remaining=answer.credits_remaining, answer=answer)
        answer.next_cursor = document.get("nextCursor")
        return answer

    def _scrub(self, text: str) -> str:
        """``text`` with the API key taken out, should a server send it back (a message quoting
        the request, a redirect carrying it, a credit header): it is never archived, stored or
        shown, in any spelling a reader would decode back to it (each character as itself,
        percent-encoded or as a JSON ``\\u`` escape)."""
        if not text or self._key_pattern is None:
            return text
        text = self._key_pattern.sub("REDACTED", text)
        if self._reveals(text):
            return "REDACTED (the text held the API key in another spelling)"
        return text

    def _reveals(self, text: str) -> bool:
        """Whether ``text`` gives the key back to a reader who decodes it as people do: JSON
        escapes, percent-encoding (twice), HTML entities, base64 (of the key or ``Bearer key``, at
        any offset), Unicode compatibility forms and invisible characters, any case."""
        if self._key_pattern is None:
            return False
        return reveals(text, self._key.lower(), self._key_b64)

    def _scrub_evidence(self, evidence: dict[str, str]) -> dict[str, str]:
        """Header values kept as evidence, without the key (in any spelling, or split across them)."""
        values = list(evidence.values())
        if self._reveals("\n".join(values)) or self._reveals("\n".join(reversed(values))):
            return dict.fromkeys(evidence, "REDACTED")
        return {name: self._scrub(value) for name, value in evidence.items()}

    def _scrub_answer(self, body: str) -> str:
        """An answer's text with the key taken out wherever it is spelled, before and after the
        JSON is decoded: a string that gives the key back is replaced (the body is then written
        again, its other values the same); an answer that is no JSON and gives it back is
        replaced whole."""
        if self._key_pattern is None or not body:
            return body
        withheld = "REDACTED (the answer held the API key in another spelling)"
        body = self._key_pattern.sub("REDACTED", body)
        odd: list[bool] = []  # (read from the text a part at a time: a page of thousands of videos
        # is never decoded whole, nor held as a document beside its text)
        if not reveals_across(json_strings(body, odd), self._key.lower(), self._key_b64) and not odd:
            return body
        strings: list[str] = []  # (the key, or no JSON: what it says is decided on the document)
        try:  # every string of the answer, keys and the values of repeated keys included (the
            # archive keeps the text whole), looked at once together, in document order
            stack: list[Any] = [json.loads(body, object_pairs_hook=lambda pairs: ("pairs", pairs))]
        except (ValueError, RecursionError):  # (not JSON, or nested past what Python reads)
            return withheld if self._reveals(body) else body
        while stack:
            value = stack.pop()
            if isinstance(value, str):
                strings.append(value)
            elif isinstance(value, list):
                stack.extend(reversed(value))
            elif isinstance(value, tuple):
                for k, v in reversed(value[1]):
                    stack.append(v)
                    stack.append(k)
        if not self._reveals("\n".join(strings)):  # (in document order: a key split across fields too, seen spelled apart)
            return body
        document = json.loads(body)
        found = False

        def clean(value: Any) -> Any:
            nonlocal found
            if isinstance(value, str):
                if self._reveals(value):
                    found = True
                    return "REDACTED"
                return value
            if isinstance(value, list):
                return [clean(v) for v in value]
            if isinstance(value, dict):
                return {clean(k): clean(v) for k, v in value.items()}
            return value

        cleaned = clean(document)
        if not found:  # the key is there only across fields: nothing of this answer is kept
            return withheld
        text = json.dumps(cleaned, ensure_ascii=False)
        return withheld if self._reveals(text) else text

    def abort(self) -> None:
        """End every request in progress now (a second Ctrl-C): their reads fail at once."""
        self.watchdog.abort_all()

    # -- transport -------------------------------------------------------------

    def get(self, url: str, *, budget: Budget | None = None,
            on_answer: Callable[[ApiResponse], None] | None = None) -> ApiResponse:
        """GET ``url`` with retries for transient failures only (see :meth:`get_audio`)."""
        cancel = self.cancel
        stop = stop_after_attempt(self.retries)
        retrying = Retrying(
            stop=stop | stop_when_event_set(cancel) if cancel is not None else stop,
            wait=wait_exponential_jitter(multiplier=self.backoff, max=self.max_backoff, jitter=self.backoff),
            retry=retry_if_exception_type(_Transient),
            sleep=_sleeper(cancel),
            reraise=True,
        )
        attempts: list[None] = []

        def once() -> ApiResponse:
            attempts.append(None)
            return self._once(url, budget, on_answer)

        try:
            return retrying(once)
        except _Transient as exc:
            error = exc.error
            if len(attempts) > 1:
                error.message += f" (gave up after {len(attempts)} attempts)"
            try:
                raise error from None
            finally:
                del error  # (its frames include this one: held here, a reference cycle)

    def _once(self, request_url: str, budget: Budget | None = None,
              on_answer: Callable[[ApiResponse], None] | None = None) -> ApiResponse:
        url = self._shown(request_url)  # what messages and records say: never credentials from --api-url
        if budget is not None and not budget.take():
            raise BudgetSpent("not sent: the run's credit cap is reached", url=url)
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json",
                   "Accept-Encoding": "gzip, deflate"}
        connect, total = self.timeout
        refused: str | None = None
        response: requests.Response | None = None
        with self.watchdog.deadline(total) as entry:
            try:
                response = self._session().get(request_url, headers=headers, timeout=(connect, total), stream=True,
                                               allow_redirects=False)
                try:
                    data = read_body(response, self.max_body, entry)
                except BodyTooLarge as exc:
                    data, refused = b"", f"the body is {exc}: refused unread"
                except ValueError as exc:
                    data, refused = b"", f"the body cannot be read: {exc}"
            except (DeadlinePassed, requests.RequestException) as exc:
                failure = _transport_failure(exc, entry.expired, total, url, aborted=entry.aborted)
                if response is not None:  # the answer's head arrived: it may have been billed
                    used, remaining, evidence = _credit_headers(response)
                    if evidence:
                        evidence = self._scrub_evidence(evidence)
                    cut = ApiResponse(url, response.status_code, "", used, remaining, header_evidence=evidence)
                    failure.answer = cut
                    if on_answer is not None:
                        on_answer(cut)
                try:
                    raise (_Transient(failure) if not isinstance(exc, _NOT_RETRIED) else failure) from None
                finally:
                    del failure  # (its frames include this one: held here, a reference cycle)
        status = response.status_code
        used, remaining, evidence = _credit_headers(response)
        if evidence:  # (a server may put the key it was sent anywhere, a credit header too)
            evidence = self._scrub_evidence(evidence)
        body = ""
        if refused is None:
            try:
                body = decode_json_text(data)
            except UnicodeDecodeError as exc:
                refused = f"the body is not UTF-8 text (byte {exc.start}); JSON is UTF-8"
        if status in (200, 404) and used == 0:  # billed whatever it says: "0" is kept as evidence
            evidence = {**(evidence or {}), "X-Credits-Used": "0"}
        answer = ApiResponse(url, status, self._scrub_answer(body), used, remaining, header_evidence=evidence)
        if on_answer is not None:
            on_answer(answer)
        extra: dict[str, Any] = {"url": url, "status": status, "credits_used": used, "credits_remaining": remaining,
                                 "answer": answer}
        if refused is not None:
            raise FetchError(refused, **extra)
        if status == 200:
            return answer
        code, message, envelope = _api_error(answer.body)
        if status in _TRANSIENT_STATUS:
            raise _Transient(FetchError(message, code=code, **extra))
        if 300 <= status < 400:
            where = redact(self._scrub(response.headers.get("Location", "")))[:300] or "nowhere"
            raise FetchError(f"redirected to {where}; redirects are not followed (check --api-url)", **extra)
        if status == 404:
            if envelope and code == "not_found" and used == 1:  # the API's own, billed
                raise NotFoundError(message, code=code, **extra)
            raise FetchError(f"not the API's not-found answer ({message}); check --api-url "
                             "(asked again next run)", code=code, **extra)
        if status in (401, 403):
            raise AuthError(message, code=code, **extra)
        if status == 402:
            raise CreditsExhaustedError(message, code=code or "credits_exhausted", **extra)
        raise FetchError(message, code=code, **extra)


#: transport failures that are not worth another attempt (anything else is retried)
_NOT_RETRIED = (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader,
                requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)


def _transport_failure(exc: BaseException, expired: bool, total: float, url: str, *,
                       aborted: bool = False) -> FetchError:
    """The failure a transport exception stands for (the one seam for ``requests``' errors)."""
    if aborted:
        return FetchError("not received: the run was stopped while the answer arrived", url=url)
    if expired or isinstance(exc, DeadlinePassed):
        return FetchError(f"no whole answer within the {total:g} s time limit", url=url)
    if isinstance(exc, requests.Timeout):
        return FetchError(f"timed out after {total:g} s", url=url)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return FetchError("the response body was cut off", url=url)
    if isinstance(exc, requests.ConnectionError):
        return FetchError(f"connection failed: {_reason(exc)}", url=url)
    return FetchError(f"request failed: {type(exc).__name__}", url=url)


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
