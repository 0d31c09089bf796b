"""Re-using pyld's expansion for documents of identical shape.

API responses come in a handful of shapes: the same keys, nesting and array
lengths, the same JSON types at the leaves, the same ``type`` values. For two
documents of one shape, pyld's JSON-LD → RDF output differs only where the
leaf values go. So the first document of a shape is expanded by pyld as a
*probe* in which every leaf is replaced by a unique sentinel; the output,
read back, is a template that says which leaf lands in which triple and how
(as an IRI, or as a literal of which datatype). Every later document of that
shape fills the template with its own leaves: no context processing, no node
map, no expansion.

pyld stays the engine of record: shapes it cannot template faithfully
(a sentinel that does not come through unchanged) and values it would rewrite
(compact IRIs such as ``as:foo`` in IRI positions) fall back to plain pyld,
and a differential test holds the two paths to the same graphs.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from ..errors import ExpandError
from ..vocab import GENID, XSD
from .contexts import prefixes, terms
from .fill import Filler, compile_filler
from .grouping import group_lines, merge_groups
from .literals import _ESCAPES, check_literal, nt_iri, nt_literal, real_datatype
from .skolem import list_cell_iri
from .to_rdf import expand, to_lines

__all__ = ["ShapeCache", "shape_of"]

_SENTINEL = "urn:konbini-ld:sentinel:"
_INT_BASE = 8_100_000_000_000_000_000
_SPLIT_KEYS = ("orderedItems", "items")
#: Past this many values, a property's values are expanded one at a time: pyld checks each value
#: it adds against those already there (40,000 persons: 287 s; 20,000 tags on a video: 74 s).
_MANY_VALUES = 32


@cache
def _lists() -> frozenset[str]:
    """The keys whose values are not a set (a list, a language map…): kept whole."""
    return frozenset(key for key, term in terms().items() if term.container is not None)


def _a_set(key: str) -> bool:
    """Whether the values of ``key`` make a set of triples, the same expanded together or one at
    a time (keywords and their aliases, and lists, do not)."""
    return not key.startswith("@") and key not in ("id", "type") and key not in _lists()
#: Fills of a template done part by part before it is compiled (:mod:`.fill`).
_COMPILE_AFTER = 4
_LITERAL_KEYS = frozenset({"@context", "type", "@type", "@language", "@direction"})
_XSD_INTEGER = XSD + "integer"
_XSD_BOOLEAN = XSD + "boolean"
_XSD_STRING = XSD + "string"
_XSD_DOUBLE = XSD + "double"
_SORTED = json.JSONEncoder(sort_keys=True)  # (what json.dumps(v, sort_keys=True) spells, made once)


def _prefixes() -> frozenset[str]:
    return frozenset(prefixes())


def shape_of(value: Any, leaves: list[Any]) -> Any:
    """The shape of a JSON value (hashable), appending its leaves to ``leaves`` in traversal order.

    >>> leaves = []
    >>> shape_of({"type": "Audio", "name": "a", "videoCount": 3}, leaves), leaves
    (('d', (('name', 's'), ('type', ('=', '"Audio"')), ('videoCount', 'i'))), ['a', 3])
    """
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = []
        append, add = items.append, leaves.append
        for key in sorted(value):
            v = value[key]
            kind = type(v)  # (the common leaves in line: a call per leaf is most of the time)
            if key in _LITERAL_KEYS:
                spelled = _SPELLED.get(v) if kind is str else None
                if spelled is None:
                    spelled = _SORTED.encode(v)
                    if kind is str and len(_SPELLED) < 4096:
                        _SPELLED[v] = spelled
                append((key, ("=", spelled)))
            elif kind is str:
                add(v)
                append((key, "g" if v.startswith(GENID) else "s"))
            elif kind is int:
                add(v)
                append((key, "i"))
            else:
                append((key, shape_of(v, leaves)))
        return ("d", tuple(items))
    if isinstance(value, list):
        return ("l", tuple([shape_of(v, leaves) for v in value]))
    if isinstance(value, bool):
        leaves.append(value)
        return "b"
    if isinstance(value, int):
        leaves.append(value)
        return "i"
    if isinstance(value, str):
        leaves.append(value)
        return "g" if value.startswith(GENID) else "s"  # skolem IRIs: owned by the node above
    if value is None:
        return "n"
    return ("x", repr(value))  # floats are value objects by now; anything else is kept literally


#: ``type`` values as :func:`shape_of` spells them (a handful: spelled once)
_SPELLED: dict[str, str] = {}


def _probe(value: Any, counter: list[int]) -> Any:
    """A copy of ``value`` with every leaf replaced by a unique sentinel (same traversal as shape_of)."""
    if isinstance(value, dict):
        return {k: (value[k] if k in _LITERAL_KEYS else _probe(value[k], counter)) for k in sorted(value)}
    if isinstance(value, list):
        return [_probe(v, counter) for v in value]
    if isinstance(value, bool) or (isinstance(value, int)):
        n = counter[0]
        counter[0] += 1
        return _INT_BASE + n  # booleans probe as numbers: their datatype is fixed up at fill time
    if isinstance(value, str):
        n = counter[0]
        counter[0] += 1
        return f"{_SENTINEL}{n}"
    return value


# Template parts, N-Triples text built once per shape:
#   ("c", text)                     a constant term
#   ("iri", i)                      leaf i as an IRI
#   ("lit", i, suffix, datatype)    leaf i as a literal; datatype set when the lexical form must be checked
#   ("b", label)                    an rdf:List cell, named after the triple that points at it


@dataclass(slots=True)
class _Template:
    triples: list[tuple[Any, Any, Any]]
    iri_leaves: frozenset[int] = field(default_factory=frozenset)
    kinds: tuple[str, ...] = ()
    referrers: dict[str, tuple[Any, str]] = field(default_factory=dict)
    #: for each triple, the triple of the entity that owns it (itself for an entity's own triples):
    #: the (subject, predicate) group the upsert replaces it with
    anchors: tuple[int, ...] = ()
    #: the template compiled (:mod:`.fill`), made once it has been filled :data:`_COMPILE_AFTER`
    #: times (compiling costs some milliseconds); not sent to other processes
    filler: Filler | None = None
    fills: int = 0


class _Untemplatable(Exception):
    pass


def _part(term: dict[str, Any], sentinels: dict[str, int], kinds: tuple[str, ...]) -> Any:
    kind = term["type"]
    value = term["value"]
    if kind == "blank node":
        return ("b", value)
    index = sentinels.get(value)
    if _SENTINEL in value and index is None:
        raise _Untemplatable(value)
    if kind == "IRI":
        return ("iri", index) if index is not None else ("c", nt_iri(value))
    datatype = real_datatype(term.get("datatype") or _XSD_STRING)
    language = term.get("language")
    if index is None:
        return ("c", nt_literal(value, datatype, language))
    leaf = kinds[index]
    if leaf == "b" and datatype == _XSD_INTEGER:
        datatype = _XSD_BOOLEAN  # booleans were probed as numbers
    trusted = (leaf == "s" and datatype == _XSD_STRING) or (leaf == "i" and datatype == _XSD_INTEGER) or leaf == "b"
    suffix = nt_literal("", datatype, language)[1:]  # the closing quote and what follows it
    return ("lit", index, suffix, None if trusted else datatype)


def _anchors(triples: list[tuple[Any, Any, Any]], leaves: list[Any]) -> tuple[int, ...]:
    """For each template triple, the index of the entity triple that owns it (see :func:`group_lines`)."""

    def key(part: Any) -> Any:
        return (part[0], part[1])

    def owned(part: Any) -> bool:
        tag = part[0]
        if tag == "b":
            return True
        if tag == "iri":
            value = leaves[part[1]]
            return isinstance(value, str) and value.startswith(GENID)
        return bool(tag == "c" and part[1].startswith("<" + GENID))

    referrer: dict[Any, int] = {}
    for i, (_, _, o) in enumerate(triples):
        if owned(o):
            referrer.setdefault(key(o), i)
    # where a walk up from a subject ends depends on that subject alone: remembered, a long chain
    # (the cells of a list of thousands of items) is walked once, not once per triple below it
    ends: dict[Any, int] = {}
    anchors = []
    for i in range(len(triples)):
        j, hops, walked = i, 0, []
        while owned(triples[j][0]) and key(triples[j][0]) in referrer and hops <= len(triples):
            k = key(triples[j][0])
            if k in ends:
                j = ends[k]
                break
            walked.append(k)
            j = referrer[k]
            hops += 1
        for k in walked:
            ends[k] = j
        anchors.append(j)
    return tuple(anchors)


class ShapeCache:
    """A bounded, thread-safe cache of expansion templates, one per document shape.

    :param size: shapes kept (least recently used ones are dropped).
    """

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._templates: OrderedDict[Any, _Template | None] = OrderedDict()
        self._lock = threading.Lock()
        self._prefixes = _prefixes()
        self.hits = self.misses = self.fallbacks = 0

    def groups(self, document: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
        """The triples pyld's JSON-LD → RDF algorithm gives for ``document``, skolemised and checked
        like :func:`konbini_ld.expand.to_lines`, as N-Triples lines grouped for the upsert like
        :func:`konbini_ld.ingest.group_lines` does (same lines, same groups).

        :raises ExpandError: a value does not make a valid IRI or literal.
        """
        split = self._split(document)
        if split is not None:
            return split
        leaves: list[Any] = []
        shape = shape_of(document, leaves)
        with self._lock:
            known = shape in self._templates
            template = self._templates.get(shape)
            if known:
                self._templates.move_to_end(shape)
        if not known:
            self.misses += 1
            template = self._build(document, leaves)
            with self._lock:
                self._templates[shape] = template
                if len(self._templates) > self.size:
                    self._templates.popitem(last=False)
            fresh = True
        else:
            fresh = False
        if template is None or not self._fillable(template, leaves):
            self.fallbacks += 1
            return group_lines(to_lines(expand(document)))
        if not fresh:
            self.hits += 1
        return self._fill(template, leaves)

    def _split(self, document: dict[str, Any]) -> dict[tuple[str, str], list[str]] | None:
        """A collection page is its skeleton (items as references) plus each item on its own; a
        node with more than a few dozen values of one property, its skeleton plus each value.

        A page of 30 videos almost never repeats as a whole, but its videos do. An embedded node
        object expands to the same triples wherever it is embedded (the contexts have no
        property-scoped terms), and node objects with the same id merge by union, which is what
        merging the groups does. A property's values (but a list's) are a set: the triples of
        all of them are those of each, and pyld's own check of each value against those already
        there is quadratic.
        """
        for key in _SPLIT_KEYS:
            items = document.get(key)
            if not (isinstance(items, list) and items):  # (one item too: it may hold a long set)
                continue
            if not all(isinstance(i, dict) and isinstance(i.get("id"), str) and len(i) > 1 for i in items):
                continue
            context = document.get("@context")
            out = self.groups({**document, key: [{"id": item["id"]} for item in items]})
            for item in items:
                merge_groups(out, self.groups({"@context": context, **item} if context is not None else item))
            return out
        subject = document.get("id")
        if not (isinstance(subject, str) and subject.startswith(("https://", "http://"))):
            return None
        for key, values in document.items():
            if not (isinstance(values, list) and len(values) > _MANY_VALUES and _a_set(key)):
                continue
            context = document.get("@context")
            out = self.groups({**document, key: []})
            for value in values:
                ref = value.get("id") if isinstance(value, dict) else None
                if isinstance(ref, str) and ref.startswith(("https://", "http://")) and len(value) > 1:
                    # (described on its own, as its own long sets may need; a node named by its
                    # content stays embedded: its lines are held in its owner's group)
                    merge_groups(out, self.groups({"@context": context, **value} if context is not None else value))
                    value = {"id": ref}
                one = {"id": subject, key: [value]}
                merge_groups(out, self.groups({"@context": context, **one} if context is not None else one))
            for group, lines in out.items():  # (a value given twice is one value: pyld's set)
                if len(lines) > 1:
                    out[group] = list(dict.fromkeys(lines))
            return out
        return None

    def snapshot(self) -> dict[Any, Any]:
        """The templates learned so far (picklable), to seed another process's cache."""
        with self._lock:
            return {shape: (replace(t, filler=None) if t is not None else None) for shape, t in self._templates.items()}

    def seed(self, templates: dict[Any, Any]) -> None:
        """Adopt templates learned elsewhere (see :meth:`snapshot`)."""
        with self._lock:
            for shape, template in templates.items():
                self._templates.setdefault(shape, template)

    def _fillable(self, template: _Template, leaves: list[Any]) -> bool:
        """Values pyld would rewrite in IRI positions (compact IRIs like ``as:foo``) go through pyld."""
        prefixes = self._prefixes
        for i in template.iri_leaves:
            value = leaves[i]
            if not isinstance(value, str):
                return False
            head, sep, rest = value.partition(":")
            if sep and head in prefixes and not rest.startswith("//"):
                return False
        return True

    def _build(self, document: dict[str, Any], leaves: list[Any]) -> _Template | None:
        counter = [0]
        probe = _probe(document, counter)
        sentinels: dict[str, int] = {}
        for i in range(counter[0]):
            sentinels[f"{_SENTINEL}{i}"] = i
            sentinels[str(_INT_BASE + i)] = i
        kinds = tuple("b" if isinstance(v, bool) else "i" if isinstance(v, int) else "s" for v in leaves)
        try:
            triples = [
                (_part(t["subject"], sentinels, kinds), _part(t["predicate"], sentinels, kinds),
                 _part(t["object"], sentinels, kinds))
                for t in expand(probe)
            ]
        except (_Untemplatable, ValueError):
            return None
        except Exception:
            return None  # pyld rejects the probe: let it judge the real document
        referrers = {o[1]: (s, p[1][1:-1]) for s, p, o in triples if o[0] == "b"}
        iri_leaves = frozenset(part[1] for t in triples for part in t if part[0] == "iri")
        return _Template(triples, iri_leaves, kinds, referrers, _anchors(triples, leaves))

    def _fill(self, template: _Template, leaves: list[Any]) -> dict[tuple[str, str], list[str]]:
        filler = template.filler
        if filler is None:
            template.fills += 1
            if template.fills <= _COMPILE_AFTER:
                return self._fill_parts(template, leaves)
            filler = template.filler = compile_filler(template.triples, template.kinds, template.referrers,
                                                      template.anchors)
        return filler(leaves)

    def _fill_parts(self, template: _Template, leaves: list[Any]) -> dict[tuple[str, str], list[str]]:
        """What :meth:`_fill` does, part by part (the compiled filler is held to it by a test)."""
        iris = {i: nt_iri(leaves[i]) for i in template.iri_leaves}
        cells: dict[str, str] = {}

        def cell(label: str) -> str:
            text = cells.get(label)
            if text is None:
                parent, predicate = template.referrers.get(label, (("c", ""), label))
                text = cells[label] = f"<{list_cell_iri(value(parent)[1:-1], predicate)}>"
            return text

        def value(part: Any) -> str:
            tag = part[0]
            if tag == "c":
                return str(part[1])
            if tag == "iri":
                return iris[part[1]]
            if tag == "b":
                return cell(part[1])
            leaf = leaves[part[1]]
            if leaf is True or leaf is False:
                lexical = "true" if leaf else "false"
            else:
                lexical = leaf if isinstance(leaf, str) else str(leaf)
            if part[3] is not None and not check_literal(lexical, part[3]):
                raise ExpandError(f"value {lexical!r} is not a valid {part[3]}")
            return '"' + lexical.translate(_ESCAPES) + str(part[2])

        filled = [(value(s), value(p), value(o)) for s, p, o in template.triples]
        groups: dict[tuple[str, str], list[str]] = {}
        for (s, p, o), anchor in zip(filled, template.anchors):
            owner = filled[anchor]
            key = (owner[0], owner[1])
            line = f"{s} {p} {o} .\n"
            lines = groups.get(key)
            if lines is None:
                groups[key] = [line]
            else:
                lines.append(line)
        return groups


_default: ShapeCache | None = None


def default_cache() -> ShapeCache:
    """The process-wide shape cache."""
    global _default
    if _default is None:
        _default = ShapeCache()
    return _default
