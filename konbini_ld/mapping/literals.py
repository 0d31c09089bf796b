"""Literals and IRIs as N-Triples text, in the forms the store keeps.

* :func:`nt_literal` / :func:`nt_iri` write terms exactly as Oxigraph writes them, so a
  statement konbini-ld produces compares equal, as text, to the one read back.
* ``canonical_*`` give the canonical lexical forms the store would turn a value into
  (a reload then changes nothing); :func:`check_literal` refuses ill-typed literals.
* :data:`EXACT_DOUBLE` is the stand-in datatype that carries doubles through pyld
  untouched (pyld would round them to 16 digits); :func:`real_datatype` maps it back.
"""

from __future__ import annotations

import re
from datetime import datetime  # noqa: F401 - used by doctests of callers

import pyoxigraph as ox

from ..errors import ExpandError
from ..lexical import (  # noqa: F401 - the mapping's literal forms, in one place
    _DATETIME_PARTS,
    _DURATION,
    canonical_datetime,
    canonical_double,
    canonical_duration,
    duration_in_range,
    duration_literal,
    duration_seconds,
)
from ..vocab import XSD

__all__ = [
    "EXACT_DOUBLE",
    "canonical_datetime",
    "canonical_double",
    "canonical_duration",
    "check_literal",
    "duration_in_range",
    "duration_literal",
    "duration_seconds",
    "nt_iri",
    "nt_literal",
    "real_datatype",
    "short_datatype",
]

#: Stand-in datatype for ``xsd:double`` through pyld, which rewrites doubles in a 16-digit
#: canonical form (JSON-LD's toRdf rule) and so loses the last digit of some values;
#: :func:`konbini_ld.expand.to_triples` turns it back into ``xsd:double``.
EXACT_DOUBLE = "urn:konbini-ld:datatype:double"




def real_datatype(datatype: str) -> str:
    """The datatype a literal really has (``xsd:double`` for the stand-in).

    >>> real_datatype(EXACT_DOUBLE)
    'http://www.w3.org/2001/XMLSchema#double'
    """
    return XSD + "double" if datatype == EXACT_DOUBLE else datatype


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


def check_literal(value: str, datatype: str) -> bool:
    """True if ``value`` is in the lexical space of ``datatype`` (unknown datatypes pass).

    >>> check_literal("23", "http://www.w3.org/2001/XMLSchema#integer")
    True
    >>> check_literal("twenty", "http://www.w3.org/2001/XMLSchema#integer")
    False
    """
    pattern = _LEXICAL.get(datatype)
    return pattern is None or pattern.fullmatch(value) is not None


def short_datatype(datatype: str) -> str:
    return "xsd:" + datatype[len(XSD) :] if datatype.startswith(XSD) else datatype
