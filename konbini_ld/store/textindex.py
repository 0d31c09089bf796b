"""The text index: audio names, albums and creator names in SQLite FTS5, beside the graph.

``search`` asks the index which audios match and in what order, then reads what it shows
from the graph. The index is derived: every write updates it for the entities the batch
described (an audio's own text; a person's audios when the person is described), and it
records the archive sequence number it is current to. When that number is not the
graph's (a kill between the two writes, a rebuild, a deleted or damaged file), the next
writer rebuilds it from the graph, and readers fall back to the plain SPARQL query
meanwhile: an answer never comes from a stale index.

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

import logging
import sqlite3
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyoxigraph as ox

from ..engines.oxigraph import OxigraphEngine
from ..vocab import AS, DATA_GRAPH, KS, RDF

__all__ = ["FILENAME", "Hit", "TextIndex", "discard", "fold", "open_index", "supported"]

log = logging.getLogger(__name__)

#: The index file inside a store directory (with SQLite's ``-wal`` and ``-shm`` beside it).
FILENAME = "search.sqlite"
#: Bumped when what the index holds changes: an index of another version is rebuilt.
VERSION = "1"

_DATA = ox.NamedNode(DATA_GRAPH)
_TYPE = ox.NamedNode(RDF + "type")
_AUDIO = ox.NamedNode(AS + "Audio")
_NAME = ox.NamedNode(AS + "name")
_ALBUM = ox.NamedNode(KS + "album")
_VIDEOS = ox.NamedNode(KS + "videoCount")
_BY = ox.NamedNode(AS + "attributedTo")
_USERNAME = ox.NamedNode(AS + "preferredUsername")
_PERSON = ox.NamedNode(AS + "Person")


_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE audio(
    id INTEGER PRIMARY KEY, iri TEXT UNIQUE NOT NULL, name TEXT NOT NULL, album TEXT NOT NULL,
    creators TEXT NOT NULL, videos INTEGER
);
CREATE TABLE person(iri TEXT PRIMARY KEY, text TEXT NOT NULL);
CREATE VIRTUAL TABLE text USING fts5(name, album, creators, tokenize='trigram');
"""


def fold(text: str) -> str:
    """Text as the index compares it: accents dropped, case folded, spaces collapsed.

    >>> fold("  Beyoncé — CRAZY  in Love ")
    'beyonce — crazy in love'
    >>> fold("Straße")
    'strasse'
    """
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


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
    """An audio the index found, with its relevance (higher first)."""

    audio: str
    relevance: float


