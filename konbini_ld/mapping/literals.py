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
from decimal import Decimal

import pyoxigraph as ox

from ..errors import ExpandError
from ..vocab import XSD

__all__ = [
    "EXACT_DOUBLE",
    "canonical_datetime",
    "canonical_double",
    "canonical_duration",
    "check_literal",
    "duration_literal",
    "duration_seconds",
    "nt_iri",
    "nt_literal",
    "real_datatype",
    "short_datatype",
]

_DATETIME_PARTS = re.compile(r"(-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?")
_DURATION = re.compile(
    r"-?P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?"
)



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


def canonical_double(value: float) -> str:
    """The shortest digits that round-trip, without exponent: the form the store keeps.

    >>> canonical_double(1000.0), canonical_double(1e-7), canonical_double(0.1), canonical_double(-0.0)
    ('1000', '0.0000001', '0.1', '-0')
    """
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def canonical_datetime(text: str) -> str:
    """An ``xsd:dateTime`` in the store's canonical form (so a reload compares equal).

    >>> canonical_datetime("2020-03-15T00:00:00.000Z"), canonical_datetime("2020-03-15T00:00:00.50+00:00")
    ('2020-03-15T00:00:00Z', '2020-03-15T00:00:00.5Z')
    """
    m = _DATETIME_PARTS.fullmatch(text)
    if m is None:
        return text
    base, fraction, zone = m.groups()
    fraction = (fraction or "").rstrip("0")
    if fraction == ".":
        fraction = ""
    if zone in ("+00:00", "-00:00"):
        zone = "Z"
    return f"{base}{fraction}{zone or ''}"


def canonical_duration(text: str) -> str:
    """An ``xsd:duration`` in the store's canonical form.

    >>> canonical_duration("PT60S"), canonical_duration("P14M"), canonical_duration("P0D")
    ('PT1M', 'P1Y2M', 'PT0S')
    """
    m = _DURATION.fullmatch(text)
    if m is None:
        return text
    years, months, days, hours, minutes, seconds = m.groups()
    total_months = int(years or 0) * 12 + int(months or 0)
    total_seconds = (Decimal(days or 0) * 86400 + Decimal(hours or 0) * 3600 + Decimal(minutes or 0) * 60
                     + Decimal(seconds or 0))
    if not total_months and not total_seconds:
        return "PT0S"
    ym = (f"{total_months // 12}Y" if total_months >= 12 else "") + (f"{total_months % 12}M" if total_months % 12 else "")
    day_time = duration_literal(total_seconds)[1:] if total_seconds else ""
    return f"{'-' if text.startswith('-') else ''}P{ym}{day_time}"


def duration_literal(seconds: int | float | Decimal) -> str:
    """The canonical ``xsd:duration`` for a number of seconds (the form Oxigraph stores).

    >>> duration_literal(23), duration_literal(90), duration_literal(86400), duration_literal(0.5)
    ('PT23S', 'PT1M30S', 'P1D', 'PT0.5S')
    """
    total = Decimal(str(seconds)) if not isinstance(seconds, Decimal) else seconds
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{sign}P"
    if days:
        out += f"{int(days)}D"
    time = ""
    if hours:
        time += f"{int(hours)}H"
    if minutes:
        time += f"{int(minutes)}M"
    if secs:
        text = format(secs.normalize(), "f") if secs != secs.to_integral_value() else str(int(secs))
        time += f"{text}S"
    if time:
        out += "T" + time
    elif not days:
        out += "T0S"
    return out


def duration_seconds(text: str) -> int | float | None:
    m = _DURATION.fullmatch(text)
    if not m:
        raise ValueError(text)
    years, months, days, hours, minutes, seconds = m.groups()
    if years or months:
        return None  # calendar durations have no fixed number of seconds
    total = Decimal(days or 0) * 86400 + Decimal(hours or 0) * 3600 + Decimal(minutes or 0) * 60
    total += Decimal(seconds or 0)
    if text.startswith("-"):
        total = -total
    return int(total) if total == total.to_integral_value() else float(total)


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
