"""Projections: named queries the index beside the graph (:mod:`.textindex`) answers instead of a
scan of the graph: ``search`` (the index ranks); ``recent-observations`` (the index orders the
activities by time; the graph gives the rest); ``top-audios``, ``creators``,
``verified-creators`` and ``original-vs-licensed`` (the index keeps each audio's count, kind
and creators, each person's followers and whether they are verified, and the terms the
answers show); ``trending`` and ``rising-creators`` (the index keeps each series' first and
last observation and its points, :mod:`.series`).

A query is answered from the index only when it says so itself: a ``# projection: NAME``
line in its header, and a text whose digest is the one the projection was written for
(:data:`PROJECTIONS`). Any other text — an edited named query, a query typed with ``-e`` —
runs on the graph as written. The answers are the plain queries' answers (one parametrised
test holds every projection to its query on the same data), in their columns."""

from __future__ import annotations

import functools
import hashlib
import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyoxigraph as ox

from ...lexical import canonical_datetime, observation_time
from ...vocab import KS, XSD
from . import activities
from .index_rows import shown, term
from .series import growth_of
from .textindex import TextIndex

if TYPE_CHECKING:
    from ...engines.base import Engine
    from ...query.run import QueryResult

__all__ = ["PROJECTIONS", "SEARCH_COLUMNS", "SEARCH_LIMIT", "Projection", "answer", "creators", "declared",
           "original_vs_licensed", "recent_observations", "rising", "search", "top_audios", "verified_creators"]

#: The rows of the ``search`` named query (its ``LIMIT``).
SEARCH_LIMIT = 100
#: The activities ``recent-observations`` lists (its subquery's ``LIMIT``).
RECENT = 50
#: The columns of the ``search`` named query.
SEARCH_COLUMNS = ("text", "audio", "name", "album", "creator", "username", "videoCount", "relevance")

log = logging.getLogger(__name__)

_INTEGER = ox.NamedNode(XSD + "integer")
_DATETIME = ox.NamedNode(XSD + "dateTime")


def answer(index: TextIndex, sparql: str, params: Mapping[str, Any],
           limit: int = SEARCH_LIMIT, engine: Engine | None = None) -> QueryResult | None:
    """The answer of ``sparql`` from the index, if the query declares a projection
    (``# projection: NAME``) and is the text that projection was written for; else ``None``
    (the caller runs it on the graph). ``recent-observations`` also reads the graph, through
    ``engine``.

    A reader (an index opened read-only: ``serve``'s workers, ``query``) keeps the answers of
    the aggregations for as long as the index stays at the same archive record: a visit that
    asks again gets the same rows without recomputing them.

    An index that cannot be read (a damaged file) answers nothing from then on, and says so
    once: the caller runs the plain query on the graph (the index is derived; a writer rebuilds
    it when it opens the store).
    """
    projection = declared(sparql)
    if projection is None or index.unreadable:
        return None
    try:
        return _kept(index, projection, params, limit, engine)
    except (sqlite3.Error, ValueError, SyntaxError) as exc:  # (SyntaxError: a stored term that no longer parses)
        log.warning("the text index %s cannot be read (%s); answering from the graph", index.path, exc)
        index.unreadable = True
        return None


def declared(sparql: str) -> Projection | None:
    """The projection ``sparql`` declares in its header, when it is the text it was written for."""
    from ...errors import UsageError
    from ...query.catalog import parse_query_text

    try:
        name = parse_query_text(sparql, name="query").projection
    except UsageError:  # (a header that does not read: not a declaration)
        return None
    projection = PROJECTIONS.get(name) if name is not None else None
    if projection is None or hashlib.sha256(sparql.encode("utf-8")).hexdigest() != projection.digest:
        return None
    return projection


def _kept(index: TextIndex, projection: Projection, params: Mapping[str, Any], limit: int,
          engine: Engine | None) -> QueryResult | None:
    from ...query.run import QueryResult

    if not index.read_only or params:
        return projection.answer(index, params, limit, engine)
    key = (projection.name, index.seq)
    if key not in index.answers:
        found = projection.answer(index, params, limit, engine)
        if found is None:
            return None
        index.answers.clear()  # (one state of the index at a time)
        index.answers[key] = (found.variables, list(found.rows()))
    variables, rows = index.answers[key]
    return QueryResult.from_rows(variables, rows)


