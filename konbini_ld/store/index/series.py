"""The counter series the index beside the graph summarises for ``trending`` and
``rising-creators``: per entity and counter (:data:`~.history.SERIES`), the first and last
observation and how many times it was observed, kept exact as points arrive in any order.

"First" and "last" are the plain queries' own: the least and greatest (time, value) pair, the
value compared as text; a series counts its distinct times. The distinct points are kept too
(times and values only), so that a point seen again changes nothing. The growth per day is
the growth over the days between the two observations, a double (the plain query computes it
from calendar fields in SPARQL: the two agree to within rounding, as the tests check).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pyoxigraph as ox

from ...lexical import observation_time
from ...vocab import HISTORY_GRAPH, KS, KSH, SOSA
from ..history import SERIES, Point

__all__ = ["CACHED", "SCHEMA", "add_points", "growth_of", "rebuild"]

#: Series rows kept in memory between batches, at most.
CACHED = 20_000

SCHEMA = """
CREATE TABLE series(
    id INTEGER PRIMARY KEY, entity TEXT NOT NULL, property TEXT NOT NULL,
    first_t TEXT NOT NULL, first_v TEXT NOT NULL, last_t TEXT NOT NULL, last_v TEXT NOT NULL,
    observations INTEGER NOT NULL, growth INTEGER, per_day REAL, UNIQUE(entity, property)
);
CREATE INDEX series_rank ON series(property, growth DESC, per_day DESC, entity) WHERE observations > 1;
CREATE TABLE point(series INTEGER NOT NULL, t TEXT NOT NULL, v TEXT NOT NULL, PRIMARY KEY(series, t, v))
    WITHOUT ROWID;
"""

def add_points(db: sqlite3.Connection, points: Iterable[Point], rows: dict[tuple[str, str], list[Any]]) -> None:
    """(Inside a transaction.) Add points to their series; points already there change nothing.

    :param rows: series rows already read (kept between calls by the index's only writer, up to
        :data:`CACHED` of them: memory stays flat whatever the number of series).
    """
    if len(rows) > CACHED:
        rows.clear()
    changed: set[tuple[str, str]] = set()
    for entity, prop, t, v in points:
        row = rows.get((entity, prop))
        if row is None:
            found = db.execute("SELECT id, first_t, first_v, last_t, last_v, observations FROM series "
                               "WHERE entity = ? AND property = ?", (entity, prop)).fetchone()
            if found is None:
                sid = db.execute("INSERT INTO series(entity, property, first_t, first_v, last_t, last_v, observations) "
                                 "VALUES (?, ?, ?, ?, ?, ?, 0)", (entity, prop, t, v, t, v)).lastrowid
                found = (sid, t, v, t, v, 0)
            row = rows[(entity, prop)] = list(found)
        sid = row[0]
        if db.execute("INSERT OR IGNORE INTO point VALUES (?, ?, ?)", (sid, t, v)).rowcount == 0:
            continue  # seen before
        changed.add((entity, prop))
        if t < row[1] or t > row[3] or row[5] == 0 or db.execute(
                "SELECT 1 FROM point WHERE series = ? AND t = ? AND v <> ? LIMIT 1", (sid, t, v)).fetchone() is None:
            row[5] += 1  # a time this series had not seen
        if (t, v) < (row[1], row[2]):
            row[1], row[2] = t, v
        if (t, v) > (row[3], row[4]):
            row[3], row[4] = t, v
    for key in changed:
        sid, first_t, first_v, last_t, last_v, n = rows[key]
        growth, per_day = growth_of(first_t, first_v, last_t, last_v)
        db.execute("UPDATE series SET first_t = ?, first_v = ?, last_t = ?, last_v = ?, observations = ?, growth = ?, "
                   "per_day = ? WHERE id = ?", (first_t, first_v, last_t, last_v, n, growth, per_day, sid))


def rebuild(db: sqlite3.Connection, store: ox.Store) -> None:
    """(Inside a transaction, on empty tables.) Summarise every series of the history graph."""
    for prop in sorted(SERIES):
        measure = KSH + prop[len(KS):]
        query = (f"SELECT ?e ?t ?v WHERE {{ GRAPH <{HISTORY_GRAPH}> {{ ?o <{measure}> ?v ; "
                 f"<{SOSA}hasFeatureOfInterest> ?e ; <{SOSA}resultTime> ?t }} }}")
        solutions = store.query(query)
        assert isinstance(solutions, ox.QuerySolutions)
        add_points(db, ((s[0].value, prop, observation_time(s[1].value), s[2].value) for s in solutions
                        if isinstance(s[0], ox.NamedNode) and s[1] is not None and s[2] is not None), {})


def growth_of(first_t: str, first_v: str, last_t: str, last_v: str) -> tuple[int | None, float | None]:
    """A series' growth between two observations (times in konbini-ld's spelling), absolute and per
    day (a double; 0 when both are at the same time)."""
    try:
        growth = int(last_v) - int(first_v)
    except ValueError:
        return None, None
    days = (_moment(last_t) - _moment(first_t)).total_seconds() / 86_400
    return growth, (float(growth) / days if days > 0 else 0.0)


@functools.lru_cache(maxsize=4096)
def _moment(t: str) -> datetime:
    return datetime.fromisoformat(t.replace("Z", "+00:00"))
