"""The dataset's figures, as a VoID and DCAT description reports them: triples (in all and per
named graph), entities per class, the properties and vocabularies used, and the span of time
the data was observed in.

Computing them reads the whole store (seconds to tens of seconds on millions of triples): a
server keeps them per position of the archive (:func:`konbini_ld.apps.describe.FiguresCache`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..engines.base import Engine, select
from ..vocab import DATA_GRAPH, HISTORY_GRAPH, PROV, PROV_GRAPH, SOSA

__all__ = ["DatasetFigures", "dataset_figures", "namespace"]


@dataclass(slots=True)
class DatasetFigures:
    """What the dataset holds (see the module's description)."""

    triples: int = 0
    graphs: dict[str, int] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)
    properties: dict[str, int] = field(default_factory=dict)
    #: distinct subjects of the data graph
    entities: int = 0
    #: first and last observation times (provenance), and of the counters' history
    first_observed: str | None = None
    last_observed: str | None = None

    @property
    def vocabularies(self) -> list[str]:
        """The namespaces of the classes and properties used."""
        return sorted({namespace(i) for i in [*self.classes, *self.properties]} - {""})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DatasetFigures:
        return cls(**data)


def namespace(iri: str) -> str:
    """The namespace of a class or property IRI (up to its last ``#`` or ``/``).

    >>> namespace("https://www.w3.org/ns/activitystreams#Audio"), namespace("http://www.w3.org/ns/sosa/resultTime")
    ('https://www.w3.org/ns/activitystreams#', 'http://www.w3.org/ns/sosa/')
    """
    for mark in ("#", "/"):
        if mark in iri:
            return iri[: iri.rindex(mark) + 1]
    return iri[: iri.rindex(":") + 1] if ":" in iri else ""


def dataset_figures(engine: Engine) -> DatasetFigures:
    """Read the figures from the store (every graph; a few aggregate queries)."""
    out = DatasetFigures()
    for s in select(engine, "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g"):
        out.graphs[s["g"].value] = int(s["n"].value)
    out.triples = sum(out.graphs.values())
    for s in select(engine, f"SELECT ?class (COUNT(DISTINCT ?e) AS ?n) WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?e a ?class }} }} "
                            "GROUP BY ?class"):
        out.classes[s["class"].value] = int(s["n"].value)
    for s in select(engine, "SELECT ?p (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?p"):
        out.properties[s["p"].value] = int(s["n"].value)
    rows = list(select(engine, f"SELECT (COUNT(DISTINCT ?s) AS ?n) WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?s ?p ?o }} }}"))
    out.entities = int(rows[0]["n"].value) if rows and rows[0]["n"] is not None else 0
    span = list(select(engine, f"""SELECT (MIN(?t) AS ?first) (MAX(?t) AS ?last) WHERE {{
      {{ GRAPH <{PROV_GRAPH}> {{ ?a <{PROV}endedAtTime> ?t }} }} UNION
      {{ GRAPH <{HISTORY_GRAPH}> {{ ?o <{SOSA}resultTime> ?t }} }} }}"""))
    if span:
        first, last = span[0]["first"], span[0]["last"]
        out.first_observed = first.value if first is not None else None
        out.last_observed = last.value if last is not None else None
    return out
