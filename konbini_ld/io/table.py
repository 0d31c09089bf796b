"""Query results as a plain-text table, for a terminal: what a value holds is shown, never obeyed."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import pyoxigraph as ox

from ..vocab import PREFIXES
from .text import printable

__all__ = ["cell", "compact_iri", "render_table"]


_MAX_CELL = 80


def compact_iri(iri: str) -> str:
    """``as:Audio`` for a known namespace, else the IRI unchanged.

    >>> compact_iri("https://www.w3.org/ns/activitystreams#Audio")
    'as:Audio'
    """
    for prefix, ns in PREFIXES.items():
        if iri.startswith(ns) and re.fullmatch(r"[A-Za-z_][\w\-]*", iri[len(ns) :]):
            return f"{prefix}:{iri[len(ns):]}"
    return iri


def cell(term: Any) -> str:
    r"""How a term is shown in a table: on one line, with every control character (terminal escape
    sequences, bidirectional overrides) made visible rather than obeyed.

    >>> print(cell(ox.Literal(chr(27) + "]0;owned" + chr(7) + " " + chr(0x202E) + "gnp.exe")))
    \x1b]0;owned\x07 \u202egnp.exe
    """
    if term is None:
        return ""
    if isinstance(term, ox.NamedNode):
        return printable(compact_iri(term.value))
    if isinstance(term, ox.BlankNode):
        return printable(f"_:{term.value}")
    if isinstance(term, ox.Literal):
        return printable(term.value)
    return printable(str(term))


def render_table(variables: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """SELECT rows (pyoxigraph terms) as a plain-text table for a terminal.

    >>> print(render_table(["a"], [(ox.Literal("x"),)]), end="")
    a
    -
    x
    (1 row)
    """
    headers = list(variables)
    if not headers:
        return ""
    body = []
    for row in rows:
        cells = []
        for term in row:
            text = cell(term)
            cells.append(text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…")
        body.append(cells)
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in body:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    lines.append(f"({len(body)} row{'s' if len(body) != 1 else ''})")
    return "\n".join(lines) + "\n"
