"""What may run: no query reaches out, none changes data.

``SERVICE`` (a federated call) is decided in two steps, the first linear in the query's
length and the second only for the rare texts the first cannot place:

1. A lexer that reads comments, strings and IRIs exactly as Oxigraph does (a comment ends
   at a line feed *or* a carriage return; an IRI is ``<`` up to the first ``>`` holding only
   IRI characters and ``\\u`` escapes) sets those aside. The query is refused if what is left
   holds the word ``SERVICE`` (in any case: Oxigraph reads keywords case-insensitively and
   without a word boundary, so ``true.SERVICE`` counts), allowed if the letters appear nowhere
   else than in comments, strings, IRIs, variables and language tags.
2. Otherwise (the letters inside a prefixed name such as ``ex:customer_service``, or an
   ``<…>`` between parentheses that could be a less-than instead of an IRI and would then hide
   a comment, a string or the letters): rdflib's implementation of the SPARQL 1.1 grammar
   parses the query, without its codepoint pre-expansion (so it reads the text as Oxigraph
   does), and it is refused if it holds a SERVICE pattern or cannot be parsed within
   :data:`PARSE_LIMIT` characters: when in doubt, the answer is no.

Oxigraph does not expand ``\\u`` escapes outside strings and IRIs, but other SPARQL servers
(a remote store) do: a text whose escapes, expanded, spell ``SERVICE`` is checked both ways.
``serve`` runs this check in its query workers, under the query's time limit, and those
workers cannot open an internet socket (:mod:`konbini_ld.engines.sandbox`).
"""

from __future__ import annotations

import re

from ..errors import QueryError
from ..sparql import update_keyword

__all__ = ["PARSE_LIMIT", "check_safe_query"]

#: Longest text the grammar-based second step parses (rdflib's parser needs about a second
#: per 10 KB of dense expressions); a longer text that needs it is refused.
PARSE_LIMIT = 32 * 1024

_REFUSED = "SERVICE (federated query) is not allowed: konbini-ld never contacts other endpoints"

#: Brackets nested deeper than this are refused: Oxigraph's parser recurses once per level and
#: overflows its stack (a crash, no error) past a few thousand; no real query nests a hundred.
MAX_NESTING = 500
#: Operators, pattern keywords and object or predicate lists chained in one query (``1 + 1 + …``,
#: ``{…} UNION {…} UNION …``, ``<p>/<p>/…``, ``?s <p> ?o , ?o , …``) past this are refused for the same reason: the engine builds and walks them
#: as one deep tree, and crashes past about 5,000 on an 8 MiB stack.
MAX_CHAIN = 4_000
_CHAINING = frozenset("+-*/=<>!^")
_LISTING = frozenset(",;")
_DOUBLED = frozenset("|&")  # (`||` and `&&` are one operator; a path's `|` half of one)
_CHAIN_WORDS = frozenset({"UNION", "OPTIONAL", "MINUS", "FILTER", "BIND", "IN"})


def check_safe_query(sparql: str, *, name: str | None = None) -> None:
    """Refuse queries that would make the engine reach out, or change data.

    ``SERVICE`` is refused wherever the engine would read it as the keyword, and only there:
    the word in a comment, a string or an IRI is text (see the module's description of how
    that is decided). ``FROM`` / ``FROM NAMED`` only select graphs already in the store
    (Oxigraph never fetches them); update operations are refused with a clear message
    (``query`` cannot run them anyway).

    >>> check_safe_query('SELECT * { ?s ?p "customer SERVICE" } # service desk')
    >>> check_safe_query("SELECT * { SeRvIcE <http://example.org/sparql> { ?s ?p ?o } }")
    Traceback (most recent call last):
    ...
    konbini_ld.errors.QueryError: SERVICE (federated query) is not allowed: konbini-ld never contacts other endpoints

    >>> check_safe_query("ASK " + "{" * 600 + "}" * 600)
    Traceback (most recent call last):
    ...
    konbini_ld.errors.QueryError: the query nests brackets 600 levels deep; at most 500 are read (the engine's parser would run out of stack)

    :raises QueryError: the query is not allowed.
    """
    if sum(map(sparql.count, "{([+-*/|&=<>!^,;.")) > MAX_NESTING:  # (a cheap first look: few brackets or operators)
        depth, chain = shape(sparql)
        if depth > MAX_NESTING:
            raise QueryError(f"the query nests brackets {depth} levels deep; at most {MAX_NESTING} are read "
                             "(the engine's parser would run out of stack)", name=name)
        if chain > MAX_CHAIN:
            raise QueryError(f"the query chains {chain:,} operators and pattern keywords; at most {MAX_CHAIN:,} are "
                             "read (the engine would run out of stack): split it into several queries, or "
                             "use VALUES for long lists of alternatives", name=name)
    for text in _readings(sparql):
        verdict = _lexed_verdict(text)
        if verdict == "unsure":
            if len(text) > PARSE_LIMIT:
                raise QueryError(
                    f"{_REFUSED} (the word 'service' appears where only a full parse can place it, and the query "
                    f"is longer than the {PARSE_LIMIT // 1024} KiB that parse takes: write the word in a comment "
                    "or a string, or shorten the query)", name=name)
            verdict = "refuse" if _parsed_mentions_service(text) else "safe"
        if verdict == "refuse":
            raise QueryError(_REFUSED, name=name)
    keyword = update_keyword(sparql)
    if keyword is not None:
        raise QueryError(
            f"{keyword} is an update operation; queries are read-only (the graph changes only through "
            "load, fetch and rebuild)",
            name=name,
        )


