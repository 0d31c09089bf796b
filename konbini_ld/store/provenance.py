"""Provenance (PROV-O) and the fetch ledger.

Every response ingested is a ``prov:Activity`` in the provenance graph: when it was
observed, what it used (the request URL or file), its body's SHA-256, and for API
responses what it cost and what was asked for (``ks:requested``, the request key),
its HTTP status and the next page's cursor. Each entity it described is linked to it
by ``prov:wasGeneratedBy`` (links accumulate: every observation is kept).

The fetch ledger is read back from those activities: request key → status and cursor.
The store treats keys as opaque strings; :mod:`konbini_ld.sources.konbini.endpoints`
says what they are.
"""

from __future__ import annotations

import hashlib

import pyoxigraph as ox

from ..engines.base import Engine, select
from ..lexical import observation_time
from ..mapping.literals import nt_iri, nt_literal
from ..model import LedgerEntry, Observation
from ..units import parse_credits
from ..urls import source_iri
from ..vocab import DATA_GRAPH, KS, OBSERVATION, PROV, PROV_GRAPH, RDF, XSD

__all__ = ["DATA", "GENERATED_BY", "PROV_G", "describe", "recorded_times", "ledger", "observation_iri", "recorded_shas"]

DATA = ox.NamedNode(DATA_GRAPH)
PROV_G = ox.NamedNode(PROV_GRAPH)
GENERATED_BY = f"<{PROV}wasGeneratedBy>"
_RDF_TYPE = f"<{RDF}type>"
_ACTIVITY = f"<{PROV}Activity>"
_USED = f"<{PROV}used>"
_ENDED = f"<{PROV}endedAtTime>"
_SHA = f"<{KS}responseSha256>"
_LINE = f"<{KS}sourceLine>"
_CREDITS_USED = f"<{KS}creditsUsed>"
_CREDITS_REMAINING = f"<{KS}creditsRemaining>"
_STATUS = f"<{KS}httpStatus>"
_REQUESTED = f"<{KS}requested>"
_NEXT_CURSOR = f"<{KS}nextCursor>"
_MAPPING_FAILED = f"<{KS}mappingFailed>"
_ATTEMPTED = f"<{KS}attempted>"
_REFUSED = f"<{KS}refusedBecause>"
_HEADER_EVIDENCE = f"<{KS}creditHeaderNotBelieved>"


def observation_iri(source: str, line: int | None, sha: str, at: str) -> str:
    """The activity IRI of a response: the same response from the same place at the same time is
    one activity (every purchase is one: the same body bought again is another)."""
    return OBSERVATION + hashlib.sha256(f"{source}\x00{line}\x00{sha}\x00{at}".encode()).hexdigest()[:32]


def _iri_ok(iri: str) -> bool:
    try:
        ox.NamedNode(iri)
    except ValueError:
        return False
    return True


def _int(value: int) -> str:
    return f'"{int(value)}"^^<{XSD}integer>'


