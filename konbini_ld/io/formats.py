"""The one registry of formats: names, media types, file extensions, and what each can carry.

The command line (``query -f``, ``export -f``), the server's content negotiation, the
exports and the Python API all look formats up here.

>>> Format.lookup("ttl") is Format.TURTLE, Format.TURTLE.media_type, Format.TURTLE.extension
(True, 'text/turtle', 'ttl')
>>> [f.label for f in Format.carrying("dataset")]
['nq', 'trig']
>>> Format.for_media_type("application/json", "results"), Format.for_media_type("application/json", "graph")
(<Format.JSON>, <Format.JSONLD>)
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from ..errors import UsageError

__all__ = ["Format"]

#: ``results``: SELECT/ASK answers; ``graph``: triples (CONSTRUCT, DESCRIBE, exports);
#: ``dataset``: quads with their named graphs; ``table``: for people.
_KINDS = ("results", "graph", "dataset", "table")


class Format(Enum):
    """A serialisation konbini-ld reads or writes.

    :ivar label: the name used on the command line and in ``format=`` parameters.
    :ivar media_types: its media types, the preferred one first.
    :ivar extension: the usual file extension.
    :ivar carries: what it can hold: ``results``, ``graph``, ``dataset`` and/or ``table``.
    :ivar aliases: other names accepted for it (short names as Fuseki reads them, extensions).
    """

    TABLE = ("table", ("text/plain",), "txt", ("table",), ("text",))
    CSV = ("csv", ("text/csv",), "csv", ("results",), ())
    TSV = ("tsv", ("text/tab-separated-values",), "tsv", ("results",), ())
    JSON = ("json", ("application/sparql-results+json", "application/json"), "srj", ("results",), ("srj",))
    XML = ("xml", ("application/sparql-results+xml", "application/xml", "text/xml"), "srx", ("results",), ("srx",))
    PARQUET = ("parquet", ("application/vnd.apache.parquet",), "parquet", ("results",), ())
    TURTLE = ("turtle", ("text/turtle", "application/x-turtle"), "ttl", ("graph",), ("ttl",))
    NT = ("nt", ("application/n-triples", "text/plain"), "nt", ("graph",), ("ntriples", "n-triples"))
    NQ = ("nq", ("application/n-quads",), "nq", ("graph", "dataset"), ("nquads", "n-quads"))
    TRIG = ("trig", ("application/trig",), "trig", ("graph", "dataset"), ())
    JSONLD = ("jsonld", ("application/ld+json", "application/json"), "jsonld", ("graph",), ("json-ld",))
    RDFXML = ("rdfxml", ("application/rdf+xml", "application/xml", "text/xml"), "rdf", ("graph",),
              ("rdf", "xml-rdf", "rdf/xml", "owl"))

    def __init__(self, label: str, media_types: tuple[str, ...], extension: str, carries: tuple[str, ...],
                 aliases: tuple[str, ...]) -> None:
        self.label = label
        self.media_types = media_types
        self.extension = extension
        self.carries = frozenset(carries)
        self.aliases = aliases

    def __repr__(self) -> str:
        return f"<Format.{self.name}>"

    @property
    def media_type(self) -> str:
        """The preferred media type."""
        return self.media_types[0]

    def can_carry(self, kind: str) -> bool:
        return kind in self.carries

    @classmethod
    def lookup(cls, name: str | Format, kind: str | None = None) -> Format:
        """A format by label, alias, file extension or media type (``kind`` narrows the search).

        :raises UsageError: no such format (or none that carries ``kind``), naming the choices.
        """
        if isinstance(name, Format):
            if kind is not None and not name.can_carry(kind):
                raise UsageError(f"{name.label} cannot hold {kind}: use {', '.join(cls.names(kind))}")
            return name
        key = name.strip().lower()
        candidates = [f for f in cls if kind is None or f.can_carry(kind)]
        for f in candidates:
            if key in (f.label, f.extension, *f.aliases):
                return f
        for f in candidates:
            if key in f.media_types:
                return f
        what = f"{kind} format" if kind else "format"
        raise UsageError(f"unknown {what} {name!r} (known: {', '.join(cls.names(kind))})")

    @classmethod
    def names(cls, kind: str | None = None) -> list[str]:
        """Labels of the formats that carry ``kind`` (all when ``None``)."""
        return [f.label for f in cls if kind is None or f.can_carry(kind)]

    @classmethod
    def carrying(cls, kind: str) -> list[Format]:
        return [f for f in cls if f.can_carry(kind)]

    @classmethod
    def for_media_type(cls, media_type: str, kind: str) -> Format | None:
        """The format a media type names for a result of ``kind`` (the first that claims it)."""
        media_type = media_type.strip().lower()
        for f in cls:
            if f.can_carry(kind) and media_type in f.media_types:
                return f
        return None

    def ox_format(self) -> Any:
        """The matching pyoxigraph ``RdfFormat`` or ``QueryResultsFormat`` (``None`` if pyoxigraph has none)."""
        import pyoxigraph as ox

        return {
            Format.CSV: ox.QueryResultsFormat.CSV,
            Format.TSV: ox.QueryResultsFormat.TSV,
            Format.JSON: ox.QueryResultsFormat.JSON,
            Format.XML: ox.QueryResultsFormat.XML,
            Format.TURTLE: ox.RdfFormat.TURTLE,
            Format.NT: ox.RdfFormat.N_TRIPLES,
            Format.NQ: ox.RdfFormat.N_QUADS,
            Format.TRIG: ox.RdfFormat.TRIG,
            Format.RDFXML: ox.RdfFormat.RDF_XML,
        }.get(self)
