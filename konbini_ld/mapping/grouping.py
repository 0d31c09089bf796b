"""Grouping triples the way the upsert replaces them."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["group_lines", "merge_groups"]

_GENID_NT = "<urn:konbini-ld:genid:"


def group_lines(triples: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str], list[str]]:
    """Group triples by (entity, property); each group also holds the lines of the skolemised
    objects reachable from its values (which it owns: they are replaced with it).

    >>> g = group_lines([("<a>", "<p>", "<urn:konbini-ld:genid:1>"), ("<urn:konbini-ld:genid:1>", "<q>", '"x"')])
    >>> g[("<a>", "<p>")]
    ['<a> <p> <urn:konbini-ld:genid:1> .\\n', '<urn:konbini-ld:genid:1> <q> "x" .\\n']
    """
    owned: dict[str, list[tuple[str, str]]] = {}
    carried: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for s, p, o in triples:
        line = f"{s} {p} {o} .\n"
        if s.startswith(_GENID_NT):
            owned.setdefault(s, []).append((line, o))
        else:
            carried.setdefault((s, p), []).append((line, o))
    groups: dict[tuple[str, str], list[str]] = {}
    for key, items in carried.items():
        lines = [line for line, _ in items]
        stack = [o for _, o in items if o.startswith(_GENID_NT)]
        seen: set[str] = set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            for line, o in owned.get(node, ()):
                lines.append(line)
                if o.startswith(_GENID_NT):
                    stack.append(o)
        groups[key] = lines
    return groups


def merge_groups(into: dict[tuple[str, str], list[str]], groups: dict[tuple[str, str], list[str]]) -> None:
    """Add ``groups`` to ``into``: the lines of a group both have are appended to ``into``'s. The
    lists of ``groups`` are taken, not copied (groups are made for the one merge they go to).

    >>> into = {("<a>", "<p>"): ["1"]}
    >>> merge_groups(into, {("<a>", "<p>"): ["2"], ("<b>", "<p>"): ["3"]})
    >>> into
    {('<a>', '<p>'): ['1', '2'], ('<b>', '<p>'): ['3']}
    """
    shared = into.keys() & groups.keys()
    if not shared:  # (the usual case: the items of a page describe other entities)
        into.update(groups)
        return
    for key, lines in groups.items():
        if key in shared:
            into[key].extend(lines)
        else:
            into[key] = lines
