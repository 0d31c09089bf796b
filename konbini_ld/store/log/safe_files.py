"""The files a store directory keeps for itself, opened so that nothing else is ever read or
written through them.

``writer.lock``, ``views.lock`` and ``views.turn`` (opened by :mod:`konbini_ld.engines.views`, the same way), ``state.json``, ``REBUILD``, ``store-id``, ``search.sqlite`` and, in
``archive/``, ``HEAD``, ``OWNER``, ``.lock`` and the segments are konbini-ld's own: each is
opened without following a symbolic link (``O_NOFOLLOW``) and must be a regular file (a FIFO
would block, a device never end). A link or anything else in their place is refused with one
line naming it: truncating a lock that points at someone's file, or appending a paid response
to a device, is never the way to find out. The directories themselves (the store, ``archive/``,
``oxigraph/``) may be links: that is how a store is put on another disk.

The small files (everything but the segments) are read only up to :data:`MAX_SMALL_FILE`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import IO, Any

from ...errors import StoreError

__all__ = ["MAX_SMALL_FILE", "check_not_link", "check_regular", "is_odd", "open_file", "read_small", "write_atomic"]

#: The most konbini-ld reads of one of its small files (they hold a few dozen bytes).
MAX_SMALL_FILE = 64 * 1024

_FLAGS = {
    "rb": os.O_RDONLY,
    "r": os.O_RDONLY,
    "r+b": os.O_RDWR,
    "ab": os.O_WRONLY | os.O_APPEND | os.O_CREAT,
    "a": os.O_WRONLY | os.O_APPEND | os.O_CREAT,
    "a+": os.O_RDWR | os.O_APPEND | os.O_CREAT,
    "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
}


def _link_error(path: Path) -> StoreError:
    return StoreError(
        f"{path} is a symbolic link: konbini-ld reads and writes a store's own files only as regular files, "
        "never through a link (remove the link; a missing file is made again)"
    )


def check_not_link(path: Path) -> None:
    """Refuse ``path`` if it is a symbolic link.

    :raises StoreError: it is.
    """
    if path.is_symlink():
        raise _link_error(path)


def is_odd(path: Path) -> bool:
    """Whether something other than a regular file is at ``path`` (a link, a FIFO, a device, a
    directory), looked at without following a link or opening anything."""
    try:
        return not stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def check_regular(path: Path) -> None:
    """Refuse ``path`` if something other than a regular file is there (a missing one is fine).

    :raises StoreError: a link, or not a regular file, in its place.
    """
    check_not_link(path)
    if is_odd(path):
        raise StoreError(f"{path} is not a regular file (konbini-ld made it as one)")


def open_file(path: Path, mode: str) -> IO[Any]:
    """Open one of the store's own files (``mode`` as :func:`open` takes it: ``rb``, ``r+b``,
    ``ab``, ``a+``, ``wb``…), never through a link and only if it is a regular file.

    :raises StoreError: a link, or not a regular file, in its place.
    :raises OSError: it cannot be opened (missing, permissions…).
    """
    flags = _FLAGS[mode] | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # (a FIFO must not block the open)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.EMLINK and path.is_symlink()):
            raise _link_error(path) from None
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads, opened for writing
            raise StoreError(f"{path} is not a regular file (konbini-ld made it as one)") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{path} is not a regular file (konbini-ld made it as one)")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        if "b" in mode:
            return os.fdopen(fd, mode)
        return os.fdopen(fd, mode, encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def read_small(path: Path, limit: int = MAX_SMALL_FILE) -> str:
    """The text of one of the store's small files (``FileNotFoundError`` when there is none).

    :raises StoreError: a link or not a regular file, or larger than ``limit`` bytes.
    :raises ValueError: not UTF-8 text (the caller's file is damaged).
    """
    with open_file(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise StoreError(f"{path} is larger than {limit // 1024} KiB: it is not a file konbini-ld wrote")
    return str(data.decode("utf-8"))


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, durably: written to ``path.tmp`` (never through a link),
    fsynced, then renamed over it.

    :raises StoreError: ``path`` is a link.
    """
    check_not_link(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.is_symlink():
        tmp.unlink()  # (a leftover of ours would be a file; a link there is removed, its target untouched)
    with open_file(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
