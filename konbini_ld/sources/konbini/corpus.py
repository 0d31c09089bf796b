"""Deterministic synthetic KonbiniAPI responses, shaped like SPEC §1.

Used by the benchmarks, the tests and the fake API server. Audios share
persons (a few prolific creators, a long tail), alternate between the older and
newer field sets, and leave optional fields absent or null now and then.

Counters grow from one observation to the next (:func:`grow`): most audios and
creators barely move, one in ten grows steadily, and one in fifty takes off, so a
series of observations has risers to find.

>>> a = audio_response(7)
>>> a["data"]["type"], a["data"]["id"].startswith("https://www.tiktok.com/music/")
('Audio', True)
>>> audio_response(7) == a
True
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from ...mapping.contexts import API_CONTEXT

__all__ = ["audio_id", "audio_response", "corpus_lines", "grow", "observation_time", "person", "videos_page",
           "workload_lines"]

_WORDS = (
    "original sound lofi summer night dance remix chill beat love city rain drive dream sunset "
    "morning coffee vibes phonk drill jazz piano guitar bass echo neon tokyo paris khaby"
).split()

#: What a third of the captions end with, and another third (as real captions: text outside Latin-1)
_EMOJI = ("", " \U0001f525", " \u2728\U0001f3b6")


def audio_id(i: int) -> str:
    """The decimal audio id of synthetic audio ``i``."""
    return str(7_000_000_000_000_000_000 + i * 7919)


def grow(value: int, key: str, observation: int) -> int:
    """``value`` after ``observation`` days of the growth the thing named ``key`` has: flat
    (most), steady (a tenth: 3-8% a day) or viral (a fiftieth: 25-60% a day).

    >>> grow(1000, "audio-1", 0), grow(1000, "audio-1", 3) >= 1000
    (1000, True)
    """
    if observation <= 0:
        return value
    rng = random.Random(f"growth-{key}")
    kind = rng.random()
    rate = rng.uniform(0.25, 0.6) if kind < 0.02 else rng.uniform(0.03, 0.08) if kind < 0.12 else rng.uniform(0, 0.004)
    jitter = random.Random(f"growth-{key}-{observation}").uniform(0.98, 1.02)
    grown = value * (1 + rate) ** observation * (jitter if rate > 0.01 else 1)
    return max(value, int(grown) + observation * (kind < 0.12))


def observation_time(observation: int, start: str = "2026-11-01T00:00:00Z", every: timedelta = timedelta(days=1)) -> str:
    """The HTTP ``Date`` of observation ``observation`` (one a day from ``start`` by default).

    >>> observation_time(2)
    'Tue, 03 Nov 2026 00:00:00 GMT'
    """
    moment = datetime.fromisoformat(start) + every * observation
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _image(rng: random.Random, tag: str) -> dict[str, Any]:
    return {
        "type": "Image",
        "url": f"https://p16-sign.tiktokcdn-us.com/tos-avt/{tag}~c5_100x100.jpeg",
        "width": rng.choice([100, 576, 720]),
        "height": rng.choice([100, 1024, 1280]),
    }


def person(j: int, observation: int = 0) -> dict[str, Any]:
    """Synthetic person ``j`` (older field set for odd ``j``, newer for even), as observed on day ``observation``."""
    rng = random.Random(f"person-{j}")
    handle = f"creator.{j}"
    p: dict[str, Any] = {
        "type": "Person",
        "id": f"https://www.tiktok.com/@{handle}",
        "url": f"https://www.tiktok.com/@{handle}",
        "name": f"Creator {j} {rng.choice(_WORDS).title()}",
        "preferredUsername": handle,
        "summary": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 8))) or None,
        "published": f"20{rng.randint(16, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T00:00:00.000Z",
        "isPrivate": rng.random() < 0.05,
        "isVerified": rng.random() < 0.2,
        "isLive": False,
        "hasLikes": True,
        "hasPlaylists": rng.random() < 0.5,
        "followerCount": rng.randint(0, 200_000_000),
        "followingCount": rng.randint(0, 5000),
        "likeCount": rng.randint(0, 3_000_000_000),
        "videoCount": rng.randint(0, 5000),
        "image": [_image(rng, f"p{j}")],
    }
    if rng.random() < 0.5:
        p["attachment"] = [{"type": "Link", "href": f"https://linktr.ee/{handle}"}]
    if j % 2:
        p["userId"] = str(100_000_000_000_000_000 + j)
        p["internalId"] = f"MS4wLjABAAAA{j:040d}"
        p["icon"] = _image(rng, f"i{j}")
    else:
        p["entityId"] = f"MS4wLjABAAAA{j:040d}"
        p["language"] = rng.choice(["en", "fr", "ja", "es"])
        p["likedCount"] = rng.randint(0, 10_000)
        p["mediaCount"] = p["videoCount"]
    if observation:
        for counter in ("followerCount", "likeCount", "videoCount", "mediaCount"):
            if counter in p:
                p[counter] = grow(p[counter], f"person-{j}-{counter}", observation)
    return p


def _audio(i: int, n_persons: int, rng: random.Random, observation: int = 0) -> dict[str, Any]:
    name = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))
    slug = name.replace(" ", "-")
    a: dict[str, Any] = {
        "@context": list(API_CONTEXT),
        "type": "Audio",
        "id": f"https://www.tiktok.com/music/{slug}-{audio_id(i)}",
        "url": f"https://sf16-ies-music.tiktokcdn.com/obj/tos-alisg-v/{audio_id(i)}",
        "name": name,
        "duration": rng.choice([rng.randint(5, 300), rng.randint(5, 60)]),
        "mediaType": "audio/mpeg",
        "album": rng.choice(["Greatest Hits", "Singles", None, ""]),
        "videoCount": int(rng.paretovariate(1.2) * 100),
        "image": [_image(rng, f"a{i}")],
    }
    if i % 3:
        a["entityId"] = audio_id(i)
        a["isOriginal"] = rng.random() < 0.6
        a["isCopyrighted"] = rng.random() < 0.3
    if rng.random() < 0.85:
        # a few prolific creators, a long tail
        j = int(n_persons * rng.random() ** 3)
        if rng.random() < 0.05:
            a["attributedTo"] = [person(j, observation), person((j + 1) % n_persons, observation)]
        else:
            a["attributedTo"] = person(j, observation)
    if rng.random() < 0.5:
        a["icon"] = _image(rng, f"ai{i}")
    a["videoCount"] = grow(a["videoCount"], f"audio-{i}", observation)
    return a


def audio_response(i: int, *, n_persons: int = 2500, observation: int = 0) -> dict[str, Any]:
    """The ``GET /v1/tiktok/audios/{id}`` response body for synthetic audio ``i``.

    :param n_persons: size of the creator pool the audio's creators come from.
    :param observation: the day it is observed on (counters grow with it).
    """
    return {"data": _audio(i, n_persons, random.Random(f"audio-{i}"), observation)}


def videos_page(i: int, cursor: int = 0, *, per_page: int = 30, pages: int = 3, n_persons: int = 2500,
                observation: int = 0) -> dict[str, Any]:
    """A ``GET /v1/tiktok/audios/{id}/videos`` page for synthetic audio ``i`` (on day ``observation``)."""
    rng = random.Random(f"videos-{i}-{cursor}")
    audio = _audio(i, n_persons, random.Random(f"audio-{i}"), observation)
    audio.pop("@context")
    audio.pop("attributedTo", None)
    aid = audio_id(i)
    base = f"https://api.konbiniapi.com/v1/tiktok/audios/{aid}/videos"
    last = cursor >= pages - 1
    items = []
    for k in range(per_page):
        vid = str(7_600_000_000_000_000_000 + i * 1000 + cursor * per_page + k)
        creator = person(rng.randrange(n_persons), observation)
        items.append(
            {
                "type": "Video",
                "id": f"{creator['id']}/video/{vid}",
                "url": f"{creator['id']}/video/{vid}",
                "entityId": vid,
                "content": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 12))) + " #fyp" + _EMOJI[(i + k) % 3],
                "published": f"2026-0{rng.randint(1, 9)}-{rng.randint(10, 28)}T12:00:00.000Z",
                "duration": rng.randint(5, 180),
                "viewCount": rng.randint(0, 50_000_000),
                "likeCount": rng.randint(0, 5_000_000),
                "commentCount": rng.randint(0, 100_000),
                "repostCount": 0,
                "shareCount": rng.randint(0, 200_000),
                "saveCount": rng.randint(0, 200_000),
                "language": "en",
                "isSponsored": False,
                "location": {"type": "Place", "name": rng.choice(["US", "FR", "JP"])},
                "tag": [
                    {
                        "type": "Tag",
                        "name": "fyp",
                        "href": "https://www.tiktok.com/tag/fyp",
                        "id": "https://www.tiktok.com/tag/fyp",
                        "entityId": "229207",
                    }
                ],
                "attributedTo": creator,
                "audio": audio,
            }
        )
        if observation:
            video: dict[str, Any] = items[-1]
            for counter in ("viewCount", "likeCount", "commentCount", "shareCount", "saveCount"):
                video[counter] = grow(video[counter], f"video-{vid}-{counter}", observation)
    return {
        "data": {
            "@context": list(API_CONTEXT),
            "type": "OrderedCollectionPage",
            "partOf": base,
            "totalItems": per_page * pages,
            "cursor": str(cursor),
            "nextCursor": None if last else str(cursor + 1),
            "next": None if last else f"{base}?cursor={cursor + 1}&count={per_page}",
            "itemCount": per_page,
            "orderedItems": items,
        }
    }


def corpus_lines(n: int, *, n_persons: int | None = None, observations: int = 1,
                 start: str = "2026-11-01T00:00:00Z") -> Iterator[str]:
    """``n`` audio responses as JSON Lines (one compact response per line).

    With ``observations`` > 1, every audio is observed that many times, a day apart from
    ``start`` (all audios on day 0, then all on day 1…), as recorded exchanges whose ``Date``
    header says when: counters grow between them (:func:`grow`).
    """
    persons = n_persons or max(1, n // 4)
    for k in range(observations):
        date = observation_time(k, start)
        for i in range(n):
            data = {"data": _audio(i, persons, random.Random(f"audio-{i}"), k)}
            if observations == 1:
                yield json.dumps(data, separators=(",", ":")) + "\n"
                continue
            exchange = {
                "request": {"method": "GET", "url": f"https://api.konbiniapi.com/v1/tiktok/audios/{audio_id(i)}"},
                "status": 200, "headers": {"Date": date, "X-Credits-Used": 1}, "body": data,
            }
            yield json.dumps(exchange, separators=(",", ":")) + "\n"


def workload_lines(n: int, day: int, *, n_persons: int | None = None, per_page: int = 30,
                   start: str = "2026-11-01T00:00:00Z") -> Iterator[str]:
    """A collector's day: ``n`` audios, each with its first page of videos, as recorded exchanges
    (JSON Lines) whose ``Date`` is day ``day`` from ``start``; what ``fetch --videos`` buys each day.

    The videos' creators come from a pool of ``n_persons`` (a tenth of the videos by default), so
    persons are shared across videos and audios; counters grow from day to day (:func:`grow`).

    >>> lines = list(workload_lines(2, 0))
    >>> len(lines), [json.loads(x)["request"]["url"].rsplit("/", 1)[-1][:7] for x in lines]
    (4, ['7000000', 'videos', '7000000', 'videos'])
    """
    persons = n_persons or max(1, n * per_page // 10)
    date = observation_time(day, start)
    base = "https://api.konbiniapi.com/v1/tiktok/audios/"
    for i in range(n):
        aid = audio_id(i)
        for url, body in (
            (base + aid, {"data": _audio(i, persons, random.Random(f"audio-{i}"), day)}),
            (f"{base}{aid}/videos", videos_page(i, 0, per_page=per_page, n_persons=persons, observation=day)),
        ):
            exchange = {"request": {"method": "GET", "url": url}, "status": 200,
                        "headers": {"Date": date, "X-Credits-Used": 1}, "body": body}
            yield json.dumps(exchange, separators=(",", ":")) + "\n"
