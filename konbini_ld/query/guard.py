"""What may run: no query reaches out, none changes data.

``SERVICE`` (a federated call) is decided on the parsed query, not on tokens: a query
whose text does not contain the letters ``SERVICE`` in any case cannot hold the keyword
(Oxigraph reads keywords literally; it does not expand ``\\u`` escapes outside strings
and IRIs). A query that does contain them is parsed by rdflib's implementation of the
SPARQL 1.1 grammar, without its codepoint pre-expansion (so it reads the text as
Oxigraph does), and refused if it holds a SERVICE pattern or cannot be parsed: when in
doubt, the answer is no. ``serve`` also runs every query in a process that cannot open
an internet socket (:mod:`konbini_ld.engines.sandbox`).
"""

from __future__ import annotations

import functools

from ..errors import QueryError
from ..sparql import update_keyword

__all__ = ["check_safe_query"]


def check_safe_query(sparql: str, *, name: str | None = None) -> None:
    """Refuse queries that would make the engine reach out, or change data.

    ``SERVICE`` (a federated call to another endpoint) is decided on the parsed query, not
    on tokens: a query whose text does not contain the letters ``SERVICE`` in any case
    cannot hold the keyword (Oxigraph reads keywords literally; it does not expand
    ``\\u`` escapes outside strings and IRIs). A query that does contain them is parsed
    by rdflib's implementation of the SPARQL 1.1 grammar, without its codepoint
    pre-expansion (so it reads the text as Oxigraph does), and refused if it holds a
    SERVICE pattern or cannot be parsed: when in doubt, the answer is no. ``serve`` also
    evaluates every query in a process that cannot open an internet socket.

    ``FROM`` / ``FROM NAMED`` only select graphs already in the store (Oxigraph never
    fetches them); update operations are refused with a clear message (``query`` cannot
    run them anyway).

    :raises QueryError: the query is not allowed.
    """
    if "SERVICE" in sparql.upper() and _mentions_service(sparql):
        raise QueryError(
            "SERVICE (federated query) is not allowed: konbini-ld never contacts other endpoints", name=name
        )
    keyword = update_keyword(sparql)
    if keyword is not None:
        raise QueryError(
            f"{keyword} is an update operation; queries are read-only (the graph changes only through "
            "load, fetch and rebuild)",
            name=name,
        )


@functools.lru_cache(maxsize=256)
def _mentions_service(sparql: str) -> bool:
    """True unless rdflib's grammar parses the text and finds no SERVICE pattern in it."""
    from pyparsing import ParseBaseException, ParseResults
    from rdflib.plugins.sparql.parser import Query
    from rdflib.plugins.sparql.parserutils import CompValue

    try:
        parsed = Query.parse_string(sparql, parse_all=True)
    except (ParseBaseException, ValueError, RecursionError):
        return True  # cannot be checked: refused

    def walk(node: object) -> bool:
        if isinstance(node, CompValue):
            return node.name == "ServiceGraphPattern" or any(walk(v) for v in node.values())
        if isinstance(node, (list, tuple, ParseResults)):
            return any(walk(v) for v in node)
        if isinstance(node, dict):
            return any(walk(v) for v in node.values())
        return False

    return walk(parsed)