def top_audios(index: TextIndex) -> QueryResult:
    """``top-audios``: the 100 audios with the highest ``ks:videoCount``, one row per creator."""
    from ...query.run import QueryResult

    found = index.db.execute("SELECT iri, credits, shown FROM audio WHERE videos IS NOT NULL "
                             "ORDER BY videos DESC, iri LIMIT 100").fetchall()
    persons = _persons(index, found)
    rows: list[dict[str, Any]] = []
    for iri, credits, terms in found:
        name, _, videos = shown(terms)
        base = {"audio": ox.NamedNode(iri), "name": name, "videoCount": videos}
        rows.extend({**base, "creator": creator, "username": username} for creator, username in
                    _creators(credits, persons))
    return QueryResult("SELECT", ["audio", "name", "videoCount", "creator", "username"], rows)


def creators(index: TextIndex) -> QueryResult:
    """``creators``: every person, with username, followers and number of audios."""
    from ...query.run import QueryResult

    # (each person's number of audios is kept with the person: the rank is an index scan, and
    # SQLite takes the two terms shown out of their JSON)
    sql = ("SELECT iri, json_extract(shown, '$[0][0]'), json_extract(shown, '$[0][1]'), "
           "json_extract(shown, '$[1][0]'), json_extract(shown, '$[1][1]'), audios FROM person "
           "ORDER BY audios DESC, followers DESC, iri")
    rows = [(ox.NamedNode(iri), term(name, name_tag), term(followers, followers_tag), _integer(count))
            for iri, name, name_tag, followers, followers_tag, count in index.db.execute(sql).fetchall()]
    return QueryResult.from_rows(["person", "username", "followers", "audios"], rows)


def verified_creators(index: TextIndex) -> QueryResult:
    """``verified-creators``: persons with ``ks:isVerified true``, most followed first, with their
    username, name and number of audios."""
    from ...query.run import QueryResult

    rows = []
    for iri, terms, count in index.db.execute("SELECT iri, shown, audios FROM person WHERE verified "
                                              "ORDER BY followers DESC, iri").fetchall():
        username, followers, name = shown(terms)
        rows.append((ox.NamedNode(iri), username, name, followers, _integer(count)))
    return QueryResult.from_rows(["person", "username", "name", "followers", "audios"], rows)


#: What ``recent-observations`` reads of each of the latest activities (the part of its query
#: after the subquery that picks them, which the index answers): read activity by activity with
#: Oxigraph's ``LATERAL`` (SEP-0006), where a join would match every activity's ``prov:used`` first.
_RECENT_REST = """PREFIX prov: <http://www.w3.org/ns/prov#>
PREFIX ks: <https://konbiniapi.com/ns/social#>
SELECT ?observedAt ?source ?line ?credits ?entity ?type
WHERE {
  VALUES (?activity ?observedAt) { %s }
  LATERAL {
    ?activity prov:used ?source .
    OPTIONAL { ?activity ks:sourceLine ?line }
    OPTIONAL { ?activity ks:creditsUsed ?credits }
    OPTIONAL { ?entity prov:wasGeneratedBy ?activity . OPTIONAL { ?entity a ?type } }
  }
}
ORDER BY DESC(?observedAt) ?source ?line ?entity
"""


def recent_observations(index: TextIndex, engine: Engine | None) -> QueryResult | None:
    """``recent-observations``: the 50 latest activities from the index, what each used, its line
    and credits and the entities it described from the graph. ``None`` when the index cannot
    order the times (the plain query answers)."""
    from ...query.run import run_query

    latest = activities.latest(index.db, RECENT)
    if latest is None or engine is None:
        return None
    rows = " ".join(f"({ox.NamedNode(iri)} {ox.Literal(t, datatype=_DATETIME)})" for iri, t in latest)
    return run_query(engine, _RECENT_REST % rows)


def original_vs_licensed(index: TextIndex) -> QueryResult:
    """``original-vs-licensed``: audios and their video uses by ``ks:isOriginal``."""
    from ...query.run import QueryResult

    sql = ("SELECT CASE WHEN original IS NULL THEN 'unknown' WHEN original THEN 'original' ELSE 'licensed' END "
           "AS kind, COUNT(*), SUM(COALESCE(videos, 0)) FROM audio GROUP BY kind ORDER BY kind")
    rows = [{"kind": ox.Literal(kind), "audios": _integer(n), "videoCount": _integer(uses)}
            for kind, n, uses in index.db.execute(sql)]
    return QueryResult("SELECT", ["kind", "audios", "videoCount"], rows)


