"""The API's envelope: from one response's text to the API objects it carries.

Accepts the ``{"data": …}`` envelope, a bare object, a collection page, an array of
these, and a recorded exchange (``request`` / ``status`` / ``headers`` / ``body``);
recognises the API's error envelope and HTML error pages. Every way the text can be
unreadable (invalid UTF-8, JSON errors, nesting too deep to read, integers too long to
convert) becomes one :class:`~konbini_ld.errors.InputError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..units import parse_credits, parse_http_date

__all__ = ["MAX_DOCUMENT_BYTES", "Envelope", "parse_documents", "strict_json"]

#: Responses larger than this are refused (a sign of a wrong file, not of a real API answer).
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024


def _header(headers: Any, name: str) -> Any:
    if isinstance(headers, dict):
        for k, v in headers.items():
            if isinstance(k, str) and k.lower() == name.lower():
                return v
    return None


def _int_header(headers: Any, name: str) -> int | None:
    """A credit header of a recorded exchange, when it is a believable number (else ``None``)."""
    return parse_credits(_header(headers, name), balance=name.lower() == "x-credits-remaining")


@dataclass(slots=True)
class Envelope:
    """The API objects of one response, and what a recorded exchange says about it."""

    documents: list[Any]
    source_url: str | None = None
    credits_used: int | None = None
    credits_remaining: int | None = None
    #: the recorded exchange's ``Date`` header, as :func:`konbini_ld.units.format_time` spells it
    observed_at: str | None = None


def parse_documents(text: str) -> Envelope:
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
    return documents_in(_json(stripped))


def documents_in(value: Any) -> Envelope:
    """What :func:`parse_documents` gives for JSON already read (a value of :func:`strict_json`).

    :raises InputError: as :func:`parse_documents`, for what the value holds.
    """
    parsed = Envelope([])
    _collect(value, parsed)
    return parsed


def strict_json(text: str) -> Any:
    """JSON as RFC 8259 has it (no ``NaN`` or ``Infinity``), every failure an :class:`InputError`."""
    return _json(text.lstrip("\ufeff \t\r\n"))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _json(text: str) -> Any:
    """``json.loads`` with every way it can fail turned into an :class:`InputError`."""
    bad = _SURROGATE.search(text)
    if bad is not None:  # undecodable bytes read with surrogateescape
        line = text.count("\n", 0, bad.start()) + 1
        raise InputError(f"not valid UTF-8 text (line {line}, character {bad.start() - text.rfind(chr(10), 0, bad.start())})")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(text.rstrip()) - 1
        hint = " (the input looks truncated)" if truncated else ""
        raise InputError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{hint}") from None
    except RecursionError:
        raise InputError("JSON nested too deeply to read") from None
    except ValueError as exc:  # an integer of more digits than Python converts (4300)
        raise InputError(f"invalid JSON: {exc}".split(";")[0]) from None


_SURROGATE = re.compile("[\udc80-\udcff]")


def _collect(value: Any, parsed: Envelope) -> None:
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
        request: dict[str, Any] = value["request"] if isinstance(value.get("request"), dict) else {}
        url = request.get("url") if isinstance(request.get("url"), str) else None
        if isinstance(status, int) and status >= 400:
            raise InputError(f"recorded response has HTTP status {status}{_api_errors(value.get('body'))}")
        parsed.source_url = parsed.source_url or url
        headers = value.get("headers")
        parsed.credits_used = _int_header(headers, "X-Credits-Used")
        parsed.credits_remaining = _int_header(headers, "X-Credits-Remaining")
        date = _header(headers, "Date")
        if isinstance(date, str):
            parsed.observed_at = parsed.observed_at or parse_http_date(date)
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
