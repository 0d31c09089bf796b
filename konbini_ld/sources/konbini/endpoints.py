"""KonbiniAPI's two endpoints: ids, request paths, and the request keys the fetch ledger uses.

Ids are checked before any request is built (a decimal string, or a TikTok music URL it
is extracted from), so nothing but digits ever reaches a URL path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from ...errors import InvalidIdError
from ...mapping.contexts import prefixes, terms
from ...vocab import AS

__all__ = [
    "DEFAULT_API_URL",
    "answer_mismatch",
    "audio_key",
    "audio_path",
    "judge_answer",
    "parse_audio_id",
    "parse_audio_ids",
    "usable_cursor",
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
    >>> parse_audio_id("7611615657754381599"), parse_audio_id("07611615657754381599")
    ('7611615657754381599', '7611615657754381599')

    :raises InvalidIdError: anything else (nothing is requested for it).
    """
    text = value.strip()
    if _ID.fullmatch(text):
        return text.lstrip("0") or "0"  # (07… and 7… are one audio: never two purchases)
    m = _MUSIC_URL.fullmatch(text)
    if m:
        return m.group(1).lstrip("0") or "0"
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


def usable_cursor(cursor: str) -> bool:
    """Whether a page's ``nextCursor`` can be asked for: printable text of at most 512 characters
    that UTF-8 can carry (it goes into a URL and into the fetch ledger).

    >>> usable_cursor("1772217402000"), usable_cursor("\\ud800"), usable_cursor("x" * 600)
    (True, False, False)
    """
    if not cursor or len(cursor) > 512 or not cursor.isprintable():
        return False
    try:
        cursor.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
#: Hosts an audio's IRI may have (TikTok's music pages).
_AUDIO_HOSTS = re.compile(r"(?:[a-z0-9-]+\.)*tiktok\.com", re.IGNORECASE)
#: Keys that make a top-level object something other than the API's ``{"data": …}`` envelope.
_NOT_ENVELOPE = frozenset({"@context", "@id", "@type", "id", "type", "request", "response", "body", "status",
                           "headers"})
_AUDIO_TYPE = AS + "Audio"
_PAGE_TYPES = frozenset(AS + t for t in ("OrderedCollectionPage", "CollectionPage", "OrderedCollection", "Collection"))
#: A page's links to its collection and its neighbours (its own ``id`` too): each must be of the
#: videos of the audio asked for, on the API's host (the mapping stores them as they are).
_PAGE_LINKS = ("partOf", "id", "@id", "next", "prev", "first", "last", "current")


def _types(value: Any) -> set[str]:
    """The types ``value`` is given, by ``type`` or ``@type`` (both are read)."""
    out: set[str] = set()
    for key in ("type", "@type"):
        kinds = value.get(key) if isinstance(value, dict) else None
        if isinstance(kinds, str):
            out.add(kinds)
        elif isinstance(kinds, list):
            out.update(k for k in kinds if isinstance(k, str))
    return out


def _music_iri(value: Any) -> bool:
    """Whether ``value`` is a TikTok music IRI (what names an audio, whatever the node's type)."""
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.path.startswith("/music/") and bool(_AUDIO_HOSTS.fullmatch(parts.hostname or ""))


def _type_iris(value: Any) -> set[str]:
    """The IRIs the mapping reads ``value``'s types as: a term of the API's contexts (``Audio``),
    a compact IRI (``as:Audio``) or an IRI, as JSON-LD expands a type."""
    return {_iri(kind) for kind in _types(value)}


def _iri(name: str) -> str:
    """The IRI a key or a type ``name`` expands to: a term's, a compact IRI's, or itself."""
    term = terms().get(name)
    if term is not None:
        return term.iri
    head, sep, rest = name.partition(":")
    if sep and head in prefixes() and not rest.startswith("//"):
        return prefixes()[head] + rest
    return name


@cache
def _audio_key_iri() -> str:
    return _iri("audio")


def _is_audio_key(key: str) -> bool:
    """Whether a key is the one a video names its audio with, however spelled (``audio``,
    ``ks:audio``, its IRI)."""
    return key == "audio" or _iri(key) == _audio_key_iri()


def _is_audio(value: Any) -> bool:
    return _AUDIO_TYPE in _type_iris(value)


