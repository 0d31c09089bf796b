"""Hypothesis strategies for valid KonbiniAPI responses (SPEC §1 shapes and their variations)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from konbini_ld.mapping.contexts import API_CONTEXT, terms

KNOWN = set(terms()) | {"id", "type"}

text = st.text(max_size=40)
counts = st.integers(min_value=0, max_value=2**63 - 1)  # the 64-bit range the store computes with
flags = st.booleans()
digits = st.integers(min_value=1, max_value=10**19).map(str)
timestamps = st.datetimes(
    min_value=datetime(2010, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
slugs = st.from_regex(r"[a-z0-9][a-z0-9\-]{0,20}", fullmatch=True)
handles = st.from_regex(r"[a-z0-9_][a-z0-9_.]{0,15}", fullmatch=True)
cdn = slugs.map(lambda s: f"https://p16-sign.tiktokcdn-us.com/tos-avt/{s}.jpeg")

images = st.fixed_dictionaries(
    {"type": st.just("Image"), "url": cdn},
    optional={"width": st.integers(0, 4096), "height": st.integers(0, 4096)},
)
links = st.fixed_dictionaries({"type": st.just("Link"), "href": slugs.map(lambda s: f"https://linktr.ee/{s}")},
                              optional={"rel": st.sampled_from(["preferred", "me"])})

unknown_keys = st.from_regex(r"[a-z][A-Za-z0-9]{2,12}", fullmatch=True).filter(lambda k: k not in KNOWN)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), text,
    # Oxigraph's canonical doubles are exact in this range (a few ulps off below 1e-200)
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False).filter(
        lambda f: not f.is_integer() and abs(f) >= 1e-6
    ),
)
unknown_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(unknown_keys, children, max_size=3)),
    max_leaves=6,
)
extras = st.dictionaries(unknown_keys, unknown_values, max_size=2)


def _maybe_null(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, strategy, st.none())


@st.composite
def persons(draw: st.DrawFn) -> dict[str, Any]:
    handle = draw(handles)
    p: dict[str, Any] = {"type": "Person", "id": f"https://www.tiktok.com/@{handle}"}
    optional = {
        "url": st.just(f"https://www.tiktok.com/@{handle}"),
        "name": text, "preferredUsername": st.just(handle), "summary": text, "published": timestamps,
        "isPrivate": flags, "isVerified": flags, "isLive": flags, "hasLikes": flags, "hasPlaylists": flags,
        "followerCount": counts, "followingCount": counts, "likeCount": counts, "videoCount": counts,
        "icon": images, "image": st.lists(images, max_size=2), "attachment": st.lists(links, max_size=2),
    }
    if draw(st.booleans()):  # older field set
        optional |= {"userId": digits, "internalId": slugs}
    else:
        optional |= {"entityId": slugs, "language": st.sampled_from(["en", "fr", "ja"]),
                     "likedCount": counts, "mediaCount": counts}
    for key, strategy in optional.items():
        if draw(st.booleans()):
            p[key] = draw(_maybe_null(strategy))
    p.update(draw(extras))
    return p


@st.composite
def audios(draw: st.DrawFn) -> dict[str, Any]:
    aid = draw(digits)
    a: dict[str, Any] = {
        "@context": list(API_CONTEXT),
        "type": "Audio",
        "id": f"https://www.tiktok.com/music/{draw(slugs)}-{aid}",
    }
    optional = {
        "url": st.just(f"https://sf16-ies-music.tiktokcdn.com/obj/tos-alisg-v/{aid}"),
        "name": text, "mediaType": st.just("audio/mpeg"), "album": text,
        "duration": st.one_of(st.integers(0, 10**6), st.floats(0, 1e5, allow_nan=False).map(lambda f: round(f, 3))),
        "videoCount": counts, "entityId": digits, "isOriginal": flags, "isCopyrighted": flags,
        "icon": images, "image": st.lists(images, max_size=2),
        "attributedTo": st.one_of(persons(), st.lists(persons(), min_size=1, max_size=3)),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            a[key] = draw(_maybe_null(strategy))
    a.update(draw(extras))
    return a


responses = audios().map(lambda a: {"data": a})