def search(index: TextIndex, text: ox.Literal, limit: int = SEARCH_LIMIT) -> QueryResult:
    """The ``search`` named query answered from the index: its columns, its rows, ranked."""
    from ...query.run import QueryResult

    hits = index.search(text.value, limit)
    persons = _persons(index, [(h.audio, h.credits, h.shown) for h in hits])
    rows: list[dict[str, Any]] = []
    for hit in hits:
        name, album, videos = shown(hit.shown)
        base: dict[str, Any] = {
            "text": text, "audio": ox.NamedNode(hit.audio), "name": name, "album": album, "videoCount": videos,
            "relevance": ox.Literal(round(hit.relevance, 6)),
        }
        rows.extend({**base, "creator": creator, "username": username} for creator, username in
                    _creators(hit.credits, persons))
    return QueryResult("SELECT", list(SEARCH_COLUMNS), rows[:limit])


def rising(index: TextIndex, prop: str, kind: str) -> QueryResult:
    """``trending`` (audios, ``videoCount``) or ``rising-creators`` (persons, ``followerCount``):
    the 1000 series that grew most between their first and last observation."""
    sql = ("SELECT s.entity, e.shown, s.first_t, s.first_v, s.last_t, s.last_v, s.observations, s.growth, s.per_day "
           f"FROM series s JOIN {'audio' if kind == 'audio' else 'person'} e ON e.iri = s.entity "
           "WHERE s.property = ? AND s.observations > 1 AND s.growth IS NOT NULL "
           "ORDER BY s.growth DESC, s.per_day DESC, s.entity LIMIT 1000")
    return _growth_rows(list(index.db.execute(sql, (prop,))), kind, None)


def rising_since(index: TextIndex, prop: str, kind: str, since: ox.Literal) -> QueryResult:
    """:func:`rising` counting only the observations at or after ``since``: from the points
    the index keeps (each series' distinct times and values), not from its summary."""

    table = "audio" if kind == "audio" else "person"
    sql = ("SELECT s.entity, e.shown, a.first_t, a.last_t, a.n, "
           "(SELECT MIN(v) FROM point WHERE series = a.series AND t = a.first_t), "
           "(SELECT MAX(v) FROM point WHERE series = a.series AND t = a.last_t) "
           "FROM (SELECT series, MIN(t) AS first_t, MAX(t) AS last_t, COUNT(DISTINCT t) AS n FROM point "
           "WHERE series IN (SELECT id FROM series WHERE property = ?) AND t >= ? GROUP BY series HAVING n > 1) a "
           f"JOIN series s ON s.id = a.series JOIN {table} e ON e.iri = s.entity")
    found = []
    for entity, terms, first_t, last_t, n, first_v, last_v in index.db.execute(sql, (prop, observation_time(since.value))):
        growth, per_day = growth_of(first_t, first_v, last_t, last_v)
        if growth is not None and per_day is not None:
            found.append((-growth, -per_day, entity, terms, first_t, first_v, last_t, last_v, n, growth, per_day))
    found.sort(key=lambda f: f[:3])
    return _growth_rows(found[:1000], kind, ox.Literal(canonical_datetime(since.value), datatype=_DATETIME))


def _growth_rows(found: list[tuple[Any, ...]], kind: str, since: ox.Literal | None) -> QueryResult:
    from ...query.run import QueryResult

    rows: list[dict[str, Any]] = []
    for *_, entity, terms, first_t, first_v, last_t, last_v, n, growth, per_day in found:
        first = int(first_v)
        row: dict[str, Any] = {
            kind: ox.NamedNode(entity), "first": _integer(first), "last": _integer(int(last_v)),
            "growth": _integer(growth), "growthPerDay": ox.Literal(float(per_day)),
            "relativeGrowth": ox.Literal(float(growth) / first) if first > 0 else None,
            "firstObserved": ox.Literal(canonical_datetime(first_t), datatype=_DATETIME),
            "lastObserved": ox.Literal(canonical_datetime(last_t), datatype=_DATETIME),
            "observations": _integer(n), "since": since,
        }
        if kind == "audio":
            row["name"] = shown(terms)[0]
        else:
            row["username"], _, row["name"] = shown(terms)
        rows.append(row)
    columns = ["audio", "name"] if kind == "audio" else ["person", "username", "name"]
    columns += ["first", "last", "growth", "growthPerDay", "relativeGrowth", "firstObserved", "lastObserved",
                "observations", "since"]
    return QueryResult("SELECT", columns, rows)


