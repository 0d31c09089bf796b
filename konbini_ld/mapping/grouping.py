"""Grouping triples the way the upsert replaces them."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..vocab import COUNTERS

__all__ = ["group_lines", "one_count_each"]

_GENID_NT = "<urn:konbini-ld:genid:"
_COUNTERS_NT = frozenset(f"<{iri}>" for iri in COUNTERS)
_NUMBER = re.compile(r'"(-?\d+)"')


def one_count_each(groups: dict[tuple[str, str], list[str]]) -> None:
    """One value per counter of an entity in a response: a response that lists the same video
    (or person) twice with different counts says two things at once; the larger is kept, in the
    current state and in the series alike (counts only grow).

    >>> g = {("<v>", "<https://konbiniapi.com/ns/social#viewCount>"): [
    ...     '<v> <https://konbiniapi.com/ns/social#viewCount> "5"^^<http://www.w3.org/2001/XMLSchema#integer> .\\n',
    ...     '<v> <https://konbiniapi.com/ns/social#viewCount> "9"^^<http://www.w3.org/2001/XMLSchema#integer> .\\n']}
    >>> one_count_each(g); [line.split('"')[1] for line in next(iter(g.values()))]
    ['9']
    """
    for (s, p), lines in groups.items():
        if p not in _COUNTERS_NT or len(lines) < 2:
            continue
        head = f"{s} {p} "
        values = [(int(m.group(1)), line) for line in lines if line.startswith(head)
                  and (m := _NUMBER.match(line, len(head)))]
        if len(values) > 1:
            keep = max(values)[1]
            groups[(s, p)] = [line for line in lines if not line.startswith(head) or line is keep]


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
