"""A small SPARQL lexer: the query's form, whether it names its dataset, where its WHERE
groups open (to place bindings for servers without substitution), its update keywords.

It skips comments, string literals and IRIs, so a keyword inside ``"…"`` or ``<…>``
never counts. It does not validate syntax (the engine does) and it is not what keeps
``SERVICE`` out (:mod:`konbini_ld.query.guard` decides that on the parsed query).
A query text is lexed once, however many of these questions are asked of it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = ["Token", "has_dataset_clause", "query_form", "tokens", "update_keyword", "where_brace", "where_braces"]

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


def tokens(sparql: str) -> tuple[Token, ...]:
    """Significant tokens of ``sparql`` (no whitespace, no comments), computed once per text.

    >>> [t.text for t in tokens('SELECT * { ?s <urn:x> "SERVICE" } # SERVICE')]
    ['SELECT', '*', '{', '?s', '<urn:x>', '"SERVICE"', '}']
    """
    return _tokens(sparql)


@functools.lru_cache(maxsize=512)
def _tokens(sparql: str) -> tuple[Token, ...]:
    out = []
    for m in _TOKEN.finditer(sparql):
        kind = m.lastgroup or "other"
        if kind not in ("ws", "comment"):
            out.append(Token(kind, m.group(), m.start()))
    return tuple(out)


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


def update_keyword(sparql: str) -> str | None:
    """The first update keyword (``INSERT``, ``DROP``…) the query holds, if any.

    >>> update_keyword("DROP ALL"), update_keyword('SELECT * { ?s ?p "DROP" }')
    ('DROP', None)
    """
    for t in tokens(sparql):
        if t.kind == "word" and t.text.upper() in _UPDATES:
            return t.text.upper()
    return None


def has_dataset_clause(sparql: str) -> bool:
    """True if the query names its own dataset with ``FROM`` / ``FROM NAMED``.

    >>> has_dataset_clause("SELECT * FROM <urn:g> WHERE { ?s ?p ?o }"), has_dataset_clause("SELECT * { ?s ?p ?o }")
    (True, False)
    """
    return any(t.kind == "word" and t.text.upper() == "FROM" for t in tokens(sparql))


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
