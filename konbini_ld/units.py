"""Sizes, durations and times as people write them (``512M``, ``7d``, ``2026-11-01T12:00Z``)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from .errors import UsageError

__all__ = [
    "FUTURE_SKEW",
    "MAX_CREDITS_PER_ANSWER",
    "MAX_DURATION",
    "MAX_SECONDS",
    "check_duration",
    "check_not_future",
    "format_time",
    "parse_credits",
    "parse_duration",
    "parse_http_date",
    "parse_seconds",
    "parse_size",
    "parse_time",
]


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

#: The longest duration taken (``--refresh-older-than``, ``since=``): a century reaches back
#: before any data there is, and keeps "that long before now" a representable time.
MAX_DURATION = timedelta(days=36_525)


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` (or an ISO 8601 ``PT12H``) → a :class:`timedelta`
    of at most :data:`MAX_DURATION`.

    >>> parse_duration("12h"), parse_duration("7d"), parse_duration("PT1H30M")
    (datetime.timedelta(seconds=43200), datetime.timedelta(days=7), datetime.timedelta(seconds=5400))

    :raises UsageError: not a duration, or longer than a century.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text, re.IGNORECASE)
    if m:
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
        return check_duration(_seconds(seconds), text)
    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", text.strip().upper())
    if m and any(m.groups()):
        d, h, mi, s = (float(g or 0) for g in m.groups())
        return check_duration(_seconds(((d * 24 + h) * 60 + mi) * 60 + s), text)
    raise UsageError(f"{_shown(text)} is not a duration (e.g. 30m, 12h, 7d)")


def _seconds(seconds: float) -> timedelta | None:
    if not math.isfinite(seconds) or seconds > MAX_DURATION.total_seconds():
        return None
    return timedelta(seconds=seconds)


def check_duration(value: timedelta | None, text: object = None) -> timedelta:
    """``value`` if it is a duration konbini-ld takes: not negative, at most :data:`MAX_DURATION`.

    :raises UsageError: it is not.
    """
    shown = _shown(text) if text is not None else str(value)
    if value is None or value > MAX_DURATION:
        raise UsageError(f"{shown} is longer than {MAX_DURATION.days // 365} years")
    if value < timedelta(0):
        raise UsageError(f"{shown} is negative: give how long ago (e.g. 12h, 7d)")
    return value


#: The longest wait a time limit may set (a day): beyond it, it bounds nothing either.
MAX_SECONDS = 86_400.0


def parse_seconds(text: str | float, what: str = "a time limit") -> float:
    """A number of seconds that bounds a wait: positive and at most :data:`MAX_SECONDS`
    (``0``, ``-1``, ``nan`` and ``inf`` bound nothing).

    >>> parse_seconds("30"), parse_seconds("2.5")
    (30.0, 2.5)

    :raises UsageError: not a number of seconds in that range.
    """
    try:
        seconds = float(text)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{what} must be a number of seconds, not {_shown(text)}") from None
    if not 0 < seconds <= MAX_SECONDS:  # (NaN compares false)
        raise UsageError(f"{what} must be more than 0 and at most {MAX_SECONDS:,.0f} seconds, not {_shown(text)}")
    return seconds


def _shown(text: object) -> str:
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:36] + "…" + shown[-3:]


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


#: How far in the future an observation time may be (clocks disagree a little); beyond it the
#: time is refused: one wrong time would make every real observation after it look older.
FUTURE_SKEW = timedelta(minutes=10)


def check_not_future(at: str, *, what: str = "observation time") -> None:
    """Refuse a time (:func:`format_time` spelling) later than now plus :data:`FUTURE_SKEW`.

    >>> check_not_future("2026-11-01T00:00:00.000Z")
    >>> check_not_future("9999-01-01T00:00:00.000Z")
    Traceback (most recent call last):
    ...
    konbini_ld.errors.UsageError: observation time 9999-01-01T00:00:00.000Z is in the future ...

    :raises UsageError: it is.
    """
    now = datetime.now(UTC)
    if at > format_time(now + FUTURE_SKEW):
        raise UsageError(f"{what} {at} is in the future (now is {format_time(now)}; more than "
                         f"{int(FUTURE_SKEW.total_seconds() // 60)} minutes ahead is refused)")


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


#: The most credits one answer may say it cost: the API's price is one credit a request, so any
#: other ``X-Credits-Used`` is not believed (it is kept as evidence, and the request counts one).
MAX_CREDITS_PER_ANSWER = 1
#: The largest ``X-Credits-Remaining`` believed (a balance, not a price).
_MAX_BALANCE = 10**12


def parse_credits(value: object, *, balance: bool = False) -> int | None:
    """A credit header's value (``X-Credits-Used``, or with ``balance`` ``X-Credits-Remaining``)
    when it is one: a whole number from 0 to :data:`MAX_CREDITS_PER_ANSWER` (a balance: to
    10¹²), as text of digits or a JSON integer; ``None`` for anything else (absent, negative,
    huge, fractional, garbage).

    >>> parse_credits("1"), parse_credits(" 0 "), parse_credits("2"), parse_credits("-1"), parse_credits("1e9")
    (1, 0, None, None, None)
    >>> parse_credits("24999", balance=True), parse_credits(True)
    (24999, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) <= 15:
        number = int(value.strip())
    else:
        return None
    top = _MAX_BALANCE if balance else MAX_CREDITS_PER_ANSWER
    return number if 0 <= number <= top else None
