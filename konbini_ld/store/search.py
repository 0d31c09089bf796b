"""``search`` answered from the text index (:mod:`.textindex`): the index ranks, the graph
gives each row's values, in the columns of the plain ``search`` query."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyoxigraph as ox

from ..engines.oxigraph import OxigraphEngine
from ..vocab import AS, DATA_GRAPH, KS, XSD
from .textindex import TextIndex

if TYPE_CHECKING:
    from ..query.run import QueryResult

__all__ = ["SEARCH_COLUMNS", "SEARCH_LIMIT", "answer", "search"]

#: The rows of the ``search`` named query (its ``LIMIT``).
SEARCH_LIMIT = 100
#: The columns of the ``search`` named query.
SEARCH_COLUMNS = ("text", "audio", "name", "album", "creator", "username", "videoCount", "relevance")

_DATA = ox.NamedNode(DATA_GRAPH)
_NAME = ox.NamedNode(AS + "name")
_ALBUM = ox.NamedNode(KS + "album")
_VIDEOS = ox.NamedNode(KS + "videoCount")
_BY = ox.NamedNode(AS + "attributedTo")
_USERNAME = ox.NamedNode(AS + "preferredUsername")
_DOUBLE = ox.NamedNode(XSD + "double")


def answer(engine: object, index: TextIndex, sparql: str, params: Mapping[str, Any],
           limit: int = SEARCH_LIMIT) -> QueryResult | None:
    """The answer of the named query ``sparql`` from the index, if it is one the index answers."""
    from ..query.catalog import get_named_query
    from ..query.terms import to_term

    if sparql != get_named_query("search").text or "text" not in params:
        return None
    value = params["text"]
    text = value if isinstance(value, str) else str(getattr(to_term(value), "value", value))
    return search(engine, index, ox.Literal(text), limit)


def search(engine: object, index: TextIndex, text: ox.Literal, limit: int = SEARCH_LIMIT) -> QueryResult:
    """The ``search`` named query answered from the index: its columns, its rows, ranked."""
    from ..query.run import QueryResult

    assert isinstance(engine, OxigraphEngine)
    store = engine.store
    rows: list[dict[str, Any]] = []
    for hit in index.search(text.value, limit):
        audio = ox.NamedNode(hit.audio)
        base: dict[str, Any] = {
            "text": text, "audio": audio, "name": _first(store, audio, _NAME), "album": _first(store, audio, _ALBUM),
            "videoCount": _first(store, audio, _VIDEOS), "relevance": ox.Literal(repr(round(hit.relevance, 6)),
                                                                                datatype=_DOUBLE),
        }
        creators: list[Any] = sorted((q.object for q in store.quads_for_pattern(audio, _BY, None, _DATA)), key=str)
        for creator in creators or [None]:
            username = _first(store, creator, _USERNAME) if isinstance(creator, ox.NamedNode) else None
            rows.append({**base, "creator": creator, "username": username})
    return QueryResult("SELECT", list(SEARCH_COLUMNS), rows[:limit])


def _first(store: ox.Store, subject: ox.NamedNode, prop: ox.NamedNode) -> Any:
    quad = next(store.quads_for_pattern(subject, prop, None, _DATA), None)
    return None if quad is None else quad.object
