"""From raw response text to triples: reading inputs, unwrapping envelopes, preparing documents.

The pipeline for one response is::

    raw text ──parse──▶ API objects ──normalize──▶ JSON-LD ──pyld──▶ triples

:func:`prepare` runs it and never raises for bad input: the returned
:class:`Prepared` carries either the triples or the :class:`InputError`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any


import logging

from .errors import ExpandError, InputError, KonbiniError
from .expand import expand, to_lines
from .normalize import could_hold_bad_text, normalize
from .grouping import group_lines
from .shapes_cache import default_cache

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "PreparePool",
    "batches",
    "Prepared",
    "Response",
    "parse_documents",
    "prepare",
    "read_source",
    "source_iri",
]

log = logging.getLogger(__name__)

#: Responses larger than this are refused (a sign of a wrong file, not of a real API answer).
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonlines")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Response:
    """One raw response as received or read from a file.

    :ivar body: the raw text.
    :ivar source: request URL, file path, or ``-`` for standard input.
    :ivar line: 1-based line for JSON Lines input.
    :ivar observed_at: ISO 8601 UTC time of observation (defaults to now).
    :ivar status: HTTP status for API responses.
    :ivar credits_used: ``X-Credits-Used`` for API responses.
    :ivar credits_remaining: ``X-Credits-Remaining`` for API responses.
    :ivar key: what was asked for (an audio id…), for fetch bookkeeping.
    """

    body: str
    source: str
    line: int | None = None
    observed_at: str = field(default_factory=_now)
    status: int | None = None
    credits_used: int | None = None
    credits_remaining: int | None = None
    key: str | None = None

    @property
    def where(self) -> str:
        """``source`` or ``source:line``, for messages."""
        return f"{self.source}:{self.line}" if self.line is not None else self.source


@dataclass(slots=True)
class Prepared:
    """A response after the pipeline: its triples, or why it failed.

    :ivar response: the input.
    :ivar unknown_keys: keys no context defines, ``"Type.key"`` → IRI kept under.
    :ivar error: the reason the response cannot be loaded, or ``None``.
    """

    response: Response
    unknown_keys: dict[str, str] = field(default_factory=dict)
    error: InputError | None = None
    source_url: str | None = None
    credits_used: int | None = None
    credits_remaining: int | None = None
    next_cursor: str | None = None
    #: the triples as N-Triples lines grouped by (entity, property), each group carrying the
    #: lines of the skolemised objects it owns: the unit the upsert replaces
    groups: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    count: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def lines(self) -> set[str]:
        """Every N-Triples line of the response (empty on error)."""
        return {line for lines in self.groups.values() for line in lines}

    @property
    def not_found(self) -> bool:
        """A recorded 404: nothing to map, but worth remembering (it was paid for)."""
        return self.response.status == 404


@functools.lru_cache(maxsize=4096)
def source_iri(source: str, line: int | None = None) -> str:
    """The IRI provenance records for a response's origin.

    >>> source_iri("https://api.konbiniapi.com/v1/tiktok/audios/1")
    'https://api.konbiniapi.com/v1/tiktok/audios/1'
    >>> source_iri("-")
    'urn:konbini-ld:stdin'
    """
    if source.startswith(("http://", "https://", "file:", "urn:")):
        return source
    if source == "-":
        return "urn:konbini-ld:stdin"
    return Path(source).resolve().as_uri()


def _int_header(headers: Any, name: str) -> int | None:
    if not isinstance(headers, dict):
        return None
    for k, v in headers.items():
        if k.lower() == name.lower():
            try:
                return int(v)
            except (TypeError, ValueError):
                return None
    return None


@dataclass(slots=True)
class _Parsed:
    documents: list[Any]
    source_url: str | None = None
    credits_used: int | None = None
    credits_remaining: int | None = None


def parse_documents(text: str) -> _Parsed:
    """Parse one response's text into the API objects it carries.

    Accepts the API envelope ``{"data": …}``, a bare object, a collection page,
    an array of any of these, and a recorded exchange
    ``{"request": {"url": …}, "status": 200, "headers": {…}, "body": {"data": …}}``.

    :raises InputError: the text is not JSON, is an HTML page, is an API error
        envelope, or holds something other than objects.
    """
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise InputError("empty input: expected a JSON object")
    if stripped.startswith("<"):
        title = ""
        lowered = stripped[:2000].lower()
        if "<title>" in lowered:
            start = lowered.index("<title>") + 7
            end = lowered.find("</title>", start)
            title = " " + repr(stripped[start : end if end > 0 else start + 80].strip()[:80])
        raise InputError(f"got an HTML page{title}, not JSON (an error page from a proxy or the API?)")
    value = _json(stripped)
    parsed = _Parsed([])
    _collect(value, parsed)
    return parsed


def _json(text: str) -> Any:
    """``json.loads`` with every way it can fail turned into an :class:`InputError`."""
    bad = _SURROGATE.search(text)
    if bad is not None:  # undecodable bytes read with surrogateescape
        line = text.count("\n", 0, bad.start()) + 1
        raise InputError(f"not valid UTF-8 text (line {line}, character {bad.start() - text.rfind(chr(10), 0, bad.start())})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(text.rstrip()) - 1
        hint = " (the input looks truncated)" if truncated else ""
        raise InputError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{hint}") from None
    except RecursionError:
        raise InputError("JSON nested too deeply to read") from None
    except ValueError as exc:  # an integer of more digits than Python converts (4300)
        raise InputError(f"invalid JSON: {exc}".split(";")[0]) from None


_SURROGATE = re.compile("[\udc80-\udcff]")


def _collect(value: Any, parsed: _Parsed) -> None:
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, dict):
                raise InputError(f"expected JSON objects in the array, got {_kind(item)}")
            _collect(item, parsed)
        return
    if not isinstance(value, dict):
        raise InputError(f"expected a JSON object, got {_kind(value)}")
    if "body" in value and "request" in value and "type" not in value:
        status = value.get("status")
        request = value.get("request") if isinstance(value.get("request"), dict) else {}
        url = request.get("url") if isinstance(request.get("url"), str) else None
        if isinstance(status, int) and status >= 400:
            raise InputError(f"recorded response has HTTP status {status}{_api_errors(value.get('body'))}")
        parsed.source_url = parsed.source_url or url
        headers = value.get("headers")
        parsed.credits_used = _int_header(headers, "X-Credits-Used")
        parsed.credits_remaining = _int_header(headers, "X-Credits-Remaining")
        body = value["body"]
        if isinstance(body, str):
            body = parse_documents(body).documents
        _collect(body, parsed)
        return
    if "data" in value and "type" not in value and "@context" not in value:
        data = value["data"]
        if data is None:
            raise InputError(f"API error response{_api_errors(value) or ' with no data'}")
        if not isinstance(data, (dict, list)):
            raise InputError(f"expected an object in \"data\", got {_kind(data)}")
        _collect(data, parsed)
        return
    parsed.documents.append(value)


def _api_errors(value: Any) -> str:
    errors = value.get("errors") if isinstance(value, dict) else None
    if not isinstance(errors, list) or not errors:
        return ""
    parts = []
    for e in errors[:3]:
        if isinstance(e, dict):
            parts.append(f"{e.get('code', '?')}: {e.get('message', '')}".strip())
    return ": " + "; ".join(parts) if parts else ""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def prepare(response: Response, *, shape_cache: bool = True) -> Prepared:
    """Run the whole pipeline on one response. Bad input is returned, not raised.

    :param shape_cache: re-use pyld's expansion for documents shaped like earlier ones
        (:mod:`konbini_ld.shapes_cache`); ``False`` runs plain pyld on every document.
    """
    out = Prepared(response, credits_used=response.credits_used, credits_remaining=response.credits_remaining)
    if response.status == 404:
        return out  # nothing to map, but billed: its credits count
    try:
        if len(response.body) > MAX_DOCUMENT_BYTES:
            raise InputError(f"response is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB; refusing it")
        parsed = parse_documents(response.body)
        check_text = could_hold_bad_text(response.body)
        out.source_url = parsed.source_url
        out.credits_used = parsed.credits_used if response.credits_used is None else response.credits_used
        out.credits_remaining = (
            parsed.credits_remaining if response.credits_remaining is None else response.credits_remaining
        )
        if not parsed.documents:
            raise InputError("no documents in input")
        for document in parsed.documents:
            cursor = document.get("nextCursor")
            if isinstance(cursor, (str, int)) and not isinstance(cursor, bool):
                out.next_cursor = str(cursor)
            normalized = normalize(document, check_text=check_text)
            if shape_cache:
                groups = default_cache().groups(normalized.document)
            else:
                groups = group_lines(to_lines(expand(normalized.document)))
            for key, lines in groups.items():
                out.groups.setdefault(key, []).extend(lines)
            for key, iri in normalized.unknown_keys.items():
                out.unknown_keys.setdefault(key, iri)
        out.count = sum(len(lines) for lines in out.groups.values())
    except InputError as exc:
        out.groups = {}
        out.error = exc.located(response.source, response.line)
    except KonbiniError as exc:  # pragma: no cover - defensive: every input failure is an InputError
        out.groups = {}
        out.error = ExpandError(str(exc), source=response.source, line=response.line)
    except RecursionError:
        out.groups = {}
        out.error = ExpandError("document is nested too deeply", source=response.source, line=response.line)
    except Exception as exc:  # a mapping defect must cost one response, never the run or the store
        log.debug("mapping %s failed", response.where, exc_info=True)
        out.groups = {}
        out.error = ExpandError(
            f"could not be mapped ({type(exc).__name__}: {exc}); it is kept in the archive for `rebuild`",
            source=response.source, line=response.line,
        )
    return out


def prepare_for_store(response: Response) -> Prepared:
    """:func:`prepare` for the store's worker processes."""
    return prepare(response)


