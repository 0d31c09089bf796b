"""The rows of the index beside the graph (:mod:`.textindex`), read from the graph: what each
audio and person contributes to search and to the aggregations, and the terms answers show."""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Iterable, Mapping

import pyoxigraph as ox

from ...vocab import AS, DATA_GRAPH, KS, RDF, XSD

__all__ = ["AUDIO", "PERSON", "Entry", "Person", "Values", "described", "entry", "fold", "is_audio", "kinds", "person", "shown"]

DATA = ox.NamedNode(DATA_GRAPH)
TYPE = ox.NamedNode(RDF + "type")
AUDIO = ox.NamedNode(AS + "Audio")
PERSON = ox.NamedNode(AS + "Person")
BY = ox.NamedNode(AS + "attributedTo")
_TYPE_NT = f"<{RDF}type>"
_AUDIO_END = f" <{AS}Audio> .\n"
_PERSON_END = f" <{AS}Person> .\n"
_BY_IRI = AS + "attributedTo"
_NAME = AS + "name"
_ALBUM = KS + "album"
_VIDEOS = KS + "videoCount"
_USERNAME = AS + "preferredUsername"
_ORIGINAL = KS + "isOriginal"
_FOLLOWERS = KS + "followerCount"
_VERIFIED = KS + "isVerified"
#: what ``verified-creators`` matches (``ks:isVerified true``: this term, not another spelling of it)
_TRUE = ox.Literal("true", datatype=ox.NamedNode(XSD + "boolean"))
_READ = {
    "audio": tuple(ox.NamedNode(p) for p in (_BY_IRI, _NAME, _ALBUM, _VIDEOS, _ORIGINAL)),
    "person": tuple(ox.NamedNode(p) for p in (_USERNAME, _NAME, _FOLLOWERS, _VERIFIED)),
}

_READ_NT = {kind: frozenset(f"<{p.value}>" for p in props) for kind, props in _READ.items()}


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


#: A subject's values by property IRI (:func:`described`).
Values = dict[str, list[ox.NamedNode | ox.Literal]]
#: An audio's row: folded name, album and creators text, video count, ``isOriginal`` (1, 0 or
#: ``None``), creator IRIs, and the terms its answers show (:func:`shown`).
Entry = tuple[str, str, str, int | None, int | None, str, str]
#: A person's row: folded usernames and names, follower count, the terms answers show
#: (username, followers, name), and whether ``ks:isVerified true`` (1 or 0).
Person = tuple[str, int | None, str, int]


def described(store: ox.Store, subject: ox.NamedNode, kind: str) -> Values:
    """The values of an audio's or a person's properties the index keeps, by property IRI, in
    SPARQL's order (a read per property: cheaper than reading every property of the subject)."""
    values: Values = {}
    for prop in _READ[kind]:
        terms = [q.object for q in store.quads_for_pattern(subject, prop, None, DATA)
                 if isinstance(q.object, (ox.NamedNode, ox.Literal))]
        if len(terms) > 1:
            terms.sort(key=str)
        if terms:
            values[prop.value] = terms
    return values


def fresh(final: Mapping[tuple[str, str], list[str]], entities: Mapping[str, str], new: Iterable[str]) -> dict[str, Values]:
    """The :func:`described` values of the ``entities`` (IRI → kind) that are ``new`` (N-Triples
    IRIs of entities the graph did not hold before this batch), from the batch's own upsert
    groups ``final``: what is written for them is all they will hold, so nothing is read back."""
    wanted = {e: entities[e[1:-1]] for e in new if e[1:-1] in entities}
    lines = dict.fromkeys(line for (s, p), group in final.items() if s in wanted and p in _READ_NT[wanted[s]]
                          for line in group)  # (a graph holds a triple once)
    values: dict[str, Values] = {e[1:-1]: {} for e in wanted}
    try:
        for t in ox.parse("".join(lines), ox.RdfFormat.N_TRIPLES):
            if isinstance(t.subject, ox.NamedNode) and isinstance(t.object, (ox.NamedNode, ox.Literal)):
                values[t.subject.value].setdefault(t.predicate.value, []).append(t.object)
    except SyntaxError:  # (the engine refuses the batch too; the entities are read back if written)
        return {}
    for described_values in values.values():
        for terms in described_values.values():
            if len(terms) > 1:
                terms.sort(key=str)
    return values


