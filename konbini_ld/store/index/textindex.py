"""The index beside the graph: audio names, albums and creator names in SQLite FTS5, and the
few figures the aggregations need (each audio's video count, kind and creators; each
person's followers and whether they are verified), so that ``search``, ``top-audios``,
``creators``, ``verified-creators`` and ``original-vs-licensed`` need not scan the graph
(:mod:`.projections`).

The index is derived: every write updates it for the entities the batch described (an
audio's own row; a person's row, and their audios when the person's names changed), and it
records the archive sequence number it is current to. When that number is not the graph's
(a kill between the two writes, a rebuild, a deleted or damaged file), the next writer
rebuilds it from the graph, and readers run the plain SPARQL queries meanwhile: an answer
never comes from a stale index.

Why SQLite FTS5: it ships with Python (no service, no extra wheel), it is transactional
on its own file, and its ``trigram`` tokenizer gives substring matching, which is what
people type into a search box for song titles ("ove you" finds "Love You"), with BM25
ranking. Case and accents are folded by konbini-ld before text reaches the index (NFKD,
combining marks dropped, case-folded), so "beyonce" finds "Beyoncé" on any SQLite.

Matching: an audio matches when the folded query is a substring of its folded name,
album or one of its creators' usernames or names: the same rule as the plain ``search``
query (which cannot fold accents). Ranking: ``relevance`` has an integer part for where
the text was found (3 the whole name, 2 the start of the name, 1 inside the name, 0 the
album or a creator) and a fraction from BM25 over name, album and creators weighted
10:4:2; ties go to the audio used in more videos.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from ...engines.oxigraph import OxigraphEngine
from ..events import BatchWritten, Point
from ..log.safe_files import check_regular, is_odd
from . import activities, series
from . import index_rows as rows
from .index_rows import AUDIO, BY, DATA, PERSON, TYPE, fold

__all__ = ["FILENAME", "Hit", "TextIndex", "discard", "fold", "open_index", "supported"]

log = logging.getLogger(__name__)

#: The index file inside a store directory (with SQLite's ``-wal`` and ``-shm`` beside it).
FILENAME = "search.sqlite"
#: Bumped when what the index holds changes: an index of another version is rebuilt.
VERSION = "9"
#: The applied mark of an index whose graph is in the middle of a batch it has not taken yet
#: (no archive record has it: current to none).
WRITING = -1

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE audio(
    id INTEGER PRIMARY KEY, iri TEXT UNIQUE NOT NULL, name TEXT NOT NULL, album TEXT NOT NULL,
    creators TEXT NOT NULL, videos INTEGER, original INTEGER, credits TEXT NOT NULL, shown TEXT NOT NULL
);
CREATE INDEX audio_videos ON audio(videos);
CREATE TABLE person(iri TEXT PRIMARY KEY, text TEXT NOT NULL, followers INTEGER, shown TEXT NOT NULL,
                    verified INTEGER NOT NULL, audios INTEGER NOT NULL DEFAULT 0);
CREATE INDEX person_rank ON person(audios DESC, followers DESC, iri, shown);  -- covers creators
CREATE INDEX person_verified ON person(followers DESC, iri) WHERE verified;  -- verified-creators
CREATE TABLE credit(audio INTEGER NOT NULL, person TEXT NOT NULL);
CREATE INDEX credit_audio ON credit(audio);
CREATE INDEX credit_person ON credit(person);
CREATE VIRTUAL TABLE text USING fts5(name, album, creators, tokenize='trigram');
"""


def supported() -> bool:
    """Whether this Python's SQLite has FTS5 with the trigram tokenizer (SQLite 3.34 or later)."""
    try:
        with sqlite3.connect(":memory:") as db:
            db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='trigram')")
        return True
    except sqlite3.Error:
        return False


@dataclass(frozen=True, slots=True)
class Hit:
    """An audio the index found, with its relevance (higher first), creators and shown terms."""

    audio: str
    relevance: float
    credits: str = ""
    shown: str = "[]"


