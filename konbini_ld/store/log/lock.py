"""The store's single-writer lock: ``writer.lock``, held (``flock``) by the one process writing
a store directory, naming it for whoever waits."""

from __future__ import annotations

import errno
import fcntl
import os
import sys
from pathlib import Path
from typing import IO

from ...errors import StoreBusyError, StoreError
from ...io.text import printable
from .safe_files import open_file

__all__ = ["NotWritableError", "WriterLock"]


class NotWritableError(StoreError):
    """The store directory is there but this user cannot write it (reading it may still work)."""


class WriterLock:
    """The store's single-writer lock (an ``flock`` on ``writer.lock``), naming its holder.

    :param what: what the holder is doing (``konbini-ld load``…), shown to whoever waits.
    """

    def __init__(self, location: Path, what: str | None = None) -> None:
        self.path = location / "writer.lock"
        self.what = what or _command_line()
        self._fh: IO[str] | None = None

    @classmethod
    def take(cls, location: Path) -> WriterLock:
        """Acquire the lock of the store at ``location``.

        :raises StoreError: another process holds it (naming that process).
        """
        lock = cls(location)
        lock.acquire()
        return lock

    def acquire(self) -> None:
        store = self.path.parent
        try:
            store.mkdir(parents=True, exist_ok=True)
            fh = open_file(self.path, "a+")
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise NotWritableError(_cannot_write(store, exc)) from exc
            raise StoreError(_cannot_write(store, exc)) from exc
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = printable(fh.read(_HOLDER_CHARS).strip())
            fh.close()
            raise StoreBusyError(
                f"the store at {self.path.parent} is being written by another process"
                f"{f' ({holder})' if holder else ''}; wait for it to finish, or use another --store "
                "(queries, exports and `serve` can run beside a writer)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{self.what}, pid {os.getpid()}")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            try:
                self._fh.seek(0)
                self._fh.truncate()
            except OSError:  # pragma: no cover - disk gone
                pass
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


#: How much of ``writer.lock`` is read to name its holder.
_HOLDER_CHARS = 1024


def _cannot_write(store: Path, exc: OSError) -> str:
    """Why a store cannot be written, in words (reading it may still work)."""
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        return f"cannot make the store directory {store}: a part of that path is a file, not a directory"
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"cannot write the store at {store}: {reason} (it is read-only for this user; "
                "query, export, stats, validate and serve can still read it)")
    return f"cannot write the store at {store}: {reason}"


_COMMANDS = {"load", "fetch", "rebuild", "serve", "push", "validate", "query", "export", "stats"}


def _command_line() -> str:
    """``konbini-ld load`` for the command line, else the program's name."""
    argv0 = sys.argv[0] if sys.argv else ""
    prog = os.path.basename(argv0) or "python"
    if prog == "__main__.py":  # python -m …
        prog = "konbini-ld" if os.path.basename(os.path.dirname(argv0)) == "konbini_ld" else "python"
    command = next((a for a in sys.argv[1:] if a in _COMMANDS), None)
    return f"`{prog} {command}`" if command else f"`{prog}`"
