"""What the store needs from an engine that holds quads, and what each engine declares it can do.

Engines: :mod:`.oxigraph` (embedded, in memory or on disk) and :mod:`.sparql_http` (any
SPARQL 1.1 server through the Query, Update and Graph Store protocols). The store asks an
engine's :class:`Capabilities` instead of checking its class; ``tests/test_engines.py``
runs one conformance suite against every engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

import pyoxigraph as ox

from ..errors import QueryError, StoreError

__all__ = ["Capabilities", "Engine", "WriteRejected", "first_line", "translate_syntax_error"]


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
    """

    exclusive_writer: bool
    write_behind: bool
    substitution: bool
    transactions: bool = False
    bulk_load: bool = False
    read_only_views: bool = False
    timeouts: bool = False
    persistent: bool = True


class WriteRejected(StoreError):
    """The engine refused a batch because of its content (not because of the disk or network)."""


class Engine(Protocol):
    """What the store needs from a place that holds quads."""

    description: str
    capabilities: Capabilities

    def quads_for_subjects(self, subjects: Sequence[ox.NamedNode], graph: ox.NamedNode) -> Iterator[ox.Quad]:
        """Every quad of ``graph`` whose subject is one of ``subjects``."""

    def apply(self, deletes: Sequence[ox.Quad], inserts: Mapping[ox.NamedNode, Sequence[str]]) -> None:
        """Remove ``deletes``, then add ``inserts`` (N-Triples lines, per named graph)."""

    def query(
        self, sparql: str, *, substitutions: dict[str, Any] | None = None, union: bool = True
    ) -> ox.QuerySolutions | ox.QueryBoolean | ox.QueryTriples:
        """Run a SPARQL query (default graph = union of all graphs)."""

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


def first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 300 else line[:297] + "..."


def translate_syntax_error(exc: SyntaxError, name: str | None = None) -> QueryError:
    """Turn pyoxigraph's SPARQL ``SyntaxError`` into a :class:`QueryError` with line and column."""
    message = str(exc)
    line = column = None
    m = re.search(r"(?:at |line )?(\d+):(\d+)", message)
    if m:
        line, column = int(m.group(1)), int(m.group(2))
    return QueryError(f"SPARQL syntax error: {message}", name=name, line=line, column=column)
