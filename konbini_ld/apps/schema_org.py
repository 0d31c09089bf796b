"""An entity in the words search engines and link previews read: a JSON-LD block with schema.org
terms (``MusicRecording``, ``Person``, ``VideoObject``) beside ours (``as:``, ``ks:``), and Open
Graph ``<meta>`` tags.

The block's context is inline (``@vocab`` schema.org, and our prefixes), so a JSON-LD processor
reads it without fetching anything; it is written so that no value can end the ``<script>``
element it sits in.
"""

from __future__ import annotations

import json
from typing import Any

import pyoxigraph as ox

from ..query.entity import EntityDescription
from ..vocab import AS, KS, XSD

__all__ = ["SCHEMA", "open_graph", "schema_org", "script_json"]

SCHEMA = "https://schema.org/"
#: Our classes and the schema.org class each is also described as.
SCHEMA_TYPES = {AS + "Audio": "MusicRecording", AS + "Person": "Person", AS + "Video": "VideoObject"}
_CONTEXT = {"@vocab": SCHEMA, "as": AS, "ks": KS, "xsd": XSD}
#: Counters shown as schema.org interaction statistics.
_INTERACTIONS = {"followerCount": "FollowAction", "viewCount": "WatchAction", "likeCount": "LikeAction",
                 "commentCount": "CommentAction", "shareCount": "ShareAction"}


def _text(d: EntityDescription, predicate: str, owner: str | None = None) -> str | None:
    value = d.value(predicate, owner)
    return value.value if isinstance(value, (ox.Literal, ox.NamedNode)) else None


def _ours(iri: str) -> str | None:
    for prefix, ns in (("as", AS), ("ks", KS)):
        if iri.startswith(ns):
            return f"{prefix}:{iri[len(ns):]}"
    return None


def _literal(value: ox.Literal) -> Any:
    datatype = value.datatype.value
    if datatype == XSD + "string":
        return value.value
    if value.language:
        return {"@value": value.value, "@language": value.language}
    return {"@value": value.value, "@type": datatype}


def schema_org(d: EntityDescription) -> dict[str, Any]:
    """The entity as one JSON-LD node: schema.org terms, and every literal fact in ours."""
    node: dict[str, Any] = {"@context": _CONTEXT, "@id": d.iri}
    ours = [t for t in d.types if _ours(t)]
    schema_types = [SCHEMA_TYPES[t] for t in d.types if t in SCHEMA_TYPES]
    node["@type"] = (schema_types or ["Thing"]) + [_ours(t) for t in ours]
    node["name"] = d.label()
    if d.iri.startswith(("http://", "https://")):
        node["url"] = d.iri
    image = d.image()
    if image:
        node["image"] = image
    creators = [n for p, n in d.facts if p.value == AS + "attributedTo" and isinstance(n, ox.NamedNode)]
    people = [{"@type": "Person", "@id": c.value, **({"name": d.neighbours[c.value].label}
                                                    if c.value in d.neighbours and d.neighbours[c.value].label else {})}
              for c in creators]
    kind = schema_types[0] if schema_types else None
    duration = _text(d, AS + "duration")
    if kind == "MusicRecording":
        if people:
            node["byArtist"] = people
        if duration:
            node["duration"] = duration
        album = _text(d, KS + "album")
        if album:
            node["inAlbum"] = {"@type": "MusicAlbum", "name": album}
        media = _text(d, AS + "url")
        if media and media.startswith(("http://", "https://")):
            node["audio"] = {"@type": "AudioObject", "contentUrl": media,
                             **({"encodingFormat": f} if (f := _text(d, AS + "mediaType")) else {})}
    elif kind == "Person":
        for key, predicate in (("alternateName", AS + "preferredUsername"), ("description", AS + "summary")):
            if (value := _text(d, predicate)) is not None:
                node[key] = value
    elif kind == "VideoObject":
        content = _text(d, AS + "content")
        if content:
            node["description"] = content
            node.setdefault("name", content[:110])
        if (published := _text(d, AS + "published")) is not None:
            node["uploadDate"] = published
        if duration:
            node["duration"] = duration
        if image:
            node["thumbnailUrl"] = image
        if people:
            node["creator"] = people
        audio = _text(d, KS + "audio")
        if audio:
            node["audio"] = {"@type": "MusicRecording", "@id": audio}
    stats: list[dict[str, Any]] = []
    for counter, action in _INTERACTIONS.items():
        count = d.value(KS + counter)
        if isinstance(count, ox.Literal):
            stats.append({"@type": "InteractionCounter", "interactionType": {"@id": SCHEMA + action},
                          "userInteractionCount": int(count.value) if count.value.isdigit() else count.value})
    if stats:
        node["interactionStatistic"] = stats
    for prop, fact in d.facts:
        ours_key = _ours(prop.value)
        if ours_key is not None and isinstance(fact, ox.Literal):
            node.setdefault(ours_key, []).append(_literal(fact))
    return node


def script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``<``, ``>`` or ``&`` as such).

    >>> script_json({"name": "</script><b>"})
    '{"name": "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def open_graph(d: EntityDescription) -> list[tuple[str, str]]:
    """Open Graph properties for link previews: (property, content)."""
    kinds = {AS + "Audio": "music.song", AS + "Person": "profile", AS + "Video": "video.other"}
    kind = next((kinds[t] for t in d.types if t in kinds), "website")
    out = [("og:title", d.label()), ("og:type", kind)]
    if d.iri.startswith(("http://", "https://")):
        out.append(("og:url", d.iri))
    described = _text(d, AS + "summary") or _text(d, AS + "content")
    if described:
        out.append(("og:description", described[:300]))
    if (image := d.image()) is not None:
        out.append(("og:image", image))
    return out
