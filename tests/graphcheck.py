"""Graph assertions shared by tests: leaf values present, no blank nodes, literals well-typed."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pyoxigraph as ox

from konbini_ld.mapping.literals import check_literal

XSD = "http://www.w3.org/2001/XMLSchema#"


def quads(store: Any) -> list[ox.Quad]:
    return list(store.engine.iter_quads())


def assert_no_blank_nodes(store: Any) -> None:
    for q in quads(store):
        assert not isinstance(q.subject, ox.BlankNode), q
        assert not isinstance(q.object, ox.BlankNode), q
        assert not isinstance(q.graph_name, ox.BlankNode), q


def assert_well_typed(store: Any) -> None:
    for q in quads(store):
        if isinstance(q.object, ox.Literal):
            assert check_literal(q.object.value, q.object.datatype.value), q


def _value(term: ox.Term) -> Any:
    if isinstance(term, ox.NamedNode):
        return term.value
    dt = term.datatype.value
    v = term.value
    if dt in (XSD + "integer", XSD + "nonNegativeInteger"):
        return int(v)
    if dt in (XSD + "double", XSD + "float"):
        return float(v)
    if dt == XSD + "decimal":
        return Decimal(v)
    if dt == XSD + "boolean":
        return v == "true"
    if dt == XSD + "dateTime":
        return datetime.fromisoformat(v.replace("Z", "+00:00"))
    return v


def graph_values(store: Any) -> set[Any]:
    out: set[Any] = set()
    for q in quads(store):
        for term in (q.subject, q.object):
            if isinstance(term, ox.NamedNode):
                out.add(term.value)
                out.add(term.value.rsplit("#", 1)[-1])
            elif isinstance(term, ox.Literal):
                v = _value(term)
                out.add(v)
                if isinstance(v, bool):
                    out.add(("bool", v))
    return out


def leaves(value: Any, key: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k != "@context":
                out.extend(leaves(v, k))
    elif isinstance(value, list):
        for v in value:
            out.extend(leaves(v, key))
    elif value is not None:
        out.append((key, value))
    return out


def assert_leaves_in_graph(store: Any, obj: Any) -> None:
    """Every JSON leaf value of ``obj`` is in the graph (compared as values, not lexical forms)."""
    values = graph_values(store)
    for key, leaf in leaves(obj):
        if isinstance(leaf, bool):
            assert ("bool", leaf) in values, (key, leaf)
        elif isinstance(leaf, (int, float)):
            assert leaf in values or Decimal(str(leaf)) in values, (key, leaf)
        elif isinstance(leaf, str):
            candidates = {leaf}
            try:
                candidates.add(datetime.fromisoformat(leaf.replace("Z", "+00:00")))
            except ValueError:
                pass
            assert candidates & values, (key, leaf)
