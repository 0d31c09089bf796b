"""What ``serve`` says about itself: a SPARQL 1.1 Service Description (at ``/sparql`` without a
query) and a VoID description of the dataset (at ``/void``), both linked from the query page."""

from __future__ import annotations

import io

import pyoxigraph as ox

from ..io.formats import Format
from ..vocab import DATA_GRAPH, GRAPHS, PREFIXES
from .protocol import OFFERED

__all__ = ["VOID_QUERY", "service_description"]

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
        ox.serialize(triples, out, fmt.ox_format(), prefixes={**PREFIXES, "sd": SD, "void": VOID})
    return out.getvalue()


#: The VoID description, computed by the store: triples, graphs, and entities per class.
VOID_QUERY = f"""PREFIX void: <{VOID}>
PREFIX sd: <{SD}>
CONSTRUCT {{
  ?dataset a void:Dataset ; void:triples ?total ; void:classPartition ?cp ; void:subset ?gp .
  ?cp void:class ?class ; void:entities ?entities .
  ?gp a sd:NamedGraph ; sd:name ?g ; void:triples ?gTriples .
}} WHERE {{
  BIND (<urn:konbini-ld:void#dataset> AS ?dataset)
  {{ SELECT (COUNT(*) AS ?total) WHERE {{ GRAPH ?any {{ ?s ?p ?o }} }} }}
  {{
    {{ SELECT ?class (COUNT(DISTINCT ?e) AS ?entities) WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?e a ?class }} }}
       GROUP BY ?class }}
    BIND (IRI(CONCAT("urn:konbini-ld:void#class-", MD5(STR(?class)))) AS ?cp)
  }} UNION {{
    {{ SELECT ?g (COUNT(*) AS ?gTriples) WHERE {{ GRAPH ?g {{ ?s ?p ?o }} }} GROUP BY ?g }}
    BIND (IRI(CONCAT("urn:konbini-ld:void#graph-", MD5(STR(?g)))) AS ?gp)
  }}
}}
"""