class TextIndex:
    """An FTS5 index of audios, in a file beside the graph (or in memory).

    :param path: the SQLite file; ``None`` for an index in memory (an in-memory store).
    :param read_only: open for searching only (a reader beside a writer).
    """

    def __init__(self, path: Path | None, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        if path is None:
            self.db = sqlite3.connect(":memory:", check_same_thread=False)
        elif read_only:
            self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.db = sqlite3.connect(path, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        if not read_only:
            try:
                version = self._meta("version")
            except sqlite3.OperationalError:  # a new file
                version = None
            if version != VERSION:  # new, or written by another version: start again
                with self.db:
                    for table in ("meta", "audio", "person", "text"):
                        self.db.execute(f"DROP TABLE IF EXISTS {table}")
                self.db.executescript(_SCHEMA)
                self.clear()

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
        with self.db:
            self.db.execute("DELETE FROM audio")
            self.db.execute("DELETE FROM text")
            self.db.execute("DELETE FROM person")
            self.db.execute("DELETE FROM meta")
            self.db.execute("INSERT INTO meta VALUES ('version', ?)", (VERSION,))

    def invalidate(self) -> None:
        """Forget what the index is current to: nobody reads it until it is rebuilt."""
        try:
            with self.db:
                self.db.execute("DELETE FROM meta WHERE key = 'seq'")
        except sqlite3.Error:
            log.debug("could not invalidate the text index", exc_info=True)

    def current(self, applied: int) -> bool:
        """Whether the index is current to the graph applied up to archive record ``applied``."""
        return self.seq == applied

    def close(self) -> None:
        self.db.close()

    # -- writing -----------------------------------------------------------------------------

    def update(self, store: ox.Store, entities: Iterable[str], seq: int | None = None) -> None:
        """Re-read from ``store`` the text of the audios among ``entities``, and of the audios of
        the persons among them whose names changed; record ``seq`` when given."""
        audios: set[str] = set()
        with self.db:
            for iri in entities:
                node = ox.NamedNode(iri)
                if next(store.quads_for_pattern(node, _TYPE, _AUDIO, _DATA), None) is not None:
                    audios.add(iri)
                elif next(store.quads_for_pattern(node, _TYPE, _PERSON, _DATA), None) is not None:
                    text = _person_text(store, node)
                    row = self.db.execute("SELECT text FROM person WHERE iri = ?", (iri,)).fetchone()
                    if row is None or row[0] != text:  # (a person no audio names yet has no row)
                        audios.update(q.subject.value for q in store.quads_for_pattern(None, _BY, node, _DATA)
                                      if isinstance(q.subject, ox.NamedNode))
            self._write(store, sorted(audios), seq)

    def rebuild(self, store: ox.Store, seq: int | None) -> int:
        """Index every audio of ``store`` afresh; return how many."""
        audios = sorted({q.subject.value for q in store.quads_for_pattern(None, _TYPE, _AUDIO, _DATA)
                         if isinstance(q.subject, ox.NamedNode)})
        self.clear()
        with self.db:
            self._write(store, audios, seq)
        return len(audios)

    def _write(self, store: ox.Store, audios: list[str], seq: int | None) -> None:
        """(Inside a transaction.) Bring the rows of ``audios`` in line with ``store``."""
        db = self.db
        persons: dict[str, str] = {}
        for iri in audios:
            row = db.execute("SELECT id, name, album, creators, videos FROM audio WHERE iri = ?", (iri,)).fetchone()
            entry = _entry(store, ox.NamedNode(iri), persons)
            if entry is None:
                if row is not None:
                    db.execute("DELETE FROM text WHERE rowid = ?", (row[0],))
                    db.execute("DELETE FROM audio WHERE id = ?", (row[0],))
                continue
            if row is None:
                rowid = db.execute("INSERT INTO audio(iri, name, album, creators, videos) VALUES (?, ?, ?, ?, ?)",
                                   (iri, *entry)).lastrowid
            elif tuple(row[1:]) == entry:
                continue  # observed again, unchanged
            else:
                rowid = row[0]
                db.execute("UPDATE audio SET name = ?, album = ?, creators = ?, videos = ? WHERE id = ?",
                           (*entry, rowid))
                if tuple(row[1:4]) == entry[:3]:
                    continue  # only the count moved: the text stays
                db.execute("DELETE FROM text WHERE rowid = ?", (rowid,))
            db.execute("INSERT INTO text(rowid, name, album, creators) VALUES (?, ?, ?, ?)", (rowid, *entry[:3]))
        db.executemany("INSERT OR REPLACE INTO person VALUES (?, ?)", persons.items())
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
            sql = (f"SELECT a.iri, {tier} AS tier, -bm25(text, 10.0, 4.0, 2.0) AS score, a.videos "
                   "FROM text JOIN audio a ON a.id = text.rowid WHERE text MATCH :match")
            args: dict[str, str | int] = {"q": query, "match": '"' + query.replace('"', '""') + '"'}
        else:  # too short for trigrams: a scan of the folded text (no BM25 without MATCH)
            sql = (f"SELECT a.iri, {tier} AS tier, 0.0 AS score, a.videos FROM text JOIN audio a "
                   "ON a.id = text.rowid WHERE instr(text.name, :q) OR instr(text.album, :q) "
                   "OR instr(text.creators, :q)")
            args = {"q": query}
        sql += " ORDER BY tier DESC, score DESC, a.videos DESC NULLS LAST, a.iri LIMIT :limit"
        args["limit"] = limit
        return [Hit(iri, tier + score / (1.0 + score)) for iri, tier, score, _ in self.db.execute(sql, args)]


def _entry(store: ox.Store, audio: ox.NamedNode, persons: dict[str, str]) -> tuple[str, str, str, int | None] | None:
    """An audio's folded name, album and creators text, and its video count (``None``: not an
    audio); the text of its creators is noted in ``persons``."""
    if next(store.quads_for_pattern(audio, _TYPE, _AUDIO, _DATA), None) is None:
        return None
    creators: list[str] = []
    for quad in sorted(store.quads_for_pattern(audio, _BY, None, _DATA), key=str):
        if isinstance(quad.object, ox.NamedNode):
            text = persons.get(quad.object.value)
            if text is None:
                text = persons[quad.object.value] = _person_text(store, quad.object)
            creators.append(text)
    videos = None
    for value in _texts(store, audio, _VIDEOS, folded=False):
        try:
            videos = max(videos or 0, int(value))
        except ValueError:
            pass
    return (" | ".join(_texts(store, audio, _NAME)), " | ".join(_texts(store, audio, _ALBUM)),
            " | ".join(creators), videos)


def _person_text(store: ox.Store, person: ox.NamedNode) -> str:
    return " | ".join([*_texts(store, person, _USERNAME), *_texts(store, person, _NAME)])


def _texts(store: ox.Store, subject: ox.NamedNode, prop: ox.NamedNode, *, folded: bool = True) -> Iterator[str]:
    for quad in store.quads_for_pattern(subject, prop, None, _DATA):
        if isinstance(quad.object, ox.Literal):
            yield fold(quad.object.value) if folded else quad.object.value


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