def _persons(index: TextIndex, audios: list[tuple[str, str, str]]) -> dict[str, str]:
    """The ``shown`` column of the creators of these audios."""
    wanted = sorted({p for _, credits, _ in audios for p in credits.split("\n") if p})
    out: dict[str, str] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        out.update(index.db.execute(f"SELECT iri, shown FROM person WHERE iri IN ({','.join('?' * len(chunk))})",
                                    chunk).fetchall())
    return out


def _creators(credits: str, persons: dict[str, str]) -> list[tuple[ox.NamedNode | None, ox.Literal | None]]:
    """An audio's creators with their usernames, in SPARQL's order (one unbound row if none)."""
    out: list[tuple[ox.NamedNode | None, ox.Literal | None]] = []
    for iri in filter(None, credits.split("\n")):
        username = shown(persons[iri])[0] if iri in persons else None
        out.append((ox.NamedNode(iri), username))
    return out or [(None, None)]


@functools.lru_cache(maxsize=4096)  # (counts repeat: a person's number of audios is mostly small)
def _integer(n: int) -> ox.Literal:
    return ox.Literal(str(n), datatype=_INTEGER)


def _growth(prop: str, kind: str) -> Callable[[TextIndex, Mapping[str, Any], int, Any], QueryResult | None]:
    def answer(index: TextIndex, params: Mapping[str, Any], limit: int, engine: Engine | None) -> QueryResult | None:
        from ...query.terms import to_term

        since = params.get("since")
        if since is None:
            return rising(index, prop, kind)
        since = to_term(since)
        zoned = isinstance(since, ox.Literal) and since.datatype == _DATETIME and (
            since.value.endswith("Z") or since.value[-6] in "+-")
        return rising_since(index, prop, kind, since) if zoned else None  # (else as the plain query reads it)

    return answer


def _search(index: TextIndex, params: Mapping[str, Any], limit: int, engine: Engine | None) -> QueryResult | None:
    from ...query.terms import to_term

    if "text" not in params:
        return None
    value = params["text"]
    text = value if isinstance(value, str) else str(getattr(to_term(value), "value", value))
    if "\x00" in text:
        return None  # SQLite's FTS5 reads a text only up to a NUL: the plain query answers it
    return search(index, ox.Literal(text), limit)


def _summary(fn: Callable[[TextIndex], QueryResult]) -> Callable[[TextIndex, Mapping[str, Any], int, Any], QueryResult]:
    return lambda index, params, limit, engine: fn(index)


@dataclass(frozen=True, slots=True)
class Projection:
    """A named query the index answers: its name (the ``# projection:`` line), the SHA-256 of the
    ``.rq`` text it answers (an edited text runs as written), and how it answers."""

    name: str
    digest: str
    answer: Callable[[TextIndex, Mapping[str, Any], int, Any], QueryResult | None]


#: Every projection, by name. A shipped ``.rq`` edited without its projection being brought up to
#: date runs on the graph (``tests/test_projections.py`` says which digest to record).
PROJECTIONS: dict[str, Projection] = {p.name: p for p in (
    Projection("top-audios", "d217e9b5badb7431899e0d3863a78df8564427a0e566dfc5f930831624956e33", _summary(top_audios)),
    Projection("creators", "aeb4b22150baa98f3078d2c5f1c4d5849e3b3eed80b2590506d3ac6a7b75d5da", _summary(creators)),
    Projection("verified-creators", "8cf86da2553400b3909c9f057f9c54ea1f0bbaccabfdce9a81bdf7d31b34a58b", _summary(verified_creators)),
    Projection("original-vs-licensed", "fb46e6b2f60585fcbeb082cf604b543602efcf90e43f783ba79f128ca0b746a8", _summary(original_vs_licensed)),
    Projection("trending", "6191732182256bfe65287dc52471eaed9acaa834ae762c9ecf8362cef1494993", _growth(KS + "videoCount", "audio")),
    Projection("rising-creators", "6af7e8fe23303e6e74113a23d44252c66c74ddee48d9a1463865310e3b26f7d8", _growth(KS + "followerCount", "person")),
    Projection("recent-observations", "de1011b389322961819a7f66dddcd0f8833422a7492430ea163acaa9b2426b19",
               lambda index, params, limit, engine: recent_observations(index, engine)),
    Projection("search", "cf0db4002a4fcdf466076a50b320e96110fc31c6f6d6af36dc9e9d9f3dadfd8f", _search),
)}
