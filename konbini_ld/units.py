"""Sizes, durations and times as people write them (``512M``, ``7d``, ``2026-11-01T12:00Z``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from .errors import UsageError

__all__ = ["format_time", "parse_duration", "parse_http_date", "parse_size", "parse_time"]


def parse_size(text: str) -> int:
    """``512M``, ``2G``, ``1.5GiB``, ``1000000`` → bytes.

    >>> parse_size("512M"), parse_size("2G"), parse_size("1000")
    (536870912, 2147483648, 1000)

    :raises UsageError: not a size.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise UsageError(f"{text!r} is not a size (e.g. 512M, 2G)")
    factor = 1024 ** " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * factor)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` (or an ISO 8601 ``PT12H``) → a :class:`timedelta`.

    >>> parse_duration("12h"), parse_duration("7d"), parse_duration("PT1H30M")
    (datetime.timedelta(seconds=43200), datetime.timedelta(days=7), datetime.timedelta(seconds=5400))

    :raises UsageError: not a duration.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text, re.IGNORECASE)
    if m:
        return timedelta(seconds=float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()])
    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", text.strip().upper())
    if m and any(m.groups()):
        d, h, mi, s = (float(g or 0) for g in m.groups())
        return timedelta(days=d, hours=h, minutes=mi, seconds=s)
    raise UsageError(f"{text!r} is not a duration (e.g. 30m, 12h, 7d)")


def format_time(moment: datetime) -> str:
    """The one spelling of a time konbini-ld writes: UTC, milliseconds, ``Z``.

    Every observation time has this form, so times compare correctly as strings too.

    >>> format_time(datetime(2026, 11, 1, 13, 0, tzinfo=UTC))
    '2026-11-01T13:00:00.000Z'
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> str:
    """An ISO 8601 date or time (``2026-11-01``, ``2026-11-01T12:00``, ``…+01:00``, ``…Z``) →
    its :func:`format_time` spelling. A time without a zone is UTC.

    >>> parse_time("2026-11-01T14:00+01:00"), parse_time("2026-11-01")
    ('2026-11-01T13:00:00.000Z', '2026-11-01T00:00:00.000Z')

    :raises UsageError: not an ISO 8601 time.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-01T12:00:00Z)") from None
    if not 1 <= moment.year <= 9999 or (moment.tzinfo is not None and moment.utcoffset() is None):
        raise UsageError(f"{text!r} is out of range")
    try:
        return format_time(moment)
    except OverflowError:
        raise UsageError(f"{text!r} is out of range") from None


def parse_http_date(text: str) -> str | None:
    """An HTTP ``Date`` header (``Tue, 01 Sep 2026 12:00:00 GMT``, or ISO 8601) → its
    :func:`format_time` spelling; ``None`` when it is not a date.

    >>> parse_http_date("Tue, 01 Sep 2026 12:00:00 GMT")
    '2026-09-01T12:00:00.000Z'
    """
    try:
        return format_time(parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError, OverflowError):
        pass
    try:
        return parse_time(text)
    except UsageError:
        return None