class TextIndex:
    """An FTS5 index of audios, in a file beside the graph (or in memory).

    :param path: the SQLite file; ``None`` for an index in memory (an in-memory store).
    :param read_only: open for searching only (a reader beside a writer).
    """

    def __init__(self, path: Path | None, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._series: dict[tuple[str, str], list[Any]] = {}  # series rows read (this is their only writer)
        #: a reader's answers of the parameterless aggregations, by (query, archive record)
        self.answers: dict[tuple[str, int | None], tuple[list[str], list[tuple[Any, ...]]]] = {}
        #: whether the file holds what this version reads (a reader leaves another version alone)
        self.compatible = True
        #: whether reading it failed (a damaged file): it answers nothing more
        self.unreadable = False
        self._reading = threading.RLock()  # (one snapshot at a time on the connection)
        self._in_snapshot = False
        if path is None:
            self.db = sqlite3.connect(":memory:", check_same_thread=False)
        elif read_only:
            self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.db = sqlite3.connect(path, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            version = self._meta("version")
        except sqlite3.OperationalError:  # a new file
            version = None
        self.compatible = version == VERSION
        if not read_only:
            if not self.compatible:  # new, or written by another version: start again
                with self.db:
                    for table in ("meta", "audio", "person", "credit", "text", "series", "point", "activity"):
                        self.db.execute(f"DROP TABLE IF EXISTS {table}")
                self.db.executescript(_SCHEMA + series.SCHEMA + activities.SCHEMA)
                self.clear()
                self.compatible = True

    # -- state -------------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def seq(self) -> int | None:
        """The archive sequence number the index is current to (``None``: unknown, rebuild it)."""
        try:
            value = self._meta("seq")
        except sqlite3.Error:
            return None
        return int(value) if value is not None else None

    def clear(self) -> None:
        """Empty the index and forget what it was current to."""
        self._series.clear()
        with self.db:
            for table in ("audio", "text", "person", "credit", "series", "point", "activity", "meta"):
                self.db.execute(f"DELETE FROM {table}")
            self.db.execute("INSERT INTO meta VALUES ('version', ?)", (VERSION,))

    def invalidate(self) -> None:
        """Forget what the index is current to: nobody reads it until it is rebuilt."""
        try:
            with self.db:
                self.db.execute("DELETE FROM meta WHERE key = 'seq'")
        except sqlite3.Error:
            log.debug("could not invalidate the text index", exc_info=True)

    def writing(self) -> None:
        """Say the graph is in the middle of a batch this index has not taken yet: current to no
        applied mark (so neither to the one before, if the writer is killed before it is told)
        until :meth:`update` records the batch's."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (str(WRITING),))

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees one state of the index: a writer's commits meanwhile are not seen
        (one read transaction; a reader's answers read several tables, one statement each)."""
        with self._reading:
            if self._in_snapshot:  # (inside one already)
                yield
                return
            try:
                self._in_snapshot = True
                try:
                    if self.db.in_transaction:  # (left open by one a Ctrl-C cut short: it would hold an old state)
                        self.db.rollback()
                    self.db.execute("BEGIN")
                except sqlite3.Error:  # (a closed or damaged file: the reads inside say so, and are handled there)
                    pass
                yield
            finally:
                self._in_snapshot = False
                self._end_read()

    def _end_read(self) -> None:
        try:
            if self.db.in_transaction:
                self.db.execute("COMMIT")  # (it wrote nothing: this ends the read)
        except sqlite3.Error:  # (a damaged file: what was read is what the caller makes of it)
            with contextlib.suppress(sqlite3.Error):
                self.db.rollback()

    def current(self, applied: int) -> bool:
        """Whether the index is current to the graph applied up to archive record ``applied``."""
        return self.compatible and self.seq == applied

    def optimize(self) -> None:
        """Merge the full-text index's segments (one per write): after a large load, searches get faster."""
        with self.db:
            self.db.execute("INSERT INTO text(text) VALUES ('optimize')")

    def close(self) -> None:
        self.db.close()

    # -- writing -----------------------------------------------------------------------------

    def update(self, store: ox.Store, entities: Mapping[str, str], seq: int | None = None,
               points: Iterable[Point] = (), given: Mapping[str, rows.Values] | None = None,
               ended: Iterable[tuple[str, str]] = ()) -> None:
        """Re-read the audios and persons among ``entities`` (IRI → kind; those in ``given`` come with
        their values) and the audios of persons whose names changed; add ``points`` to their series
        and the ``ended`` times of activities; record ``seq`` when given."""
        given = given or {}
        audios: dict[str, rows.Values | None] = {}
        persons: dict[str, rows.Person] = {}
        with self.db:
            for iri, kind in entities.items():
                node = ox.NamedNode(iri)
                values = given.get(iri)
                if kind == "audio":
                    audios[iri] = values if values is not None else rows.described(store, node, kind)
                elif kind == "person":
                    person = persons[iri] = rows.person(values if values is not None else rows.described(store, node, kind))
                    row = self.db.execute("SELECT text FROM person WHERE iri = ?", (iri,)).fetchone()
                    if row is None or row[0] != person[0]:  # their audios' creators text moves
                        for q in store.quads_for_pattern(None, BY, node, DATA):
                            if isinstance(q.subject, ox.NamedNode):
                                audios.setdefault(q.subject.value, None)
            self._write(store, audios, seq, persons)
            series.add_points(self.db, points, self._series)
            activities.add(self.db, ended)

    def follow(self, event: BatchWritten, store: ox.Store) -> None:
        """Take in one batch the writer wrote: the entities new to the graph from the values the
        event carries, the others read back (what the time-aware upsert kept of them), the
        series points, the activities' times, and the archive position."""
        given = rows.fresh(event.final, event.entities, event.new) if event.new and event.entities else {}
        ended = activities.ended(event.provenance) if event.provenance else []
        if event.entities or ended or event.points or event.seq is not None:
            self.update(store, event.entities, event.seq, event.points, given, ended)

    def rebuild(self, store: ox.Store, seq: int | None) -> int:
        """Index every audio of ``store`` afresh; return how many."""
        known: rows.Values = {}  # (known to be audios: their values are read when written)
        audios: dict[str, rows.Values | None] = dict.fromkeys(sorted(
            q.subject.value for q in store.quads_for_pattern(None, TYPE, AUDIO, DATA) if isinstance(q.subject, ox.NamedNode)),
            known)
        persons = {q.subject.value: rows.person(rows.described(store, q.subject, "person"))
                   for q in store.quads_for_pattern(None, TYPE, PERSON, DATA) if isinstance(q.subject, ox.NamedNode)}
        self.clear()
        with self.db:
            self._write(store, audios, seq, persons)
            series.rebuild(self.db, store)
            activities.rebuild(self.db, store)
        return len(audios)

    def _write(self, store: ox.Store, audios: dict[str, rows.Values | None], seq: int | None,
               persons: dict[str, rows.Person]) -> None:
        """(Inside a transaction.) Bring the rows of ``audios`` (with their values, when read
        already) and ``persons`` in line with ``store``."""
        db = self.db
        counted: set[str] = set()  # persons whose number of audios may have moved
        for iri, values in sorted(audios.items()):
            row = db.execute("SELECT id, name, album, creators, videos, original, credits, shown FROM audio "
                             "WHERE iri = ?", (iri,)).fetchone()
            node = ox.NamedNode(iri)
            entry = None
            if values is not None or rows.is_audio(store, node):  # (None: found by a person, maybe a video)
                entry = rows.entry(store, values or rows.described(store, node, "audio"), persons)
            if entry is None:
                if row is not None:
                    counted.update(row[6].split("\n"))
                    db.execute("DELETE FROM text WHERE rowid = ?", (row[0],))
                    db.execute("DELETE FROM credit WHERE audio = ?", (row[0],))
                    db.execute("DELETE FROM audio WHERE id = ?", (row[0],))
                continue
            if row is None:
                rowid = db.execute("INSERT INTO audio(iri, name, album, creators, videos, original, credits, shown) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (iri, *entry)).lastrowid
            elif tuple(row[1:]) == entry:
                continue  # observed again, unchanged
            else:
                rowid = row[0]
                db.execute("UPDATE audio SET name = ?, album = ?, creators = ?, videos = ?, original = ?, credits = ?, "
                           "shown = ? WHERE id = ?", (*entry, rowid))
            if row is None or row[6] != entry[5]:
                counted.update(entry[5].split("\n"))
                if row is not None:
                    counted.update(row[6].split("\n"))
                db.execute("DELETE FROM credit WHERE audio = ?", (rowid,))
                db.executemany("INSERT INTO credit VALUES (?, ?)", [(rowid, p) for p in entry[5].split("\n") if p])
            if row is not None and tuple(row[1:4]) == entry[:3]:
                continue  # only counts moved: the text stays
            if row is not None:
                db.execute("DELETE FROM text WHERE rowid = ?", (rowid,))
            db.execute("INSERT INTO text(rowid, name, album, creators) VALUES (?, ?, ?, ?)", (rowid, *entry[:3]))
        db.executemany("INSERT OR REPLACE INTO person(iri, text, followers, shown, verified) VALUES (?, ?, ?, ?, ?)",
                       [(iri, *person) for iri, person in persons.items()])
        counted.update(persons)  # (rewritten: and those the audios above looked up)
        db.executemany("UPDATE person SET audios = (SELECT COUNT(*) FROM credit WHERE person = ?1) WHERE iri = ?1",
                       [(p,) for p in sorted(counted) if p])
        if seq is not None:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (str(seq),))

    # -- reading -----------------------------------------------------------------------------

    def search(self, text: str, limit: int = 100) -> list[Hit]:
        """Audios whose name, album or creators contain ``text`` (folded), most relevant first."""
        query = fold(text)
        if not query:
            return []
        tier = ("CASE WHEN a.name = :q THEN 3 WHEN substr(a.name, 1, length(:q)) = :q THEN 2 "
                "WHEN instr(a.name, :q) > 0 THEN 1 ELSE 0 END")
        if len(query) >= 3:  # the trigram index answers; BM25 ranks
            sql = (f"SELECT a.iri, {tier} AS tier, -bm25(text, 10.0, 4.0, 2.0) AS score, a.credits, a.shown "
                   "FROM text JOIN audio a ON a.id = text.rowid WHERE text MATCH :match")
            args: dict[str, str | int] = {"q": query, "match": '"' + query.replace('"', '""') + '"'}
        else:  # too short for trigrams: a scan of the folded text (no BM25 without MATCH)
            sql = (f"SELECT a.iri, {tier} AS tier, 0.0 AS score, a.credits, a.shown FROM text JOIN audio a "
                   "ON a.id = text.rowid WHERE instr(text.name, :q) OR instr(text.album, :q) "
                   "OR instr(text.creators, :q)")
            args = {"q": query}
        sql += " ORDER BY tier DESC, score DESC, a.videos DESC NULLS LAST, a.iri LIMIT :limit"
        args["limit"] = limit
        return [Hit(iri, tier + score / (1.0 + score), credits, shown)
                for iri, tier, score, credits, shown in self.db.execute(sql, args)]


def open_index(engine: object, location: Path | None, applied: int | None, *, read_only: bool) -> TextIndex | None:
    """The text index of an embedded store: in memory for an in-memory store, else the file in
    ``location`` (a writer rebuilds it when it is not current to ``applied``, or unreadable).

    ``None`` for a store without one: a remote server (others write there), a read-only view
    of a store that has no index file yet, or an SQLite without FTS5 trigrams.
    """
    if not isinstance(engine, OxigraphEngine) or not supported():
        return None
    if location is None:
        return TextIndex(None)
    path = location / FILENAME
    odd = [p for p in (Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")) if is_odd(p)]
    if odd and read_only:
        return None  # never read through a link, nor open a FIFO (SQLite would wait on it for good): the plain queries answer
    if odd:
        check_regular(odd[0])
    if read_only:
        if not path.exists():
            return None
        try:
            return TextIndex(path, read_only=True)
        except sqlite3.Error:
            return None
    try:
        index = TextIndex(path)
        stale = index.seq != applied
    except sqlite3.DatabaseError:  # a damaged file: it is derived, start again
        log.warning("the text index %s is unreadable; rebuilding it from the graph", path)
        discard(location)
        index, stale = TextIndex(path), True
    if stale:
        count = index.rebuild(engine.store, applied)
        log.info("rebuilt the text index from the graph (%d audios)", count)
    return index


def discard(location: Path) -> None:
    """Delete the index file of a store directory (its graph is being replaced)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{location / FILENAME}{suffix}").unlink(missing_ok=True)
