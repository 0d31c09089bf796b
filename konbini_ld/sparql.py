"""A small SPARQL lexer: enough to refuse unsafe queries and to place bindings.

It skips comments, string literals and IRIs, so a keyword inside ``"…"`` or
``<…>`` never counts. It does not validate syntax: Oxigraph does that.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import QueryError

__all__ = ["Token", "check_safe_query", "has_dataset_clause", "query_form", "tokens", "where_brace"]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>'''(?:[^'\\]|\\.|'(?!''))*'''|\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\"|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<iri><[^<>"{}|^`\\\s]*>)
  | (?P<var>[?$][A-Za-z0-9_\u00C0-\uFFFF]+)
  | (?P<word>[A-Za-z_\u00C0-\uFFFF][\w\-.\u00C0-\uFFFF]*(?::(?:[\w\-.%\u00C0-\uFFFF]|\\.)*)?|:(?:[\w\-.%\u00C0-\uFFFF]|\\.)*)
  | (?P<punct>\^\^|&&|\|\||[<>!=]=?|[{}()\[\];,.*/+\-|^@!])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    start: int


def tokens(sparql: str) -> Iterator[Token]:
    """Significant tokens of ``sparql`` (no whitespace, no comments).

    >>> [t.text for t in tokens('SELECT * { ?s <urn:x> "SERVICE" } # SERVICE')]
    ['SELECT', '*', '{', '?s', '<urn:x>', '"SERVICE"', '}']
    """
    for m in _TOKEN.finditer(sparql):
        kind = m.lastgroup or "other"
        if kind in ("ws", "comment"):
            continue
        yield Token(kind, m.group(), m.start())


_FORMS = {"SELECT", "ASK", "CONSTRUCT", "DESCRIBE"}
_UPDATES = {"INSERT", "DELETE", "LOAD", "CLEAR", "DROP", "CREATE", "ADD", "MOVE", "COPY", "WITH"}


def query_form(sparql: str) -> str | None:
    """``SELECT``, ``ASK``, ``CONSTRUCT`` or ``DESCRIBE`` (the first form keyword), or ``None``.

    >>> query_form("PREFIX as: <https://www.w3.org/ns/activitystreams#> ask { ?s ?p ?o }")
    'ASK'
    """
    for t in tokens(sparql):
        if t.kind == "word":
            upper = t.text.upper()
            if upper in _FORMS or upper in _UPDATES:
                return upper if upper in _FORMS else "UPDATE"
    return None


def has_dataset_clause(sparql: str) -> bool:
    """True if the query names its own dataset with ``FROM`` / ``FROM NAMED``.

    >>> has_dataset_clause("SELECT * FROM <urn:g> WHERE { ?s ?p ?o }"), has_dataset_clause("SELECT * { ?s ?p ?o }")
    (True, False)
    """
    return any(t.kind == "word" and t.text.upper() == "FROM" for t in tokens(sparql))


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
    for t in tokens(sparql):
        if t.kind == "word" and t.text.upper() in _UPDATES:
            raise QueryError(
                f"{t.text.upper()} is an update operation; queries are read-only (the graph changes only through "
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


def where_braces(sparql: str) -> list[int]:
    """Offsets of the ``{`` opening every WHERE group, the query's and its subqueries'.

    >>> q = "SELECT ?a WHERE { { SELECT ?a WHERE { ?a ?p ?o } } }"
    >>> [q[i:i + 3] for i in where_braces(q)]
    ['{ {', '{ ?']
    """
    toks = list(tokens(sparql))
    out = []
    for i, t in enumerate(toks):
        if t.kind == "word" and t.text.upper() == "WHERE":
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if nxt is not None and nxt.text == "{":
                out.append(nxt.start)
    first = where_brace(sparql)
    if first is not None and first not in out:
        out.insert(0, first)
    return out


def where_brace(sparql: str) -> int | None:
    """Offset of the ``{`` that opens the outermost WHERE group (to place bindings), or ``None``."""
    toks = list(tokens(sparql))
    form = None
    for i, t in enumerate(toks):
        if t.kind == "word" and t.text.upper() in _FORMS:
            form = i
            break
    if form is None:
        return None
    depth = 0
    seen_where = False
    for t in toks[form + 1 :]:
        if t.kind == "word" and t.text.upper() == "WHERE" and depth == 0:
            seen_where = True
            continue
        if t.text == "{":
            if depth == 0 and (seen_where or toks[form].text.upper() not in ("CONSTRUCT",)):
                return t.start
            depth += 1
        elif t.text == "}":
            depth -= 1
    return None
