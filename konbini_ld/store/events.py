"""What the writer tells those who follow the graph: one :class:`BatchWritten` per batch written.

The index beside the graph (:mod:`.index`) follows it: it reads the values the event carries and
reads back from the graph only the entities the event does not carry whole (those the graph
held before, whose other properties the batch left as they were).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["BatchWritten", "Subscriber"]

#: Statements as the upsert planned them: (entity, property) → N-Triples lines.
Statements = dict[tuple[str, str], list[str]]
#: A point of a summarised series: entity IRI, property IRI, time (konbini-ld's spelling), value.
Point = tuple[str, str, str, str]


@dataclass(slots=True)
class BatchWritten:
    """One batch written, as it was applied.

    :ivar entities: the audios and persons whose values the batch changed (IRI → ``audio`` or
        ``person``).
    :ivar final: the data statements the batch wrote for the entities it planned.
    :ivar new: the entities new to the graph (N-Triples IRIs): all they hold is in ``final``.
    :ivar provenance: the provenance statements it wrote (the activities and their times).
    :ivar points: the points it added to the series the index summarises.
    :ivar seq: how far into the archive the graph now is (``None``: not an archive position).
    """

    entities: dict[str, str] = field(default_factory=dict)
    final: Statements = field(default_factory=dict)
    new: frozenset[str] = frozenset()
    provenance: Statements = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)
    seq: int | None = None

    @property
    def empty(self) -> bool:
        return not self.entities and not self.provenance and not self.points and self.seq is None


Subscriber = Callable[[BatchWritten], None]
