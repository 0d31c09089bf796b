"""KonbiniAPI's two endpoints: ids, request paths, and the request keys the fetch ledger uses.

Ids are checked before any request is built (a decimal string, or a TikTok music URL it
is extracted from), so nothing but digits ever reaches a URL path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, urlencode

from ...errors import InvalidIdError

__all__ = [
    "DEFAULT_API_URL",
    "audio_key",
    "audio_path",
    "parse_audio_id",
    "parse_audio_ids",
    "videos_key",
    "videos_path",
]

DEFAULT_API_URL = "https://api.konbiniapi.com"
_ID = re.compile(r"\d{1,30}")
_MUSIC_URL = re.compile(
    r"https?://(?:www\.|m\.)?tiktok\.com/music/(?:[^/?#]*-)?(\d{1,30})/?(?:[?#].*)?", re.IGNORECASE
)


def parse_audio_id(value: str) -> str:
    """The decimal audio id in ``value`` (an id or a TikTok music URL).

    >>> parse_audio_id("https://www.tiktok.com/music/original-sound-7611615657754381599?lang=en")
    '7611615657754381599'
    >>> parse_audio_id("7611615657754381599")
    '7611615657754381599'

    :raises InvalidIdError: anything else (nothing is requested for it).
    """
    text = value.strip()
    if _ID.fullmatch(text):
        return text
    m = _MUSIC_URL.fullmatch(text)
    if m:
        return m.group(1)
    shown = text if len(text) <= 80 else text[:77] + "..."
    raise InvalidIdError(
        f"{shown!r} is not an audio id or a TikTok music URL "
        "(expected digits, or https://www.tiktok.com/music/<name>-<id>)"
    )


def parse_audio_ids(values: Iterable[str], *, source: str = "argument") -> list[str]:
    """Parse many ids (deduplicated, order kept).

    With ``source="line"`` (a file of ids) blank lines and ``#`` comments are skipped;
    as arguments, an empty value is an error like any other.

    :raises InvalidIdError: naming every bad entry, before anything is requested.
    """
    ids: dict[str, None] = {}
    bad = []
    for n, raw in enumerate(values, 1):
        text = raw
        if source != "argument":
            text = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("http") else raw.strip()
            if not text:
                continue
        try:
            ids[parse_audio_id(text)] = None
        except InvalidIdError as exc:
            bad.append(f"{source} {n}: {exc}" if source != "argument" else str(exc))
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise InvalidIdError("; ".join(bad[:3]) + more)
    return list(ids)


def audio_path(audio_id: str) -> str:
    """``/v1/tiktok/audios/{id}`` for a checked id.

    >>> audio_path("7611615657754381599")
    '/v1/tiktok/audios/7611615657754381599'
    """
    return f"/v1/tiktok/audios/{quote(audio_id, safe='')}"


def videos_path(audio_id: str, cursor: str | None = None, count: int = 30) -> str:
    """``/v1/tiktok/audios/{id}/videos?count=C&cursor=K`` for a checked id."""
    query: dict[str, object] = {"count": count}
    if cursor is not None:
        query["cursor"] = cursor
    return f"{audio_path(audio_id)}/videos?{urlencode(query)}"


def audio_key(audio_id: str) -> str:
    """The fetch ledger's key for an audio: ``audio:<id>``."""
    return f"audio:{audio_id}"


def videos_key(audio_id: str, cursor: str | None) -> str:
    """The fetch ledger's key for a page of videos: ``videos:<id>:<cursor>``."""
    return f"videos:{audio_id}:{cursor}"
