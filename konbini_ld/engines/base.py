"""What the store needs from an engine that holds quads, and what each engine declares it can do.

Engines: :mod:`.oxigraph` (embedded, in memory or on disk) and :mod:`.sparql_http` (any
SPARQL 1.1 server through the Query, Update and Graph Store protocols). The store asks an
engine's :class:`Capabilities` instead of checking its class; ``tests/test_engines.py``
runs one conformance suite against every engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any, Protocol

import pyoxigraph as ox

from ..errors import QueryError, StoreError

__all__ = ["Capabilities", "Dataset", "Engine", "WriteRejected", "first_line", "translate_syntax_error"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an engine can do, declared instead of guessed from its class.

    :ivar exclusive_writer: this process is the only writer (the store may cache what it holds).
    :ivar write_behind: writes may run on a background thread while the next batch is planned.
    :ivar substitution: variables can be bound natively (SEP-0007), not by rewriting the query text.
    :ivar transactions: a write of deletes and inserts is applied all or nothing.
    :ivar bulk_load: large inserts go through a loader faster than transactions (not atomic:
        the archive's replay makes that safe).
    :ivar read_only_views: readers can open the engine beside a writer without stopping it.
    :ivar timeouts: a query can be stopped by the engine's client (HTTP timeout); engines without
        it are stopped by ending the process that runs them.
    :ivar persistent: what is written survives the process.
    :ivar lossy_datatypes: datatypes whose literals the engine does not keep as written (Virtuoso 7:
        ``xsd:duration``); validation reports them apart, since the data was right when sent.
    """

    exclusive_writer: bool
    write_behind: bool
    substitution: bool
    transactions: bool = False
    bulk_load: bool = False
    read_only_views: bool = False
    timeouts: bool = False
    persistent: bool = True
    lossy_datatypes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Dataset:
    """The graphs a query runs over, as the SPARQL protocol names them.

    :ivar default_graphs: graphs merged into the default graph (``default-graph-uri``).
    :ivar named_graphs: graphs ``GRAPH`` can see (``named-graph-uri``); none when only default
        graphs are named.
    """

    default_graphs: tuple[str, ...] = ()
    named_graphs: tuple[str, ...] = ()


class WriteRejected(StoreError):
    """The engine refused a batch because of its content (not because of the disk or network)."""


class Engine(Protocol):
    """What the store needs from a place that holds quads."""

    description: str

    @property
    def capabilities(self) -> Capabilities:
        """What the engine can do."""

    def quads_for_subjects(self, subjects: Sequence[ox.NamedNode], graph: ox.NamedNode | None,
                           predicates: Sequence[ox.NamedNode] | None = None) -> Iterator[ox.Quad]:
        """Every quad of ``graph`` whose subject is one of ``subjects`` (and predicate one of
        ``predicates``, when given)."""

    def apply(self, deletes: Sequence[ox.Quad], inserts: Mapping[ox.NamedNode, Sequence[str]]) -> None:
        """Remove ``deletes``, then add ``inserts`` (N-Triples lines, per named graph)."""

    def writing(self) -> AbstractContextManager[None]:
        """Held while one batch is applied (one or more :meth:`apply`): where the engine can, a
        reader's view of it opens before or after the batch, never in the middle."""

    def query(
        self, sparql: str, *, substitutions: dict[str, Any] | None = None, union: bool = True,
        dataset: Dataset | None = None, base_iri: str | None = None,
    ) -> ox.QuerySolutions | ox.QueryBoolean | ox.QueryTriples:
        """Run a SPARQL query (default graph = union of all graphs; relative IRIs in it resolve
        against ``base_iri``)."""

    def iter_quads(self, graph: ox.NamedNode | None = None) -> Iterator[ox.Quad]:
        """Every quad in the store (of ``graph`` only, if given)."""

    def dump(self, output: IO[bytes], fmt: ox.RdfFormat, *, prefixes: dict[str, str]) -> None:
        """Write the whole dataset (formats with named graphs) to ``output``."""

    def clear_graph(self, graph: ox.NamedNode) -> None:
        """Remove every quad of ``graph``."""

    def count(self) -> int:
        """Number of quads in the store."""

    def close(self) -> None:
        """Release the store."""


def select(engine: Engine, sparql: str, **options: Any) -> ox.QuerySolutions:
    """The solutions of a SELECT ``sparql`` run on ``engine`` (:meth:`Engine.query`'s options).

    :raises QueryError: it is not a SELECT.
    """
    result = engine.query(sparql, **options)
    if not isinstance(result, ox.QuerySolutions):
        raise QueryError("expected the solutions of a SELECT query")
    return result


def first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 300 else line[:297] + "..."


def translate_syntax_error(exc: SyntaxError, name: str | None = None, text: str | None = None) -> QueryError:
    """Turn a SPARQL ``SyntaxError`` into a :class:`QueryError` a person can read: the line and
    column, the text there, and what was expected when that is short (not the grammar's list).

    >>> str(translate_syntax_error(SyntaxError("error at 1:10: expected CONSTRUCT"), text="SELEC * WHERE {}"))
    'line 1:10: syntax error (expected CONSTRUCT) near "SELEC * WHERE {}"'
    >>> str(translate_syntax_error(SyntaxError('error at 1:27: expected one of ",", ".", ";", "{", "}", [_]'),
    ...                            text="SELECT * WHERE { ?s ?p ?o "))
    'line 1:27: syntax error near "SELECT * WHERE { ?s ?p ?o" (the query ends there: is a brace or bracket left open?)'
    """
    message = str(exc)
    line = column = None
    m = re.search(r"(\d+):(\d+)", message)
    if m:
        line, column = int(m.group(1)), int(m.group(2))
    expected = message.split("expected ", 1)[1] if "expected " in message else ""
    choices = [c.strip() for c in expected.removeprefix("one of ").split(",") if c.strip()] if expected else []
    what = "syntax error"
    if choices and len(choices) <= 3 and "[_]" not in choices:
        what += f" (expected {' or '.join(choices)})"
    if text is not None and line is not None and column is not None:
        lines = text.split("\n")
        source = lines[line - 1] if 0 < line <= len(lines) else ""
        start = max(0, column - 40)
        near = source[start : column + 30].strip()
        if near:
            what += f' near "{near}"'
        if column > len(source.rstrip()) and not "\n".join(lines[line:]).strip():
            what += _at_the_end(text)
    return QueryError(what, name=name, line=line, column=column)


_MODIFIERS = {"GROUP", "BY", "ORDER", "ASC", "DESC", "HAVING", "LIMIT", "OFFSET", "VALUES", "UNDEF"}


def _at_the_end(text: str) -> str:
    """Why a query fails where it ends: something left open, or a word after the last ``}``."""
    bare = re.sub(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|<[^<>\s]*>|#[^\n]*', "", text)
    if bare.count("{") != bare.count("}") or bare.count("(") != bare.count(")") or bare.count("[") != bare.count("]"):
        return " (the query ends there: is a brace or bracket left open?)"
    if bare.count('"') % 2 or bare.count("'") % 2:
        return " (the query ends there: is a string left open?)"
    tail = bare.rsplit("}", 1)[-1]
    for word in re.findall(r"[A-Za-z]+", tail):
        if word.upper() not in _MODIFIERS:
            return f" (unexpected {word!r} after the last }})"
    return " (the query ends too early)"
