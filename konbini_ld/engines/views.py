"""Views of an embedded graph open only between a writer's batches.

A read-only view of an Oxigraph directory is the graph as it was when the view was opened. A
writer applies one batch as several writes (its removes, its inserts, then the values they
replace), so a view opened between two of them would read a batch half written: a counter with
no value, or with two. :class:`ViewLock` keeps views out of that moment:

- the writer holds ``views.lock`` exclusively while it applies one batch (:meth:`ViewLock.batch`);
- a reader holds it shared only while it opens its view (:meth:`ViewLock.opening`): milliseconds.
  A reader stopped right then (Ctrl-Z) does not stop the writer: past :data:`WRITER_PATIENCE` it
  writes without waiting (that reader may then open a view in the middle of a batch).

A writer applying batch after batch would leave a reader only the instant between two of them,
so a reader that waits takes ``views.turn`` first, and the writer takes it before each batch: the
writer lets a waiting reader in before its next batch (a reader waits at most one batch). The
locks are ``flock``\\ s, released by the kernel when their process ends, however it ends.

A reader that cannot create the files (a store read-only for it) and finds them missing opens
its view without them: no writer that takes them has opened the store.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import StoreBusyError, StoreError

__all__ = ["LOCK", "PATIENCE", "TURN", "ViewLock"]

#: The file the writer holds exclusively while it applies a batch.
LOCK = "views.lock"
#: The file a waiting reader holds so that the writer lets it in before its next batch.
TURN = "views.turn"
#: How long a reader waits for a batch to be written before it says the store is busy (seconds):
#: far longer than any batch takes; what exceeds it is a writer stopped mid-batch.
PATIENCE = 120.0
#: How long the writer waits for readers opening their views (they take milliseconds): past it,
#: one is stopped in the middle, and the batch is written without waiting for it.
WRITER_PATIENCE = 10.0

logger = logging.getLogger(__name__)


class ViewLock:
    """The locks that keep views of the graph at ``directory`` out of a batch being written.

    :param directory: the store directory (the files live beside the graph, across compactions).
    :param writer: held by the store's one writer (opens the files now and keeps them).
    :param patience: how long :meth:`opening` waits for a batch to be written.
    """

    def __init__(self, directory: Path, *, writer: bool = False, patience: float = PATIENCE,
                 applied: Callable[[], int | None] | None = None) -> None:
        self.directory = directory
        self.patience = patience
        self.writer = writer
        self._read_applied = applied
        #: how far the archive was applied when the last view opened (read with it: the writer marks
        #: each batch before it lets views open again), so answers from the index beside the graph
        #: are taken only if they are of the same state
        self.applied: int | None = None
        #: the last view opened without the locks (their files missing, and not this process's to
        #: make): a writer may have been in the middle of a batch, and how far it had applied is unknown
        self.unlocked = False
        self._fds: tuple[int, int] | None = None
        if writer:  # (now: a link or a device in their place is refused before anything is written)
            self._fds = self._open(create=True)

    def _open(self, *, create: bool) -> tuple[int, int] | None:
        """The two files' descriptors (``None``: missing, and this process may not make them)."""
        fds: list[int] = []
        try:
            for name in (LOCK, TURN):
                fd = _open_file(self.directory / name, create=create)
                if fd is None:
                    return None
                fds.append(fd)
            a, b = fds
            fds = []
            return a, b
        finally:
            for fd in fds:
                os.close(fd)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Held while the writer applies one batch: no view opens meanwhile."""
        if self._fds is None and self.writer:  # (closed with the graph, which opened again: a new one swapped in)
            self._fds = self._open(create=True)
        if self._fds is None:
            yield
            return
        lock, turn = self._fds
        deadline = time.monotonic() + WRITER_PATIENCE
        # (a reader waiting for the last batch goes first; readers hold the lock only while they open
        # a view: a reader stopped right then, Ctrl-Z, does not stop the writer, which goes on without)
        held_turn = _take(turn, fcntl.LOCK_EX, deadline)
        try:
            held = _take(lock, fcntl.LOCK_EX, deadline)
        finally:
            if held_turn:
                fcntl.flock(turn, fcntl.LOCK_UN)
        if not held:
            logger.warning("a reader of %s has been opening its view for %.0f s (stopped?): writing without "
                           "waiting for it", self.directory, WRITER_PATIENCE)
        try:
            yield
        finally:
            if held:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextmanager
    def opening(self) -> Iterator[None]:
        """Held while a reader opens its view: the view is the graph between two batches.

        :raises StoreBusyError: a batch has been being written for :attr:`patience` seconds.
        """
        fds = self._open(create=True)
        self.unlocked = fds is None
        if fds is None:
            self.applied = None
            yield
            return
        lock, turn = fds
        try:
            deadline = time.monotonic() + self.patience
            _wait(turn, fcntl.LOCK_EX, deadline, self.directory, self.patience)
            try:
                _wait(lock, fcntl.LOCK_SH, deadline, self.directory, self.patience)
            finally:
                fcntl.flock(turn, fcntl.LOCK_UN)
            self.applied = self._read_applied() if self._read_applied is not None else None
            yield
        finally:
            os.close(lock)  # (closing releases the locks)
            os.close(turn)

    def close(self) -> None:
        """Let the files go (a writer's :meth:`batch` opens them again)."""
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None


def _take(fd: int, how: int, deadline: float) -> bool:
    """Take the lock by ``deadline`` (``False``: not taken)."""
    pause = 0.0005
    while True:
        try:
            fcntl.flock(fd, how | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.01)


def _wait(fd: int, how: int, deadline: float, directory: Path, patience: float) -> None:
    if not _take(fd, how, deadline):
        raise StoreBusyError(
            f"the store at {directory} has been in the middle of writing one batch for more than "
            f"{patience:.0f} s (is its writer stopped?): a view opened now would read it half written")


def _open_file(path: Path, *, create: bool) -> int | None:
    """``path`` opened for locking, never through a link and only if it is a regular file
    (``None``: it is missing and cannot be made here)."""
    flags = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise _refused(path, exc) from exc
        try:  # (a store read-only for this user: a shared lock needs only reading)
            fd = os.open(path, flags | os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as again:
            raise _refused(path, again) from again
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(f"{path} is not a regular file: konbini-ld keeps its views' lock there (remove it; "
                         "it is made again)")
    return fd


def _refused(path: Path, exc: OSError) -> StoreError:
    if exc.errno == errno.ELOOP:
        return StoreError(f"{path} is a symbolic link: konbini-ld reads and writes a store's own files only as "
                          "regular files, never through a link (remove the link; a missing file is made again)")
    return StoreError(f"cannot open {path}: {exc.strerror or exc}")