# -- the lexer -------------------------------------------------------------------------------------

#: Name characters of the SPARQL grammar (PN_CHARS_BASE, then what PN_CHARS and VARNAME add).
_BASE = ("A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
         "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd")
_VARNAME = f"[0-9_{_BASE}][0-9_\u00b7\u0300-\u036f\u203f-\u2040{_BASE}]*"

_LEX = re.compile(
    rf"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>\#[^\r\n]*)
  | (?P<string>'''(?:(?:''|')?(?:[^'\\]|\\.))*'''
             |\"\"\"(?:(?:\"\"|\")?(?:[^"\\]|\\.))*\"\"\"
             |'(?:[^'\\\r\n]|\\.)*'
             |"(?:[^"\\\r\n]|\\.)*")
  | (?P<iri><(?:[^\x00-\x20<>"{{}}|^`\\]|\\u[0-9A-Fa-f]{{4}}|\\U[0-9A-Fa-f]{{8}})*>)
  | (?P<var>[?$]{_VARNAME})
  | (?P<lang>@[A-Za-z]+(?:-[A-Za-z0-9]+)*)
  | (?P<word>(?:[\w\-.:%\u00b7-\U0010ffff]|\\.)+)
  | (?P<open>[({{\[])
  | (?P<close>[)}}\]])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
#: Characters that, inside an ``<…>`` read as an IRI, would change how the rest is read if
#: the ``<`` were a less-than instead: a comment, a string, an escape, a bracket.
_SHIFTY = re.compile(r"[#'()\[\]\\]")
_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})|\\U([0-9A-Fa-f]{8})")


def shape(sparql: str) -> tuple[int, int]:
    """How deep brackets (``{``, ``(``, ``[``) nest in the query, and how many operators and
    pattern keywords it chains, strings, comments and IRIs aside.

    >>> shape('SELECT * { ?s ?p "{{{{ + +" FILTER((?o > 1 && ?o < 9)) } # ((((')
    (3, 5)
    """
    depth = deepest = chain = halves = 0
    brackets: list[str] = []
    for m in _LEX.finditer(sparql):
        kind = m.lastgroup
        if kind == "open":
            depth += 1
            deepest = max(deepest, depth)
            brackets.append(m.group())
        elif kind == "close":
            depth = max(0, depth - 1)
            if brackets:
                brackets.pop()
        elif kind == "other":
            token = m.group()
            if token in _LISTING:  # (object and predicate lists chain; a list of arguments does not)
                chain += not brackets or brackets[-1] != "("
            else:
                chain += token in _CHAINING
            halves += token in _DOUBLED
        elif kind == "word":
            text = m.group()
            chain += text.upper() in _CHAIN_WORDS or text == "." or text.count("-")
    return deepest, chain + halves // 2


def service_verdict(sparql: str) -> str:
    """``safe``, ``refuse`` or ``unsure`` (a full parse must decide) for ``SERVICE``.

    >>> service_verdict("SELECT * { ?s ?p ?o }"), service_verdict("ASK { ?s <urn:service> ?o } # service")
    ('safe', 'safe')
    >>> service_verdict("SELECT * { ?s ?p ?o # c\\rSERVICE <http://x/> {} }")
    'refuse'
    >>> service_verdict("PREFIX ex: <urn:x:> SELECT * { ?s ex:customer_service ?o }")
    'unsure'
    """
    verdicts = {_lexed_verdict(text) for text in _readings(sparql)}
    for verdict in ("refuse", "unsure"):
        if verdict in verdicts:
            return verdict
    return "safe"


def _readings(sparql: str) -> list[str]:
    """The text as Oxigraph reads it, and as a server that expands ``\\u`` escapes first reads it."""
    if "\\u" not in sparql and "\\U" not in sparql:
        return [sparql]
    expanded = _ESCAPE.sub(lambda m: _char(m.group(1) or m.group(2)), sparql)
    return [sparql] if expanded == sparql else [sparql, expanded]


def _char(hex_digits: str) -> str:
    code = int(hex_digits, 16)
    return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"


def _lexed_verdict(sparql: str) -> str:
    if "SERVICE" not in sparql.upper():
        return "safe"
    unsure = False
    brackets: list[str] = []
    for m in _LEX.finditer(sparql):
        kind = m.lastgroup
        if kind == "word":
            text = m.group().upper()
            if "SERVICE" in text:
                if text == "SERVICE":
                    return "refuse"
                unsure = True  # a prefixed name, or letters glued to a keyword or a number
        elif kind == "iri":
            # Between parentheses a ``<`` may be a less-than: if reading it so could change
            # what follows (or show the letters), only a full parse can tell.
            if brackets and brackets[-1] == "(":
                inner = m.group()[1:-1]
                if _SHIFTY.search(inner) or "SERVICE" in inner.upper():
                    unsure = True
        elif kind == "open":
            brackets.append(m.group())
        elif kind == "close":
            if brackets:
                brackets.pop()
    return "unsure" if unsure else "safe"


def _parsed_mentions_service(sparql: str) -> bool:
    """True unless rdflib's grammar parses the text and finds no SERVICE pattern in it."""
    from pyparsing import ParseBaseException, ParseResults
    from rdflib.plugins.sparql.parser import Query
    from rdflib.plugins.sparql.parserutils import CompValue

    try:  # (a carriage return ends a comment for Oxigraph, not for rdflib; elsewhere both read it alike)
        parsed = Query.parse_string(sparql.replace("\r", "\n"), parse_all=True)
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
