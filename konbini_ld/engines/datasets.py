"""The dataset of a query, written into its text: ``FROM`` and ``FROM NAMED`` clauses.

A query's dataset can reach a SPARQL server two ways: ``FROM`` / ``FROM NAMED`` clauses in
the query text, which every SPARQL 1.1 query engine must read, and the protocol's
``default-graph-uri`` and ``named-graph-uri``. Servers differ: some read only one of them
(Oxigraph run with ``--union-default-graph`` ignores ``FROM``; RDF::Endpoint fetches
``default-graph-uri`` from the web). :mod:`.sparql_http` finds which one a server honours;
this module reads and writes the clauses.
"""

from __future__ import annotations

import pyoxigraph as ox

from ..errors import QueryError
from ..sparql import Token, tokens

__all__ = ["dataset_of", "with_dataset"]

_FORMS = {"SELECT", "ASK", "CONSTRUCT", "DESCRIBE"}
#: Where a DESCRIBE without a WHERE clause ends: its solution modifiers.
_MODIFIERS = {"ORDER", "GROUP", "HAVING", "LIMIT", "OFFSET", "VALUES"}


def _clauses(toks: tuple[Token, ...]) -> list[tuple[int, int, bool, Token]]:
    """Each ``FROM [NAMED] iri`` clause: (first token, last token, named, the graph's token)."""
    out = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "word" and t.text.upper() == "FROM":
            j = i + 1
            named = j < len(toks) and toks[j].kind == "word" and toks[j].text.upper() == "NAMED"
            j += named
            if j < len(toks):
                out.append((i, j, named, toks[j]))
                i = j + 1
                continue
        i += 1
    return out


def _prefixes(toks: tuple[Token, ...]) -> dict[str, str]:
    out = {}
    for i, t in enumerate(toks[:-2]):
        if t.kind == "word" and t.text.upper() == "PREFIX" and toks[i + 2].kind == "iri":
            out[toks[i + 1].text] = toks[i + 2].text[1:-1]
    return out


def dataset_of(sparql: str) -> tuple[list[str], list[str]] | None:
    """The graphs a query's own ``FROM`` and ``FROM NAMED`` clauses name (prefixed names
    expanded), or ``None`` when it has none or names one that cannot be expanded.

    >>> dataset_of("PREFIX g: <urn:g:> SELECT * FROM g:a FROM NAMED <urn:g:b> { ?s ?p ?o }")
    (['urn:g:a'], ['urn:g:b'])
    """
    toks = tokens(sparql)
    clauses = _clauses(toks)
    if not clauses:
        return None
    prefixes = _prefixes(toks)
    default: list[str] = []
    named: list[str] = []
    for _, _, is_named, graph in clauses:
        if graph.kind == "iri":
            iri = graph.text[1:-1]
        elif graph.kind == "word" and ":" in graph.text:
            prefix, local = graph.text.split(":", 1)
            if prefix + ":" not in prefixes or "\\" in local:
                return None
            iri = prefixes[prefix + ":"] + local
        else:
            return None
        (named if is_named else default).append(iri)
    return default, named


def with_dataset(sparql: str, default: list[str], named: list[str]) -> str:
    """``sparql`` with its dataset clauses replaced by ``FROM`` each of ``default`` and
    ``FROM NAMED`` each of ``named``, where the grammar puts them (before the WHERE clause of
    the outermost query). A text that is not a query is returned as it is.

    :raises QueryError: a graph name is not an IRI.

    >>> with_dataset("SELECT ?s (COUNT(*) AS ?n) WHERE { ?s ?p ?o } GROUP BY ?s", ["urn:a"], ["urn:a"])
    'SELECT ?s (COUNT(*) AS ?n) FROM <urn:a> FROM NAMED <urn:a> WHERE { ?s ?p ?o } GROUP BY ?s'
    >>> with_dataset("CONSTRUCT { ?s ?p ?o } FROM <urn:x> { ?s ?p ?o }", ["urn:a"], [])
    'CONSTRUCT { ?s ?p ?o }   FROM <urn:a> { ?s ?p ?o }'
    >>> with_dataset("DESCRIBE <urn:s>", ["urn:a"], [])
    'DESCRIBE <urn:s>\\nFROM <urn:a>'
    """
    toks = tokens(sparql)
    for first, last, _, _ in reversed(_clauses(toks)):
        end = toks[last].start + len(toks[last].text)
        sparql = f"{sparql[: toks[first].start]} {sparql[end:]}"
    toks = tokens(sparql)
    at = _dataset_position(toks)
    if at is None:
        return sparql
    clause = " ".join([*(f"FROM {_iri(g)}" for g in default), *(f"FROM NAMED {_iri(g)}" for g in named)])
    if at >= len(toks):
        return f"{sparql}\n{clause}"  # (on a line of its own: the text may end in a comment)
    offset = toks[at].start
    space = "" if offset == 0 or sparql[offset - 1].isspace() else " "
    return f"{sparql[:offset]}{space}{clause} {sparql[offset:]}"


def _iri(graph: str) -> str:
    """A graph's IRI as a term of the query text (written by Oxigraph: nothing can escape it)."""
    try:
        return str(ox.NamedNode(graph))
    except ValueError:
        raise QueryError(f"{graph!r} is not an IRI: it cannot name a graph") from None


def _dataset_position(toks: tuple[Token, ...]) -> int | None:
    """The index of the token the dataset clauses go before (``len(toks)``: at the end)."""
    form = next((i for i, t in enumerate(toks) if t.kind == "word" and t.text.upper() in _FORMS), None)
    if form is None:
        return None
    kind = toks[form].text.upper()
    i = form + 1
    if kind == "CONSTRUCT" and i < len(toks) and toks[i].text == "{":  # skip the template
        depth = 0
        while i < len(toks):
            depth += {"{": 1, "}": -1}.get(toks[i].text, 0)
            i += 1
            if depth == 0:
                break
        return i
    parens = 0
    while i < len(toks):
        t = toks[i]
        if t.text == "(":
            parens += 1
        elif t.text == ")":
            parens -= 1
        elif parens == 0 and (t.text == "{" or (t.kind == "word" and t.text.upper() == "WHERE")):
            return i
        elif parens == 0 and kind == "DESCRIBE" and t.kind == "word" and t.text.upper() in _MODIFIERS:
            return i
        i += 1
    return len(toks) if kind == "DESCRIBE" else None
