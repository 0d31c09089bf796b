"""Canonical lexical forms of literals: the forms Oxigraph stores (and konbini-ld writes), so
that a value read back compares equal, as text, to the value written.

Ground floor: both the mapping (which writes these forms) and the engines (which read back
what other servers return in their own forms) use it.
"""

from __future__ import annotations

import re
from decimal import Decimal

from .errors import InputError, UsageError
from .units import parse_time

__all__ = [
    "DURATION_PATTERN",
    "canonical_datetime",
    "canonical_double",
    "canonical_duration",
    "canonical_lexical",
    "duration_literal",
    "duration_in_range",
    "duration_seconds",
    "observation_time",
]

_XSD = "http://www.w3.org/2001/XMLSchema#"

_DATETIME_PARTS = re.compile(r"(-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?")
_DURATION = DURATION_PATTERN = re.compile(
    r"-?P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?"
)




def canonical_double(value: float) -> str:
    """The shortest digits that round-trip, without exponent: the form the store keeps.

    >>> canonical_double(1000.0), canonical_double(1e-7), canonical_double(0.1), canonical_double(-0.0)
    ('1000', '0.0000001', '0.1', '-0')
    """
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def canonical_datetime(text: str) -> str:
    """An ``xsd:dateTime`` in the store's canonical form (so a reload compares equal).

    >>> canonical_datetime("2020-03-15T00:00:00.000Z"), canonical_datetime("2020-03-15T00:00:00.50+00:00")
    ('2020-03-15T00:00:00Z', '2020-03-15T00:00:00.5Z')
    """
    m = _DATETIME_PARTS.fullmatch(text)
    if m is None:
        return text
    base, fraction, zone = m.groups()
    fraction = (fraction or "").rstrip("0")
    if fraction == ".":
        fraction = ""
    if zone in ("+00:00", "-00:00"):
        zone = "Z"
    return f"{base}{fraction}{zone or ''}"


_OBSERVATION_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def observation_time(text: str) -> str:
    """An observation time as konbini-ld spells it (UTC, milliseconds, ``Z``), the spelling in
    which times order correctly as text; accepts any ISO 8601 time (a stored ``xsd:dateTime``
    comes back as ``…T12:00:00Z``).

    >>> observation_time("2026-11-01T12:00:00Z"), observation_time("2026-11-01T13:00:00.5+01:00")
    ('2026-11-01T12:00:00.000Z', '2026-11-01T12:00:00.500Z')

    :raises InputError: not an ISO 8601 time.
    """
    if _OBSERVATION_TIME.fullmatch(text):
        return text
    try:
        return parse_time(text)
    except UsageError as exc:
        raise InputError(f"observation time: {exc}") from None


def canonical_duration(text: str) -> str:
    """An ``xsd:duration`` in the store's canonical form.

    >>> canonical_duration("PT60S"), canonical_duration("P14M"), canonical_duration("P0D")
    ('PT1M', 'P1Y2M', 'PT0S')
    """
    m = _DURATION.fullmatch(text)
    if m is None:
        return text
    years, months, days, hours, minutes, seconds = m.groups()
    total_months = int(years or 0) * 12 + int(months or 0)
    total_seconds = (Decimal(days or 0) * 86400 + Decimal(hours or 0) * 3600 + Decimal(minutes or 0) * 60
                     + Decimal(seconds or 0))
    if not total_months and not total_seconds:
        return "PT0S"
    ym = (f"{total_months // 12}Y" if total_months >= 12 else "") + (f"{total_months % 12}M" if total_months % 12 else "")
    day_time = duration_literal(total_seconds)[1:] if total_seconds else ""
    return f"{'-' if text.startswith('-') else ''}P{ym}{day_time}"


#: What an ``xsd:duration`` can hold in the store: months in 64 bits, and seconds as a decimal of
#: 128 bits with 18 digits after the point (past these Oxigraph holds the literal but cannot
#: compute with it: an ill-typed value).
_MAX_MONTHS = 2**63 - 1
_MAX_SECONDS = Decimal(2**127 - 1).scaleb(-18)
_SECOND_DIGITS = 18


def duration_in_range(text: str) -> bool:
    """Whether a lexically valid ``xsd:duration`` is one the store can compute with.

    >>> duration_in_range("P1Y2M3DT4H5M6.5S"), duration_in_range("P99999999999999999999Y")
    (True, False)
    >>> duration_in_range("PT0.1234567890123456789S"), duration_in_range("P1000000000000000D")
    (False, True)
    """
    m = _DURATION.fullmatch(text)
    if m is None:
        return False
    years, months, days, hours, minutes, seconds = m.groups()
    if int(years or 0) * 12 + int(months or 0) > _MAX_MONTHS:
        return False
    if seconds and "." in seconds and len(seconds.split(".", 1)[1].rstrip("0")) > _SECOND_DIGITS:
        return False
    total = Decimal(days or 0) * 86400 + Decimal(hours or 0) * 3600 + Decimal(minutes or 0) * 60 + Decimal(seconds or 0)
    return total <= _MAX_SECONDS


def duration_literal(seconds: int | float | Decimal) -> str:
    """The canonical ``xsd:duration`` for a number of seconds (the form Oxigraph stores).

    >>> duration_literal(23), duration_literal(90), duration_literal(86400), duration_literal(0.5)
    ('PT23S', 'PT1M30S', 'P1D', 'PT0.5S')
    """
    total = Decimal(str(seconds)) if not isinstance(seconds, Decimal) else seconds
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{sign}P"
    if days:
        out += f"{int(days)}D"
    time = ""
    if hours:
        time += f"{int(hours)}H"
    if minutes:
        time += f"{int(minutes)}M"
    if secs:
        text = format(secs.normalize(), "f") if secs != secs.to_integral_value() else str(int(secs))
        time += f"{text}S"
    if time:
        out += "T" + time
    elif not days:
        out += "T0S"
    return out


def duration_seconds(text: str) -> int | float | None:
    m = _DURATION.fullmatch(text)
    if not m:
        raise ValueError(text)
    years, months, days, hours, minutes, seconds = m.groups()
    if years or months:
        return None  # calendar durations have no fixed number of seconds
    total = Decimal(days or 0) * 86400 + Decimal(hours or 0) * 3600 + Decimal(minutes or 0) * 60
    total += Decimal(seconds or 0)
    if text.startswith("-"):
        total = -total
    return int(total) if total == total.to_integral_value() else float(total)


def canonical_lexical(lexical: str, datatype: str) -> str:
    """``lexical`` in the canonical form of ``datatype`` (unchanged when it has none or is ill-typed).

    >>> canonical_lexical("1", _XSD + "boolean"), canonical_lexical("+007", _XSD + "integer")
    ('true', '7')
    >>> canonical_lexical("2020-03-15T00:00:00.000Z", _XSD + "dateTime")
    '2020-03-15T00:00:00Z'
    """
    try:
        if datatype == _XSD + "boolean":
            return {"1": "true", "0": "false"}.get(lexical, lexical)
        if datatype == _XSD + "integer":
            return str(int(lexical)) if re.fullmatch(r"[+-]?\d{1,40}", lexical) else lexical
        if datatype == _XSD + "dateTime":
            return canonical_datetime(lexical)
        if datatype == _XSD + "duration":
            return canonical_duration(lexical)
        if datatype == _XSD + "double" and re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([Ee][+-]?\d+)?", lexical):
            return canonical_double(float(lexical))
    except (ValueError, ArithmeticError):
        return lexical
    return lexical
