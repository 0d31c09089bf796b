"""``konbini-ld stats``: counts of what the graph holds, from the data, provenance and history graphs."""

from __future__ import annotations

from typing import Any

from ..engines.base import Engine, select
from ..model import Stats
from ..vocab import AS, DATA_GRAPH, HISTORY_GRAPH, KS, KSH, PROV, PROV_GRAPH, SOSA

__all__ = ["stats"]

_PREFIXES = f"""PREFIX as: <{AS}>
PREFIX ks: <{KS}>
PREFIX prov: <{PROV}>
PREFIX sosa: <{SOSA}>
"""


def stats(engine: Engine, archived: int) -> Stats:
    """Audios, persons, videos, triples, responses; last observation and fetch; credits spent."""

    def one(sparql: str) -> Any:
        row = next(iter(select(engine, _PREFIXES + sparql, union=False)))
        return row[0]

    def num(term: Any) -> int:
        return int(term.value) if term is not None else 0

    last = one(f"SELECT (MAX(?t) AS ?v) WHERE {{ GRAPH <{PROV_GRAPH}> {{ ?o prov:endedAtTime ?t }} }}")
    last_fetch = one(
        f"SELECT (MAX(?t) AS ?v) WHERE {{ GRAPH <{PROV_GRAPH}> {{ ?o ks:requested ?k ; prov:endedAtTime ?t }} }}"
    )
    return Stats(
        audios=num(one(f"SELECT (COUNT(DISTINCT ?a) AS ?v) WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?a a as:Audio }} }}")),
        persons=num(one(f"SELECT (COUNT(DISTINCT ?p) AS ?v) WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?p a as:Person }} }}")),
        # videos that use an audio (attachments typed as:Video are media files)
        videos=num(one(f"SELECT (COUNT(DISTINCT ?v) AS ?v2) WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?v ks:audio ?a }} }}")),
        triples=engine.count(),
        responses=num(one(f"SELECT (COUNT(?o) AS ?v) WHERE {{ GRAPH <{PROV_GRAPH}> {{ ?o prov:endedAtTime ?t }} }}")),
        archived=archived,
        last_observed=last.value if last is not None else None,
        last_fetch=last_fetch.value if last_fetch is not None else None,
        credits_spent=num(one(f"SELECT (SUM(?c) AS ?v) WHERE {{ GRAPH <{PROV_GRAPH}> {{ ?o ks:creditsUsed ?c }} }}")),
        points=num(one(f"SELECT (COUNT(?v) AS ?n) WHERE {{ GRAPH <{HISTORY_GRAPH}> {{ ?o ?measure ?v }} "
                       f"FILTER (STRSTARTS(STR(?measure), \"{KSH}\")) }}")),
    )
