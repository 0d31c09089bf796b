"""Reading the files a user names besides responses (a ``.rq`` query, SHACL shapes, a list of
ids): never more than a documented limit, so that ``/dev/zero``, an endless pipe or a wrong
multi-gigabyte file is refused instead of filling memory, and decoded as UTF-8 with the place
of any invalid byte. FIFOs and pipes (``<(command)``) are read like files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO

from ..errors import UsageError

__all__ = ["MAX_LINE_CHARS", "MAX_QUERY_BYTES", "MAX_SHAPES_BYTES", "bounded_lines", "read_bounded"]

#: The largest ``.rq`` file read (a query of 10,000 IRIs in a VALUES block is under 1 MiB).
MAX_QUERY_BYTES = 4 * 1024 * 1024
#: The largest SHACL shapes file read.
MAX_SHAPES_BYTES = 64 * 1024 * 1024
#: The longest line of an ids file (an id or a TikTok music URL is a few hundred characters).
MAX_LINE_CHARS = 4096


def _mib(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB"


def read_bounded(path: str | os.PathLike[str], limit: int, what: str) -> str:
    """The text of the file at ``path`` (``what`` names it in errors: ``query file``, ``shapes``).

    :raises UsageError: it cannot be read, is larger than ``limit`` bytes, or is not UTF-8.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {os.fspath(path)}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise UsageError(f"{what} {os.fspath(path)} is larger than {_mib(limit)}: refusing to read it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UsageError(f"{what} {os.fspath(path)}:{line}: not UTF-8 text (byte {exc.start})") from None


def bounded_lines(fh: IO[bytes], label: str, *, max_line: int = MAX_LINE_CHARS,
                  max_bytes: int = 64 * 1024 * 1024) -> Iterator[str]:
    """The lines of a binary stream as text, each at most ``max_line`` characters, all together at
    most ``max_bytes``.

    :raises UsageError: a longer line (naming it), more than ``max_bytes``, or bytes that are not UTF-8.
    """
    total = 0
    lineno = 0
    while True:
        raw = fh.readline(max_line * 4 + 3)
        if not raw:
            return
        lineno += 1
        total += len(raw)
        if total > max_bytes:
            raise UsageError(f"{label} is larger than {_mib(max_bytes)}: refusing to read more of it")
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            if not raw.endswith(b"\n") and len(raw) > max_line:
                raise UsageError(f"{label}:{lineno}: a line longer than {max_line:,} characters") from None
            raise UsageError(f"{label}:{lineno}: not UTF-8 text (byte {exc.start} of the line)") from None
        if len(line) > max_line or (not raw.endswith(b"\n") and len(raw) == max_line * 4 + 3):
            raise UsageError(f"{label}:{lineno}: a line longer than {max_line:,} characters")
        yield line
