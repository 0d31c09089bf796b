"""The SPARQL 1.1 Protocol as ``serve`` reads it: the request's query and dataset, and the
format of the answer, chosen the way Fuseki and Virtuoso choose it.

* ``Accept`` is read with q-values and wildcards; the first acceptable format wins.
* ``format=`` / ``output=`` / ``results=`` name a format by short name (``json``, ``xml``,
  ``csv``, ``tsv``, ``turtle``, ``ttl``, ``nt``, ``nq``, ``trig``, ``jsonld``, ``json-ld``,
  ``rdfxml``, ``rdf+xml``…) or media type, read for the kind of result: ``xml`` is
  SPARQL results XML for a SELECT and RDF/XML for a CONSTRUCT. A value that names nothing
  (``n3`` is read as Turtle) never overrides a valid ``Accept``.
* Only the first :data:`MAX_ACCEPT` media ranges of an ``Accept`` header are read.
* When nothing matches, the answer is SPARQL JSON (SELECT, ASK) or Turtle (CONSTRUCT,
  DESCRIBE), never a 406: clients that ask for ``*/*``, for results formats on graph
  queries, or for CSV on an ASK (CSV and TSV define no boolean) get something they can read.
* ``default-graph-uri`` and ``named-graph-uri`` (GET and POST) set the dataset.
* JSON-LD names the API's context URLs unless ``context=inline`` asks for them embedded,
  so that no client needs the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs

from ..errors import UsageError
from ..io.formats import Format

__all__ = ["Job", "MAX_ACCEPT", "MAX_PARAMETERS", "OFFERED", "PAGE_OFFERED", "ProtocolRequest", "TooManyParameters",
           "media_type", "negotiate", "negotiate_page", "read_request"]

#: Parameters a request may carry (query string and form together).
MAX_PARAMETERS = 1000
#: Media ranges of an ``Accept`` header read (the first ones).
MAX_ACCEPT = 64


class TooManyParameters(ValueError):
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
    inline_context: bool = False
    other: dict[str, str] = field(default_factory=dict)


#: A query job: query text, parameters (N-Triples terms), Accept header, format names asked
#: for, row cap, named query's name, dataset (default and named graphs) or None, inline context.
Job = tuple[str, dict[str, str], str | None, list[str], int, str | None, tuple[list[str], list[str]] | None, bool]


def media_type(fmt: Format) -> str:
    """The ``Content-Type`` a format is sent with."""
    text = fmt in (Format.CSV, Format.TSV, Format.TURTLE)
    return fmt.media_type + ("; charset=utf-8" if text else "")


def read_request(method: str, query_string: str, content_type: str, body: bytes) -> ProtocolRequest:
    """Read a GET query string, a POST form, or a POST ``application/sparql-query`` body.

    :raises UsageError: a POST of any other type (the caller answers 415).
    :raises TooManyParameters: more than :data:`MAX_PARAMETERS` parameters.
    """
    fields = _fields(query_string, MAX_PARAMETERS)
    ctype = content_type.split(";")[0].strip().lower()
    out = ProtocolRequest()
    if method == "POST":
        if ctype == "application/sparql-update":
            out.update = True
            return out
        if ctype == "application/sparql-query":
            out.query = body.decode("utf-8", "replace")
        elif ctype == "application/x-www-form-urlencoded":
            given = sum(len(v) for v in fields.values())
            for key, values in _fields(body.decode("utf-8", "replace"), MAX_PARAMETERS - given).items():
                fields.setdefault(key, []).extend(values)
        else:
            raise UsageError("POST application/sparql-query or a form with query=")
    if "update" in fields:
        out.update = True
    if out.query is None and fields.get("query"):
        out.query = fields["query"][0]
    for key in ("format", "output", "results"):
        out.formats.extend(v for v in fields.get(key, []) if v)
    out.default_graphs = [v for v in fields.get("default-graph-uri", []) if v]
    out.named_graphs = [v for v in fields.get("named-graph-uri", []) if v]
    out.inline_context = any(v.lower() in ("inline", "true", "1", "yes") for v in
                             fields.get("context", []) + fields.get("inline-context", []))
    known = {"query", "update", "format", "output", "results", "default-graph-uri", "named-graph-uri", "context",
             "inline-context"}
    out.other = {k: v[-1] for k, v in fields.items() if k not in known and v}
    return out


def _fields(text: str, most: int) -> dict[str, list[str]]:
    if not text:
        return {}
    try:
        return parse_qs(text, keep_blank_values=True, max_num_fields=max(most, 0))
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


def negotiate(accept: str | None, kind: str, explicit: list[str] | str | None = None) -> Format:
    """The format for a result of ``kind`` (``SELECT``, ``ASK``, ``CONSTRUCT``).

    >>> negotiate("text/csv;q=0.5, application/sparql-results+xml", "SELECT")
    <Format.XML>
    >>> negotiate("*/*", "CONSTRUCT"), negotiate(None, "ASK"), negotiate("image/png", "SELECT")
    (<Format.TURTLE>, <Format.JSON>, <Format.JSON>)
    >>> negotiate("text/tab-separated-values", "SELECT", ["n3"]), negotiate(None, "CONSTRUCT", "xml")
    (<Format.TSV>, <Format.RDFXML>)
    >>> negotiate("text/csv", "ASK")  # CSV has no boolean: the default
    <Format.JSON>
    """
    carries = {"CONSTRUCT": "graph", "ASK": "boolean"}.get(kind, "results")
    for value in [explicit] if isinstance(explicit, str) else (explicit or []):
        found = _explicit(value, carries)
        if found is not None:
            return found
    if accept:
        choices = []
        for i, part in enumerate(accept.split(",", MAX_ACCEPT)[:MAX_ACCEPT]):
            fields = [f.strip() for f in part.split(";")]
            media = fields[0].lower()
            q = 1.0
            for f in fields[1:]:
                if f.lower().startswith("q="):
                    try:
                        q = float(f[2:])
                    except ValueError:
                        q = 0.0
            choices.append((-q, i, media))
        for neg_q, _, media in sorted(choices):
            if neg_q == 0 or not media:
                continue
            if media in ("*/*", "*"):
                return _DEFAULT[carries]
            found = _by_media(media, carries)
            if found is not None:
                return found
            if media.endswith("/*"):
                family = media[:-1]
                for fmt in OFFERED[carries]:
                    if any(m.startswith(family) for m in fmt.media_types):
                        return fmt
    return _DEFAULT[carries]


def _by_media(media: str, carries: str) -> Format | None:
    for fmt in OFFERED[carries]:
        if media in fmt.media_types:
            return fmt
    if carries == "graph" and media in _GRAPH_SYNONYMS:
        return _GRAPH_SYNONYMS[media]
    return None


#: What an entity's description can be sent as, besides HTML (``None``).
PAGE_OFFERED = (Format.TURTLE, Format.NT, Format.JSONLD, Format.RDFXML)
_HTML = ("text/html", "application/xhtml+xml")


def negotiate_page(accept: str | None, explicit: list[str] | str | None = None) -> Format | None:
    """The format of an entity's description: ``None`` for its HTML page, else a graph format.

    HTML is the answer to a browser, to ``*/*`` and to nothing acceptable; a graph format when
    ``Accept`` prefers one (or ``format=`` names one: ``html`` asks for the page).

    >>> negotiate_page("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8") is None
    True
    >>> negotiate_page("text/turtle"), negotiate_page(None, "jsonld"), negotiate_page("application/rdf+xml")
    (<Format.TURTLE>, <Format.JSONLD>, <Format.RDFXML>)
    >>> negotiate_page("*/*") is None and negotiate_page("text/turtle", "html") is None
    True
    """
    for value in [explicit] if isinstance(explicit, str) else (explicit or []):
        key = value.strip().lower()
        if key in ("html", *_HTML):
            return None
        found = _explicit(key, "graph")
        if found in PAGE_OFFERED:
            return found
    if not accept:
        return None
    choices = []
    for i, part in enumerate(accept.split(",", MAX_ACCEPT)[:MAX_ACCEPT]):
        fields = [f.strip() for f in part.split(";")]
        q = 1.0
        for f in fields[1:]:
            if f.lower().startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        choices.append((-q, i, fields[0].lower()))
    for neg_q, _, media in sorted(choices):
        if neg_q == 0 or not media:
            continue
        if media in _HTML or media in ("*/*", "*", "text/*"):
            return None
        found = _by_media(media, "graph")
        if found in PAGE_OFFERED:
            return found
    return None
