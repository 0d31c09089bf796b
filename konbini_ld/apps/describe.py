"""What ``serve`` (and a published site) says about itself: a SPARQL 1.1 Service Description (at
``/sparql`` without a query) and a description of the dataset in VoID and DCAT (at ``/void``): its
figures (triples, named graphs, entities per class, properties, vocabularies, the time span
observed), the SPARQL endpoint as a DCAT data service, and a distribution per dump.

The figures read the whole store: :class:`FiguresCache` keeps them per position of the archive
(the record of how far the graph is applied changes on every write), so only the first call
after a write pays for them."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyoxigraph as ox

from ..io.formats import Format
from ..query.dataset import DatasetFigures
from ..vocab import GRAPHS, PREFIXES, XSD
from .protocol import OFFERED

__all__ = ["Dump", "FiguresCache", "archive_position", "list_dumps", "service_description", "void_description"]

SD = "http://www.w3.org/ns/sparql-service-description#"
VOID = "http://rdfs.org/ns/void#"
_FORMATS = "http://www.w3.org/ns/formats/"
#: W3C format IRIs for the result formats the endpoint offers.
_FORMAT_IRIS = {
    Format.JSON: "SPARQL_Results_JSON", Format.XML: "SPARQL_Results_XML", Format.CSV: "SPARQL_Results_CSV",
    Format.TSV: "SPARQL_Results_TSV", Format.TURTLE: "Turtle", Format.NT: "N-Triples", Format.JSONLD: "JSON-LD",
    Format.RDFXML: "RDF_XML", Format.NQ: "N-Quads", Format.TRIG: "TriG",
}


def service_description(base: str, fmt: Format) -> bytes:
    """The Service Description of the endpoint at ``base``/sparql, serialised in ``fmt``."""
    n = ox.NamedNode
    a = n("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
    service, dataset = n(f"{base}/sparql#service"), n(f"{base}/void#dataset")
    quads = [
        ox.Triple(service, a, n(SD + "Service")),
        ox.Triple(service, n(SD + "endpoint"), n(f"{base}/sparql")),
        ox.Triple(service, n(SD + "supportedLanguage"), n(SD + "SPARQL11Query")),
        ox.Triple(service, n(SD + "feature"), n(SD + "UnionDefaultGraph")),
        ox.Triple(service, n(SD + "defaultDataset"), dataset),
        ox.Triple(dataset, a, n(SD + "Dataset")),
        ox.Triple(dataset, a, n(VOID + "Dataset")),
        ox.Triple(dataset, n("http://www.w3.org/2000/01/rdf-schema#seeAlso"), n(f"{base}/void")),
        ox.Triple(dataset, n(SD + "defaultGraph"), n(f"{base}/void#union")),
        ox.Triple(n(f"{base}/void#union"), a, n(SD + "Graph")),
    ]
    for graph in GRAPHS:
        named = n(f"{base}/void#{graph.rsplit(':', 1)[-1]}")
        quads += [ox.Triple(dataset, n(SD + "namedGraph"), named), ox.Triple(named, a, n(SD + "NamedGraph")),
                  ox.Triple(named, n(SD + "name"), n(graph))]
    for kind in ("results", "graph"):
        for f in OFFERED[kind]:
            quads.append(ox.Triple(service, n(SD + "resultFormat"), n(_FORMATS + _FORMAT_IRIS[f])))
    return _serialise(quads, fmt)


def _serialise(triples: list[ox.Triple], fmt: Format) -> bytes:
    out = io.BytesIO()
    if fmt is Format.JSONLD:
        from ..io.export import write_jsonld_triples

        write_jsonld_triples(triples, out, inline_context=True)
    else:
        ox.serialize(triples, out, fmt.ox_format(), prefixes={**PREFIXES, "sd": SD, "void": VOID, "dcat": DCAT,
                                                              "dcterms": DCTERMS})
    return out.getvalue()


DCAT = "http://www.w3.org/ns/dcat#"
DCTERMS = "http://purl.org/dc/terms/"
_RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"


@dataclass(frozen=True, slots=True)
class Dump:
    """A dump of the dataset offered for download: its file name, format and size."""

    name: str
    fmt: Format
    size: int


def list_dumps(folder: Path | None) -> list[Dump]:
    """The dumps in ``folder``: its files whose extension names a graph format (``.ttl``,
    ``.nt``, ``.nq``, ``.trig``, ``.jsonld``, ``.rdf``), by name; none when there is no folder."""
    if folder is None:
        return []
    out = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    by_extension = {f.extension: f for f in Format.carrying("graph")}
    for path in entries:
        fmt = by_extension.get(path.suffix.lstrip(".").lower())
        if fmt is not None and path.is_file() and not path.name.startswith("."):
            out.append(Dump(path.name, fmt, path.stat().st_size))
    return out


def void_description(figures: DatasetFigures, base: str, fmt: Format, *, dumps: Sequence[Dump] = (),
                     dumps_url: str | None = None, sparql: bool = True, lookup: str | None = None) -> bytes:
    """The dataset's description (VoID and DCAT) at ``base``/void, serialised in ``fmt``.

    :param dumps_url: where the dumps are downloaded (``base``/dumps by default).
    :param sparql: the dataset has a SPARQL endpoint at ``base``/sparql.
    :param lookup: the URL an entity's IRI is appended to for its description (VoID's URI lookup).
    """
    return _serialise(void_triples(figures, base, dumps=dumps, dumps_url=dumps_url, sparql=sparql, lookup=lookup), fmt)


def void_triples(figures: DatasetFigures, base: str, *, dumps: Sequence[Dump] = (), dumps_url: str | None = None,
                 sparql: bool = True, lookup: str | None = None) -> list[ox.Triple]:
    """The triples of :func:`void_description`."""
    n = ox.NamedNode
    a = n(_RDF_TYPE)

    def integer(value: int, datatype: str = "integer") -> ox.Literal:
        return ox.Literal(str(value), datatype=n(XSD + datatype))

    dataset = n(f"{base}/void#dataset")
    out = [
        ox.Triple(dataset, a, n(VOID + "Dataset")),
        ox.Triple(dataset, a, n(DCAT + "Dataset")),
        ox.Triple(dataset, n(DCTERMS + "title"), ox.Literal("konbini-ld collection of TikTok audios", language="en")),
        ox.Triple(dataset, n(DCTERMS + "description"), ox.Literal(
            "TikTok audios, the videos using them and the persons they are attributed to, as observed through "
            "KonbiniAPI, with the provenance of every observation and the history of their counters.",
            language="en")),
        ox.Triple(dataset, n(VOID + "triples"), integer(figures.triples)),
        ox.Triple(dataset, n(VOID + "entities"), integer(figures.entities)),
        ox.Triple(dataset, n(VOID + "classes"), integer(len(figures.classes))),
        ox.Triple(dataset, n(VOID + "properties"), integer(len(figures.properties))),
        ox.Triple(dataset, n(DCAT + "landingPage"), n(f"{base}/")),
    ]
    for vocabulary in figures.vocabularies:
        if vocabulary.startswith(("http://", "https://")):
            out.append(ox.Triple(dataset, n(VOID + "vocabulary"), n(vocabulary)))
    for cls, count in sorted(figures.classes.items()):
        part = n(f"{base}/void#class-{_digest(cls)}")
        out += [ox.Triple(dataset, n(VOID + "classPartition"), part), ox.Triple(part, n(VOID + "class"), n(cls)),
                ox.Triple(part, n(VOID + "entities"), integer(count))]
    for prop, count in sorted(figures.properties.items()):
        part = n(f"{base}/void#property-{_digest(prop)}")
        out += [ox.Triple(dataset, n(VOID + "propertyPartition"), part),
                ox.Triple(part, n(VOID + "property"), n(prop)), ox.Triple(part, n(VOID + "triples"), integer(count))]
    for graph, count in sorted(figures.graphs.items()):
        part = n(f"{base}/void#graph-{_digest(graph)}")
        out += [ox.Triple(dataset, n(VOID + "subset"), part), ox.Triple(part, a, n(SD + "NamedGraph")),
                ox.Triple(part, n(SD + "name"), n(graph)), ox.Triple(part, n(VOID + "triples"), integer(count))]
    if figures.first_observed and figures.last_observed:
        span = n(f"{base}/void#observed")
        when = n(XSD + "dateTime")
        out += [ox.Triple(dataset, n(DCTERMS + "temporal"), span), ox.Triple(span, a, n(DCTERMS + "PeriodOfTime")),
                ox.Triple(span, n(DCAT + "startDate"), ox.Literal(figures.first_observed, datatype=when)),
                ox.Triple(span, n(DCAT + "endDate"), ox.Literal(figures.last_observed, datatype=when)),
                ox.Triple(dataset, n(DCTERMS + "modified"), ox.Literal(figures.last_observed, datatype=when))]
    if sparql:
        service = n(f"{base}/sparql#service")
        out += [ox.Triple(dataset, n(VOID + "sparqlEndpoint"), n(f"{base}/sparql")),
                ox.Triple(service, a, n(DCAT + "DataService")),
                ox.Triple(service, n(DCAT + "endpointURL"), n(f"{base}/sparql")),
                ox.Triple(service, n(DCAT + "endpointDescription"), n(f"{base}/sparql")),
                ox.Triple(service, n(DCAT + "servesDataset"), dataset),
                ox.Triple(service, n(DCTERMS + "conformsTo"), n("https://www.w3.org/TR/sparql11-protocol/")),
                ox.Triple(dataset, n(DCAT + "distribution"), n(f"{base}/void#sparql")),
                ox.Triple(n(f"{base}/void#sparql"), a, n(DCAT + "Distribution")),
                ox.Triple(n(f"{base}/void#sparql"), n(DCAT + "accessURL"), n(f"{base}/sparql")),
                ox.Triple(n(f"{base}/void#sparql"), n(DCAT + "accessService"), service)]
    if lookup is not None:
        out.append(ox.Triple(dataset, n(VOID + "uriLookupEndpoint"), n(lookup)))
    where = dumps_url or f"{base}/dumps"
    for dump in dumps:
        dist = n(f"{base}/void#dump-{_digest(dump.name)}")
        url = n(f"{where}/{_quote(dump.name)}")
        out += [ox.Triple(dataset, n(DCAT + "distribution"), dist), ox.Triple(dataset, n(VOID + "dataDump"), url),
                ox.Triple(dist, a, n(DCAT + "Distribution")),
                ox.Triple(dist, n(DCTERMS + "title"), ox.Literal(dump.name)),
                ox.Triple(dist, n(DCAT + "downloadURL"), url), ox.Triple(dist, n(DCAT + "accessURL"), url),
                ox.Triple(dist, n(DCAT + "mediaType"),
                          n(f"https://www.iana.org/assignments/media-types/{dump.fmt.media_type}")),
                ox.Triple(dist, n(DCTERMS + "format"), n(_FORMATS + _FORMAT_IRIS[dump.fmt])),
                ox.Triple(dist, n(DCAT + "byteSize"), integer(dump.size, "nonNegativeInteger"))]
    return out


def _digest(text: str) -> str:
    return hashlib.md5(text.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name)


def archive_position(state_dir: Path | None) -> tuple[int, int] | None:
    """Where the store's archive is applied up to, as it changes on every write (the applied
    record and the state file's modification time): ``None`` when the store keeps none."""
    if state_dir is None:
        return None
    from ..store.log.directory import STATE, read_applied

    try:
        return read_applied(state_dir), (state_dir / STATE).stat().st_mtime_ns
    except FileNotFoundError:
        return 0, 0
    except Exception:  # noqa: BLE001 - a damaged state file: no cache (the figures say what the store holds)
        return None


class FiguresCache:
    """The dataset's figures, kept for one archive position (a write moves it and they are read again)."""

    def __init__(self) -> None:
        self.position: tuple[int, int] | None = None
        self.figures: DatasetFigures | None = None

    def get(self, position: tuple[int, int] | None) -> DatasetFigures | None:
        return self.figures if position is not None and position == self.position else None

    def put(self, position: tuple[int, int] | None, figures: DatasetFigures) -> None:
        if position is not None:
            self.position, self.figures = position, figures
