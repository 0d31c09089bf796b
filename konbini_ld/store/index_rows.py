"""The rows of the index beside the graph (:mod:`.textindex`), read from the graph: what each
audio and person contributes to search and to the aggregations, and the terms answers show."""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Iterator

import pyoxigraph as ox

from ..vocab import AS, DATA_GRAPH, KS, RDF

__all__ = ["AUDIO", "PERSON", "Entry", "Person", "entry", "fold", "person", "shown"]

DATA = ox.NamedNode(DATA_GRAPH)
TYPE = ox.NamedNode(RDF + "type")
AUDIO = ox.NamedNode(AS + "Audio")
PERSON = ox.NamedNode(AS + "Person")
BY = ox.NamedNode(AS + "attributedTo")
_NAME = ox.NamedNode(AS + "name")
_ALBUM = ox.NamedNode(KS + "album")
_VIDEOS = ox.NamedNode(KS + "videoCount")
_USERNAME = ox.NamedNode(AS + "preferredUsername")
_ORIGINAL = ox.NamedNode(KS + "isOriginal")
_FOLLOWERS = ox.NamedNode(KS + "followerCount")


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


#: An audio's row: folded name, album and creators text, video count, ``isOriginal`` (1, 0 or
#: ``None``), creator IRIs, and the terms its answers show (:func:`shown`).
Entry = tuple[str, str, str, int | None, int | None, str, str]


def entry(store: ox.Store, audio: ox.NamedNode, persons: dict[str, Person]) -> Entry | None:
    """An audio's row (``None``: not an audio); its creators are noted in ``persons``."""
    if next(store.quads_for_pattern(audio, TYPE, AUDIO, DATA), None) is None:
        return None
    creators: list[str] = []
    credits: list[str] = []
    for quad in sorted(store.quads_for_pattern(audio, BY, None, DATA), key=str):
        if isinstance(quad.object, ox.NamedNode):
            row = persons.get(quad.object.value)
            if row is None:
                row = persons[quad.object.value] = person(store, quad.object)
            creators.append(row[0])
            credits.append(quad.object.value)
    original = None
    for value in _texts(store, audio, _ORIGINAL, folded=False):
        original = int(value in ("true", "1"))
    return (" | ".join(_texts(store, audio, _NAME)), " | ".join(_texts(store, audio, _ALBUM)),
            " | ".join(creators), _count(store, audio, _VIDEOS), original, "\n".join(credits),
            _shown(store, audio, (_NAME, _ALBUM, _VIDEOS)))


#: A person's row: folded usernames and names, follower count, and the terms answers show
#: (username, followers, name).
Person = tuple[str, int | None, str]


def person(store: ox.Store, iri: ox.NamedNode) -> Person:
    text = " | ".join([*_texts(store, iri, _USERNAME), *_texts(store, iri, _NAME)])
    return text, _count(store, iri, _FOLLOWERS), _shown(store, iri, (_USERNAME, _FOLLOWERS, _NAME))


def _shown(store: ox.Store, subject: ox.NamedNode, props: tuple[ox.NamedNode, ...]) -> str:
    """The first value of each of ``props`` (``null`` if none), as JSON ``[lexical, tag]`` pairs
    (tag: the datatype IRI, or ``@`` and the language): what answers show, without reading the graph."""
    out: list[list[str] | None] = []
    for prop in props:
        values = sorted((q.object for q in store.quads_for_pattern(subject, prop, None, DATA)
                         if isinstance(q.object, ox.Literal)), key=str)
        term = values[0] if values else None
        out.append(None if term is None else
                   [term.value, f"@{term.language}" if term.language else term.datatype.value])
    return json.dumps(out, ensure_ascii=False)


def shown(text: str) -> list[ox.Literal | None]:
    """The terms of a row's ``shown`` column."""
    return [None if cols is None else
            ox.Literal(cols[0], language=cols[1][1:]) if cols[1].startswith("@") else
            ox.Literal(cols[0], datatype=_datatype(cols[1])) for cols in json.loads(text)]


@functools.lru_cache(maxsize=64)
def _datatype(iri: str) -> ox.NamedNode:
    return ox.NamedNode(iri)


def _count(store: ox.Store, subject: ox.NamedNode, prop: ox.NamedNode) -> int | None:
    count = None
    for value in _texts(store, subject, prop, folded=False):
        try:
            count = max(count or 0, int(value))
        except ValueError:
            pass
    return count


def _texts(store: ox.Store, subject: ox.NamedNode, prop: ox.NamedNode, *, folded: bool = True) -> Iterator[str]:
    for quad in store.quads_for_pattern(subject, prop, None, DATA):
        if isinstance(quad.object, ox.Literal):
            yield fold(quad.object.value) if folded else quad.object.value
