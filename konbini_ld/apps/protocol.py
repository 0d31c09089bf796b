"""The SPARQL 1.1 Protocol as ``serve`` reads it: the request's query and dataset, and the
format of the answer, chosen the way Fuseki and Virtuoso choose it.

* ``Accept`` is read with q-values and wildcards (RFC 9110, python-mimeparse): the most
  acceptable format wins; one refused with ``q=0`` is never sent (:func:`negotiate`).
* ``format=`` / ``output=`` / ``results=`` name a format by short name (``json``, ``xml``,
  ``csv``, ``tsv``, ``turtle``, ``ttl``, ``nt``, ``nq``, ``trig``, ``jsonld``, ``json-ld``,
  ``rdfxml``, ``rdf+xml``…) or media type, read for the kind of result: ``xml`` is
  SPARQL results XML for a SELECT and RDF/XML for a CONSTRUCT. A value that names nothing
  (``n3`` is read as Turtle) never overrides a valid ``Accept``.
* Only the first :data:`MAX_ACCEPT` media ranges of an ``Accept`` header are read.
* When nothing the header names can be sent, the answer is SPARQL JSON (SELECT, ASK) or
  Turtle (CONSTRUCT, DESCRIBE), unless the header refuses it: clients that ask for results
  formats on graph queries, or for CSV on an ASK (CSV and TSV define no boolean) get something
  they can read. When the header refuses every format the result can take, 406.
* ``default-graph-uri`` and ``named-graph-uri`` (GET and POST) set the dataset.
* JSON-LD embeds its contexts, so that every JSON-LD processor reads it offline;
  ``context=urls`` asks for the API's context URLs instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import parse_qs

from ..errors import UsageError
from ..io.formats import Format

__all__ = ["MAX_ACCEPT", "MAX_PARAMETERS", "OFFERED", "PAGE_OFFERED", "BadRequest", "Job", "NotAcceptable",
           "ProtocolRequest", "TooManyParameters", "media_type", "negotiate", "negotiate_page", "read_request"]

#: Parameters a request may carry (query string and form together).
MAX_PARAMETERS = 1000
#: Media ranges of an ``Accept`` header read (the first ones).
MAX_ACCEPT = 64


class BadRequest(ValueError):
    """A request the protocol does not allow (400): two queries, a query both in the URL and in
    the body, bytes that are not the UTF-8 they must be."""


class TooManyParameters(BadRequest):
    """A request with more than :data:`MAX_PARAMETERS` parameters."""

#: What a result of each kind can be sent as.
OFFERED = {
    "results": (Format.JSON, Format.XML, Format.CSV, Format.TSV),
    "boolean": (Format.JSON, Format.XML),  # CSV and TSV define no ASK answer
    "graph": (Format.TURTLE, Format.NT, Format.JSONLD, Format.RDFXML, Format.NQ, Format.TRIG),
}
_DEFAULT = {"results": Format.JSON, "boolean": Format.JSON, "graph": Format.TURTLE}
#: Names that mean a graph format when the result is a graph (as Fuseki and Virtuoso read them).
_GRAPH_SYNONYMS = {"xml": Format.RDFXML, "json": Format.JSONLD, "n3": Format.TURTLE, "text/n3": Format.TURTLE,
                   "text/rdf+n3": Format.TURTLE, "rdf+xml": Format.RDFXML, "application/xml": Format.RDFXML}
_RESULT_SYNONYMS = {"text/plain": Format.TSV}


@dataclass(slots=True)
class ProtocolRequest:
    """What a SPARQL Protocol request asks for, however it was sent."""

    query: str | None = None
    update: bool = False
    formats: list[str] = field(default_factory=list)
    default_graphs: list[str] = field(default_factory=list)
    named_graphs: list[str] = field(default_factory=list)
    inline_context: bool = True
    other: dict[str, str] = field(default_factory=dict)


#: A query job: query text, parameters (N-Triples terms), Accept header, format names asked
#: for, row cap, named query's name, dataset (default and named graphs) or None, inline context.
class Job(NamedTuple):
    """A query job, as sent to a worker."""

    sparql: str
    #: parameters, as N-Triples terms
    params: dict[str, str]
    accept: str | None
    #: format names asked for (``format=``, ``output=``, ``results=``)
    formats: list[str]
    #: the named query's name, if it is one (or a job of :mod:`.resource_jobs`)
    name: str | None
    #: default and named graphs, or None
    dataset: tuple[list[str], list[str]] | None
    inline_context: bool
    #: the IRI relative IRIs in the query resolve against (the endpoint's own URL)
    base_iri: str | None = None


def media_type(fmt: Format) -> str:
    """The ``Content-Type`` a format is sent with."""
    text = fmt in (Format.CSV, Format.TSV, Format.TURTLE)
    return fmt.media_type + ("; charset=utf-8" if text else "")


def read_request(method: str, query_string: str, content_type: str, body: bytes) -> ProtocolRequest:
    """Read a GET query string, a POST form, or a POST ``application/sparql-query`` body.

    Text is UTF-8, as the protocol says: a body declaring another charset is refused, and bytes
    that are not UTF-8 are a :class:`BadRequest`, never replaced.

    :raises UsageError: a POST of any other type, or of another charset (the caller answers 415).
    :raises BadRequest: more than one query (two ``query`` parameters, or one beside a query
        body), text that is not UTF-8, more than :data:`MAX_PARAMETERS` parameters.
    """
    fields = _fields(query_string, MAX_PARAMETERS)
    ctype, _, params = content_type.partition(";")
    ctype = ctype.strip().lower()
    out = ProtocolRequest()
    if method == "POST":
        if ctype == "application/sparql-update":
            out.update = True
            return out
        charset = _charset(params)
        if ctype in ("application/sparql-query", "application/x-www-form-urlencoded") and \
                charset not in ("utf-8", "utf8", "us-ascii", "ascii"):
            raise UsageError(f"the body of a POST {ctype} is UTF-8 (SPARQL 1.1 Protocol), not {charset[:40]}")
        if ctype == "application/sparql-query":
            if "query" in fields:
                raise BadRequest("a query in the body and another in the URL's query parameter: send one")
            out.query = _utf8(body, "the query")
        elif ctype == "application/x-www-form-urlencoded":
            given = sum(len(v) for v in fields.values())
            for key, values in _fields(_utf8(body, "the form"), MAX_PARAMETERS - given).items():
                fields.setdefault(key, []).extend(values)
        else:
            raise UsageError("POST application/sparql-query or a form with query=")
    if "update" in fields:
        out.update = True
    if len(fields.get("query", [])) > 1:
        raise BadRequest(f"{len(fields['query'])} query parameters: a request carries one query")
    if out.query is None and fields.get("query"):
        out.query = fields["query"][0]
    for key in ("format", "output", "results"):
        out.formats.extend(v for v in fields.get(key, []) if v)
    out.default_graphs = [v for v in fields.get("default-graph-uri", []) if v]
    out.named_graphs = [v for v in fields.get("named-graph-uri", []) if v]
    # JSON-LD embeds its contexts (any processor reads it offline) unless context=urls asks for their URLs
    out.inline_context = not any(v.lower() in ("urls", "url", "names", "false", "0", "no") for v in
                                 fields.get("context", []) + fields.get("inline-context", []))
    known = {"query", "update", "format", "output", "results", "default-graph-uri", "named-graph-uri", "context",
             "inline-context"}
    out.other = {k: v[-1] for k, v in fields.items() if k not in known and v}
    return out


def _charset(params: str) -> str:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return "utf-8"


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # (a byte order mark is no part of the text)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{what} is not UTF-8 (byte {exc.start})") from None


def _fields(text: str, most: int) -> dict[str, list[str]]:
    if not text:
        return {}
    try:
        return parse_qs(text, keep_blank_values=True, max_num_fields=max(most, 0), errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("a parameter is not UTF-8 once percent-decoded") from None
    except ValueError:
        raise TooManyParameters(f"a request may carry at most {MAX_PARAMETERS} parameters") from None


def _explicit(value: str, carries: str) -> Format | None:
    key = value.strip().lower()
    if carries == "graph" and key in _GRAPH_SYNONYMS:
        return _GRAPH_SYNONYMS[key]
    if carries != "graph" and key in _RESULT_SYNONYMS:
        return _RESULT_SYNONYMS[key] if _RESULT_SYNONYMS[key] in OFFERED[carries] else None
    try:
        fmt = Format.lookup(key, "graph" if carries == "graph" else "results")
    except UsageError:
        return None
    return fmt if fmt in OFFERED[carries] else None


class NotAcceptable(ValueError):
    """Every format a result could be sent as is refused by the request's ``Accept`` (406)."""


