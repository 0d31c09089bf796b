"""Normalisation of API objects before JSON-LD expansion.

What JSON-LD alone would get wrong, fixed here before pyld sees the document:

* ``duration`` arrives as seconds (``23``) but ``as:duration`` is an
  ``xsd:duration``: it becomes ``"PT23S"`` and the seconds are kept as
  ``durationSeconds``.
* Values of the wrong JSON type for their key (a count that is a string, a flag
  that is a number…) are refused with :class:`~konbini_ld.errors.ExpandError`
  instead of becoming ill-typed literals. Ids given as numbers become strings.
* Keys no context defines are kept (they expand under ``ks:`` through the
  konbini context's ``@vocab``) and reported; keys that cannot be IRI local
  names are renamed to a percent-encoded ``ks:`` IRI.
* Nested objects without an ``id`` get a deterministic skolem IRI derived from
  their owner, key and content, so no blank node is ever produced and loading
  the same response twice yields the same graph.
* A collection page without an ``id`` gets ``{partOf}?cursor={cursor}``.

Values no store can hold faithfully are refused here, with their JSON path,
before anything is archived or written (:data:`LIMITS`): strings with lone
surrogates or over :data:`MAX_STRING_CHARS` characters, integers outside the
64-bit range SPARQL engines compute with, objects nested deeper than
:data:`MAX_DEPTH`, and IRIs with a scheme the API never sends (only ``http``,
``https``, and the project's own ``urn:konbini-ld:``; compact IRIs with a
context prefix such as ``as:`` expand to https IRIs and are accepted).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any
from urllib.parse import quote

from ..errors import ContextError, ExpandError
from ..vocab import COUNTERS, KS, XSD
from .contexts import API_CONTEXT, is_bundled_context_url, prefixes, terms
from .literals import (
    EXACT_DOUBLE,
    canonical_datetime,
    canonical_double,
    canonical_duration,
    duration_in_range,
    duration_literal,
    duration_seconds,
)
from .skolem import genid

__all__ = [
    "LIMITS",
    "MAX_DEPTH",
    "MAX_STRING_CHARS",
    "MAX_UNKNOWN_KEYS",
    "Normalized",
    "check_iri",
    "could_hold_bad_text",
    "normalize",
]

#: Objects and arrays nested deeper than this are refused (API objects nest 5 levels at most).
MAX_DEPTH = 64
#: Strings longer than this are refused: an N-Triples line must stay under the store's 16 MiB
#: parser buffer even when every character needs a 6-character escape.
MAX_STRING_CHARS = 2_000_000
#: Distinct keys no context defines in one answer past which it is refused: each becomes a
#: property of the graph (an answer of 600,000 such keys took 1.3 GB to load); the API sends a few.
MAX_UNKNOWN_KEYS = 1_000
#: The integer range stored as ``xsd:integer`` (what SPARQL engines compute with: 64 bits).
MIN_INTEGER, MAX_INTEGER = -(2**63), 2**63 - 1
#: The limits above, for messages and the README.
LIMITS = {"depth": MAX_DEPTH, "string_chars": MAX_STRING_CHARS, "integer": (MIN_INTEGER, MAX_INTEGER),
          "unknown_keys": MAX_UNKNOWN_KEYS}
_ALLOWED_SCHEMES = ("http://", "https://", "urn:konbini-ld:")
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")

_PAGE_TYPES = {"OrderedCollectionPage", "CollectionPage"}
_ID_STRING_KEYS = {"userId", "internalId", "entityId", "cursor", "nextCursor"}
_MAP_KEYS = {"headers"}  # free-form maps: their keys are data, not vocabulary
_LOCAL_NAME = re.compile(r"[^\W\d][\w.\-]*")
_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\x00-\x20<>\"{}|\\^`]*")
_DATETIME = re.compile(r"-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
@dataclass(slots=True)
class Normalized:
    """A document ready for expansion.

    :ivar document: the JSON-LD object (a new dict; the input is not modified).
    :ivar unknown_keys: keys no context defines, as ``"Type.key"`` → the IRI they were kept under.
    :ivar warnings: values kept as sent that cannot be right (a negative count), with their JSON paths.
    """

    document: dict[str, Any]
    unknown_keys: dict[str, str] = field(default_factory=dict)
    #: values kept as sent that cannot be right (a negative count), each ``"$.path: why"``
    warnings: list[str] = field(default_factory=list)


@cache
def _kinds() -> dict[str, str]:
    kinds: dict[str, str] = {}
    for key, term in terms().items():
        if key[:1].isupper():
            continue  # class names
        if term.container == "@language":
            kind = "langmap"
        elif term.type == "@id":
            kind = "ref"
        elif term.type in (XSD + "integer",):
            kind = "int"
        elif term.type == XSD + "nonNegativeInteger":
            kind = "nonneg"
        elif term.type == XSD + "boolean":
            kind = "bool"
        elif term.type == XSD + "dateTime":
            kind = "datetime"
        elif term.type in (XSD + "float", XSD + "double"):
            kind = "number"
        elif term.type == XSD + "duration":
            kind = "duration"
        else:
            kind = "text"
        kinds[key] = kind
    for key in _ID_STRING_KEYS:
        kinds[key] = "idstr"
    for key in _MAP_KEYS:
        kinds[key] = "map"
    kinds["durationSeconds"] = "number"
    for key in ("width", "height", "totalItems", "startIndex"):
        kinds[key] = "nonneg"  # ActivityStreams says non-negative; stored as xsd:integer
    return kinds


@cache
def _datatypes() -> dict[str, str]:
    return {k: t.type for k, t in terms().items() if t.type and t.type.startswith(XSD)}


def _double(value: float, datatype: str = XSD + "double") -> dict[str, str]:
    """A value object keeping every digit of a float, in the store's canonical form."""
    return {"@value": canonical_double(value), "@type": EXACT_DOUBLE if datatype == XSD + "double" else datatype}