def is_audio(store: ox.Store, subject: ox.NamedNode) -> bool:
    return next(store.quads_for_pattern(subject, TYPE, AUDIO, DATA), None) is not None


def kinds(lines: Iterable[tuple[tuple[str, str], list[str]]]) -> dict[str, str]:
    """The audios and persons among the entities of a response (IRI → ``audio``/``person``),
    from its own ``rdf:type`` statements (an :class:`~konbini_ld.model.Observation`'s groups)."""
    out: dict[str, str] = {}
    for (subject, prop), group in lines:
        if prop == _TYPE_NT:
            for line in group:
                if line.endswith(_AUDIO_END):
                    out[subject[1:-1]] = "audio"
                elif line.endswith(_PERSON_END):
                    out[subject[1:-1]] = "person"
    return out


def entry(store: ox.Store, values: Values, persons: dict[str, Person]) -> Entry:
    """An audio's row from its :func:`described` values; its creators are noted in ``persons``."""
    creators: list[str] = []
    credits: list[str] = []
    for creator in values.get(_BY_IRI, ()):
        if isinstance(creator, ox.NamedNode):
            row = persons.get(creator.value)
            if row is None:
                row = persons[creator.value] = person(described(store, creator, "person"))
            creators.append(row[0])
            credits.append(creator.value)
    original = None
    for value in _lexical(values, _ORIGINAL):
        original = int(value in ("true", "1"))
    return (" | ".join(map(fold, _lexical(values, _NAME))), " | ".join(map(fold, _lexical(values, _ALBUM))),
            " | ".join(creators), _count(values, _VIDEOS), original, "\n".join(credits),
            _shown(values, (_NAME, _ALBUM, _VIDEOS)))


def person(values: Values) -> Person:
    """A person's row from their :func:`described` values."""
    text = " | ".join(map(fold, [*_lexical(values, _USERNAME), *_lexical(values, _NAME)]))
    verified = int(any(t == _TRUE for t in values.get(_VERIFIED, ())))
    return text, _count(values, _FOLLOWERS), _shown(values, (_USERNAME, _FOLLOWERS, _NAME)), verified


def _shown(values: Values, props: tuple[str, ...]) -> str:
    """The first value of each of ``props`` (``null`` if none), as JSON ``[lexical, tag]`` pairs
    (tag: the datatype IRI, or ``@`` and the language): what answers show, without reading the graph."""
    out: list[list[str] | None] = []
    for prop in props:
        term = next((t for t in values.get(prop, ()) if isinstance(t, ox.Literal)), None)
        out.append(None if term is None else
                   [term.value, f"@{term.language}" if term.language else term.datatype.value])
    return json.dumps(out, ensure_ascii=False)


def shown(text: str) -> list[ox.Literal | None]:
    """The terms of a row's ``shown`` column."""
    return [None if cols is None else term(*cols) for cols in json.loads(text)]


def term(lexical: str | None, tag: str | None) -> ox.Literal | None:
    """One term of a ``shown`` column from its lexical form and tag (``None``: no value)."""
    if lexical is None or tag is None:
        return None
    if tag[0] == "@":
        return ox.Literal(lexical, language=tag[1:])
    return ox.Literal(lexical, datatype=_datatype(tag))


@functools.lru_cache(maxsize=64)
def _datatype(iri: str) -> ox.NamedNode:
    return ox.NamedNode(iri)


def _count(values: Values, prop: str) -> int | None:
    count = None
    for value in _lexical(values, prop):
        try:
            count = max(count or 0, int(value))
        except ValueError:
            pass
    return count


def _lexical(values: Values, prop: str) -> list[str]:
    return [t.value for t in values.get(prop, ()) if isinstance(t, ox.Literal)]