def body_sha256(body: str) -> str:
    """Hex SHA-256 of a response body (its identity in provenance)."""
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


# -- reading inputs ----------------------------------------------------------


def read_source(source: str | os.PathLike[str] | IO[str], *, name: str | None = None) -> Iterator[Response | InputError]:
    """Stream the responses in a file, ``-`` (standard input) or an open text stream.

    A JSON file (one response, possibly an array) yields one :class:`Response`;
    JSON Lines input yields one per non-blank line and is never read whole into
    memory. A file that cannot be read yields an :class:`InputError`.
    """
    if isinstance(source, (str, os.PathLike)) and str(source) != "-":
        path = Path(source)
        label = name or str(source)
        try:
            fh = open(path, encoding="utf-8", errors="surrogateescape", newline="")
        except FileNotFoundError:
            yield InputError("no such file", source=label)
            return
        except IsADirectoryError:
            yield InputError("is a directory, not a file", source=label)
            return
        except OSError as exc:
            yield InputError(f"cannot read: {exc.strerror or exc}", source=label)
            return
        with fh:
            jsonl = path.suffix.lower() in _JSONL_SUFFIXES
            log.info("reading %s (%s)", label, "JSON Lines" if jsonl else "JSON, or JSON Lines if it is")
            yield from _read_stream(fh, label, jsonl=jsonl)
    else:
        stream = sys.stdin if not hasattr(source, "read") else source
        yield from _read_stream(stream, name or "-", jsonl=False)  # type: ignore[arg-type]


