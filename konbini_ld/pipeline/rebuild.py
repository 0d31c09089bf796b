"""``rebuild``: re-derive the graph from the archive, never leaving a partial graph behind.

The archive is read through once first; a damaged archive stops the rebuild before anything
changes (unless damage is accepted). The new graph is then built beside the live one and
replaces it only when complete: on disk, a directory swap at a commit point
(:func:`.directory.commit_rebuild`); on a remote server, temporary graphs moved over
konbini-ld's graphs in one update.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import pyoxigraph as ox

from ..engines.base import Engine
from ..engines.oxigraph import OxigraphEngine
from ..errors import ArchiveDamageError, StoreError
from ..mapping.prepare import body_sha256
from ..model import LoadReport
from ..store.history import HISTORY_G
from ..store.index.textindex import TextIndex, discard, open_index
from ..store.log import directory
from ..store.log.archive import Archive
from ..store.provenance import DATA, PROV_G, recorded_shas
from ..store.writer import Writer
from ..vocab import DATA_GRAPH, HISTORY_GRAPH, PROV_GRAPH
from .ingest import Pipeline

if TYPE_CHECKING:
    from ..engines.sparql_http import SparqlHttpEngine

__all__ = ["Rebuildable", "rebuild"]

Progress = Callable[[int], None] | None


class Rebuildable(Protocol):
    """What a rebuild needs of a store (the facade provides it)."""

    engine: Engine
    archive: Archive | None
    writer: Writer
    pipeline: Pipeline
    location: Path | None
    state_dir: Path | None
    marking: bool
    index: TextIndex | None

    def mark_applied(self, seq: int) -> None: ...

    def follow_with(self, index: TextIndex | None) -> None: ...

    def open_engine(self, *, read_only: bool) -> OxigraphEngine: ...

    def repack(self) -> int: ...

    def replace_graph(self, building: Path, applied: int, *,
                      before_commit: Callable[[], None] | None = None) -> None: ...


def rebuild(store: Rebuildable, *, progress: Progress = None, accept_damage: bool = False) -> LoadReport:
    """Rebuild ``store``'s graph from its archive (see :meth:`konbini_ld.pipeline.collection.KonbiniStore.rebuild`)."""
    if store.archive is None:
        raise StoreError("an in-memory store has no archive to rebuild from")
    store.writer.sync()
    scan = store.archive.verify()
    if scan.damage and not accept_damage:
        raise ArchiveDamageError(scan)
    last = max(store.archive.last_seq, scan.last_seq)
    report = _embedded(store, progress, last) if store.location is not None else _remote(store, progress, last)
    report.damage = scan.damage
    return report


def _embedded(store: Rebuildable, progress: Progress, last: int) -> LoadReport:
    assert store.location is not None and store.archive is not None and store.state_dir is not None
    directory.check_replaceable(store.location)
    building = store.location / directory.BUILDING
    directory.remove_tree(building)
    live, new = store.engine, OxigraphEngine(building)
    index = store.index  # the live graph's, until the new one goes live
    store.follow_with(None)
    store.writer.reset(engine=new)
    store.marking = False
    try:
        report = store.pipeline.run(store.archive.records(), archive=False, progress=progress)
        new.close()
    except BaseException:
        new.close()
        store.writer.reset(engine=live)
        store.follow_with(index)
        directory.remove_tree(building)
        raise
    finally:
        store.marking = True
    location, retired = store.location, False

    def retire_index() -> None:
        nonlocal retired
        retired = True
        if index is not None:
            index.close()
        discard(location)  # (a kill from here on: the next writer builds it afresh)

    try:
        store.replace_graph(building, last, before_commit=retire_index)
    except BaseException:
        store.writer.reset(engine=store.engine)  # (the live graph, reopened when it could be)
        store.follow_with(None if retired else index)
        raise
    store.writer.reset(engine=store.engine)
    store.follow_with(open_index(store.engine, store.location, last, read_only=False))
    store.repack()  # written by a load per batch: one bulk load of its quads takes half the room
    return report


def _remote(store: Rebuildable, progress: Progress, last: int) -> LoadReport:
    assert store.archive is not None
    ours = {body_sha256(r.body) for r in store.archive.records()}
    foreign = [sha for sha in recorded_shas(store.engine) if sha not in ours]
    if foreign:
        raise StoreError(
            f"{store.engine.description} holds {len(foreign)} observations that the archive at "
            f"{store.archive.path} did not record (pushed or loaded from another archive); a rebuild from "
            "this archive would delete them. Rebuild the store that recorded them and `push` it, or point "
            "--archive at the archive that holds every response"
        )
    temporary = (
        ox.NamedNode(DATA_GRAPH + ":rebuild"), ox.NamedNode(PROV_GRAPH + ":rebuild"),
        ox.NamedNode(HISTORY_GRAPH + ":rebuild"),
    )
    for graph in temporary:
        store.engine.clear_graph(graph)
    store.writer.reset(graphs=temporary)
    store.marking = False
    try:
        report = store.pipeline.run(store.archive.records(), archive=False, progress=progress)
    finally:
        store.writer.reset()
        store.marking = True
    cast("SparqlHttpEngine", store.engine).move_graphs({temporary[0]: DATA, temporary[1]: PROV_G,
                                                         temporary[2]: HISTORY_G})
    store.mark_applied(last)
    return report

