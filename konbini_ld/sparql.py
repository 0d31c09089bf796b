"""A small SPARQL lexer: the query's form, whether it names its dataset, where its WHERE
groups open (to place bindings for servers without substitution), its update keywords.

It skips comments, string literals and IRIs, so a keyword inside ``"…"`` or ``<…>``
never counts. It does not validate syntax (the engine does) and it is not what keeps
``SERVICE`` out (:mod:`konbini_ld.query.guard` decides that).
A query text of up to 64 KiB is lexed once, however many of these questions are asked of
it (the texts kept for that hold 512 KiB at most: the cache is bounded by size, not by count,
so distinct large queries cannot grow it); a longer one is lexed as each question needs.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import NamedTuple

__all__ = ["Token", "has_dataset_clause", "query_form", "shape", "tokens", "update_keyword", "where_brace", "where_braces"]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\r\n]*)
  | (?P<string>'''(?:[^'\\]|\\.|'(?!''))*'''|\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\"|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<iri><(?:[^<>"{}|^`\\\s]|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8})*>)
  | (?P<var>[?$][A-Za-z0-9_\u00C0-\uFFFF]+)
  | (?P<word>[A-Za-z_\u00C0-\uFFFF][\w\-.\u00C0-\uFFFF]*(?::(?:[\w\-.%\u00C0-\uFFFF]|\\.)*)?|:(?:[\w\-.%\u00C0-\uFFFF]|\\.)*)
  | (?P<punct>\^\^|&&|\|\||[<>!=]=?|[{}()\[\];,.*/+\-|^@!])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


class Token(NamedTuple):
    """One significant token: its kind (a group name of the lexer), its text and its offset."""

    kind: str
    text: str
    start: int


def tokens(sparql: str) -> tuple[Token, ...]:
    """Significant tokens of ``sparql`` (no whitespace, no comments), computed once per text.

    >>> [t.text for t in tokens('SELECT * { ?s <urn:x> "SERVICE" } # SERVICE')]
    ['SELECT', '*', '{', '?s', '<urn:x>', '"SERVICE"', '}']
    """
    found = _significant(sparql)
    return found if isinstance(found, tuple) else tuple(found)


def _lex(sparql: str) -> Iterator[Token]:
    for m in _TOKEN.finditer(sparql):
        kind = m.lastgroup or "other"
        if kind != "ws" and kind != "comment":
            yield Token(kind, m.group(), m.start())


#: Texts up to this many characters are lexed once and kept; the kept texts hold at most
#: :data:`_CACHE_CHARS` characters together.
_CACHE_ENTRY = 64 * 1024
_CACHE_CHARS = 512 * 1024
_cache: OrderedDict[str, tuple[Token, ...]] = OrderedDict()
_cache_chars = 0
_cache_lock = threading.Lock()


def _significant(sparql: str) -> tuple[Token, ...] | Iterator[Token]:
    """The tokens of ``sparql``: kept ones, or (a text too long to keep) lexed as they are read."""
    global _cache_chars
    with _cache_lock:
        found = _cache.get(sparql)
        if found is not None:
            _cache.move_to_end(sparql)
            return found
    if len(sparql) > _CACHE_ENTRY:
        return _lex(sparql)
    found = tuple(_lex(sparql))
    with _cache_lock:
        if sparql not in _cache:
            _cache[sparql] = found
            _cache_chars += len(sparql)
            while _cache_chars > _CACHE_CHARS:
                old, _ = _cache.popitem(last=False)
                _cache_chars -= len(old)
    return found


_EXPONENT = re.compile(r"[eE][+-]?[0-9]*")


def shape(sparql: str) -> str:
    """The query with its constants and variable names taken out: what a family of queries that
    differ only by a literal, an IRI, a number or a variable's name have in common.

    >>> shape('SELECT ?x { ?x <urn:a> "one" ; ex:p 12.5 } # one') == shape("select ?y {?y <urn:b> 'two'; ex:q 7}")
    True
    >>> shape('ASK { ?s ?p 0e12, 1.5E-3, "a"@en-x1 }') == shape('ASK { ?s ?p 7, 2e9, "b"@fr }')
    True
    """
    out: list[str] = []
    names: dict[str, str] = {}
    number = ""  # the number being read ("1", "1.", "1.5"): one constant, however many tokens
    toks = list(_significant(sparql))
    absorb = False  # the next token belongs to the constant before it (a language tag, a datatype)
    for i, t in enumerate(toks):
        if absorb:
            absorb = False
            continue
        if t.kind == "other" and t.text.isdigit() or number and t.text == "." and "." not in number:
            if not number:
                out.append("K")
            number += t.text
            continue
        if number and "e" not in number and t.kind == "word" and _EXPONENT.fullmatch(t.text):
            number += "e" + t.text[1:]  # (1.5e10, 0e7: the exponent is the number's)
            continue
        if number.endswith("e") and t.text in "+-":
            number += t.text
            continue
        if number.endswith("."):
            out.append(".")  # (it ended a triple, not a number)
        number = ""
        following = toks[i + 1] if i + 1 < len(toks) else None
        if t.text in ("+", "-") and following is not None and following.start == t.start + 1 and (
                following.kind == "other" and following.text.isdigit()):
            continue  # a signed number: its sign is the constant's
        if out[-1:] == ["K"] and t.text in ("@", "^^"):
            absorb = True  # "x"@en, "5"^^xsd:int: the tag and the datatype are the constant's
            continue
        if t.kind in ("string", "iri"):
            out.append("K")
        elif t.kind == "var":
            out.append(names.setdefault(t.text[1:], f"?{len(names)}"))
        elif t.kind == "word":
            upper = t.text.upper()
            out.append("K" if ":" in t.text or upper in ("TRUE", "FALSE") else upper)
        else:
            out.append(t.text)
    return " ".join(out)


def _words(sparql: str) -> Iterable[str]:
    """The words (keywords and prefixed names) of ``sparql``, in order; a text too long to keep
    is scanned without making a token of everything else."""
    with _cache_lock:
        found = _cache.get(sparql)
    if found is None and len(sparql) > _CACHE_ENTRY:
        return (m.group() for m in _TOKEN.finditer(sparql) if m.lastgroup == "word")
    return (t.text for t in (found if found is not None else _significant(sparql)) if t.kind == "word")


_FORMS = {"SELECT", "ASK", "CONSTRUCT", "DESCRIBE"}
_UPDATES = {"INSERT", "DELETE", "LOAD", "CLEAR", "DROP", "CREATE", "ADD", "MOVE", "COPY", "WITH"}


def query_form(sparql: str) -> str | None:
    """``SELECT``, ``ASK``, ``CONSTRUCT`` or ``DESCRIBE`` (the first form keyword), or ``None``.

    >>> query_form("PREFIX as: <https://www.w3.org/ns/activitystreams#> ask { ?s ?p ?o }")
    'ASK'
    """
    for word in _words(sparql):
        upper = word.upper()
        if upper in _FORMS or upper in _UPDATES:
            return upper if upper in _FORMS else "UPDATE"
    return None


def update_keyword(sparql: str) -> str | None:
    """The first update keyword (``INSERT``, ``DROP``…) the query holds, if any.

    >>> update_keyword("DROP ALL"), update_keyword('SELECT * { ?s ?p "DROP" }')
    ('DROP', None)
    """
    for word in _words(sparql):
        if word.upper() in _UPDATES:
            return word.upper()
    return None


def has_dataset_clause(sparql: str) -> bool:
    """True if the query names its own dataset with ``FROM`` / ``FROM NAMED``.

    >>> has_dataset_clause("SELECT * FROM <urn:g> WHERE { ?s ?p ?o }"), has_dataset_clause("SELECT * { ?s ?p ?o }")
    (True, False)
    """
    return any(word.upper() == "FROM" for word in _words(sparql))


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
