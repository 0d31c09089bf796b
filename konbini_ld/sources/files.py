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


def _read_stream(fh: IO[str], label: str, *, jsonl: bool) -> Iterator[Response | InputError]:
    try:
        first = fh.readline()
        pending: list[str] = []
        if not jsonl and _is_complete_object(first.strip()):
            second = fh.readline()
            jsonl = bool(second)  # a single one-line object is plain JSON
            pending = [second] if second else []
        if not jsonl:
            text = first + "".join(pending) + fh.read(MAX_DOCUMENT_BYTES + 1 - len(first))
            if len(text) > MAX_DOCUMENT_BYTES:
                yield InputError(
                    f"input is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB and is not JSON Lines",
                    source=label,
                )
                return
            yield Response(text, label)
            return
        lineno = 0
        for line in itertools.chain([first], pending, fh):
            lineno += 1
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
