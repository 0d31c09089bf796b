"""JSON-LD → RDF with pyld, against the bundled contexts only.

:func:`expand` is the engine of record: one normalised document in, the list of
its triples (as pyoxigraph terms) out. Blank nodes pyld still creates (the
``rdf:List`` cells of ``orderedItems``) are replaced by skolem IRIs derived from
the node that refers to them, and every literal is checked against its
datatype's lexical space, so no ill-typed literal can reach the store.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pyoxigraph as ox

from .contexts import document_loader
from .errors import ContextError, ExpandError
from .namespaces import GENID, RDF, XSD
from .normalize import EXACT_DOUBLE

__all__ = ["check_literal", "expand", "nt_iri", "nt_literal", "to_lines", "to_triples"]

_LEXICAL = {
    XSD + "integer": re.compile(r"[+-]?\d+"),
    XSD + "nonNegativeInteger": re.compile(r"\+?\d+"),
    XSD + "boolean": re.compile(r"true|false|1|0"),
    XSD + "double": re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([Ee][+-]?\d+)?|[+-]?INF|NaN"),
    XSD + "float": re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([Ee][+-]?\d+)?|[+-]?INF|NaN"),
    XSD + "decimal": re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)"),
    XSD + "dateTime": re.compile(r"-?\d{4,}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"),
    XSD + "duration": re.compile(
        r"-?P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?"
    ),
}
_RDF_FIRST, _RDF_REST = RDF + "first", RDF + "rest"


# N-Triples escapes, exactly as Oxigraph writes them (so strings compare equal to str(term))
_ESCAPES = {i: f"\\u{i:04X}" for i in range(0x20)}
_ESCAPES.update({0x7F: "\\u007F", 0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f",
                 0x0D: "\\r"})
_XSD_STRING = XSD + "string"


def nt_literal(lexical: str, datatype: str | None = None, language: str | None = None) -> str:
    r"""A literal in N-Triples syntax.

    >>> print(nt_literal('say "hi"'), nt_literal("5", "http://www.w3.org/2001/XMLSchema#integer"))
    "say \"hi\"" "5"^^<http://www.w3.org/2001/XMLSchema#integer>
    """
    body = '"' + lexical.translate(_ESCAPES) + '"'
    if language:
        return f"{body}@{language}"
    if datatype and datatype != _XSD_STRING:
        return f"{body}^^<{datatype}>"
    return body


def nt_iri(iri: str) -> str:
    """An IRI in N-Triples syntax, checked by Oxigraph's IRI parser.

    :raises ExpandError: not a valid absolute IRI.
    """
    try:
        ox.NamedNode(iri)
    except ValueError as exc:
        raise ExpandError(f"invalid IRI {iri!r}") from exc
    return f"<{iri}>"


def to_lines(pyld_triples: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Like :func:`to_triples`, as N-Triples terms (subject, predicate, object strings)."""
    return [(str(t.subject), str(t.predicate), str(t.object)) for t in to_triples(pyld_triples)]


def check_literal(value: str, datatype: str) -> bool:
    """True if ``value`` is in the lexical space of ``datatype`` (unknown datatypes pass).

    >>> check_literal("23", "http://www.w3.org/2001/XMLSchema#integer")
    True
    >>> check_literal("twenty", "http://www.w3.org/2001/XMLSchema#integer")
    False
    """
    pattern = _LEXICAL.get(datatype)
    return pattern is None or pattern.fullmatch(value) is not None


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
    return dataset.get("@default", [])


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
        iri = GENID + hashlib.sha256(f"{parent}\x00{predicate}\x00list".encode()).hexdigest()[:32]
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
            if datatype == EXACT_DOUBLE:
                datatype = XSD + "double"
            value = o["value"]
            if not check_literal(value, datatype):
                raise ExpandError(f"value {value!r} is not a valid {_short_dt(datatype)} (property {p['value']})")
            language = o.get("language")
            obj: ox.Literal | ox.NamedNode = (
                ox.Literal(value, language=language) if language else ox.Literal(value, datatype=ox.NamedNode(datatype))
            )
        else:
            obj = node(o)
        out.append(ox.Triple(subject, predicate, obj))
    return out


def _short_dt(datatype: str) -> str:
    return "xsd:" + datatype[len(XSD) :] if datatype.startswith(XSD) else datatype