def negotiate(accept: str | None, kind: str, explicit: list[str] | str | None = None) -> Format:
    """The format for a result of ``kind`` (``SELECT``, ``ASK``, ``CONSTRUCT``): the one place
    ``serve`` reads ``Accept`` (RFC 9110 §12.5.1, with python-mimeparse).

    Each format takes the quality of the most specific media range naming the media type it is
    sent as (or, when none does, another of its types); the highest quality wins, then the range the client listed first, then the order of
    :data:`OFFERED`. A format refused with ``q=0`` is never chosen. When no format is acceptable
    the first one the header does not mention at all is sent (the default first: a client asking
    for ``image/png``, or for CSV on an ASK, gets something it can read); when every one is refused,
    :class:`NotAcceptable` (406).

    >>> negotiate("text/csv;q=0.5, application/sparql-results+xml", "SELECT")
    <Format.XML>
    >>> negotiate("*/*", "CONSTRUCT"), negotiate(None, "ASK"), negotiate("image/png", "SELECT")
    (<Format.TURTLE>, <Format.JSON>, <Format.JSON>)
    >>> negotiate("text/tab-separated-values", "SELECT", ["n3"]), negotiate(None, "CONSTRUCT", "xml")
    (<Format.TSV>, <Format.RDFXML>)
    >>> negotiate("text/csv", "ASK")  # CSV has no boolean: the default
    <Format.JSON>
    >>> negotiate("text/*;q=0.5, text/turtle;q=0", "CONSTRUCT")  # N-Triples is text/plain too
    <Format.NT>

    :raises NotAcceptable: every format offered for ``kind`` is refused.
    """
    carries = {"CONSTRUCT": "graph", "ASK": "boolean"}.get(kind, "results")
    for value in [explicit] if isinstance(explicit, str) else (explicit or []):
        found = _explicit(value, carries)
        if found is not None:
            return found
    ranges = _ranges(accept) if accept else []
    offered = sorted(OFFERED[carries], key=lambda f: f is not _DEFAULT[carries])  # (stable: the default first)
    if not ranges:
        return offered[0]
    scored = [(_quality(fmt, ranges, carries), order, fmt) for order, fmt in enumerate(offered)]
    acceptable = [(q, first, order, fmt) for (q, first), order, fmt in scored if q > 0]
    if acceptable:
        return min(acceptable, key=lambda c: (-c[0], c[1], c[2]))[3]
    unmentioned = [fmt for (q, first), _, fmt in scored if first is None]
    if unmentioned:
        return unmentioned[0]
    raise NotAcceptable(f"every format a {kind} result can be sent as is refused by Accept: "
                        + ", ".join(f.media_type for f in offered))


