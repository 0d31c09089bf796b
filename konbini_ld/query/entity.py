"""One entity as a description a person or a crawler can follow: what the store holds about an
IRI, bounded so that a creator with thousands of videos is still one small answer.

A description holds:

* its facts: every triple of the data graph about it;
* the nested objects it owns (images, links, places: the skolem IRIs it points to, and theirs);
* what points to it (videos using an audio, audios and videos of a creator): a page of at most
  ``limit`` links from other entities, with the total, so that the next page can be asked for;
* the type and name of every entity it links to or is linked from (to show links by name);
* its provenance: when it was last observed, and the newest :data:`MAX_ACTIVITIES` observations
  (request URL or file, time), with their total;
* its counters' history: the newest :data:`MAX_POINTS` observations of its counters.

Parameters reach the engine as bound terms (``substitutions``) or as term lookups, never as
query text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import pyoxigraph as ox

from ..engines.base import Engine, select
from ..errors import UsageError
from ..vocab import AS, DATA_GRAPH, GENID, HISTORY_GRAPH, KSH, LAST_OBSERVED, PROV, PROV_GRAPH, RDF, SOSA

__all__ = ["DEFAULT_LIMIT", "HYDRA", "MAX_ACTIVITIES", "MAX_IRI", "MAX_POINTS", "EntityDescription", "Neighbour",
           "Observed", "check_iri", "describe_entity", "known_entities"]

#: Links to an entity listed per page.
DEFAULT_LIMIT = 100
#: Observations (provenance activities) listed at most, newest first.
MAX_ACTIVITIES = 20
#: Observations read at most to find the newest ones.
_MAX_ACTIVITIES_READ = 5000
#: History observations listed at most, newest first.
MAX_POINTS = 1000
#: Nested objects followed at most, and how deep.
_MAX_OWNED, _MAX_DEPTH = 500, 6
#: Characters an IRI asked for may hold.
MAX_IRI = 4096
#: Schemes of the IRIs the store can hold (SPEC: the API's and the project's own).
_SCHEMES = ("http://", "https://", "urn:")
HYDRA = "http://www.w3.org/ns/hydra/core#"
FOAF = "http://xmlns.com/foaf/0.1/"
DCTERMS = "http://purl.org/dc/terms/"

_DATA, _PROV, _HISTORY = ox.NamedNode(DATA_GRAPH), ox.NamedNode(PROV_GRAPH), ox.NamedNode(HISTORY_GRAPH)
_TYPE = ox.NamedNode(RDF + "type")
_NAME, _USERNAME, _CONTENT = ox.NamedNode(AS + "name"), ox.NamedNode(AS + "preferredUsername"), \
    ox.NamedNode(AS + "content")
_LAST = ox.NamedNode(LAST_OBSERVED)
_GENERATED, _USED, _ENDED = ox.NamedNode(PROV + "wasGeneratedBy"), ox.NamedNode(PROV + "used"), \
    ox.NamedNode(PROV + "endedAtTime")
_FOI, _RESULT_TIME = ox.NamedNode(SOSA + "hasFeatureOfInterest"), ox.NamedNode(SOSA + "resultTime")

Term = ox.NamedNode | ox.BlankNode | ox.Literal | ox.Triple


def check_iri(text: str) -> ox.NamedNode:
    """The IRI asked for, as a term, if it is one the store could hold.

    >>> check_iri("https://www.tiktok.com/@khaby.lame").value
    'https://www.tiktok.com/@khaby.lame'
    >>> check_iri("javascript:alert(1)")
    Traceback (most recent call last):
    ...
    konbini_ld.errors.UsageError: only http(s) and urn: IRIs are held in the store, not 'javascript:alert(1)'

    :raises UsageError: not an IRI, too long, or of a scheme the store never holds.
    """
    if len(text) > MAX_IRI:
        raise UsageError(f"an IRI may hold at most {MAX_IRI} characters, not {len(text)}")
    if not text.lower().startswith(_SCHEMES):
        raise UsageError(f"only http(s) and urn: IRIs are held in the store, not {text[:80]!r}")
    try:
        return ox.NamedNode(text)
    except ValueError:
        raise UsageError(f"{text[:80]!r} is not an IRI") from None


@dataclass(frozen=True, slots=True)
class Neighbour:
    """An entity linked to or from the one described: its types and a name to show."""

    iri: str
    types: tuple[str, ...] = ()
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Observed:
    """One observation of the entity (a provenance activity): when, and from which request or file."""

    activity: str
    at: str | None
    used: str | None


@dataclass(slots=True)
class EntityDescription:
    """What the store holds about one IRI (see the module's description)."""

    iri: str
    facts: list[tuple[ox.NamedNode, Term]] = field(default_factory=list)
    owned: dict[str, list[tuple[ox.NamedNode, Term]]] = field(default_factory=dict)
    #: links to the entity on this page: (subject, predicate)
    inbound: list[tuple[str, str]] = field(default_factory=list)
    inbound_total: int = 0
    page: int = 1
    limit: int = DEFAULT_LIMIT
    neighbours: dict[str, Neighbour] = field(default_factory=dict)
    last_observed: str | None = None
    observations: list[Observed] = field(default_factory=list)
    observations_total: int = 0
    #: history observations, newest first: (node, time, [(counter local name, value)])
    history: list[tuple[str, str, list[tuple[str, ox.Literal]]]] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        return sorted(o.value for p, o in self.facts if p == _TYPE and isinstance(o, ox.NamedNode))

    def value(self, predicate: str, owner: str | None = None) -> Term | None:
        """The first value of ``predicate`` on the entity (or on an object it owns)."""
        pairs = self.facts if owner is None else self.owned.get(owner, [])
        return next((o for p, o in pairs if p.value == predicate), None)

    def label(self) -> str:
        """A name to show: ``as:name``, else the username, else the IRI's last segment."""
        for predicate in (AS + "name", AS + "preferredUsername"):
            found = self.value(predicate)
            if isinstance(found, ox.Literal) and found.value.strip():
                return found.value
        return self.iri.rstrip("/").rsplit("/", 1)[-1] or self.iri

    def image(self) -> str | None:
        """The URL of its image or icon (https only: shown in a page without mixed content)."""
        for predicate in (AS + "image", AS + "icon"):
            node = self.value(predicate)
            if isinstance(node, ox.NamedNode):
                url = self.value(AS + "url", node.value) if node.value in self.owned else node
                if isinstance(url, ox.NamedNode) and url.value.lower().startswith("https://"):
                    return url.value
        return None

    @property
    def has_next(self) -> bool:
        return self.page * self.limit < self.inbound_total

    def counters(self) -> dict[str, list[tuple[str, float]]]:
        """Each counter's series, oldest first: name → [(time, value)]."""
        series: dict[str, list[tuple[str, float]]] = {}
        for _node, at, values in reversed(self.history):
            for name, literal in values:
                try:
                    series.setdefault(name, []).append((at, float(literal.value)))
                except ValueError:
                    continue
        return series

    def triples(self, document: str | None = None, *, next_page: str | None = None,
                dataset: str | None = None) -> Iterator[ox.Triple]:
        """The description as RDF: facts, owned objects, links to it (this page) with their
        subjects' types and names, provenance, history; and, when ``document`` (its URL) is
        given, the document's own description (its topic, the links' total, the next page)."""
        entity = ox.NamedNode(self.iri)
        for p, o in self.facts:
            yield ox.Triple(entity, p, o)
        for owner, pairs in self.owned.items():
            for predicate, value in pairs:
                yield ox.Triple(ox.NamedNode(owner), predicate, value)
        for subject, link in self.inbound:
            yield ox.Triple(ox.NamedNode(subject), ox.NamedNode(link), entity)
        for n in self.neighbours.values():
            node = ox.NamedNode(n.iri)
            for t in n.types:
                yield ox.Triple(node, _TYPE, ox.NamedNode(t))
            if n.label is not None and AS + "Video" not in n.types:
                yield ox.Triple(node, _NAME, ox.Literal(n.label))
        if self.last_observed is not None:
            yield ox.Triple(entity, _LAST, ox.Literal(self.last_observed, datatype=ox.NamedNode(_XSD_DATETIME)))
        for seen in self.observations:
            activity = ox.NamedNode(seen.activity)
            yield ox.Triple(entity, _GENERATED, activity)
            if seen.at is not None:
                yield ox.Triple(activity, _ENDED, ox.Literal(seen.at, datatype=ox.NamedNode(_XSD_DATETIME)))
            if seen.used is not None:
                yield ox.Triple(activity, _USED, ox.NamedNode(seen.used))
        for node_iri, at, values in self.history:
            node = ox.NamedNode(node_iri)
            yield ox.Triple(node, _FOI, entity)
            yield ox.Triple(node, _RESULT_TIME, ox.Literal(at, datatype=ox.NamedNode(_XSD_DATETIME)))
            for name, literal in values:
                yield ox.Triple(node, ox.NamedNode(KSH + name), literal)
        if document is not None:
            doc = ox.NamedNode(document)
            yield ox.Triple(doc, _TYPE, ox.NamedNode(FOAF + "Document"))
            yield ox.Triple(doc, ox.NamedNode(FOAF + "primaryTopic"), entity)
            yield ox.Triple(doc, ox.NamedNode(HYDRA + "totalItems"), ox.Literal(str(self.inbound_total),
                                                                                datatype=ox.NamedNode(_XSD_INT)))
            yield ox.Triple(doc, ox.NamedNode(HYDRA + "itemsPerPage"), ox.Literal(str(self.limit),
                                                                                  datatype=ox.NamedNode(_XSD_INT)))
            if next_page is not None and self.has_next:
                yield ox.Triple(doc, ox.NamedNode(HYDRA + "next"), ox.NamedNode(next_page))
            if dataset is not None:
                yield ox.Triple(doc, ox.NamedNode(DCTERMS + "isPartOf"), ox.NamedNode(dataset))


_XSD_DATETIME = "http://www.w3.org/2001/XMLSchema#dateTime"
_XSD_INT = "http://www.w3.org/2001/XMLSchema#integer"



def _inbound_query(limit: int, offset: int) -> str:
    """The page of links to ``?entity`` (bound as a term), audios first (the audios of a creator
    before its videos). LIMIT and OFFSET cannot be bound in SPARQL: they are written as the
    integers they are, never as text from a request."""
    return (f"SELECT ?entity ?s ?p WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?s ?p ?entity FILTER (isIRI(?s) && ?s != ?entity "
            f"&& !STRSTARTS(STR(?s), \"{GENID}\")) BIND (EXISTS {{ ?s a <{AS}Audio> }} AS ?audio) }} }} "
            f"ORDER BY ?p DESC(?audio) ?s LIMIT {int(limit):d} OFFSET {int(offset):d}")


_INBOUND_COUNT = f"""SELECT ?entity (COUNT(*) AS ?n) WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?s ?p ?entity
  FILTER (isIRI(?s) && ?s != ?entity && !STRSTARTS(STR(?s), "{GENID}")) }} }} GROUP BY ?entity"""
_HISTORY_NODES = f"""SELECT ?entity ?node ?t WHERE {{ GRAPH <{HISTORY_GRAPH}> {{
  ?node <{SOSA}hasFeatureOfInterest> ?entity ; <{SOSA}resultTime> ?t }} }} ORDER BY DESC(?t) LIMIT {MAX_POINTS}"""


def _is_genid(term: Term) -> bool:
    return isinstance(term, ox.NamedNode) and term.value.startswith(GENID)


def describe_entity(engine: Engine, iri: str, *, page: int = 1, limit: int = DEFAULT_LIMIT) -> EntityDescription | None:
    """What the store holds about ``iri`` (``None``: nothing, neither facts nor links to it).

    :param page: the page of links to the entity (from 1), ``limit`` links a page.
    :raises UsageError: ``iri`` is not an IRI the store could hold, or ``page`` is below 1.
    """
    entity = check_iri(iri)
    if page < 1 or limit < 1:
        raise UsageError("the page of links starts at 1")
    out = EntityDescription(iri, page=page, limit=limit)
    out.facts = [(q.predicate, q.object) for q in engine.quads_for_subjects([entity], _DATA)]
    if not out.facts:  # not an entity of the data: an observation (provenance, history) is described by its own graph
        out.facts = [(q.predicate, q.object) for q in islice(engine.quads_for_subjects([entity], None), _MAX_OWNED)]
    out.owned = _owned(engine, [o for _, o in out.facts])
    offset = (page - 1) * limit
    rows = select(engine, _inbound_query(limit, offset), substitutions={"entity": entity})
    out.inbound = [(s["s"].value, s["p"].value) for s in rows]
    if len(out.inbound) < limit and (out.inbound or page == 1):  # the last page: the total is known
        out.inbound_total = offset + len(out.inbound)
    else:
        count = list(select(engine, _INBOUND_COUNT, substitutions={"entity": entity}))
        out.inbound_total = int(count[0]["n"].value) if count and count[0]["n"] is not None else 0
    _provenance(engine, entity, out)
    _history(engine, entity, out)
    if not out.facts and not out.inbound_total and out.last_observed is None and not out.history:
        return None
    linked = {o.value for _, o in out.facts if isinstance(o, ox.NamedNode) and not _is_genid(o)}
    linked |= {o.value for pairs in out.owned.values() for _, o in pairs
               if isinstance(o, ox.NamedNode) and not _is_genid(o)}
    linked |= {s for s, _ in out.inbound}
    linked.discard(iri)
    out.neighbours = {n.iri: n for n in neighbours(engine, sorted(linked))}
    return out


def neighbours(engine: Engine, iris: Iterable[str]) -> Iterator[Neighbour]:
    """The type and name of each of ``iris`` that the data graph describes (typed subjects only)."""
    found: dict[str, tuple[set[str], dict[str, str]]] = {}
    nodes = [ox.NamedNode(i) for i in iris]
    for start in range(0, len(nodes), 200):
        for q in engine.quads_for_subjects(nodes[start:start + 200], _DATA, (_TYPE, _NAME, _USERNAME, _CONTENT)):
            types, names = found.setdefault(_iri(q.subject), (set(), {}))
            if q.predicate == _TYPE and isinstance(q.object, ox.NamedNode):
                types.add(q.object.value)
            elif isinstance(q.object, ox.Literal) and q.predicate.value not in names:
                names[q.predicate.value] = q.object.value
    for iri, (types, names) in found.items():
        if types:
            label = names.get(AS + "name") or names.get(AS + "preferredUsername") or names.get(AS + "content")
            yield Neighbour(iri, tuple(sorted(types)), label)


def known_entities(engine: Engine) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Every entity with a page: the typed subjects of the data graph that are not nested objects
    (skolem IRIs), with their types, in IRI order."""
    sparql = f"""SELECT ?e ?type WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?e a ?type
      FILTER (isIRI(?e) && !STRSTARTS(STR(?e), "{GENID}")) }} }}"""
    found: dict[str, list[str]] = {}
    for s in select(engine, sparql):  # (sorted here: cheaper than ORDER BY on a large store)
        found.setdefault(s["e"].value, []).append(s["type"].value)
    for iri in sorted(found):
        yield iri, tuple(sorted(found[iri]))


def _owned(engine: Engine, values: list[Term]) -> dict[str, list[tuple[ox.NamedNode, Term]]]:
    owned: dict[str, list[tuple[ox.NamedNode, Term]]] = {}
    frontier = [v for v in values if _is_genid(v)]
    for _ in range(_MAX_DEPTH):
        todo = [ox.NamedNode(v.value) for v in dict.fromkeys(frontier) if isinstance(v, ox.NamedNode)
                and v.value not in owned][: _MAX_OWNED - len(owned)]
        if not todo:
            break
        frontier = []
        for q in engine.quads_for_subjects(todo, _DATA):
            owned.setdefault(_iri(q.subject), []).append((q.predicate, q.object))
            if _is_genid(q.object):
                frontier.append(q.object)
    return owned


def _provenance(engine: Engine, entity: ox.NamedNode, out: EntityDescription) -> None:
    activities: list[ox.NamedNode] = []
    for q in engine.quads_for_subjects([entity], _PROV, (_LAST, _GENERATED)):
        if q.predicate == _LAST and isinstance(q.object, ox.Literal):
            out.last_observed = max(out.last_observed or "", q.object.value)
        elif q.predicate == _GENERATED and isinstance(q.object, ox.NamedNode):
            activities.append(q.object)
    out.observations_total = len(activities)
    facts: dict[str, dict[str, str]] = {}
    for start in range(0, min(len(activities), _MAX_ACTIVITIES_READ), 200):
        for q in engine.quads_for_subjects(activities[start:start + 200], _PROV, (_USED, _ENDED)):
            if isinstance(q.object, (ox.NamedNode, ox.Literal)):
                facts.setdefault(_iri(q.subject), {}).setdefault(q.predicate.value, q.object.value)
    listed = [Observed(a.value, facts.get(a.value, {}).get(PROV + "endedAtTime"),
                       facts.get(a.value, {}).get(PROV + "used")) for a in activities]
    listed.sort(key=lambda o: (o.at or "", o.activity), reverse=True)
    out.observations = listed[:MAX_ACTIVITIES]


def _history(engine: Engine, entity: ox.NamedNode, out: EntityDescription) -> None:
    nodes = [(s["node"].value, s["t"].value) for s in select(engine, _HISTORY_NODES, substitutions={"entity": entity})]
    values: dict[str, list[tuple[str, ox.Literal]]] = {}
    terms = [ox.NamedNode(n) for n, _ in nodes]
    for start in range(0, len(terms), 200):
        for q in engine.quads_for_subjects(terms[start:start + 200], _HISTORY):
            if q.predicate.value.startswith(KSH) and isinstance(q.object, ox.Literal):
                values.setdefault(_iri(q.subject), []).append((q.predicate.value[len(KSH):], q.object))
    out.history = [(n, at, sorted(values.get(n, []), key=lambda v: v[0])) for n, at in nodes]



def _iri(term: ox.NamedNode | ox.BlankNode | ox.Triple) -> str:
    return term.value if isinstance(term, ox.NamedNode) else str(term)
