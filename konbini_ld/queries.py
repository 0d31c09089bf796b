"""Named SPARQL queries, parameters bound as RDF terms, and result output.

A named query is a ``queries/<name>.rq`` file that starts with comment lines::

    # title: Top audios
    # description: Audios ranked by the number of videos using them.
    # param: creator iri The person whose audios to list

Parameter types: ``iri``, ``string``, ``integer``, ``decimal``, ``boolean``,
``term`` (N-Triples syntax or a guess). Append ``?`` to the type for an optional
parameter (left unbound when not given). Values are bound with Oxigraph's
substitutions (SEP-0007) — never pasted into the query text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import IO, Any

import pyoxigraph as ox

from .errors import QueryError, UsageError
from .namespaces import PREFIXES, XSD
from .named import NamedQuery, Param, get_named_query, named_queries, read_query_file
from .sparql import check_safe_query

__all__ = [
    "NamedQuery",
    "Param",
    "QueryResult",
    "ResultFormat",
    "get_named_query",
    "named_queries",
    "parse_term",
    "read_query_file",
    "run_query",
]

# -- terms -------------------------------------------------------------------

_NT_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"(?:@([A-Za-z]+(?:-[A-Za-z0-9]+)*)|\^\^<([^<>]+)>)?')


def parse_term(value: str, type_: str = "term") -> ox.NamedNode | ox.Literal:
    """Parse a parameter value into an RDF term of ``type_``.

    >>> parse_term("https://www.tiktok.com/@khaby.lame", "iri")
    <NamedNode value=https://www.tiktok.com/@khaby.lame>
    >>> parse_term("42", "integer")
    <Literal value=42 datatype=<NamedNode value=http://www.w3.org/2001/XMLSchema#integer>>

    :raises ValueError: the value does not fit ``type_``.
    """
    if type_ == "iri":
        iri = value[1:-1] if value.startswith("<") and value.endswith(">") else value
        if not re.match(r"[A-Za-z][A-Za-z0-9+.\-]*:", iri):
            raise ValueError(f"{value!r} is not an absolute IRI")
        try:
            return ox.NamedNode(iri)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid IRI: {exc}") from None
    if type_ == "string":
        return ox.Literal(value)
    if type_ == "integer":
        if not re.fullmatch(r"[+-]?\d+", value.strip()):
            raise ValueError(f"{value!r} is not an integer")
        return ox.Literal(str(int(value)), datatype=ox.NamedNode(XSD + "integer"))
    if type_ == "decimal":
        if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", value.strip()):
            raise ValueError(f"{value!r} is not a decimal number")
        return ox.Literal(value.strip(), datatype=ox.NamedNode(XSD + "decimal"))
    if type_ == "boolean":
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{value!r} is not true or false")
        return ox.Literal("true" if value.lower() in ("true", "1") else "false", datatype=ox.NamedNode(XSD + "boolean"))
    return _guess(value, None)


def _guess(value: str, name: str | None) -> ox.NamedNode | ox.Literal:
    """Undeclared parameters: ``<iri>``, an N-Triples literal, an absolute http(s) IRI, or a plain string."""
    if value.startswith("<") and value.endswith(">"):
        return parse_term(value, "iri")
    m = _NT_LITERAL.fullmatch(value)
    if m:
        text = m.group(1).encode("utf-8").decode("unicode_escape") if "\\" in m.group(1) else m.group(1)
        if m.group(2):
            return ox.Literal(text, language=m.group(2))
        if m.group(3):
            return ox.Literal(text, datatype=ox.NamedNode(m.group(3)))
        return ox.Literal(text)
    if re.match(r"(https?|urn|file):\S+$", value):
        return parse_term(value, "iri")
    return ox.Literal(value)


def _to_ox(value: Any) -> Any:
    if isinstance(value, (ox.NamedNode, ox.Literal, ox.BlankNode)):
        return value
    try:
        from rdflib.term import Identifier
    except ImportError:  # pragma: no cover
        Identifier = ()  # type: ignore[assignment,misc]
    if isinstance(value, Identifier):
        from oxrdflib._converter import to_ox

        return to_ox(value)
    if isinstance(value, bool):
        return ox.Literal("true" if value else "false", datatype=ox.NamedNode(XSD + "boolean"))
    if isinstance(value, int):
        return ox.Literal(str(value), datatype=ox.NamedNode(XSD + "integer"))
    if isinstance(value, str):
        return _guess(value, None)
    raise UsageError(f"cannot bind a {type(value).__name__} as an RDF term")


# -- running -------------------------------------------------------------------


class ResultFormat(Enum):
    """Output formats of ``query``; ``media_type`` is what ``serve`` negotiates."""

    TABLE = ("table", "text/plain")
    CSV = ("csv", "text/csv")
    TSV = ("tsv", "text/tab-separated-values")
    JSON = ("json", "application/sparql-results+json")
    XML = ("xml", "application/sparql-results+xml")
    TURTLE = ("turtle", "text/turtle")
    NT = ("nt", "application/n-triples")
    JSONLD = ("jsonld", "application/ld+json")

    def __init__(self, label: str, media_type: str) -> None:
        self.label = label
        self.media_type = media_type

    @classmethod
    def from_label(cls, label: str) -> ResultFormat:
        for f in cls:
            if f.label == label:
                return f
        raise UsageError(f"unknown format {label!r}")


_SOLUTION_FORMATS = {
    ResultFormat.CSV: ox.QueryResultsFormat.CSV,
    ResultFormat.TSV: ox.QueryResultsFormat.TSV,
    ResultFormat.JSON: ox.QueryResultsFormat.JSON,
    ResultFormat.XML: ox.QueryResultsFormat.XML,
}
_GRAPH_FORMATS = {ResultFormat.TURTLE: ox.RdfFormat.TURTLE, ResultFormat.NT: ox.RdfFormat.N_TRIPLES}


@dataclass(slots=True)
class QueryResult:
    """The answer to a query, evaluated by the store.

    :ivar kind: ``SELECT``, ``ASK`` or ``CONSTRUCT`` (also for ``DESCRIBE``).
    :ivar variables: projected variable names (SELECT).
    """

    kind: str
    variables: list[str] = field(default_factory=list)
    _native: Any = None
    boolean: bool | None = None

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """SELECT rows as tuples of pyoxigraph terms (``None`` where unbound). Consumes the result."""
        if self.kind != "SELECT":
            raise QueryError(f"{self.kind} queries have no rows")
        for solution in self._native:
            yield tuple(solution[v] for v in self.variables)

    def triples(self) -> Iterator[ox.Triple]:
        """CONSTRUCT/DESCRIBE triples. Consumes the result."""
        if self.kind != "CONSTRUCT":
            raise QueryError(f"{self.kind} queries have no triples")
        return iter(self._native)

    def bindings(self) -> Iterator[dict[str, Any]]:
        """SELECT rows as dicts of rdflib terms (unbound variables left out)."""
        from oxrdflib._converter import from_ox

        for row in self.rows():
            yield {v: from_ox(t) for v, t in zip(self.variables, row) if t is not None}

    def write(self, output: IO[bytes], fmt: ResultFormat) -> None:
        """Serialise the result in ``fmt`` to a binary stream."""
        if self.kind == "CONSTRUCT":
            if fmt in (ResultFormat.TABLE,):
                fmt = ResultFormat.TURTLE
            if fmt == ResultFormat.JSONLD:
                from .export import write_jsonld_triples

                write_jsonld_triples(self.triples(), output)
                return
            if fmt not in _GRAPH_FORMATS:
                raise UsageError(f"a CONSTRUCT/DESCRIBE result is RDF: use turtle, nt or jsonld, not {fmt.label}")
            ox.serialize(self.triples(), output, _GRAPH_FORMATS[fmt], prefixes=PREFIXES)
            return
        if fmt == ResultFormat.TABLE:
            output.write(render_table(self).encode("utf-8"))
            return
        if fmt not in _SOLUTION_FORMATS:
            raise UsageError(f"a {self.kind} result is a table: use table, csv, tsv, json or xml, not {fmt.label}")
        if self.kind == "ASK":
            if fmt in (ResultFormat.CSV, ResultFormat.TSV):
                output.write(b"true\n" if self.boolean else b"false\n")
                return
            self._native.serialize(output, _SOLUTION_FORMATS[fmt])
            return
        self._native.serialize(output, _SOLUTION_FORMATS[fmt])


def run_query(backend: Any, sparql: str, params: Mapping[str, Any], *, name: str | None = None) -> QueryResult:
    """Check ``sparql`` is safe, bind ``params`` as terms, and let the backend evaluate it natively."""
    check_safe_query(sparql, name=name)
    substitutions = {k.lstrip("?$"): _to_ox(v) for k, v in params.items()}
    try:
        native = backend.query(sparql, substitutions=substitutions)
    except QueryError as exc:
        if exc.name is None:
            exc.name = name
        raise
    if isinstance(native, ox.QueryBoolean):
        return QueryResult("ASK", [], native, bool(native))
    if isinstance(native, ox.QuerySolutions):
        return QueryResult("SELECT", [v.value for v in native.variables], native)
    return QueryResult("CONSTRUCT", [], native)


# -- table output ----------------------------------------------------------------

_MAX_CELL = 80


def compact_iri(iri: str) -> str:
    """``as:Audio`` for a known namespace, else the IRI unchanged.

    >>> compact_iri("https://www.w3.org/ns/activitystreams#Audio")
    'as:Audio'
    """
    for prefix, ns in PREFIXES.items():
        if iri.startswith(ns) and re.fullmatch(r"[A-Za-z_][\w\-]*", iri[len(ns) :]):
            return f"{prefix}:{iri[len(ns):]}"
    return iri


def cell(term: Any) -> str:
    """How a term is shown in a table."""
    if term is None:
        return ""
    if isinstance(term, ox.NamedNode):
        return compact_iri(term.value)
    if isinstance(term, ox.BlankNode):
        return f"_:{term.value}"
    if isinstance(term, ox.Literal):
        return term.value
    return str(term)


def render_table(result: QueryResult) -> str:
    """A plain-text table for a terminal."""
    if result.kind == "ASK":
        return ("true" if result.boolean else "false") + "\n"
    headers = list(result.variables)
    rows = []
    for row in result.rows():
        cells = []
        for term in row:
            text = cell(term).replace("\n", " ")
            cells.append(text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…")
        rows.append(cells)
    if not headers:
        return ""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"
