"""Sizes and durations as people write them (``512M``, ``7d``)."""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import UsageError

__all__ = ["parse_duration", "parse_size"]


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
