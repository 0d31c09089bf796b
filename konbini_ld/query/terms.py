"""Query parameters as RDF terms: how a value given as text (``-p creator=…``, a form field)
or as a Python value becomes the term a query variable is bound to.

Used by both the named-query catalog (declared parameter types) and the query runner
(Python values); values are always bound as terms, never pasted into query text.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pyoxigraph as ox

from ..errors import UsageError
from ..vocab import XSD

__all__ = ["guess_term", "parse_term", "to_term"]

_NT_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"(?:@([A-Za-z]+(?:-[A-Za-z0-9]+)*)|\^\^<([^<>]+)>)?')


def parse_term(value: str, type_: str = "term") -> ox.NamedNode | ox.Literal:
    """Parse a parameter value into an RDF term of ``type_``.

    >>> parse_term("https://www.tiktok.com/@khaby.lame", "iri")
    <NamedNode value=https://www.tiktok.com/@khaby.lame>
    >>> parse_term("42", "integer")
    <Literal value=42 datatype=<NamedNode value=http://www.w3.org/2001/XMLSchema#integer>>

    :raises ValueError: the value does not fit ``type_``.
    """
    if type_ == "iri":
        iri = value[1:-1] if value.startswith("<") and value.endswith(">") else value
        if not re.match(r"[A-Za-z][A-Za-z0-9+.\-]*:", iri):
            raise ValueError(f"{value!r} is not an absolute IRI")
        try:
            return ox.NamedNode(iri)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid IRI: {exc}") from None
    if type_ == "string":
        return ox.Literal(value)
    if type_ == "integer":
        if not re.fullmatch(r"[+-]?\d+", value.strip()):
            raise ValueError(f"{value!r} is not an integer")
        return ox.Literal(str(int(value)), datatype=ox.NamedNode(XSD + "integer"))
    if type_ == "decimal":
        if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", value.strip()):
            raise ValueError(f"{value!r} is not a decimal number")
        return ox.Literal(value.strip(), datatype=ox.NamedNode(XSD + "decimal"))
    if type_ == "datetime":
        return _datetime(value)
    if type_ == "boolean":
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{value!r} is not true or false")
        return ox.Literal("true" if value.lower() in ("true", "1") else "false", datatype=ox.NamedNode(XSD + "boolean"))
    return guess_term(value, None)


def _datetime(value: str) -> ox.Literal:
    """An ISO 8601 time, or how long ago (``7d``, ``12h``: that long before now)."""
    from datetime import UTC, datetime

    from ..units import format_time, parse_duration, parse_time

    try:
        text = parse_time(value)
    except UsageError as not_time:
        try:
            ago = parse_duration(value)
        except UsageError as not_duration:
            if re.fullmatch(r"\s*(\d+(\.\d+)?\s*[smhdw]|P[\dDTHMS.]+)\s*", value, re.IGNORECASE):
                raise ValueError(str(not_duration)) from None  # a duration, but not one we take
            if re.match(r"\s*[+-]?\d{4,}-", value):
                raise ValueError(str(not_time)) from None  # a time, but not one we take
            raise ValueError(f"{value!r} is neither an ISO 8601 time nor a duration (7d, 12h)") from None
        text = format_time(datetime.now(UTC) - ago)
    return ox.Literal(text, datatype=ox.NamedNode(XSD + "dateTime"))


def guess_term(value: str, name: str | None = None) -> ox.NamedNode | ox.Literal:
    """Undeclared parameters: ``<iri>``, an N-Triples literal, an absolute http(s) IRI, or a plain string."""
    if value.startswith("<") and value.endswith(">"):
        return parse_term(value, "iri")
    m = _NT_LITERAL.fullmatch(value)
    if m:
        text = m.group(1).encode("utf-8").decode("unicode_escape") if "\\" in m.group(1) else m.group(1)
        if m.group(2):
            return ox.Literal(text, language=m.group(2))
        if m.group(3):
            return ox.Literal(text, datatype=ox.NamedNode(m.group(3)))
        return ox.Literal(text)
    if re.match(r"(https?|urn|file):\S+$", value):
        return parse_term(value, "iri")
    return ox.Literal(value)


def to_term(value: Any) -> Any:
    """A Python value, an rdflib term or a pyoxigraph term as a pyoxigraph term (strings are guessed)."""
    if isinstance(value, (ox.NamedNode, ox.Literal, ox.BlankNode)):
        return value
    try:
        from rdflib.term import Identifier
    except ImportError:  # pragma: no cover
        Identifier = ()  # type: ignore[assignment,misc]
    if isinstance(value, Identifier):
        from oxrdflib._converter import to_ox

        return to_ox(value)
    if isinstance(value, bool):
        return ox.Literal("true" if value else "false", datatype=ox.NamedNode(XSD + "boolean"))
    if isinstance(value, datetime):
        from ..units import format_time

        return ox.Literal(format_time(value), datatype=ox.NamedNode(XSD + "dateTime"))
    if isinstance(value, int):
        return ox.Literal(str(value), datatype=ox.NamedNode(XSD + "integer"))
    if isinstance(value, str):
        return guess_term(value, None)
    raise UsageError(f"cannot bind a {type(value).__name__} as an RDF term")
