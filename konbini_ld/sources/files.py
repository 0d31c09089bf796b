"""Reading saved responses: files (JSON or JSON Lines), standard input, open streams and
Python values, as a stream of :class:`~konbini_ld.model.Response` (or the
:class:`~konbini_ld.errors.InputError` of an input that cannot be read).

Standard input is read only when asked for by name (``"-"`` or ``sys.stdin``).
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Union

from ..errors import InputError, UsageError
from ..mapping.envelope import MAX_DOCUMENT_BYTES
from ..model import Response

__all__ = ["Source", "batches", "iter_sources", "read_source", "text_stream"]

log = logging.getLogger(__name__)

#: What ``load`` takes: a path, ``"-"``, an open text (or binary) stream, or a response as a
#: Python value (with or without the ``{"data": …}`` envelope).
Source = Union[str, "os.PathLike[str]", IO[str], IO[bytes], Mapping[str, Any]]

_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonlines")


def read_source(source: Source, *, name: str | None = None) -> Iterator[Response | InputError]:
    """Stream the responses in one input.

    * a path (``str`` or :class:`os.PathLike`): a JSON file (one response, possibly an
      array) yields one :class:`~konbini_ld.model.Response`; JSON Lines (by suffix, or a
      file whose first two lines are each a whole object) one per non-blank line, streamed;
    * ``"-"`` or :data:`sys.stdin`: standard input, read like a file;
    * an open text or binary stream: read like a file;
    * a mapping: one response given as a Python value (``{"data": …}`` or the bare object).

    An input that cannot be read yields an :class:`~konbini_ld.errors.InputError`.

    :raises UsageError: ``source`` is none of the above (a list, a number…).
    """
    if isinstance(source, Mapping):
        try:
            body = json.dumps(source, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            yield InputError(f"not a JSON value: {exc}", source=name or "(value)")
            return
        yield Response(body, name or "(value)")
        return
    if isinstance(source, str) and source == "-" or source is sys.stdin:
        yield from _read_stream(sys.stdin, name or "-", jsonl=False)
        return
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or str(source)
        try:
            fh = open(path, encoding="utf-8", errors="surrogateescape", newline="")
        except FileNotFoundError:
            yield InputError("no such file", source=label)
            return
        except IsADirectoryError:
            yield InputError("is a directory, not a file", source=label)
            return
        except OSError as exc:
            yield InputError(f"cannot read: {exc.strerror or exc}", source=label)
            return
        with fh:
            jsonl = path.suffix.lower() in _JSONL_SUFFIXES
            log.info("reading %s (%s)", label, "JSON Lines" if jsonl else "JSON, or JSON Lines if it is")
            yield from _read_stream(fh, label, jsonl=jsonl)
        return
    if hasattr(source, "read"):
        label = name or str(getattr(source, "name", "(stream)"))
        if isinstance(source, (io.RawIOBase, io.BufferedIOBase)) or "b" in str(getattr(source, "mode", "")):
            text = io.TextIOWrapper(source, encoding="utf-8", errors="surrogateescape", newline="")  # type: ignore[type-var]
            try:
                yield from _read_stream(text, label, jsonl=False)
            finally:
                text.detach()  # the caller's file stays theirs to close
            return
        yield from _read_stream(source, label, jsonl=False)  # type: ignore[arg-type]
        return
    raise UsageError(
        f"cannot load a {type(source).__name__}: give paths, '-', open files or response dicts"
    )


#: The most read of one line, with its line break. A longer line is refused; in a regular file the
#: reading goes on after it, anything else is not read further (a line from a pipe or a device
#: may never end).
_LINE_READ = MAX_DOCUMENT_BYTES + 2


def _too_long(line: str) -> bool:
    return len(line) > MAX_DOCUMENT_BYTES and len(line.rstrip("\r\n")) > MAX_DOCUMENT_BYTES


def _skip_line(fh: IO[str], line: str) -> bool:
    """Read past the rest of an overlong ``line``, a megabyte at a time, when ``fh`` is a regular
    file (it ends); say whether the input goes on. Anything else (a pipe, a device) is not read further."""
    try:
        regular = stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):
        regular = False
    if not regular:
        return False
    while not line.endswith("\n"):
        line = fh.readline(1 << 20)
        if not line:
            return False
    return True


def _read_stream(fh: IO[str], label: str, *, jsonl: bool) -> Iterator[Response | InputError]:
    """Responses of one input, reading at most :data:`MAX_DOCUMENT_BYTES` characters (64 Mi) of a
    JSON document or of any one line of JSON Lines, whatever the input is (``/dev/zero`` too)."""
    mib = MAX_DOCUMENT_BYTES // (1024 * 1024)
    long_line = f"a line longer than {mib} Mi characters: not a response"
    try:
        first = fh.readline(_LINE_READ)
        if _too_long(first) and not jsonl:  # neither a document of at most that size nor a line of JSON Lines
            yield InputError(f"{long_line} (nothing after it is read)", source=label, line=1)
            return
        pending: list[str] = []
        if not jsonl and _is_complete_object(first.strip()):
            second = fh.readline(_LINE_READ)
            jsonl = bool(second)  # a single one-line object is plain JSON
            pending = [second] if second else []
        if not jsonl:
            text = first + "".join(pending)
            if len(text) <= MAX_DOCUMENT_BYTES:
                text += fh.read(MAX_DOCUMENT_BYTES + 1 - len(text))
            if len(text) > MAX_DOCUMENT_BYTES:
                yield InputError(f"input is larger than {mib} MiB and is not JSON Lines", source=label)
                return
            yield Response(text, label)
            return
        lineno = 0
        lines = itertools.chain([first], pending, iter(lambda: fh.readline(_LINE_READ), ""))
        for line in lines:
            lineno += 1
            if _too_long(line):
                goes_on = _skip_line(fh, line)
                yield InputError(f"{long_line}{'' if goes_on else ' (nothing after it is read)'}", source=label,
                                 line=lineno)
                if not goes_on:
                    return
                continue
            if line.strip():
                yield Response(line.rstrip("\r\n"), label, line=lineno)
    except UnicodeDecodeError as exc:  # pragma: no cover - surrogateescape prevents it
        yield InputError(f"not UTF-8 text: {exc}", source=label)
    except OSError as exc:
        yield InputError(f"read failed: {exc.strerror or exc}", source=label)


def _is_complete_object(line: str) -> bool:
    if not line.startswith("{") or not line.endswith("}"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def iter_sources(sources: Iterable[Source] | Source) -> Iterator[Response | InputError]:
    """:func:`read_source` over several inputs, in order (one input is taken as a list of one)."""
    if isinstance(sources, (str, os.PathLike, Mapping)) or hasattr(sources, "read"):
        sources = [sources]  # type: ignore[list-item]
    for source in sources:
        yield from read_source(source)


def text_stream(data: str) -> IO[str]:
    """Wrap text as a stream for :func:`read_source` (handy in tests and notebooks).

    >>> [r.body for r in read_source(text_stream('{"data": {}}'))]
    ['{"data": {}}']
    """
    return io.StringIO(data)


def batches(responses: Iterable[Response | InputError], size: int, failed: list[InputError]) -> Iterator[list[Response]]:
    """Group responses into lists of ``size``; input errors go to ``failed``."""
    batch: list[Response] = []
    for item in responses:
        if isinstance(item, InputError):
            failed.append(item)
            continue
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
