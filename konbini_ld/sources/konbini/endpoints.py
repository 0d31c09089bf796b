"""KonbiniAPI's two endpoints: ids, request paths, and the request keys the fetch ledger uses.

Ids are checked before any request is built (a decimal string, or a TikTok music URL it
is extracted from), so nothing but digits ever reaches a URL path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from ...errors import InvalidIdError

__all__ = [
    "DEFAULT_API_URL",
    "answer_mismatch",
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


_PART_OF = re.compile(r"/audios/(\d{1,30})/videos/?$")


def _names(value: Any, audio_id: str) -> bool | None:
    """Whether an Audio object (or its IRI) names ``audio_id``: ``True``, ``False``, or ``None``
    when it carries no identifier at all."""
    if isinstance(value, str):
        value = {"id": value}
    if not isinstance(value, dict):
        return None
    verdicts = []
    iri = value.get("id")
    if isinstance(iri, str):
        path = urlsplit(iri).path.rstrip("/")
        found = re.search(r"(\d{1,30})$", path)
        verdicts.append(found is not None and found.group(1) == audio_id)
    entity = value.get("entityId")
    if isinstance(entity, (str, int)) and not isinstance(entity, bool):
        verdicts.append(str(entity) == audio_id)
    if not verdicts:
        return None
    return any(verdicts)


def answer_mismatch(kind: str, audio_id: str, cursor: str | None, document: Any) -> str | None:
    """Why an answer is not the one asked for, or ``None`` when it is (or nothing contradicts it).

    An audio answer must name the audio asked for (its ``id`` IRI ends with the id, or its
    ``entityId`` is the id). A page of videos must not say it is part of another audio's
    collection (``partOf``), nor be another page (``cursor``), nor hold videos using another
    audio.

    >>> answer_mismatch("audio", "42", None, {"type": "Audio", "id": "https://www.tiktok.com/music/x-42"})
    >>> answer_mismatch("audio", "42", None, {"type": "Audio", "id": "https://www.tiktok.com/music/x-43"})
    'the answer describes another audio (https://www.tiktok.com/music/x-43)'
    >>> answer_mismatch("videos", "42", "0", {"partOf": "https://api.konbiniapi.com/v1/tiktok/audios/7/videos"})
    'the page is part of the videos of audio 7'
    """
    if isinstance(document, dict) and "data" in document and isinstance(document["data"], (dict, list)):
        document = document["data"]
    if not isinstance(document, dict):
        return "the answer holds no object"
    if kind == "audio":
        verdict = _names(document, audio_id)
        if verdict is None:
            return "the answer names no audio (no id or entityId)"
        if not verdict:
            shown = document.get("id") if isinstance(document.get("id"), str) else document.get("entityId")
            return f"the answer describes another audio ({str(shown)[:200]})"
        return None
    part_of = document.get("partOf")
    if isinstance(part_of, dict):
        part_of = part_of.get("id")
    if isinstance(part_of, str):
        found = _PART_OF.search(urlsplit(part_of).path)
        if found is None or found.group(1) != audio_id:
            return f"the page is part of the videos of {'audio ' + found.group(1) if found else repr(part_of[:200])}"
    page = document.get("cursor")
    if cursor is not None and isinstance(page, (str, int)) and not isinstance(page, bool) and str(page) != cursor:
        return f"the answer is the page at cursor {str(page)[:60]!r}, not {cursor!r}"
    items = document.get("orderedItems")
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and _names(item.get("audio"), audio_id) is False:
            return "the page holds videos using another audio"
    return None
