"""The store directory on disk: who may write it, how far the graph is applied, and the
atomic swap that makes ``rebuild`` safe to interrupt.

Layout::

    <store>/
      oxigraph/          the live graph (RocksDB)
      archive/           every raw response (see :mod:`konbini_ld.archive`)
      state.json         {"applied_seq": N}: archive records 1..N are in the live graph
      writer.lock        held (flock) by the one process writing; says who it is
      views.lock, .turn  a view opens only between the writer's batches (engines/views.py)
      oxigraph.rebuild/  a graph being rebuilt (never read; deleted if a rebuild was interrupted)
      REBUILD            written once a rebuilt graph is complete: the swap's commit point

A rebuild never touches the live graph while it runs. When the new graph is complete
and flushed, ``REBUILD`` is written (atomically), then the directories are swapped and
``state.json`` replaced; whoever opens the store next finishes a swap that a kill cut
short (:func:`settle`), or deletes a rebuild that never reached its commit point.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...engines.oxigraph import OxigraphEngine

from ...errors import StoreDamagedError, StoreError
from .lock import NotWritableError, WriterLock
from .safe_files import check_not_link, read_small, write_atomic

__all__ = [
    "NotWritableError",
    "WriterLock",
    "check_endpoint_url",
    "commit_rebuild",
    "default_location",
    "has_unapplied",
    "locate",
    "open_graph",
    "open_oxigraph",
    "read_applied",
    "remove_tree",
    "settle",
    "write_applied",
]

LIVE = "oxigraph"
BUILDING = "oxigraph.rebuild"
RETIRED = "oxigraph.old"
JOURNAL = "REBUILD"
STATE = "state.json"


def default_location(environ: Mapping[str, str]) -> Path:
    """Where a store lives when none is named: ``$XDG_DATA_HOME/konbini-ld/store``
    (``~/.local/share/konbini-ld/store``).

    :param environ: the environment to read ``XDG_DATA_HOME`` from (``os.environ``).
    """
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "konbini-ld" / "store"


def remote_archive_location(url: str, environ: Mapping[str, str]) -> Path:
    """Where the archive of a remote store lives when none is named: one directory per endpoint."""
    import re

    from ...urls import redact

    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", redact(url).split("://", 1)[-1]).strip("_")
    return default_location(environ).parent / "remote" / slug


def locate(store: str | None, archive: str | None, environ: Mapping[str, str]) -> tuple[Path | str, Path | None]:
    """Where a store and its archive are, from what the user gave (or the defaults).

    A SPARQL endpoint URL stays a string, with its archive kept locally per endpoint;
    a directory is a :class:`~pathlib.Path`, with its archive inside (``None``) unless given.

    >>> locate("http://127.0.0.1:7878/query", None, {"XDG_DATA_HOME": "/d"})
    ('http://127.0.0.1:7878/query', PosixPath('/d/konbini-ld/remote/127.0.0.1_7878_query'))
    >>> locate(None, None, {"XDG_DATA_HOME": "/d"})
    (PosixPath('/d/konbini-ld/store'), None)
    """
    import re

    from ...errors import UsageError
    from ...urls import redact

    for name in ("KONBINI_LD_STORE", "KONBINI_LD_ARCHIVE"):
        if name in environ and not environ[name].strip() and (store if name.endswith("STORE") else archive) is None:
            raise UsageError(f"{name} is set but empty: unset it for the default, or give a directory")
    if store is not None and not store.strip():
        raise UsageError("--store is empty: give a directory or an http(s) SPARQL endpoint URL")
    if archive is not None and not archive.strip():
        raise UsageError("--archive is empty: give a directory")
    if archive and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", archive):
        raise UsageError(f"--archive {redact(archive)!r} is a URL: the archive is a local directory")
    if store and store.startswith(("http://", "https://")):
        check_endpoint_url(store, "--store")
        return store, Path(archive) if archive else remote_archive_location(store, environ)
    if store and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", store):
        raise UsageError(f"--store {store!r} is not a directory or an http(s) SPARQL endpoint URL")
    return (Path(store) if store else default_location(environ)), (Path(archive) if archive else None)


def check_endpoint_url(url: str, option: str) -> None:
    """Refuse an http(s) URL that names no server (``http://``, ``http://[::1``, a port past 65535).

    :raises UsageError: it names none.
    """
    from urllib.parse import urlsplit

    from ...errors import UsageError
    from ...urls import redact

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not one
    except ValueError as exc:
        raise UsageError(f"{option} {redact(url)!r} is not a URL: {exc}") from None
    if not parts.hostname:
        raise UsageError(f"{option} {redact(url)!r} names no server")


def _write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value))


def read_applied(state_dir: Path) -> int:
    """How far into the archive the graph is applied (0 when nothing is recorded).

    :raises StoreError: ``state.json`` is damaged (with the way out).
    """
    path = state_dir / STATE
    try:
        text = read_small(path)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise StoreError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    except ValueError:
        text = ""  # not UTF-8: damaged
    try:
        value = json.loads(text)
        applied = value["applied_seq"]
        if not isinstance(applied, int) or applied < 0:
            raise ValueError(applied)
        return applied
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            f"{path} is damaged, so it is unknown how much of the archive the graph holds; "
            "`konbini-ld rebuild` re-derives the graph from the archive (no credits are spent) "
            "and writes a new one"
        ) from exc


def write_applied(state_dir: Path, seq: int) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    _write_json(state_dir / STATE, {"applied_seq": seq})


def settle(location: Path, state_dir: Path) -> None:
    """Finish or undo a rebuild that was interrupted (call with the writer lock held)."""
    journal = location / JOURNAL
    building, live, retired = location / BUILDING, location / LIVE, location / RETIRED
    if journal.exists() or journal.is_symlink():
        check_not_link(journal)
        try:
            applied = int(json.loads(read_small(journal))["applied_seq"])
        except (OSError, ValueError, KeyError, TypeError):
            applied = None
        if applied is None or building.is_symlink():
            # the commit point itself was torn (or the rebuilt graph is not the directory a rebuild
            # made): the rebuilt graph is not vouched for
            remove_tree(building)
            journal.unlink()
            return
        if building.exists():
            if live.exists():
                remove_tree(retired)
                live.rename(retired)
            building.rename(live)
        write_applied(state_dir, applied)
        remove_tree(retired)
        journal.unlink()
        return
    if building.exists() or building.is_symlink():
        remove_tree(building)  # a rebuild that never finished: the live graph is intact
    if retired.exists() or retired.is_symlink():
        if not live.exists() and not retired.is_symlink():
            retired.rename(live)
        else:
            remove_tree(retired)


def check_replaceable(location: Path) -> None:
    """Refuse to replace a live graph that is a link (to another disk, say): the new graph would
    be written inside the store directory and the link's target left behind as it is.

    :raises StoreError: ``oxigraph/`` is a link.
    """
    live = location / LIVE
    if live.is_symlink():
        raise StoreError(
            f"{live} is a link (to {live.readlink()}): a new graph would be written in {location}, "
            "not where it points. Link the store directory itself instead (--store may be a link), "
            "or replace the link with what it points to"
        )


def check_released(location: Path) -> None:
    """Make sure nothing in this process still has the live graph open (before it is replaced:
    an old instance left running would write its files into the new graph's directory).

    :raises StoreBusyError: something still reads it.
    """
    import pyoxigraph as ox

    from ...engines.oxigraph import translate

    live = location / LIVE
    if not live.is_dir() or live.is_symlink():
        return
    from ...errors import StoreBusyError

    try:
        probe = ox.Store(str(live))
    except (OSError, RuntimeError) as exc:
        error = translate(exc, str(location), read_only=False, doing="opening")
        if isinstance(error, StoreBusyError):  # (RocksDB takes its lock before it reads anything)
            raise error from exc
        return  # damaged (what a rebuild replaces): nothing has it open
    del probe


def remove_tree(path: Path) -> None:
    """Delete a directory konbini-ld made (a link in its place is removed, never followed)."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()  # (a stray file in its place too)
    else:
        shutil.rmtree(path, ignore_errors=True)


def commit_rebuild(location: Path, state_dir: Path, applied: int) -> None:
    """The rebuilt graph in ``oxigraph.rebuild/`` is complete: make it the live graph."""
    _write_json(location / JOURNAL, {"applied_seq": applied})
    settle(location, state_dir)


# -- opening the graph --------------------------------------------------------------


def _archived(state_dir: Path) -> int:
    from .archive import Archive

    return Archive(state_dir / "archive").last_seq


def _applied_or_none(state_dir: Path) -> int | None:
    try:
        return read_applied(state_dir)
    except StoreError:  # (a damaged state file: said elsewhere)
        return None


def has_unapplied(state_dir: Path) -> bool:
    """Whether a store directory without a graph holds answers a run archived and never wrote
    (records in its archive, answers in ``unarchived/``): its next writer applies them."""
    spill = state_dir / "unarchived"
    try:
        return ((state_dir / "archive").is_dir() and _archived(state_dir) > 0) or (
            spill.is_dir() and any(spill.iterdir()))
    except (StoreError, OSError):  # (a damaged archive: the writer that opens it says how)
        return True


def _has_data(path: Path) -> bool:
    """Whether the Oxigraph directory at ``path`` holds any quad (cheap: reads one)."""
    import pyoxigraph as ox

    if not path.is_dir():
        return False
    try:
        store = ox.Store.read_only(str(path))
    except (OSError, RuntimeError):
        return True  # damaged, not empty: opening it says so
    try:
        return next(iter(store.quads_for_pattern(None, None, None, None)), None) is not None
    except (OSError, RuntimeError):
        return True
    finally:
        del store


def _missing(location: Path, state_dir: Path, what: str = "has no graph (oxigraph/ is missing)") -> str:
    archived = _archived(state_dir)
    if archived:
        return (
            f"the store at {location} {what} but its archive holds {archived} responses: "
            "`konbini-ld rebuild` re-derives the graph from them (no credits are spent)"
        )
    return f"there is no konbini-ld store at {location} (load something first)"


def _finish_swap(location: Path, state_dir: Path, patience: float = 10.0) -> None:
    """A reader met a swap under way (``compact``, ``rebuild``): past the commit point, before
    the new graph is in place. It is in place in a moment; one left so by a writer that died is
    finished here (as the next writer would), when no writer holds the store.

    :raises StoreBusyError: a writer holds the store and has not finished its swap meanwhile.
    """
    from ...errors import StoreBusyError

    deadline = time.monotonic() + patience
    wait = 0.01
    while not (location / LIVE).is_dir() and (location / JOURNAL).exists():
        try:
            lock = WriterLock.take(location)
        except NotWritableError:
            return  # (it cannot finish it: the caller reads the new graph where it is)
        except StoreError:  # a writer is at it
            if time.monotonic() > deadline:
                raise StoreBusyError(
                    f"the store at {location} is switching to a new graph (compact or rebuild in another "
                    "process) and has not finished; read it again when that process is done") from None
            time.sleep(wait)
            wait = min(wait * 2, 0.2)
            continue
        try:
            settle(location, state_dir)
        finally:
            lock.release()


def open_oxigraph(location: Path, state_dir: Path, read_only: bool) -> OxigraphEngine:
    """Open the embedded graph; a damaged one is reported with the way to recover it."""
    from ...engines.oxigraph import OxigraphEngine
    from ...engines.views import ViewLock

    views = ViewLock(location, writer=not read_only,
                     applied=(lambda: _applied_or_none(state_dir)) if read_only else None)
    try:
        return OxigraphEngine(location / LIVE, read_only=read_only, views=views)
    except BaseException as exc:
        views.close()  # (the files a writer holds open are let go with the graph it could not open)
        if not isinstance(exc, StoreDamagedError):
            raise
        archived = _archived(state_dir)
        if archived:
            raise StoreError(
                f"{exc}. Its archive holds {archived} responses: `konbini-ld rebuild` re-derives the graph "
                "from them (no credits are spent)"
            ) from exc
        raise


def open_graph(location: Path, state_dir: Path, *, read_only: bool, rebuilding: bool,
               on_lock: Callable[[WriterLock], None]) -> OxigraphEngine:
    """Open a store directory's graph: refuse an archive that is another store's; for a writer,
    take the lock (handed to ``on_lock``), settle an interrupted rebuild and refuse an empty graph
    beside an applied archive.

    When ``rebuilding``, a damaged or missing graph is not an error: it is about to be replaced.
    """
    from ...engines.oxigraph import OxigraphEngine
    from .owner import check_archive

    if location.exists() and not location.is_dir():
        raise StoreError(f"--store {location} exists and is not a directory")
    if read_only:
        check_archive(location, state_dir, None, writable=False)  # before anything is read
        if not (location / LIVE).is_dir() and (location / JOURNAL).exists() and (location / BUILDING).is_dir():
            _finish_swap(location, state_dir)  # (a REBUILD with no graph to switch to is no store: nothing to finish)
            building = location / BUILDING
            if not (location / LIVE).is_dir() and building.is_dir() and not building.is_symlink():
                # this reader may not write, to finish the switch: the new graph is complete (past the
                # commit point), so it reads it where it is
                return OxigraphEngine(building, read_only=True)
        if not (location / LIVE).is_dir():
            raise StoreError(_missing(location, state_dir))
        if not (location / LIVE / "CURRENT").exists():  # (an empty oxigraph/: no graph was ever made there)
            raise StoreError(_missing(location, state_dir, "has no graph (oxigraph/ is empty)"))
    else:
        on_lock(WriterLock.take(location))
        check_archive(location, state_dir, None, writable=True)  # before anything is read or written
        settle(location, state_dir)
        if not rebuilding and read_applied(state_dir) and not _has_data(location / LIVE):
            raise StoreError(_missing(location, state_dir, "has lost its graph (oxigraph/ is missing or empty)"))
    try:
        return open_oxigraph(location, state_dir, read_only)
    except StoreError:
        if not rebuilding:
            raise
        return OxigraphEngine(None)  # the damaged graph is replaced, never read
