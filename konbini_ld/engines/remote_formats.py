"""What a remote SPARQL server answers, read by the answer's own ``Content-Type``.

Servers answer in the formats they have, whatever was asked: RDF::Endpoint answers SPARQL
XML, some servers label SPARQL JSON ``application/json``, others fall back to an HTML page.
konbini-ld asks for the formats that keep every term (:data:`RESULTS_ACCEPT`,
:data:`GRAPH_ACCEPT`) and reads each standard format that arrives:

* solutions and booleans: SPARQL JSON, SPARQL XML, TSV, and CSV (which loses datatypes and
  languages: read only where terms need not be exact);
* graphs: N-Triples, Turtle, RDF/XML, N-Quads, TriG, JSON-LD (no remote ``@context`` is
  ever fetched; RDF/XML that declares XML entities is refused, as one entity can expand a
  small answer into gigabytes).

Anything else (an HTML error page, a body that does not parse as what its ``Content-Type``
says) is one :class:`~konbini_ld.errors.StoreError` naming the endpoint and what arrived.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator
from typing import IO, Any

import pyoxigraph as ox

from ..errors import StoreError

__all__ = ["GRAPH_ACCEPT", "RESULTS_ACCEPT", "UnreadableAnswer", "graph_format", "read_graph", "read_results",
           "results_format"]

log = logging.getLogger(__name__)

#: Solutions and booleans: the formats that keep every term first; CSV (lossy) is not asked for.
RESULTS_ACCEPT = ("application/sparql-results+json, application/sparql-results+xml;q=0.9, "
                  "text/tab-separated-values;q=0.8")
#: Graphs: line-based N-Triples first (streams, one triple a line), then the other standard syntaxes.
GRAPH_ACCEPT = ("application/n-triples, text/turtle;q=0.9, application/n-quads;q=0.8, application/trig;q=0.7, "
                "application/rdf+xml;q=0.6, application/ld+json;q=0.5")

_RESULTS = {
    "application/sparql-results+json": ox.QueryResultsFormat.JSON,
    "application/json": ox.QueryResultsFormat.JSON,  # (SPARQL JSON as some servers label it)
    "application/sparql-results+xml": ox.QueryResultsFormat.XML,
    "application/xml": ox.QueryResultsFormat.XML,
    "text/xml": ox.QueryResultsFormat.XML,
    "text/tab-separated-values": ox.QueryResultsFormat.TSV,
    "text/csv": ox.QueryResultsFormat.CSV,
}
_GRAPHS = {
    "application/n-triples": ox.RdfFormat.N_TRIPLES,
    "text/plain": ox.RdfFormat.N_TRIPLES,  # (N-Triples' media type before 2014; RDF::Trine still uses it)
    "text/turtle": ox.RdfFormat.TURTLE,
    "application/x-turtle": ox.RdfFormat.TURTLE,
    "application/n-quads": ox.RdfFormat.N_QUADS,
    "text/x-nquads": ox.RdfFormat.N_QUADS,
    "application/trig": ox.RdfFormat.TRIG,
    "application/rdf+xml": ox.RdfFormat.RDF_XML,
    "application/ld+json": ox.RdfFormat.JSON_LD,
}


class UnreadableAnswer(StoreError):
    """A server's answer is not in a format konbini-ld reads, or does not parse as its format."""


