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


QUOTE = '"'
END = " .\n"


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

    def term(part: Any) -> str | None:
        """The name holding the part's N-Triples text (``None`` for a constant)."""
        tag = part[0]
        if tag == "c":
            return None
        key = (tag, *part[1:])
        name = names.get(key)
        if name is not None:
            return name
        name = f"t{len(names)}"
        if tag == "iri":
            body.append(f"{name} = nt_iri(leaves[{int(part[1])}])")
        elif tag == "lit":
            i, suffix, datatype = int(part[1]), str(part[2]), part[3]
            if datatype is None and kinds[i] == "b":  # two spellings, both known now
                yes, no = QUOTE + "true" + suffix, QUOTE + "false" + suffix
                body.append(f"{name} = {yes!r} if leaves[{i}] else {no!r}")
            else:
                x = lexical(i)
                if datatype is not None:
                    body.append(f"if not check_literal({x}, {str(datatype)!r}): raise bad({x}, {str(datatype)!r})")
                # (the digits of an integer need no escape)
                escaped = x if kinds[i] == "i" else f"{x}.translate(ESCAPES)"
                body.append(f"{name} = {QUOTE!r} + {escaped} + {suffix!r}")
        elif tag == "b":
            parent, predicate = referrers.get(part[1], (("c", ""), part[1]))
            body.append(f"{name} = '<' + list_cell_iri({expression(parent)}[1:-1], {str(predicate)!r}) + '>'")
        else:  # pragma: no cover (the template's parts are the four above)
            raise ValueError(f"unknown template part {part!r}")
        names[key] = name
        return name

    def expression(part: Any) -> str:
        """A Python expression for the part's N-Triples text."""
        name = term(part)
        return repr(str(part[1])) if name is None else name

    def line(s: Any, p: Any, o: Any) -> str:
        """An f-string building the triple's line: constants spelled in it, braces doubled."""
        text = []
        for part in (s, p, o):
            name = term(part)
            text.append(str(part[1]).replace("{", "{{").replace("}", "}}") if name is None else "{" + name + "}")
        return "f" + repr(" ".join(text) + END)

    lines = [line(s, p, o) for s, p, o in triples]
    # each group's lines, in the order the part-by-part fill gives them: runs of consecutive
    # triples of one group, and the runs of one group (spelled alike) merged in first-seen order
    grouped: dict[str, list[int]] = {}
    for i, anchor in enumerate(anchors):
        s, p, _ = triples[anchor]
        grouped.setdefault(f"({expression(s)}, {expression(p)})", []).append(i)
    body.append("groups = {" + ", ".join(f"{key}: [{', '.join(lines[i] for i in members)}]"
                                         for key, members in grouped.items()) + "}")
    # two groups spelled apart can still be one (two nodes of one id): merged then, as they come
    body.append(f"if len(groups) == {len(grouped)}: return groups")
    body.append("groups = {}")
    runs: list[tuple[int, list[int]]] = []
    for i, anchor in enumerate(anchors):
        if runs and runs[-1][0] == anchor:
            runs[-1][1].append(i)
        else:
            runs.append((anchor, [i]))
    for anchor, members in runs:
        s, p, _ = triples[anchor]
        body.append(f"key = ({expression(s)}, {expression(p)})")
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
