"""IRIs konbini-ld reads and writes."""

from __future__ import annotations

__all__ = [
    "AS",
    "DATA_GRAPH",
    "GENID",
    "KS",
    "PREFIXES",
    "PROV",
    "PROV_GRAPH",
    "RDF",
    "XSD",
    "is_genid",
]

AS = "https://www.w3.org/ns/activitystreams#"
KS = "https://konbiniapi.com/ns/social#"
XSD = "http://www.w3.org/2001/XMLSchema#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
PROV = "http://www.w3.org/ns/prov#"
DCTERMS = "http://purl.org/dc/terms/"

#: Named graph holding the data mapped from API responses.
DATA_GRAPH = "urn:konbini-ld:graph:data"
#: Named graph holding PROV-O provenance (one activity per ingested response).
PROV_GRAPH = "urn:konbini-ld:graph:provenance"
#: Prefix of the deterministic IRIs that replace blank nodes (skolem IRIs).
GENID = "urn:konbini-ld:genid:"
#: Prefix of provenance activity IRIs.
OBSERVATION = "urn:konbini-ld:observation:"

PREFIXES: dict[str, str] = {
    "as": AS,
    "ks": KS,
    "prov": PROV,
    "xsd": XSD,
    "rdf": RDF,
    "dcterms": DCTERMS,
}


def is_genid(iri: str) -> bool:
    """True for the skolem IRIs konbini-ld mints for objects without an ``id``.

    >>> is_genid("urn:konbini-ld:genid:0f3c")
    True
    >>> is_genid("https://www.tiktok.com/@khaby.lame")
    False
    """
    return iri.startswith(GENID)