def describe(o: Observation) -> tuple[str, list[tuple[str, str, str]]]:
    """The activity of one observation: its IRI (N-Triples) and its statements."""
    r = o.response
    used = source_iri(o.source_url or r.source)
    if not _iri_ok(used):  # (never from a mapped response; an archive of an older version may hold one)
        used = "urn:konbini-ld:source:" + hashlib.sha256(used.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    sha = o.body_digest()
    act = f"<{observation_iri(used, r.line, sha, observation_time(r.observed))}>"
    triples = [
        (act, _RDF_TYPE, _ACTIVITY),
        (act, _USED, nt_iri(used)),
        (act, _ENDED, nt_literal(r.observed, XSD + "dateTime")),
        (act, _SHA, nt_literal(sha)),
    ]
    if r.line is not None:
        triples.append((act, _LINE, _int(r.line)))
    # credit figures are evidence: only believable numbers are counted, the rest is kept as text
    evidence = dict(r.evidence or {})
    for prop, value, header, balance in ((_CREDITS_USED, o.credits_used, "X-Credits-Used", False),
                                         (_CREDITS_REMAINING, o.credits_remaining, "X-Credits-Remaining", True)):
        number = parse_credits(value, balance=balance)
        if number is not None:
            triples.append((act, prop, _int(number)))
        elif value is not None:
            evidence.setdefault(header, str(value)[:100])
    for header, raw in sorted(evidence.items()):
        triples.append((act, _HEADER_EVIDENCE, nt_literal(f"{header}: {raw}")))
    if r.key is not None:  # an answer kept as evidence was attempted, not bought
        triples.append((act, _ATTEMPTED if r.note is not None else _REQUESTED, nt_literal(r.key)))
    if r.note is not None:
        triples.append((act, _REFUSED, nt_literal(r.note)))
    if r.status is not None:
        triples.append((act, _STATUS, _int(r.status)))
    if not o.ok and o.mappable:
        triples.append((act, _MAPPING_FAILED, nt_literal("true", XSD + "boolean")))
    if o.next_cursor is not None:
        triples.append((act, _NEXT_CURSOR, nt_literal(o.next_cursor)))
    return act, triples


_LEDGER_QUERY = f"""
PREFIX ks: <{KS}>
PREFIX prov: <{PROV}>
SELECT ?key ?status ?next ?at WHERE {{
  GRAPH <{PROV_GRAPH}> {{
    ?o ks:requested ?key .
    OPTIONAL {{ ?o ks:httpStatus ?status }}
    OPTIONAL {{ ?o ks:nextCursor ?next }}
    OPTIONAL {{ ?o prov:endedAtTime ?at }}
  }}
}}
"""

_SHA_QUERY = f"""
PREFIX ks: <{KS}>
SELECT DISTINCT ?sha WHERE {{ GRAPH <{PROV_GRAPH}> {{ ?o ks:responseSha256 ?sha }} }}
"""


def ledger(engine: Engine) -> dict[str, LedgerEntry]:
    """What earlier runs already bought: request key → status, next page cursor, and when it
    was last bought (for ``--refresh-older-than``).

    Status 404 means "not found" (billed, so not asked again). A response that arrived but
    could not be mapped is in the ledger too (``ks:mappingFailed``): it is in the archive,
    and ``rebuild`` after an upgrade recovers it without buying it again. Of several
    purchases of one key, the latest answer counts.
    """
    latest: dict[str, tuple[str, LedgerEntry]] = {}
    for row in select(engine, _LEDGER_QUERY, union=False):
        key, status, cursor, at = row["key"], row["status"], row["next"], row["at"]
        when = observation_time(at.value) if at is not None else ""
        entry = LedgerEntry(int(status.value) if status is not None else 200, cursor.value if cursor else None,
                            when or None)
        previous = latest.get(key.value)
        if previous is None or (when, entry.status == 200) > (previous[0], previous[1].status == 200):
            latest[key.value] = (when, entry)
    return {key: entry for key, (_, entry) in latest.items()}


def recorded_times(engine: Engine, shas: list[str]) -> dict[str, tuple[str, ...]]:
    """For each body digest among ``shas`` that an observation already recorded, the times of
    its observations (konbini-ld's spelling)."""
    if not shas:
        return {}
    values = " ".join(nt_literal(sha) for sha in shas)
    query = (f"PREFIX ks: <{KS}>\nPREFIX prov: <{PROV}>\n"
             f"SELECT DISTINCT ?sha ?t WHERE {{ VALUES ?sha {{ {values} }} "
             f"GRAPH <{PROV_GRAPH}> {{ ?a ks:responseSha256 ?sha ; prov:endedAtTime ?t }} }}")
    out: dict[str, tuple[str, ...]] = {}
    for row in select(engine, query, union=False):
        if row[1] is not None:
            out[row[0].value] = (*out.get(row[0].value, ()), observation_time(row[1].value))
    return out


def recorded_shas(engine: Engine) -> list[str]:
    """The body digests of every response the provenance graph records."""
    return [row[0].value for row in select(engine, _SHA_QUERY, union=False)]
