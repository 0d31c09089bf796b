"""A template turned into one Python function that fills it (see :mod:`.templates`).

Filling a template part by part looks up each part's kind, leaf and suffix for every triple of
every document; a page of 30 videos is some 1,500 parts. Compiled once per shape, the function
does only what varies: it converts each leaf once, checks the literals whose datatype needs it,
names the list cells, and builds the lines and their groups, with every constant already
spelled. It returns exactly what :meth:`.templates.ShapeCache._fill_parts` returns (a test
holds the two to the same groups on every shape the corpus has).

Constants enter the code only as ``repr()`` literals, and leaves only as ``leaves[i]``: no
value of a document is ever part of the code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ExpandError
from .literals import _ESCAPES, check_literal, nt_iri
from .skolem import list_cell_iri

__all__ = ["Filler", "compile_filler"]

#: leaves → the template's groups ((subject, predicate) → N-Triples lines)
Filler = Callable[[Sequence[Any]], dict[tuple[str, str], list[str]]]


def _bad(lexical: str, datatype: str) -> ExpandError:
    return ExpandError(f"value {lexical!r} is not a valid {datatype}")


def compile_filler(triples: Sequence[tuple[Any, Any, Any]], kinds: Sequence[str],
                   referrers: dict[str, tuple[Any, str]], anchors: Sequence[int]) -> Filler:
    """The function that fills a template of these parts (see :mod:`.templates` for the parts)."""
    body: list[str] = []
    names: dict[Any, str] = {}

    def lexical(i: int) -> str:
        name = f"x{i}"
        if ("x", i) not in names:
            names[("x", i)] = name
            kind = kinds[i]
            if kind == "s":
                body.append(f"{name} = leaves[{i}]")
            elif kind == "i":
                body.append(f"{name} = str(leaves[{i}])")
            else:
                body.append(f"{name} = 'true' if leaves[{i}] else 'false'")
        return name

    def term(part: Any) -> str:
        """A Python expression (a name or a literal) for the part's N-Triples text."""
        tag = part[0]
        if tag == "c":
            return repr(str(part[1]))
        key = (tag, *part[1:])
        name = names.get(key)
        if name is not None:
            return name
        name = f"t{len(names)}"
        if tag == "iri":
            body.append(f"{name} = nt_iri(leaves[{int(part[1])}])")
        elif tag == "lit":
            x = lexical(int(part[1]))
            if part[3] is not None:
                body.append(f"if not check_literal({x}, {str(part[3])!r}): raise bad({x}, {str(part[3])!r})")
            body.append(f"{name} = '\"' + {x}.translate(ESCAPES) + {str(part[2])!r}")
        elif tag == "b":
            parent, predicate = referrers.get(part[1], (("c", ""), part[1]))
            body.append(f"{name} = '<' + list_cell_iri({term(parent)}[1:-1], {str(predicate)!r}) + '>'")
        else:  # pragma: no cover (the template's parts are the four above)
            raise ValueError(f"unknown template part {part!r}")
        names[key] = name
        return name

    lines = []
    for s, p, o in triples:
        lines.append(f"{term(s)} + ' ' + {term(p)} + ' ' + {term(o)} + ' .\\n'")
    runs: list[tuple[int, list[int]]] = []  # consecutive triples of one group: one append (in order, as they come)
    for i, anchor in enumerate(anchors):
        if runs and runs[-1][0] == anchor:
            runs[-1][1].append(i)
        else:
            runs.append((anchor, [i]))
    body.append("groups = {}")
    for anchor, members in runs:  # (two anchors may still name one group: merged at fill time)
        s, p, _ = triples[anchor]
        body.append(f"key = ({term(s)}, {term(p)})")
        body.append(f"new = [{', '.join(lines[i] for i in members)}]")
        body.append("held = groups.get(key)")
        body.append("if held is None: groups[key] = new")
        body.append("else: held.extend(new)")
    body.append("return groups")
    source = "def fill(leaves):\n" + "".join(f"    {line}\n" for line in body)
    scope: dict[str, Any] = {"nt_iri": nt_iri, "check_literal": check_literal, "bad": _bad, "ESCAPES": _ESCAPES,
                             "list_cell_iri": list_cell_iri}
    exec(compile(source, "<konbini-ld template>", "exec"), scope)  # noqa: S102 (constants as repr() only)
    fill: Filler = scope["fill"]
    return fill