def _ranges(accept: str) -> list[tuple[str, str, dict[str, str]]]:
    """The first :data:`MAX_ACCEPT` media ranges of an ``Accept`` header; unreadable ones skipped."""
    import mimeparse

    out = []
    for part in accept.split(",", MAX_ACCEPT)[:MAX_ACCEPT]:
        if not part.strip():
            continue
        try:
            out.append(mimeparse.parse_media_range(part.strip().lower()))
        except (mimeparse.MimeTypeParseException, ValueError):
            continue
    return out


def _quality(fmt: Format, ranges: list[tuple[str, str, dict[str, str]]], carries: str) -> tuple[float, int | None]:
    """A format's quality and the position of the range that gave it (``None``: no range names
    any of its media types). The media type it is sent as decides, by its most specific range;
    only when no range names that one, the most specific range naming another of its types
    (``application/json`` for SPARQL JSON)."""
    media = list(fmt.media_types)
    if carries == "graph":
        media += [m for m, f in _GRAPH_SYNONYMS.items() if f is fmt and "/" in m and m not in media]
    for group in (media[:1], media[1:]):
        best: tuple[float, float, int] | None = None  # fitness, quality, position
        for m in group:
            for position, r in enumerate(ranges):
                q, fitness = _fit(m, r)
                if fitness >= 0 and (best is None or fitness > best[0]):
                    best = (fitness, q, position)
        if best is not None:
            return best[1], best[2]
    return 0.0, None


def _fit(media: str, parsed: tuple[str, str, dict[str, str]]) -> tuple[float, float]:
    import mimeparse

    q, fitness = mimeparse.quality_and_fitness_parsed(media, [parsed])
    return float(q), float(fitness)


#: What an entity's description can be sent as, besides HTML (``None``).
PAGE_OFFERED = (Format.TURTLE, Format.NT, Format.JSONLD, Format.RDFXML)
_HTML = ("text/html", "application/xhtml+xml")


def negotiate_page(accept: str | None, explicit: list[str] | str | None = None) -> Format | None:
    """The format of an entity's description: ``None`` for its HTML page, else a graph format.

    HTML is the answer to a browser, to ``*/*`` and to nothing acceptable; a graph format when
    ``Accept`` prefers one (RFC 9110 qualities, as :func:`negotiate` reads them), or ``format=``
    names one (``html`` asks for the page).

    >>> negotiate_page("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8") is None
    True
    >>> negotiate_page("text/turtle"), negotiate_page(None, "jsonld"), negotiate_page("application/rdf+xml")
    (<Format.TURTLE>, <Format.JSONLD>, <Format.RDFXML>)
    >>> negotiate_page("*/*") is None and negotiate_page("text/turtle", "html") is None
    True
    >>> negotiate_page("text/*;q=0.5, text/html;q=0")
    <Format.TURTLE>
    """
    for value in [explicit] if isinstance(explicit, str) else (explicit or []):
        key = value.strip().lower()
        if key in ("html", *_HTML):
            return None
        found = _explicit(key, "graph")
        if found in PAGE_OFFERED:
            return found
    ranges = _ranges(accept) if accept else []
    if not ranges:
        return None
    html = 0.0
    best: tuple[float, float] | None = None  # fitness, quality
    for media in _HTML:
        for r in ranges:
            q, fitness = _fit(media, r)
            if fitness >= 0 and (best is None or fitness > best[0]):
                best = (fitness, q)
    html = best[1] if best is not None else 0.0
    graph = max(((_quality(fmt, ranges, "graph")[0], -order, fmt) for order, fmt in enumerate(PAGE_OFFERED)),
                key=lambda c: (c[0], c[1]))
    return graph[2] if graph[0] > html else None
