"""IRIs konbini-ld reads and writes."""

from __future__ import annotations

__all__ = [
    "AS",
    "DATA_GRAPH",
    "COUNTERS",
    "GENID",
    "GRAPHS",
    "HISTORY_GRAPH",
    "KS",
    "KSH",
    "PREFIXES",
    "PROV",
    "PROV_GRAPH",
    "RDF",
    "SOSA",
    "XSD",
    "is_genid",
]

AS = "https://www.w3.org/ns/activitystreams#"
KS = "https://konbiniapi.com/ns/social#"
#: The history's measures: one per counter, same local name (``ksh:videoCount`` is an observed
#: ``ks:videoCount``), apart from the counters themselves so that a query over the union of the
#: graphs never takes an observation in the history for an entity.
KSH = "https://konbiniapi.com/ns/social/history#"
XSD = "http://www.w3.org/2001/XMLSchema#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
PROV = "http://www.w3.org/ns/prov#"
DCTERMS = "http://purl.org/dc/terms/"
SOSA = "http://www.w3.org/ns/sosa/"

#: Named graph holding the data mapped from API responses.
DATA_GRAPH = "urn:konbini-ld:graph:data"
#: Named graph holding PROV-O provenance (one activity per ingested response).
PROV_GRAPH = "urn:konbini-ld:graph:provenance"
#: Named graph holding the counter series (an entity observed at a time, with its counters then).
HISTORY_GRAPH = "urn:konbini-ld:graph:history"
#: Every graph konbini-ld writes (and a remote store's union default graph is made of).
GRAPHS = (DATA_GRAPH, PROV_GRAPH, HISTORY_GRAPH)
#: Prefix of the IRIs of history observations (an entity at a time, with the counters observed then).
POINT = "urn:konbini-ld:o:"
#: Last-observed time of each entity (provenance graph): what the time-aware upsert compares.
LAST_OBSERVED = KS + "lastObservedAt"
#: Per entity, the properties whose stored value comes from an observation older than its last
#: one, with that observation's time (one ``IRI TIME`` line each).
PROPERTY_TIMES = KS + "propertyTimes"

#: The counters kept as series: every count the API sends about an audio, a person or a video
#: (plays are ``viewCount``). Page sizes (``itemCount``, ``as:totalItems``) are not counters of
#: an entity and are not kept.
COUNTERS: frozenset[str] = frozenset(
    KS + name
    for name in (
        "videoCount", "followerCount", "followingCount", "likeCount", "likedCount", "mediaCount",
        "viewCount", "commentCount", "shareCount", "saveCount", "repostCount",
    )
)

#: Prefix of the deterministic IRIs that replace blank nodes (skolem IRIs).
GENID = "urn:konbini-ld:genid:"
#: Prefix of provenance activity IRIs.
OBSERVATION = "urn:konbini-ld:observation:"

PREFIXES: dict[str, str] = {
    "as": AS,
    "ks": KS,
    "ksh": KSH,
    "prov": PROV,
    "xsd": XSD,
    "rdf": RDF,
    "dcterms": DCTERMS,
    "sosa": SOSA,
}


def is_genid(iri: str) -> bool:
    """True for the skolem IRIs konbini-ld mints for objects without an ``id``.

    >>> is_genid("urn:konbini-ld:genid:0f3c")
    True
    >>> is_genid("https://www.tiktok.com/@khaby.lame")
    False
    """
    return iri.startswith(GENID)