def _names(value: Any, audio_id: str) -> bool | None:
    """Whether an Audio object (or its IRI, or a list of them) names ``audio_id`` and nothing
    else: ``True``, ``False`` (one of its identifiers names another audio, or its IRI is not a
    TikTok one), or ``None`` when it carries no identifier at all."""
    if isinstance(value, list):
        verdicts = [_names(v, audio_id) for v in value]
        return False if False in verdicts else (True if True in verdicts else None)
    if isinstance(value, str):
        value = {"id": value}
    if not isinstance(value, dict):
        return None
    verdicts = []
    iri = value.get("id", value.get("@id"))
    if isinstance(iri, str):
        parts = urlsplit(iri)
        found = re.search(r"(?<!\d)(\d{1,30})$", parts.path.rstrip("/"))  # (all the digits it ends with)
        verdicts.append(parts.scheme.lower() in ("http", "https") and _music_iri(iri)
                        and found is not None and _same_id(found.group(1), audio_id))
    elif iri is not None:
        verdicts.append(False)
    entity = value.get("entityId")
    if isinstance(entity, (str, int)) and not isinstance(entity, bool):
        verdicts.append(_same_id(str(entity), audio_id))
    elif entity is not None:
        verdicts.append(False)
    if not verdicts:
        return None
    return all(verdicts)


def _same_id(a: str, b: str) -> bool:
    return a.isdigit() and b.isdigit() and a.lstrip("0") == b.lstrip("0")


def answer_mismatch(kind: str, audio_id: str, cursor: str | None, body: str, *,
                    api_hosts: Iterable[str] = ("api.konbiniapi.com",)) -> str | None:
    """Why an answer is not the one asked for, or ``None`` when it is (see :func:`judge_answer`)."""
    return judge_answer(kind, audio_id, cursor, body, api_hosts=api_hosts)[0]


def judge_answer(kind: str, audio_id: str, cursor: str | None, body: str, *,
                 api_hosts: Iterable[str] = ("api.konbiniapi.com",)) -> tuple[str | None, dict[str, Any] | None]:
    """Why an answer is not the one asked for (``None`` when it is), and the object it holds
    when it could be read (read once: its caller needs no second reading).

    The answer must be the API's envelope ``{"data": {…}}`` holding exactly the object the
    mapping will read (no envelope inside it, no recorded exchange), valid JSON (no ``NaN``).
    An audio's answer must be an ``Audio`` whose identifiers (its ``id``, a TikTok music IRI
    ending with the id, and its ``entityId``) all name the audio asked for. A page of videos
    must be a collection page that says whose videos it holds — its ``partOf`` (on the API's
    host) or the audio of its videos — and names no other audio, nor another page (``cursor``).

    >>> audio = '{"data": {"type": "Audio", "id": "https://www.tiktok.com/music/x-42"}}'
    >>> answer_mismatch("audio", "42", None, audio)
    >>> answer_mismatch("audio", "43", None, audio)
    'the answer describes another audio (https://www.tiktok.com/music/x-42)'
    >>> answer_mismatch("videos", "42", "0", '{"data": {"type": "OrderedCollectionPage", '
    ...                 '"partOf": "https://api.konbiniapi.com/v1/tiktok/audios/7/videos"}}')
    'the page is part of the videos of audio 7'
    """
    from ...errors import InputError
    from ...mapping.envelope import documents_in, strict_json

    try:
        payload = strict_json(body)
        documents = documents_in(payload).documents
    except InputError as exc:
        return f"the answer cannot be read ({exc})", None
    if (not isinstance(payload, dict) or not isinstance(payload.get("data"), dict)
            or _NOT_ENVELOPE.intersection(payload)):
        return 'the answer is not the API\'s envelope ({"data": {…}})', None
    document: dict[str, Any] = payload["data"]
    if len(documents) != 1 or documents[0] is not document:
        return "the answer holds an envelope inside its envelope", document
    return _judge_document(kind, audio_id, cursor, document, api_hosts), document


