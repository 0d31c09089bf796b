"""JSON-LD → RDF with pyld, against the bundled contexts only.

:func:`expand` is the engine of record: one normalised document in, the list of
its triples (as pyoxigraph terms) out. Blank nodes pyld still creates (the
``rdf:List`` cells of ``orderedItems``) are replaced by skolem IRIs derived from
the node that refers to them, and every literal is checked against its
datatype's lexical space, so no ill-typed literal can reach the store.
"""

from __future__ import annotations

from typing import Any

import pyoxigraph as ox

from ..errors import ContextError, ExpandError
from ..vocab import XSD
from .contexts import document_loader
from .literals import check_literal, real_datatype, short_datatype
from .skolem import list_cell_iri

__all__ = ["expand", "to_lines", "to_triples"]

def to_lines(pyld_triples: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Like :func:`to_triples`, as N-Triples terms (subject, predicate, object strings)."""
    return [(str(t.subject), str(t.predicate), str(t.object)) for t in to_triples(pyld_triples)]


def expand(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Run pyld's JSON-LD → RDF algorithm on one normalised document.

    :returns: pyld's triple dicts for the default graph.
    :raises ContextError: the document names a context that is not bundled.
    :raises ExpandError: pyld rejects the document.
    """
    from pyld import jsonld

    try:
        dataset = jsonld.to_rdf(document, {"documentLoader": document_loader()})
    except jsonld.JsonLdError as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ContextError):
                raise ContextError(cause.message) from exc
            cause = getattr(cause, "cause", None) or cause.__cause__
        raise ExpandError(f"JSON-LD expansion failed: {_jsonld_message(exc)}") from exc
    triples: list[dict[str, Any]] = dataset.get("@default", [])
    return triples


def _jsonld_message(exc: Exception) -> str:
    parts = [str(getattr(exc, "message", "") or exc).strip().splitlines()[0]]
    code = getattr(exc, "code", None)
    if code:
        parts.append(f"({code})")
    return " ".join(parts)


def to_triples(pyld_triples: list[dict[str, Any]]) -> list[ox.Triple]:
    """Convert pyld's triples to pyoxigraph terms, skolemising list cells and checking literals.

    :raises ExpandError: a literal is not valid for its datatype or an IRI is malformed.
    """
    # pyld only emits blank nodes for rdf:List cells (normalisation gave every object an id).
    # Name each cell after the triple that points at it, so names are stable across loads.
    referrer: dict[str, tuple[str, str]] = {}
    for t in pyld_triples:
        o = t["object"]
        if o["type"] == "blank node":
            referrer[o["value"]] = (t["subject"]["value"], t["predicate"]["value"])
    names: dict[str, str] = {}

    def name(label: str) -> str:
        if label in names:
            return names[label]
        parent, predicate = referrer.get(label, ("", label))
        if parent.startswith("_:"):
            parent = name(parent)
        iri = list_cell_iri(parent, predicate)
        names[label] = iri
        return iri

    def node(term: dict[str, Any]) -> ox.NamedNode:
        value = term["value"]
        if term["type"] == "blank node":
            value = name(value)
        try:
            return ox.NamedNode(value)
        except ValueError as exc:
            raise ExpandError(f"invalid IRI {value!r}") from exc

    out = []
    cache: dict[str, ox.NamedNode] = {}
    for t in pyld_triples:
        s, p, o = t["subject"], t["predicate"], t["object"]
        sv = s["value"]
        subject = cache.get(sv) if s["type"] == "IRI" else None
        if subject is None:
            subject = cache[sv] = node(s) if s["type"] == "IRI" else node(s)
        predicate = cache.get(p["value"]) or cache.setdefault(p["value"], node(p))
        if o["type"] == "literal":
            datatype = o.get("datatype") or XSD + "string"
            datatype = real_datatype(datatype)
            value = o["value"]
            if not check_literal(value, datatype):
                raise ExpandError(f"value {value!r} is not a valid {short_datatype(datatype)} (property {p['value']})")
            language = o.get("language")
            obj: ox.Literal | ox.NamedNode = (
                ox.Literal(value, language=language) if language else ox.Literal(value, datatype=ox.NamedNode(datatype))
            )
        else:
            obj = node(o)
        out.append(ox.Triple(subject, predicate, obj))
    return out


