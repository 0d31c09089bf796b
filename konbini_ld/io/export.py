"""Export the graph: Turtle, N-Triples, N-Quads, TriG, RDF/XML through Oxigraph's
serialisers, and JSON-LD compacted with the API's two contexts, streamed node by node.

The JSON-LD writer compacts by the bundled term definitions instead of running
pyld's compaction over the whole graph: memory stays flat however large the
store is. Objects without an ``id`` of their own (images, links, list cells…)
are embedded in the node that owns them, with their skolem IRI as ``id``, so
the output re-expands to exactly the stored graph.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from functools import cache
from typing import IO, Any, cast

import pyoxigraph as ox

from ..engines.base import Engine
from ..errors import ExportError
from ..mapping.contexts import API_CONTEXT, Term, bundled_context, terms
from ..vocab import GENID, KS, PREFIXES, RDF, XSD
from .formats import Format
from .xmlsafe import writable_in, xml_guarded

RdfTerm = ox.NamedNode | ox.BlankNode | ox.Literal | ox.Triple

__all__ = ["CanonicalDoubles", "canonical_double", "export", "write_jsonld_quads", "write_jsonld_triples"]


def export(engine: Engine, fmt: Format | str, output: IO[bytes], *, inline_context: bool = False) -> None:
    """Write the whole graph to ``output``.

    Formats with named graphs (N-Quads, TriG) keep the data / provenance / history graphs; the
    others write their union. JSON-LD is compacted with the API's two contexts (named by
    URL, or embedded with ``inline_context``) and streamed node by node.

    :raises UsageError: ``fmt`` is not an RDF format.
    :raises ExportError: writing failed.
    """
    fmt = Format.lookup(fmt, "graph")
    try:
        if fmt is Format.JSONLD:
            write_jsonld_quads(engine, output, inline_context=inline_context)
            return
        with xml_guarded(output, fmt) as guarded:
            canonical = cast(IO[bytes], CanonicalDoubles(guarded))
            if fmt.can_carry("dataset"):
                engine.dump(canonical, fmt.ox_format(), prefixes=PREFIXES)
            else:
                ox.serialize(writable_in((q.triple for q in engine.iter_quads()), fmt), canonical, fmt.ox_format(),
                             prefixes=PREFIXES)
            canonical.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise ExportError(f"export failed: {exc}") from exc


# -- JSON-LD -------------------------------------------------------------------

_INT = XSD + "integer"
_DOUBLE = XSD + "double"
_BOOL = XSD + "boolean"
_STRING = XSD + "string"
_LANG_STRING = RDF + "langString"
_SAFE_INT = 2**53


@cache
def _reverse_terms() -> dict[str, list[tuple[str, Term]]]:
    out: dict[str, list[tuple[str, Term]]] = {}
    for name, term in terms().items():
        if name[:1].isupper() or term.container is not None:
            continue
        out.setdefault(term.iri, []).append((name, term))
    return out


@cache
def _class_terms() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, term in terms().items():
        if name[:1].isupper():
            out.setdefault(term.iri, name)
    return out


@cache
def _compact_prefixes() -> list[tuple[str, str]]:
    ctx = bundled_context(API_CONTEXT[1])["@context"]
    pairs = [(k, v) for k, v in ctx.items() if isinstance(v, str) and v.endswith(("#", "/")) and not k.startswith("@")]
    return sorted(pairs, key=lambda kv: -len(kv[1]))


def _compact_iri(iri: str, *, vocab: bool) -> str:
    if vocab and iri.startswith(KS):
        local = iri[len(KS) :]
        if local and local not in terms() and local not in ("id", "type") and ":" not in local and "/" not in local:
            return local
    for prefix, ns in _compact_prefixes():
        if iri.startswith(ns) and len(iri) > len(ns):
            local = iri[len(ns) :]
            if not local.startswith("//"):
                return f"{prefix}:{local}"
    return iri


def _property_key(predicate: str, values: list[RdfTerm]) -> tuple[str, Term | None]:
    candidates = _reverse_terms().get(predicate)
    if candidates:
        if len(candidates) > 1 and values:
            for name, term in candidates:
                if all(_matches(term, v) for v in values):
                    return name, term
        return candidates[0]
    return _compact_iri(predicate, vocab=True), None


def _matches(term: Term, value: RdfTerm) -> bool:
    if term.type == "@id":
        return isinstance(value, ox.NamedNode)
    if isinstance(value, ox.Literal):
        return term.type is None or value.datatype.value == term.type
    return False


def _literal(value: ox.Literal, term: Term | None) -> Any:
    dt = value.datatype.value
    lex = value.value
    if dt == _DOUBLE:  # (spelled as every other format spells it: see CanonicalDoubles)
        return {"@value": canonical_double(lex), "@type": _compact_iri(dt, vocab=False)}
    if value.language:
        return {"@value": lex, "@language": value.language}
    coerced = term.type if term is not None else None
    if coerced is not None and coerced != "@id":
        if dt != coerced:
            return {"@value": lex, "@type": _compact_iri(dt, vocab=False)}
        if dt == _INT and abs(int(lex)) < _SAFE_INT:
            return int(lex)
        if dt == _BOOL:
            return lex == "true"
        return lex
    if coerced == "@id":
        return {"@value": lex} if dt == _STRING else {"@value": lex, "@type": _compact_iri(dt, vocab=False)}
    if dt == _STRING:
        return lex
    if dt == _INT and abs(int(lex)) < _SAFE_INT:
        return int(lex)
    if dt == _BOOL:
        return lex == "true"
    if dt == _LANG_STRING:  # pragma: no cover - handled by value.language
        return lex
    return {"@value": lex, "@type": _compact_iri(dt, vocab=False)}


class _NodeWriter:
    """Builds compacted node objects, embedding owned (skolemised) nodes."""

    def __init__(self, lookup: Any) -> None:
        self.lookup = lookup  # subject -> iterable of (predicate, object)

    def node(self, subject: ox.NamedNode | ox.BlankNode, pairs: Iterable[tuple[ox.NamedNode, RdfTerm]], depth: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {"id": subject.value if isinstance(subject, ox.NamedNode) else f"_:{subject.value}"}
        grouped: dict[str, list[RdfTerm]] = {}
        for p, o in pairs:
            grouped.setdefault(p.value, []).append(o)
        types = grouped.pop(RDF + "type", None)
        if types:
            names = [
                _class_terms().get(t.value) or _compact_iri(t.value, vocab=True) if isinstance(t, ox.NamedNode) else str(t)
                for t in types
            ]
            out["type"] = names[0] if len(names) == 1 else names
        for predicate, values in grouped.items():
            key, term = _property_key(predicate, values)
            items = [self.value(v, term, depth) for v in values]
            out[key] = items[0] if len(items) == 1 else items
        return out

    def value(self, value: RdfTerm, term: Term | None, depth: int) -> Any:
        if isinstance(value, ox.Literal):
            return _literal(value, term)
        if isinstance(value, ox.Triple):
            return str(value)
        iri = value.value
        if isinstance(value, ox.NamedNode) and iri.startswith(GENID) and depth < 200:
            return self.node(value, self.lookup(value), depth + 1)
        if term is not None and term.type == "@id" and isinstance(value, ox.NamedNode):
            return iri
        return {"id": iri if isinstance(value, ox.NamedNode) else f"_:{iri}"}


def _write_header(output: IO[bytes], inline_context: bool) -> None:
    context: Any = (
        [bundled_context(u)["@context"] for u in API_CONTEXT] if inline_context else list(API_CONTEXT)
    )
    output.write(b'{"@context": ' + json.dumps(context).encode() + b',\n "@graph": [')


def _write_nodes(output: IO[bytes], nodes: Iterator[dict[str, Any]]) -> None:
    first = True
    for node in nodes:
        output.write((b"\n  " if first else b",\n  ") + json.dumps(node, ensure_ascii=False).encode("utf-8"))
        first = False
    output.write(b"\n]}\n")


def write_jsonld_quads(engine: Engine, output: IO[bytes], *, inline_context: bool = False) -> None:
    """Stream the union of all graphs as compacted JSON-LD, one subject at a time."""

    def lookup(subject: ox.NamedNode) -> list[tuple[ox.NamedNode, RdfTerm]]:
        return [(q.predicate, q.object) for q in engine.quads_for_subjects([subject], None)]

    writer = _NodeWriter(lookup)

    def nodes() -> Iterator[dict[str, Any]]:
        current: Any = None
        pairs: list[tuple[ox.NamedNode, RdfTerm]] = []
        for q in engine.iter_quads():
            s = q.subject
            if s != current:
                if current is not None and pairs:
                    yield writer.node(current, pairs)
                current, pairs = s, []
            if isinstance(s, ox.NamedNode) and s.value.startswith(GENID):
                continue  # embedded in its owner
            pairs.append((q.predicate, q.object))
        if current is not None and pairs:
            yield writer.node(current, pairs)

    _write_header(output, inline_context)
    _write_nodes(output, nodes())


def write_jsonld_triples(triples: Iterable[ox.Triple], output: IO[bytes], *, inline_context: bool = False) -> None:
    """Compacted JSON-LD for a set of triples (a CONSTRUCT result), held in memory."""
    by_subject: dict[Any, list[tuple[ox.NamedNode, RdfTerm]]] = {}
    for t in triples:
        by_subject.setdefault(t.subject, []).append((t.predicate, t.object))
    referenced = {o for pairs in by_subject.values() for _, o in pairs}
    writer = _NodeWriter(lambda s: by_subject.get(s, []))

    def nodes() -> Iterator[dict[str, Any]]:
        for s, pairs in by_subject.items():
            if isinstance(s, ox.NamedNode) and s.value.startswith(GENID) and s in referenced:
                continue
            yield writer.node(s, pairs)

    _write_header(output, inline_context)
    _write_nodes(output, nodes())


# -- doubles -------------------------------------------------------------------


def canonical_double(text: str) -> str:
    """The canonical lexical form of an ``xsd:double`` (XML Schema 1.1: a mantissa with one digit
    before the point, the shortest that reads back to the same number, and an exponent), which
    JSON-LD processors write for doubles; the text unchanged if it is no double.

    >>> [canonical_double(t) for t in ("23.5", "1e-05", "0", "-0.0", "100", "INF", "NaN", "x")]
    ['2.35E1', '1.0E-5', '0.0E0', '-0.0E0', '1.0E2', 'INF', 'NaN', 'x']
    """
    import math
    from decimal import Decimal

    try:
        x = float(text)
    except ValueError:
        return text
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "INF" if x > 0 else "-INF"
    if x == 0:
        return "-0.0E0" if math.copysign(1.0, x) < 0 else "0.0E0"
    sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    assert isinstance(exponent, int)
    shown = "".join(map(str, digits))
    return f"{'-' if sign else ''}{shown[0]}.{shown[1:] or '0'}E{exponent + len(shown) - 1}"


_DOUBLE_LITERAL = re.compile(rb'"([^"\\\n]*)"\^\^(<http://www\.w3\.org/2001/XMLSchema#double>|xsd:double)')
_DOUBLE_ELEMENT = re.compile(rb'(rdf:datatype="http://www\.w3\.org/2001/XMLSchema#double">)([^<]*)(<)')


def _canonical_line(line: bytes) -> bytes:
    line = _DOUBLE_LITERAL.sub(lambda m: b'"' + canonical_double(m.group(1).decode()).encode() + b'"^^' + m.group(2),
                               line)
    return _DOUBLE_ELEMENT.sub(lambda m: m.group(1) + canonical_double(m.group(2).decode()).encode() + m.group(3),
                               line)


class CanonicalDoubles:
    """A writer in front of ``output`` that spells every ``xsd:double`` in Oxigraph's serialisations
    (N-Triples, N-Quads, Turtle, TriG, RDF/XML) canonically, as JSON-LD does: the exports and
    answers of a graph then hash alike whatever their format. Lines without a double pass as they
    are (one substring test per piece)."""

    _MARK = b"XMLSchema#double"
    _SHORT = b"xsd:double"

    def __init__(self, output: IO[bytes]) -> None:
        self.output = output
        self._held = b""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        given = bytes(data)
        if not self._held and given.endswith(b"\n") and self._MARK not in given and self._SHORT not in given:
            self.output.write(given)
            return len(given)
        pending = self._held + given
        cut = pending.rfind(b"\n") + 1
        self._held = pending[cut:]
        if cut:
            whole = pending[:cut]
            if self._MARK in whole or self._SHORT in whole:
                whole = b"".join(_canonical_line(line) for line in whole.splitlines(keepends=True))
            self.output.write(whole)
        return len(given)

    def flush(self) -> None:
        if self._held:
            self.output.write(_canonical_line(self._held))
            self._held = b""
        flush = getattr(self.output, "flush", None)
        if flush is not None:
            flush()