@cache
def _known_types() -> frozenset[str]:
    return frozenset(k for k in terms() if k[:1].isupper())


def check_iri(value: str) -> str | None:
    """Why ``value`` is not accepted as an IRI, or ``None`` when it is.

    >>> check_iri("https://www.tiktok.com/@x"), check_iri("as:Audio")
    (None, None)
    >>> check_iri("javascript:alert(1)")
    "scheme 'javascript:' is not accepted (only http, https and urn:konbini-ld:)"
    """
    if not _IRI.fullmatch(value):
        return "not an absolute IRI"
    lowered = value[:16].lower()
    if lowered.startswith(_ALLOWED_SCHEMES):
        return None
    head, _, rest = value.partition(":")
    if head in prefixes() and not rest.startswith("//"):
        return None  # a compact IRI the contexts expand (as:Audio → https://www.w3.org/ns/activitystreams#Audio)
    return f"scheme {head.lower() + ':'!r} is not accepted (only http, https and urn:konbini-ld:)"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class _Walker:
    def __init__(self, check_text: bool = True) -> None:
        self.check_text = check_text
        self.unknown: dict[str, str] = {}
        self.kept: set[str] = set()  # (the properties keys no context defines became, free ones too)
        self.warnings: list[str] = []
        self.kinds = _kinds()
        self.datatypes = _datatypes()
        #: the nodes with an id met so far in this document, as given and as normalised: a copy
        #: met again (a page repeats its audio in each of its 30 videos, and a creator in each of
        #: theirs) says the same statements, so it becomes a reference to the first
        self.met: dict[str, tuple[dict[str, Any], str]] = {}

    def fail(self, path: str, message: str) -> ExpandError:
        return ExpandError(f"{path}: {message}")

    def text(self, v: str, path: str) -> str:
        """A string value or key, refused when no store can hold it faithfully."""
        if not self.check_text:
            return v
        if len(v) > MAX_STRING_CHARS:
            raise self.fail(path, f"a string of {len(v):,} characters is over the {MAX_STRING_CHARS:,} limit")
        if _SURROGATE.search(v):
            m = _SURROGATE.search(v)
            assert m is not None
            raise self.fail(
                path, f"lone surrogate \\u{ord(m.group()):04x} at character {m.start()}: not valid Unicode text"
            )
        return v

    def integer(self, v: int, path: str) -> int:
        if not MIN_INTEGER <= v <= MAX_INTEGER:
            digits = len(str(abs(v))) if abs(v) < 10**4000 else "thousands of"
            raise self.fail(path, f"an integer of {digits} digits is outside the 64-bit range SPARQL computes with")
        return v

    def iri(self, v: str, path: str) -> str:
        self.text(v, path)
        why = check_iri(v)
        if why is not None:
            raise self.fail(path, f"{why}: {_short(v)}")
        return v

    def depth(self, path: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self.fail(path, f"nested more than {MAX_DEPTH} levels deep")

    # -- nodes ---------------------------------------------------------------

    def node(
        self, obj: dict[str, Any], owner: str, key: str, path: str, depth: int = 0, *, free: bool = False
    ) -> dict[str, Any]:
        self.depth(path, depth)
        out: dict[str, Any] = {}
        node_id = obj.get("id", obj.get("@id"))
        if isinstance(node_id, str) and depth:
            first = self.met.get(node_id)
            if first is not None and (first[0] is obj or first[0] == obj):
                return {"id": first[1]}
        if node_id is not None:
            if not isinstance(node_id, str):
                raise self.fail(f"{path}.id", f"must be an absolute IRI string, got {_type_name(node_id)} {_short(node_id)}")
            out["id"] = self.iri(node_id, f"{path}.id")
        elif owner:
            out["id"] = genid(owner, key, obj)
        types = self.types(obj, path)
        type_names = [t for t in types if isinstance(t, str)]
        label = type_names[0] if type_names else (key or "object")
        if types:
            out["type"] = types if len(types) > 1 else types[0]
        if "id" not in out:
            out["id"] = self.top_level_id(obj, type_names)
        me = out["id"]
        kinds, fast = self.kinds, not self.check_text
        for k, v in obj.items():
            if k in ("id", "@id", "type", "@type"):
                continue
            kind = kinds.get(k)
            if fast and kind is not None:  # the common leaves, in line: what value() would return for them
                t = type(v)
                if t is str:
                    if kind == "text" or kind == "idstr" or (
                            kind == "ref" and v.startswith(("https://", "http://")) and _IRI.fullmatch(v)):
                        out[k] = v
                        continue
                elif t is int:
                    if (kind == "int" or kind == "nonneg") and 0 <= v <= MAX_INTEGER:
                        out[k] = v
                        continue
                elif t is bool and kind == "bool":
                    out[k] = v
                    continue
            where = f"{path}.{k}"
            if k == "@context":
                self.check_context(v, path)
                out[k] = v
                continue
            if self.check_text:
                self.text(k, where)
            if k.startswith("@"):
                raise self.fail(where, "JSON-LD keywords other than @context, @id and @type are not accepted")
            if v is None:
                continue
            if kind is None:
                target = k if _LOCAL_NAME.fullmatch(k) else KS + quote(k, safe="")
                self.keep(target, where)
                if not free:
                    self.unknown.setdefault(f"{label}.{k}", target if target != k else KS + k)
                out[target] = self.free(v, me, k, where, depth + 1)
            else:
                out[k] = self.value(kind, v, me, k, where, depth + 1)
        if "duration" in out and "durationSeconds" not in obj:
            self.split_duration(out, path)
        if isinstance(node_id, str) and depth:
            self.met.setdefault(node_id, (obj, me))
        return out

    def top_level_id(self, obj: dict[str, Any], type_names: list[str]) -> str:
        part_of, cursor = obj.get("partOf"), obj.get("cursor")
        if _PAGE_TYPES.intersection(type_names) and isinstance(part_of, str) and check_iri(part_of) is None:
            if isinstance(cursor, (str, int)) and not isinstance(cursor, bool):
                sep = "&" if "?" in part_of else "?"
                return f"{part_of}{sep}cursor={quote(str(cursor), safe='')}"
        return genid("", "", obj)

    def types(self, obj: dict[str, Any], path: str) -> list[str]:
        raw = obj.get("type", obj.get("@type"))
        if raw is None:
            return []
        values = raw if isinstance(raw, list) else [raw]
        out = []
        for t in values:
            if not isinstance(t, str) or not t:
                raise self.fail(f"{path}.type", f"must be a non-empty string, got {_type_name(t)} {_short(t)}")
            self.text(t, f"{path}.type")
            if t in _known_types() or t.startswith(("as:", "ks:")):
                out.append(t)
                continue
            if _IRI.fullmatch(t) and "/" in t:
                out.append(self.iri(t, f"{path}.type"))
                continue
            target = t if _LOCAL_NAME.fullmatch(t) else KS + quote(t, safe="")
            self.keep(target, f"{path}.type")
            self.unknown.setdefault(f"type {t}", target if target != t else KS + t)
            out.append(target)
        return out

    def keep(self, target: str, where: str) -> None:
        """Count a property or class no context defines (refused past :data:`MAX_UNKNOWN_KEYS`)."""
        self.kept.add(target)
        if len(self.kept) > MAX_UNKNOWN_KEYS:
            raise self.fail(where, f"more than {MAX_UNKNOWN_KEYS:,} distinct keys and types no context defines "
                                   "(each would be a property or a class of the graph)")

    def check_context(self, value: Any, path: str) -> None:
        for url in value if isinstance(value, list) else [value]:
            if not is_bundled_context_url(url):
                shown = _short(url) if isinstance(url, str) else f"an inline {_type_name(url)}"
                raise ContextError(
                    f"{path}.@context: refusing JSON-LD context {shown}: only the bundled ActivityStreams "
                    "and konbini contexts are allowed (nothing is fetched)"
                )

    def split_duration(self, out: dict[str, Any], path: str) -> None:
        value = out["duration"]
        if isinstance(value, (int, float)):
            out["duration"] = duration_literal(value)
            out["durationSeconds"] = _double(value) if isinstance(value, float) else value
        else:
            seconds = duration_seconds(value)
            if seconds is not None:
                out["durationSeconds"] = _double(seconds) if isinstance(seconds, float) else seconds

    # -- values --------------------------------------------------------------

    def value(self, kind: str, v: Any, owner: str, key: str, path: str, depth: int) -> Any:
        self.depth(path, depth)
        if kind in ("ref", "text") and isinstance(v, list):
            return [
                self.value(kind, item, owner, key, f"{path}[{i}]", depth + 1) for i, item in enumerate(v) if item is not None
            ]
        if kind == "langmap":
            if isinstance(v, list):
                return [self.language_map(item, f"{path}[{i}]") for i, item in enumerate(v) if item is not None]
            return self.language_map(v, path)
        if isinstance(v, dict):
            if kind == "map":
                return self.node(v, owner, key, path, depth, free=True)
            if kind in ("ref", "text"):
                return self.node(v, owner, key, path, depth)
            raise self.fail(path, f"expected {_EXPECTED[kind]}, got an object")
        check: Callable[[Any], Any] = _CHECKS[kind]
        result = check(v)
        if result is _BAD:
            raise self.fail(path, f"expected {_EXPECTED[kind]}, got {_type_name(v)} {_short(v)}")
        if isinstance(result, str):
            return self.iri(result, path) if kind == "ref" else self.text(result, path)
        if isinstance(result, int) and not isinstance(result, bool):
            if kind == "idstr":
                return str(self.integer(result, path))
            if kind != "number" or isinstance(v, int):
                if result < 0 and key in COUNT_KEYS:
                    self.warnings.append(f"{path}: a negative count ({result}) is kept as sent; `validate` reports it")
                return self.integer(result, path)
        if kind == "number" and isinstance(result, float):
            return _double(result, self.datatypes.get(key, XSD + "double"))
        return result

    def language_map(self, v: Any, path: str) -> Any:
        """``nameMap``-style values: ``{"en": "…", "fr": ["…", "…"]}`` (or a plain string)."""
        if isinstance(v, str):
            return self.text(v, path)
        if not isinstance(v, dict):
            raise self.fail(path, f"expected a language map (an object of language tags), got {_type_name(v)} {_short(v)}")
        out: dict[str, Any] = {}
        for tag, text in v.items():
            where = f"{path}.{tag}"
            if tag != "@none" and not _LANGUAGE_TAG.fullmatch(tag):
                raise self.fail(where, f"{_short(tag)} is not a language tag")
            values = text if isinstance(text, list) else [text]
            for i, item in enumerate(values):
                if item is not None and not isinstance(item, str):
                    raise self.fail(where, f"expected a string, got {_type_name(item)} {_short(item)}")
                if item is not None:
                    self.text(item, f"{where}[{i}]" if isinstance(text, list) else where)
            kept = [item for item in values if item is not None]
            if kept:
                out[tag.lower()] = kept if isinstance(text, list) else kept[0]  # the store keeps tags lowercase
        return out

    def free(self, v: Any, owner: str, key: str, path: str, depth: int) -> Any:
        self.depth(path, depth)
        if isinstance(v, dict):
            return self.node(v, owner, key, path, depth, free=True)
        if isinstance(v, list):
            return [self.free(item, owner, key, f"{path}[{i}]", depth + 1) for i, item in enumerate(v) if item is not None]
        if isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                raise self.fail(path, "NaN and infinite numbers cannot be represented")
            return _double(v)
        if isinstance(v, str):
            return self.text(v, path)
        if isinstance(v, int) and not isinstance(v, bool):
            return self.integer(v, path)
        return v


#: Keys whose integer is a count of something: a negative one is kept (a store holds it faithfully;
#: the API's answer is evidence) and reported, once per value, as a warning.
COUNT_KEYS = frozenset({iri.rsplit("#", 1)[-1] for iri in COUNTERS} | {"itemCount"})

_SURROGATE = re.compile("[\ud800-\udfff]")


_BAD = object()


def _short(v: Any) -> str:
    """A value for a message: short, and printable whatever it holds (surrogates, huge numbers)."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**60:
        return f"{'-' if v < 0 else ''}<integer of more than 60 digits>"
    if isinstance(v, (dict, list)):
        text = json.dumps(v, ensure_ascii=False, default=str)[:200]
    else:
        text = json.dumps(v, ensure_ascii=False)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 60 else text[:57] + "..."


def _check_int(v: Any) -> Any:
    if isinstance(v, bool):
        return _BAD
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return _BAD


def _check_nonneg(v: Any) -> Any:
    r = _check_int(v)
    return r if r is _BAD or r >= 0 else _BAD


def _check_bool(v: Any) -> Any:
    return v if isinstance(v, bool) else _BAD


def _check_number(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return _BAD
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return _BAD
    return v


def _check_datetime(v: Any) -> Any:
    if not isinstance(v, str) or not _DATETIME.fullmatch(v):
        return _BAD
    try:
        datetime.fromisoformat(v.replace("Z", "+00:00") if v.endswith("Z") else v)
    except ValueError:
        return _BAD
    return canonical_datetime(v)


def _check_duration(v: Any) -> Any:
    if isinstance(v, str):
        return canonical_duration(v) if duration_in_range(v) else _BAD  # (False for what is no duration)
    r = _check_number(v)
    if r is _BAD or r < 0:
        return _BAD
    try:
        Decimal(str(r))
    except InvalidOperation:  # pragma: no cover - finite floats always convert
        return _BAD
    return r if duration_in_range(duration_literal(r)) else _BAD


def _check_text(v: Any) -> Any:
    return v if isinstance(v, str) else _BAD


def _check_idstr(v: Any) -> Any:
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return _BAD


def _check_ref(v: Any) -> Any:
    return v if isinstance(v, str) and _IRI.fullmatch(v) else _BAD


_CHECKS = {
    "int": _check_int,
    "nonneg": _check_nonneg,
    "bool": _check_bool,
    "number": _check_number,
    "datetime": _check_datetime,
    "duration": _check_duration,
    "text": _check_text,
    "langmap": _check_text,
    "idstr": _check_idstr,
    "ref": _check_ref,
    "map": lambda v: _BAD,
}
_EXPECTED = {
    "int": "an integer",
    "nonneg": "a non-negative integer",
    "bool": "true or false",
    "number": "a number",
    "datetime": "an xsd:dateTime string",
    "duration": "a number of seconds or an xsd:duration string the store can compute with (months within "
                "64 bits, seconds below 1.7e20 with at most 18 decimals)",
    "text": "a string",
    "langmap": "a string",
    "idstr": "an id string",
    "ref": "an absolute IRI or an object",
    "map": "an object",
}


def could_hold_bad_text(raw: str) -> bool:
    r"""Whether JSON text could decode to a string :func:`normalize` must refuse (a lone
    surrogate comes only from a ``\\uD8xx``-``\\uDFxx`` escape; an over-long string only from a
    long text). When it cannot, :func:`normalize` may skip checking each string.

    An emoji escaped as its pair (``\\ud83d\\udd25``, as JSON encoders that write ASCII do) is
    no such string: only an escape of half a pair counts, or one after an escaped backslash.

    >>> could_hold_bad_text('{"name": "caf\\u00e9 \\ud83d\\udd25"}'), could_hold_bad_text('{"name": "\\ud83d"}')
    (False, True)
    """
    if len(raw) > MAX_STRING_CHARS:
        return True
    high_ends = -1  # where the escape of a pair's first half ends, while its second is awaited
    for m in _SURROGATE_ESCAPE.finditer(raw):
        if len(m.group(1)) % 2 == 0:
            continue  # an escaped backslash, then the text "uD8…": no escape
        escape = m.end(1) - 1
        if int(m.group(2), 16) < 0xDC00:  # a first half
            if high_ends >= 0:
                return True
            high_ends = m.end()
        elif high_ends != escape:  # a second half, not right after a first
            return True
        else:
            high_ends = -1
    return high_ends >= 0


_SURROGATE_ESCAPE = re.compile(r"(\\+)u([dD][89a-fA-F][0-9a-fA-F]{2})")


def normalize(obj: Any, *, check_text: bool = True) -> Normalized:
    """Normalise one API object (already unwrapped from ``{"data": …}``) for expansion.

    >>> n = normalize({"type": "Audio", "id": "https://www.tiktok.com/music/x-1", "duration": 23})
    >>> n.document["duration"], n.document["durationSeconds"], n.document["@context"][1]
    ('PT23S', 23, 'https://konbiniapi.com/ns/social#')

    :param check_text: check every string for lone surrogates and length (``False`` only when
        the raw text could not hold such a string, see :func:`could_hold_bad_text`).
    :raises ExpandError: a value has the wrong type for its key.
    :raises ContextError: the document names a context that is not bundled.
    """
    if not isinstance(obj, dict):
        raise ExpandError(f"expected a JSON object, got {_type_name(obj)}")
    walker = _Walker(check_text)
    doc = walker.node(obj, "", "", "$")
    if "@context" not in doc:
        doc = {"@context": list(API_CONTEXT), **doc}
    return Normalized(doc, walker.unknown, walker.warnings)
