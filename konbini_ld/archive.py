"""Append-only, compressed archive of every raw response ingested.

The archive lives beside the store (``<store>/archive/``) as gzip segments of
JSON Lines, one record per response, numbered by a sequence that never goes
back. Each append is one gzip member written and fsynced before the data
reaches the graph, so the archive doubles as the store's write-ahead log:
records past the store's applied mark are replayed when the store is next
opened, and ``rebuild`` replays all of them after a mapping change without
spending a credit.

Records hold what the API returned and where it came from; request headers
(and so the API key) are never part of a record.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import StoreError

__all__ = ["Archive", "ArchiveRecord"]

_SEGMENT_BYTES = 256 * 1024 * 1024
_SUFFIX = ".jsonl.gz"


@dataclass(slots=True)
class ArchiveRecord:
    """One archived response.

    :ivar seq: position in the archive, from 1, never reused.
    :ivar at: when it was observed (ISO 8601, UTC).
    :ivar source: request URL or file it came from.
    :ivar body: the raw response text, exactly as received.
    :ivar line: line in a JSON Lines file, if any.
    :ivar status: HTTP status for API responses (``404`` records "not found").
    :ivar credits_used: ``X-Credits-Used`` when the API sent it.
    :ivar credits_remaining: ``X-Credits-Remaining`` when the API sent it.
    :ivar key: what was asked for (an audio id…), for fetch bookkeeping.
    """

    seq: int
    at: str
    source: str
    body: str
    line: int | None = None
    status: int | None = None
    credits_used: int | None = None
    credits_remaining: int | None = None
    key: str | None = None


_FIELDS = tuple(f.name for f in fields(ArchiveRecord))


class Archive:
    """The archive directory. Appends are serialised by the store that owns it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._last_seq: int | None = None

    def _head(self) -> dict[str, object] | None:
        try:
            return json.loads((self.path / "HEAD").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _write_head(self, segment: Path, seq: int) -> None:
        tmp = self.path / "HEAD.tmp"
        tmp.write_text(json.dumps({"segment": segment.name, "size": segment.stat().st_size, "last_seq": seq}))
        os.replace(tmp, self.path / "HEAD")

    def _repair(self, segments: list[Path]) -> None:
        """Cut a torn final gzip member left by a crash (everything the HEAD vouches for stays)."""
        head = self._head()
        if not head or not segments or segments[-1].name != head.get("segment"):
            return
        size = int(head["size"])  # type: ignore[arg-type]
        if segments[-1].stat().st_size > size:
            with open(segments[-1], "r+b") as fh:
                fh.truncate(size)

    def _segments(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if p.name.endswith(_SUFFIX))

    @property
    def last_seq(self) -> int:
        """The sequence number of the last record (0 for an empty archive)."""
        if self._last_seq is None:
            head = self._head()
            if head is not None:
                self._last_seq = int(head["last_seq"])  # type: ignore[arg-type]
                return self._last_seq
            segments = self._segments()
            last = 0
            if segments:
                for record in self._read(segments[-1]):
                    last = record.seq
                if last == 0:
                    last = int(segments[-1].name[: -len(_SUFFIX)]) - 1
            self._last_seq = last
        return self._last_seq

    def append(self, records: Iterable[ArchiveRecord]) -> list[ArchiveRecord]:
        """Number, compress and durably append ``records``; return them with ``seq`` set."""
        records = list(records)
        if not records:
            return records
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._last_seq = None  # another process may have appended
            return self._append_locked(records)

    def _append_locked(self, records: list[ArchiveRecord]) -> list[ArchiveRecord]:
        seq = self.last_seq
        for record in records:
            seq += 1
            record.seq = seq
        segments = self._segments()
        self._repair(segments)
        target = segments[-1] if segments and segments[-1].stat().st_size < _SEGMENT_BYTES else None
        if target is None:
            target = self.path / f"{records[0].seq:012d}{_SUFFIX}"
        payload = "".join(
            json.dumps({name: getattr(r, name) for name in _FIELDS}, ensure_ascii=False, separators=(",", ":")) + "\n"
            for r in records
        )
        data = gzip.compress(payload.encode("utf-8"), compresslevel=1, mtime=0)
        try:
            with open(target, "ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise StoreError(f"cannot append to archive {target}: {exc.strerror or exc}") from exc
        self._write_head(target, seq)
        self._last_seq = seq
        return records

    def records(self, after: int = 0) -> Iterator[ArchiveRecord]:
        """Yield the records with ``seq > after``, in order."""
        segments = self._segments()
        if segments:
            with open(self.path / ".lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._repair(segments)
        starts = [int(p.name[: -len(_SUFFIX)]) for p in segments]
        for i, segment in enumerate(segments):
            nxt = starts[i + 1] if i + 1 < len(starts) else None
            if nxt is not None and nxt <= after + 1:
                continue
            for record in self._read(segment):
                if record.seq > after:
                    yield record

    def _read(self, segment: Path) -> Iterator[ArchiveRecord]:
        try:
            with gzip.open(segment, "rt", encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield ArchiveRecord(**json.loads(line))
        except (EOFError, gzip.BadGzipFile, zlib.error):
            return  # a torn final member from a crash: everything before it is intact
        except (OSError, ValueError, TypeError) as exc:
            raise StoreError(f"archive segment {segment} is unreadable: {exc}") from exc

    def __len__(self) -> int:
        return sum(1 for _ in self.records())