def _read_stream(fh: IO[str], label: str, *, jsonl: bool) -> Iterator[Response | InputError]:
    try:
        first = fh.readline()
        pending: list[str] = []
        if not jsonl and _is_complete_object(first.strip()):
            second = fh.readline()
            jsonl = bool(second)  # a single one-line object is plain JSON
            pending = [second] if second else []
        if not jsonl:
            text = first + "".join(pending) + fh.read(MAX_DOCUMENT_BYTES + 1 - len(first))
            if len(text) > MAX_DOCUMENT_BYTES:
                yield InputError(
                    f"input is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB and is not JSON Lines",
                    source=label,
                )
                return
            yield Response(text, label)
            return
        lineno = 0
        for line in itertools.chain([first], pending, fh):
            lineno += 1
            if line.strip():
                yield Response(line.rstrip("\r\n"), label, line=lineno)
    except UnicodeDecodeError as exc:  # pragma: no cover - surrogateescape prevents it
        yield InputError(f"not UTF-8 text: {exc}", source=label)
    except OSError as exc:
        yield InputError(f"read failed: {exc.strerror or exc}", source=label)


def _is_complete_object(line: str) -> bool:
    if not line.startswith("{") or not line.endswith("}"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def iter_sources(sources: Iterable[str | os.PathLike[str] | IO[str]]) -> Iterator[Response | InputError]:
    """:func:`read_source` over several inputs, in order."""
    for source in sources:
        yield from read_source(source)


def text_stream(data: str) -> IO[str]:
    """Wrap text as a stream for :func:`read_source` (handy in tests and notebooks)."""
    return io.StringIO(data)


def batches(responses: Iterable[Response | InputError], size: int, failed: list[InputError]) -> Iterator[list[Response]]:
    """Group responses into lists of ``size``; input errors go to ``failed``."""
    batch: list[Response] = []
    for item in responses:
        if isinstance(item, InputError):
            failed.append(item)
            continue
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _seed_worker(templates: dict[Any, Any]) -> None:
    from .shapes_cache import default_cache

    default_cache().seed(templates)


class PreparePool:
    """Worker processes preparing batches one ahead of the writer; started on the second batch,
    so small inputs never pay for them."""

    def __init__(self, workers: int | None) -> None:
        # one core plans and writes, one runs Oxigraph's bulk loads: preparing in other processes
        # only pays beyond that (on two cores, moving documents between processes costs what it saves)
        self.workers = max(0, (os.cpu_count() or 1) - 2) if workers is None else workers
        self.pool: Any = None
        self.batches = 0

    def prepare(self, batch: list[Response]) -> Any:
        self.batches += 1
        if self.workers <= 0 or self.batches < 2 or len(batch) < 100:
            return [prepare(r) for r in batch]
        if self.pool is None:
            import multiprocessing as mp

            from .shapes_cache import default_cache

            # workers start with the templates this process learned on the first batch
            self.pool = mp.get_context("spawn").Pool(
                self.workers, initializer=_seed_worker, initargs=(default_cache().snapshot(),)
            )
        return self.pool.map_async(prepare_for_store, batch, chunksize=max(1, len(batch) // (self.workers * 4)))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