def media_type(content_type: str | None) -> str:
    """The bare media type of a ``Content-Type`` header (lower case, no parameters)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def describe(content_type: str | None, body: bytes) -> str:
    """What arrived, for a message: its media type, and the title of an HTML page."""
    mt = media_type(content_type)
    if "html" in mt or body.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        m = re.search(rb"<title[^>]*>(.*?)</title>", body[:65536], re.IGNORECASE | re.DOTALL)
        title = _printable(m.group(1).decode("utf-8", "replace")) if m else ""
        return f"an HTML page ({mt or 'no Content-Type'}{': ' + title if title else ''})"
    return mt or "an answer without a Content-Type"


def _printable(text: str, limit: int = 120) -> str:
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _syntax(exc: BaseException) -> str:
    return _printable(str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__)


def results_format(content_type: str | None) -> ox.QueryResultsFormat | None:
    """The SPARQL results format a ``Content-Type`` names, or ``None``."""
    return _RESULTS.get(media_type(content_type))


def graph_format(content_type: str | None) -> ox.RdfFormat | None:
    """The RDF syntax a ``Content-Type`` names, or ``None``."""
    return _GRAPHS.get(media_type(content_type))


def read_results(body: bytes, content_type: str | None, *, where: str, form: str = "SELECT",
                 exact: bool = True) -> ox.QuerySolutions | ox.QueryBoolean:
    """The answer to a SELECT (solutions) or an ASK (a boolean), read whole first, so that a
    broken answer fails here and not half-way through whoever reads it.

    :param where: the endpoint, for messages.
    :param form: ``SELECT`` or ``ASK``: what the answer must be.
    :param exact: terms must be exact (CSV, which loses datatypes and languages, is refused).
    :raises UnreadableAnswer: not a results format, not parseable as its format, or not what
        the query asks for.
    """
    fmt = results_format(content_type)
    mt = media_type(content_type)
    if fmt is None:
        raise UnreadableAnswer(f"{where} answered a query with {describe(content_type, body)}, "
                               "not SPARQL results (JSON, XML, TSV or CSV)")
    if fmt == ox.QueryResultsFormat.CSV:
        if exact and form != "ASK":
            raise UnreadableAnswer(f"{where} answered in CSV, which does not keep datatypes and languages; "
                                   "konbini-ld needs SPARQL JSON, XML or TSV here")
        body, fmt = _csv_as_tsv(body, where), ox.QueryResultsFormat.TSV
        if form != "ASK":
            log.warning("%s answered in CSV: literals lose their datatypes and languages", where)
    try:
        read = _read_whole(body, fmt)
    except (SyntaxError, ValueError, UnicodeError) as exc:
        raise UnreadableAnswer(f"{where} answered {mt} that does not parse: {_syntax(exc)}") from None
    if isinstance(read, ox.QueryBoolean):
        if form != "ASK":
            raise UnreadableAnswer(f"{where} answered a {form} with a boolean")
        return read
    if form == "ASK":
        return _boolean_row(*read, where, mt)
    return ox.parse_query_results(body, fmt)  # (read again: it parses, checked above)


def _read_whole(body: bytes, fmt: ox.QueryResultsFormat) -> ox.QueryBoolean | tuple[list[ox.Variable],
                                                                                        list[ox.QuerySolution]]:
    """A boolean, or the variables and every solution. No reference to pyoxigraph's reader
    outlives this call, even when it fails half-way (an exception keeps its frames alive, and
    the reader must be dropped on the thread that made it)."""
    parsed = ox.parse_query_results(body, fmt)
    if isinstance(parsed, ox.QueryBoolean):
        return parsed
    try:
        return list(parsed.variables), list(parsed)
    finally:
        del parsed


def _boolean_row(variables: list[ox.Variable], rows: list[ox.QuerySolution], where: str, mt: str) -> ox.QueryBoolean:
    """An ASK answered as one row of one value (Jena writes ``?_askResult`` in TSV and CSV)."""
    value = rows[0][0] if len(variables) == 1 and len(rows) == 1 else None
    text = value.value.strip().lower() if isinstance(value, ox.Literal) else ""
    if text not in ("true", "false"):
        raise UnreadableAnswer(f"{where} answered an ASK with solutions ({mt}), not a boolean")
    result = ox.parse_query_results(text.encode(), ox.QueryResultsFormat.TSV)
    assert isinstance(result, ox.QueryBoolean)
    return result


def _csv_as_tsv(body: bytes, where: str) -> bytes:
    """SPARQL CSV rewritten as TSV: IRIs and blank nodes told apart from strings as well as CSV
    allows (a value that is an absolute IRI is read as one); a lone ``true``/``false`` is a boolean."""
    try:
        rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    except (UnicodeError, csv.Error) as exc:
        raise UnreadableAnswer(f"{where} answered text/csv that does not parse: {_syntax(exc)}") from None
    rows = [row for row in rows if row]
    if not rows:
        raise UnreadableAnswer(f"{where} answered an empty text/csv body")
    if len(rows) == 1 and len(rows[0]) == 1 and rows[0][0].strip().lower() in ("true", "false"):
        return rows[0][0].strip().lower().encode()
    out = ["\t".join("?" + v.strip().lstrip("?$") for v in rows[0])]
    for row in rows[1:]:
        out.append("\t".join(_tsv_term(v) for v in row))
    return ("\n".join(out) + "\n").encode("utf-8")


_ABSOLUTE_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]*")


def _tsv_term(value: str) -> str:
    if value == "":
        return ""
    if re.fullmatch(r"_:[A-Za-z0-9_\-.]+", value):
        return value
    if _ABSOLUTE_IRI.fullmatch(value):
        return f"<{value}>"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") \
        .replace("\t", "\\t")
    return f'"{escaped}"'


def read_graph(source: bytes | IO[bytes], content_type: str | None, *, where: str,
               base_iri: str | None = None) -> Iterator[ox.Triple]:
    """The triples of a graph answer (a quad's graph name is dropped), parsed lazily:
    callers that must not fail half-way read it whole first (:func:`count_graph`).

    :raises UnreadableAnswer: not an RDF syntax konbini-ld reads (raised at once).
    """
    fmt = graph_format(content_type)
    head = source[:65536] if isinstance(source, bytes) else _peek(source)
    if fmt is None:
        raise UnreadableAnswer(f"{where} answered with {describe(content_type, head)}, not RDF "
                               "(N-Triples, Turtle, RDF/XML, N-Quads, TriG or JSON-LD)")
    if fmt == ox.RdfFormat.RDF_XML and _declares_entities(source):
        raise UnreadableAnswer(f"{where} answered RDF/XML that declares XML entities (refused: an entity can "
                               "expand a small answer into gigabytes)")
    return _triples(source, fmt, where, media_type(content_type), base_iri)


def _triples(source: Any, fmt: ox.RdfFormat, where: str, mt: str, base_iri: str | None) -> Iterator[ox.Triple]:
    try:
        for quad in ox.parse(source, fmt, base_iri=base_iri, lenient=False):
            yield quad.triple
    except (SyntaxError, ValueError, UnicodeError) as exc:
        raise UnreadableAnswer(f"{where} answered {mt} that does not parse: {_syntax(exc)}") from None


def count_graph(source: bytes | IO[bytes], content_type: str | None, *, where: str,
                base_iri: str | None = None) -> int:
    """How many triples a graph answer holds, every one of them parsed.

    :raises UnreadableAnswer: as :func:`read_graph`.
    """
    n = 0
    for _ in read_graph(source, content_type, where=where, base_iri=base_iri):
        n += 1
    if not isinstance(source, bytes):
        source.seek(0)
    return n


def _peek(fh: IO[bytes]) -> bytes:
    fh.seek(0)
    head = fh.read(65536)
    fh.seek(0)
    return head


def _declares_entities(source: bytes | IO[bytes]) -> bool:
    if isinstance(source, bytes):
        return b"<!ENTITY" in source
    fh = source
    fh.seek(0)
    tail = b""
    found = False
    while chunk := fh.read(1 << 20):
        if b"<!ENTITY" in tail + chunk:
            found = True
            break
        tail = chunk[-8:]
    fh.seek(0)
    return found
