"""The activities (one per response ingested) by the time each ended, kept in the index beside
the graph for ``recent-observations``: its plain query sorts every activity to find the 50
latest (a second at a million responses); the index finds them in its time order, and the rest
of the query runs on the graph with those 50 bound (:func:`konbini_ld.store.index.projections.recent_observations`).

A row holds the activity's IRI and its ``prov:endedAtTime`` in konbini-ld's spelling (UTC,
milliseconds, ``Z``: text order is time order). Every write records the times its provenance
upsert left (a response ingested again from the same place is the same activity, and its time
moves); a rebuild reads them from the provenance graph. A time that cannot be spelled so is kept
as ``''``, and the index then leaves the query to the graph.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping

import pyoxigraph as ox

from ...errors import InputError
from ...lexical import observation_time
from ...vocab import PROV, PROV_GRAPH

__all__ = ["SCHEMA", "add", "ended", "latest", "rebuild"]

SCHEMA = """
CREATE TABLE activity(iri TEXT PRIMARY KEY, t TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX activity_time ON activity(t);
"""

_ENDED = ox.NamedNode(PROV + "endedAtTime")
_ENDED_NT = f"<{_ENDED.value}>"


def _key(lexical: str) -> str:
    try:
        return observation_time(lexical)
    except InputError:
        return ""


def ended(final: Mapping[tuple[str, str], list[str]]) -> list[tuple[str, str]]:
    """(activity IRI, time) of the activities in a provenance upsert's final groups (N-Triples)."""
    return [(s[1:-1], _key(line.split('"', 2)[1])) for (s, p), lines in final.items() if p == _ENDED_NT
            for line in lines if line.count('"') >= 2]


def add(db: sqlite3.Connection, activities: Iterable[tuple[str, str]]) -> None:
    """(Inside a transaction.) Record activities and their times (a time recorded again moves)."""
    db.executemany("INSERT OR REPLACE INTO activity VALUES (?, ?)", activities)


def rebuild(db: sqlite3.Connection, store: ox.Store) -> None:
    """(Inside a transaction, on an empty table.) Every activity of the provenance graph."""
    add(db, ((q.subject.value, _key(q.object.value)) for q in
             store.quads_for_pattern(None, _ENDED, None, ox.NamedNode(PROV_GRAPH))
             if isinstance(q.subject, ox.NamedNode) and isinstance(q.object, ox.Literal)))


def latest(db: sqlite3.Connection, n: int) -> list[tuple[str, str]] | None:
    """The ``n`` activities that ended last, latest first (``None``: a time the index cannot order)."""
    if db.execute("SELECT 1 FROM activity WHERE t = '' LIMIT 1").fetchone() is not None:
        return None
    return db.execute("SELECT iri, t FROM activity ORDER BY t DESC, iri DESC LIMIT ?", (n,)).fetchall()