def _judge_document(kind: str, audio_id: str, cursor: str | None, document: dict[str, Any],
                    api_hosts: Iterable[str]) -> str | None:
    if kind == "audio":
        if not _is_audio(document):
            return f"the answer is not an Audio (type {sorted(_types(document)) or 'missing'})"
        verdict = _names(document, audio_id)
        if verdict is None:
            return "the answer names no audio (no id or entityId)"
        if not verdict:
            shown = document.get("id") if isinstance(document.get("id"), str) else document.get("entityId")
            return f"the answer describes another audio ({str(shown)[:200]})"
        return _holds_another(document, audio_id)
    if not _PAGE_TYPES.intersection(_type_iris(document)):
        return f"the answer is not a page of videos (type {sorted(_types(document)) or 'missing'})"
    for key in _PAGE_LINKS:
        if document.get(key) is not None:  # (null says nothing: the mapping leaves it out)
            wrong = _wrong_link(key, document[key], audio_id, {h.lower() for h in api_hosts})
            if wrong is not None:
                return wrong
    own = document.get("id", document.get("@id"))
    if cursor is not None and isinstance(own, str):
        said = parse_qs(urlsplit(own).query).get("cursor")
        if said is not None and said != [cursor]:
            return f"the page names itself the page at cursor {said[0][:60]!r}, not {cursor!r}"
    says = document.get("partOf") is not None
    page = document.get("cursor")
    if cursor is not None and page is not None and (isinstance(page, bool) or str(page) != cursor):
        return f"the answer is the page at cursor {str(page)[:60]!r}, not {cursor!r}"
    items = document.get("orderedItems", document.get("items"))
    if items is not None and not isinstance(items, list):
        return "the page's items are not a list"
    for item in items or []:
        if not isinstance(item, dict):
            return "the page's items are not videos"
        verdict = _names(item.get("audio"), audio_id)
        if verdict is False:
            return "the page holds videos using another audio"
        says = says or verdict is True
    if not says:  # (an empty page too: bought, it would end the audio's videos for good)
        return "the page does not say whose videos it holds (no partOf, no audio on its videos)"
    return _holds_another(document, audio_id)


def _wrong_link(key: str, value: Any, audio_id: str, api_hosts: set[str]) -> str | None:
    """Why a page's link ``key`` is not to the videos of ``audio_id`` on the API's host, or ``None``."""
    if isinstance(value, list):
        return next((w for w in (_wrong_link(key, v, audio_id, api_hosts) for v in value) if w is not None), None)
    if isinstance(value, dict):
        value = value.get("id", value.get("@id", value.get("href")))
    what = "the page is part of" if key == "partOf" else f"the page's {key} is a page of"
    parts = urlsplit(value) if isinstance(value, str) else None
    found = _PART_OF.search(parts.path) if parts is not None else None
    if found is None or not _same_id(found.group(1), audio_id):
        return f"{what} the videos of {'audio ' + found.group(1) if found else repr(str(value)[:200])}"
    if (parts.hostname or "").lower() not in api_hosts:  # type: ignore[union-attr]
        return f"{what} a collection on another host ({parts.hostname})"  # type: ignore[union-attr]
    return None


def _holds_another(document: dict[str, Any], audio_id: str) -> str | None:
    other = _another_audio(document, audio_id)
    return None if other is None else f"the answer holds another audio ({other[:200]})"


def _another_audio(document: dict[str, Any], audio_id: str) -> str | None:
    """The identifier of an audio other than ``audio_id`` described anywhere inside ``document``
    (an ``Audio``, a node named by a TikTok music IRI whatever its type, or a video's ``audio``, at
    any depth: what the mapping would store as that other audio's facts), or ``None``. (The
    document itself is judged by the caller.)"""
    stack: list[Any] = [document]
    top = True
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                stack.append(value)
            if isinstance(value, (dict, str, list)) and _is_audio_key(key) and _names(value, audio_id) is False:
                return _shown_id(value)
        named = node.get("id", node.get("@id"))
        if not top and (_is_audio(node) or _music_iri(named)) and _names(node, audio_id) is False:
            return _shown_id(node)
        top = False
    return None


def _shown_id(node: Any) -> str:
    if isinstance(node, list):
        return ", ".join(_shown_id(n) for n in node)
    if not isinstance(node, dict):
        return str(node)
    shown = node.get("id") if isinstance(node.get("id"), str) else node.get("entityId")
    return str(shown)
