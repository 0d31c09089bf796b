"""Named SPARQL queries: the ``queries/*.rq`` files and their headers.

Reading and listing them needs no RDF machinery (``konbini-ld queries`` stays
quick); running them is :mod:`konbini_ld.query.run`'s job. :func:`resolve_query` is
how the command line and the library read "a name, a ``.rq`` file, or SPARQL text".
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..resources import resource_dir
from ..sparql import query_form

__all__ = [
    "NamedQuery",
    "Param",
    "get_named_query",
    "named_queries",
    "parse_query_text",
    "read_query_file",
    "resolve_query",
]

_PARAM_TYPES = ("iri", "string", "integer", "decimal", "boolean", "datetime", "term")


@dataclass(frozen=True, slots=True)
class Param:
    """One declared query parameter."""

    name: str
    type: str
    required: bool
    description: str

    def bind(self, value: str) -> Any:
        """Turn a command-line string into the RDF term this parameter takes.

        :raises UsageError: the value does not fit the declared type.
        """
        from .terms import parse_term

        try:
            return parse_term(value, self.type)
        except ValueError as exc:
            raise UsageError(f"parameter {self.name}: {exc}") from None


@dataclass(frozen=True, slots=True)
class NamedQuery:
    """A query from ``queries/`` (or any ``.rq`` file) with its header."""

    name: str
    title: str
    description: str
    params: tuple[Param, ...]
    text: str
    path: Path | None = None
    form: str | None = None
    strict: bool = False  #: refuse parameters the header does not declare (shipped queries)
    index: str | None = None  #: the column that indexes its rows (``# index: time``: a time series)
    #: the projection of the index beside the graph that answers it (``# projection: NAME``): used only
    #: while its text is the one the projection was written for (any edit runs the text as written)
    projection: str | None = None

    def describe(self) -> dict[str, Any]:
        """The query as JSON for tools (``konbini-ld queries --json``, ``serve``'s ``/queries``)."""
        return {
            "name": self.name, "title": self.title, "description": self.description, "form": self.form,
            "text": self.text, "index": self.index, "projection": self.projection,
            "params": [{"name": p.name, "type": p.type, "required": p.required, "description": p.description}
                       for p in self.params],
        }

    def bind(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Bind ``values`` to the declared parameters; strings are parsed by the declared type.

        :raises UsageError: a required parameter is missing or an unknown one is given.
        """
        declared = {p.name: p for p in self.params}
        unknown = sorted(set(values) - set(declared))
        if unknown and (declared or self.strict):
            takes = ", ".join(declared) or "no parameters"
            raise UsageError(f"query {self.name} has no parameter {', '.join(unknown)} (it takes: {takes})")
        from .terms import guess_term

        bound: dict[str, Any] = {}
        for name, value in values.items():
            param = declared.get(name)
            if isinstance(value, str):
                if param is not None:
                    bound[name] = param.bind(value)
                    continue
                try:
                    bound[name] = guess_term(value, name)
                except ValueError as exc:  # (a UnicodeError too)
                    raise UsageError(f"parameter {name}: {exc}") from None
            else:
                bound[name] = value
        missing = [p.name for p in self.params if p.required and p.name not in bound]
        if missing:
            raise UsageError(
                f"query {self.name} needs " + ", ".join(f"-p {m}=…" for m in missing)
            )
        return bound


_HEADER = re.compile(r"#\s*(title|description|param|index|projection)\s*:\s*(.*)")


def read_query_file(path: str | Path, *, name: str | None = None) -> NamedQuery:
    """Read a ``.rq`` file and its ``# title:`` / ``# description:`` / ``# param:`` / ``# index:`` header.

    :raises UsageError: the file cannot be read (or is over 4 MiB, or not UTF-8) or a ``# param:`` line is
        malformed.
    """
    from ..io.inputs import MAX_QUERY_BYTES, read_bounded

    path = Path(path)
    text = read_bounded(path, MAX_QUERY_BYTES, "query file")
    return parse_query_text(text, name=name or path.stem, path=path)


def parse_query_text(text: str, *, name: str, path: Path | None = None) -> NamedQuery:
    """Parse a query's header comments (everything before the first non-comment line)."""
    title = description = ""
    index: str | None = None
    projection: str | None = None
    params: list[Param] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        m = _HEADER.match(stripped)
        if not m:
            continue
        key, value = m.group(1), m.group(2).strip()
        if key == "title":
            title = value
        elif key == "description":
            description = value
        elif key == "index":
            index = value.lstrip("?$") or None
        elif key == "projection":
            projection = value or None
        else:
            parts = value.split(None, 2)
            if len(parts) < 2 or parts[1].rstrip("?") not in _PARAM_TYPES:
                raise UsageError(
                    f"{name}: malformed '# param:' line {value!r}: expected 'NAME TYPE description' "
                    f"with TYPE one of {', '.join(_PARAM_TYPES)} (append ? if optional)"
                )
            params.append(
                Param(parts[0], parts[1].rstrip("?"), not parts[1].endswith("?"), parts[2] if len(parts) > 2 else "")
            )
    return NamedQuery(name, title or name, description, tuple(params), text, path, query_form(text), index=index,
                      projection=projection)


@cache
def named_queries() -> dict[str, NamedQuery]:
    """The named queries shipped in ``queries/``, by name."""
    out = {}
    for path in sorted(resource_dir("queries").glob("*.rq")):
        q = dataclasses.replace(read_query_file(path), strict=True)
        out[q.name] = q
    return out


def get_named_query(name: str) -> NamedQuery:
    """The named query ``name``.

    :raises UsageError: there is no such query.
    """
    try:
        return named_queries()[name]
    except KeyError:
        known = ", ".join(named_queries())
        raise UsageError(f"no named query {name!r} (known: {known}); see `konbini-ld queries`") from None


def resolve_query(query: str | Path) -> NamedQuery:
    """A query given as a named query's name, a path to a ``.rq``/``.sparql`` file, or SPARQL text.

    >>> resolve_query("top-audios").name, resolve_query("SELECT * WHERE { ?s ?p ?o }").name
    ('top-audios', '(inline)')

    :raises UsageError: a name that is not a known query, or a file that cannot be read.
    """
    if isinstance(query, Path):
        return read_query_file(query)
    text = query.strip()
    if re.fullmatch(r"[A-Za-z0-9_][\w.-]*", text) and not text.endswith((".rq", ".sparql")):
        return get_named_query(text)
    looks_like_path = "\n" not in text and "{" not in text and len(text) < 1024
    if looks_like_path and (text.endswith((".rq", ".sparql")) or Path(text).is_file()):
        return read_query_file(text)
    return parse_query_text(query, name="(inline)")
