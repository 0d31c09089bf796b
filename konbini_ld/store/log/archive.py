"""Append-only, compressed archive of every raw response ingested.

The archive lives beside the store (``<store>/archive/``) as segments of gzip
members holding JSON Lines, one record per response, numbered by a sequence
that never goes back and never skips. Records are written and fsynced before
they reach the graph, so the archive doubles as the store's write-ahead log:
records past the store's applied mark are replayed when the store is next
opened, and ``rebuild`` replays all of them after a mapping change without
spending a credit.

Layout and integrity::

    archive/
      000000000001.jsonl.gz   gzip members of at most 64 records; a line is
                              "<crc32 hex> <record JSON>" (older lines: JSON only)
      HEAD                    {"segment", "size", "last_seq"}: what was last fsynced

Damage is told apart from a torn tail. Bytes past the ``size`` HEAD vouches
for in its segment are an append a crash interrupted: they are cut. Anything
else that does not read back (a flipped byte, a truncation, a missing
segment) is *damage*: reading resynchronises on the next gzip member, keeps
every record that still checks out, and reports the damaged spans by segment
and byte offset along with the sequence numbers lost (the sequence is
contiguous, and HEAD says where it ends). New records never go behind damage:
an append to a damaged segment starts a new one.

Records hold what the API returned and where it came from; request headers
(and so the API key) are never part of a record.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import StoreError, settled
from ...model import Damage
from .lock import NotWritableError
from .archive_format import MEMBER_RECORDS, ArchiveRecord, decode, encode, find_magic, fsync_dir, member, read_member
from .safe_files import open_file, read_small, write_atomic

__all__ = ["Archive", "ArchiveRecord", "Scan"]

_SEGMENT_BYTES = 256 * 1024 * 1024
_SUFFIX = ".jsonl.gz"
@dataclass(slots=True)
class Scan:
    """What a read of the archive found besides its records."""

    damage: list[Damage] = field(default_factory=list)
    read: int = 0
    last_seq: int = 0

    @property
    def lost(self) -> int:
        return sum(d.lost for d in self.damage)


class _Ticket:
    __slots__ = ("records", "done", "error")

    def __init__(self, records: list[ArchiveRecord]) -> None:
        self.records = records
        self.done = False
        self.error: BaseException | None = None


class Archive:
    """The archive directory.

    Appends are safe from many threads: concurrent callers are written together in one
    fsync (group commit), and each call returns once its records are durable.

    :param on_written: called with each group of records right after it is durable, in
        sequence order (the caller's apply queue hangs here).
    """

    def __init__(self, path: str | os.PathLike[str], *, on_written: Callable[[list[ArchiveRecord]], None] | None = None) -> None:
        self.path = Path(path)
        self.on_written = on_written
        self._last_seq: int | None = None
        self._cv = threading.Condition()
        self._queue: list[_Ticket] = []
        self._writing = False
        self._damaged_segment: str | None = None
        #: the last sequence number something outside the archive has seen (the graph's applied
        #: mark): an archive that ends before it lost records (a restored backup, a rolled-back
        #: HEAD), and new records are numbered after it, never reusing a number
        self.floor = 0

    # -- HEAD ------------------------------------------------------------------

    def _head(self) -> dict[str, object] | None:
        try:
            head = json.loads(read_small(self.path / "HEAD"))
        except (OSError, ValueError):
            return None
        if not isinstance(head, dict) or not isinstance(head.get("last_seq"), int):
            return None
        return head

    def _write_head(self, segment: Path, seq: int) -> None:
        size = segment.stat().st_size
        write_atomic(self.path / "HEAD", json.dumps({"segment": segment.name, "size": size, "last_seq": seq}))
        fsync_dir(self.path)

    def _segments(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if p.name.endswith(_SUFFIX) and p.name[:-len(_SUFFIX)].isdigit())

    def _repair(self, segments: list[Path]) -> None:
        """Settle an append a crash interrupted, past what HEAD vouches for.

        Whole members that continue the sequence were written and fsynced before the crash
        cut the HEAD update short: they are kept (each is a paid response) and HEAD catches
        up. A member cut short is torn and is cut off; nothing HEAD vouches for is touched.
        """
        head = self._head()
        if not head or not segments:
            return
        names = [p.name for p in segments]
        if head.get("segment") not in names:
            return
        index = names.index(str(head["segment"]))
        seq = int(head["last_seq"])  # type: ignore[call-overload]
        offset = int(head["size"])  # type: ignore[call-overload]
        tail_segment: Path | None = None
        for segment in segments[index:]:
            size = segment.stat().st_size
            if size <= offset:
                offset = 0
                continue
            with open_file(segment, "r+b") as fh:
                pos = offset
                while pos < size:
                    records, end = read_member(fh, pos)
                    wanted = list(range(seq + 1, seq + 1 + len(records)))
                    if end is None or not records or [r.seq if r else None for r in records] != wanted:
                        break
                    pos, seq = end, wanted[-1]
                if pos < size:
                    fh.truncate(pos)
                    os.fsync(fh.fileno())
            if pos == 0:
                segment.unlink()
            else:
                tail_segment = segment
            offset = 0
        if tail_segment is not None and seq > int(head["last_seq"]):  # type: ignore[call-overload]
            self._write_head(tail_segment, seq)
            self._last_seq = seq

    def repair(self) -> None:
        """Settle an interrupted append now (writers call this when they open the store)."""
        segments = self._segments()
        if segments:
            try:
                lock_file = open_file(self.path / ".lock", "a")
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):  # (its readers still read it)
                    raise NotWritableError(f"cannot write the archive {self.path}: {exc.strerror or exc} (it is "
                                           "read-only for this user; query, export, stats, validate, serve and "
                                           "dry runs can still read the store)") from exc
                raise StoreError(f"cannot open the archive {self.path}: {exc.strerror or exc}") from exc
            with lock_file as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._last_seq = None
                self._repair(segments)

    @property
    def last_seq(self) -> int:
        """The sequence number of the last record (0 for an empty archive)."""
        if self._last_seq is None:
            head = self._head()
            if head is not None:
                self._last_seq = int(head["last_seq"])  # type: ignore[call-overload]
                return self._last_seq
            segments = self._segments()
            last = 0
            if segments:
                for record, _ in self._read(segments[-1], Scan()):
                    last = max(last, record.seq)
                if last == 0:
                    last = int(segments[-1].name[: -len(_SUFFIX)]) - 1
            self._last_seq = last
        return self._last_seq

    # -- appending ---------------------------------------------------------------

    def append(self, records: Iterable[ArchiveRecord]) -> list[ArchiveRecord]:
        """Number, compress and durably append ``records``; return them with ``seq`` set.

        :raises StoreError: the archive cannot be written (full disk, permissions…).
        """
        ticket = _Ticket(list(records))
        if not ticket.records:
            return ticket.records
        with self._cv:
            self._queue.append(ticket)
            while not ticket.done:
                if self._writing:
                    self._cv.wait()
                    continue
                batch, self._queue = self._queue, []
                self._writing = True
                self._cv.release()
                error: BaseException | None = None
                try:
                    self._write_group([r for t in batch for r in t.records])
                except BaseException as exc:  # handed to every caller of the group
                    error = settled(exc)  # (each raises it from its own frame, and none holds it there)
                finally:
                    self._cv.acquire()
                    self._writing = False
                    for t in batch:
                        t.done, t.error = True, error
                    self._cv.notify_all()
                    del batch, error
        failure, ticket.error = ticket.error, None
        if failure is None:
            return ticket.records
        try:
            raise failure
        finally:
            del failure

    def _write_group(self, records: list[ArchiveRecord]) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock_file = open_file(self.path / ".lock", "a")
        except OSError as exc:
            raise StoreError(f"cannot append to the archive {self.path}: {exc.strerror or exc}") from exc
        with lock_file as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._last_seq = None  # another process may have appended
            try:
                segments = self._segments()
                self._repair(segments)
                seq = max(self.last_seq, self.floor)
                target = self._target(segments, seq + 1)
            except OSError as exc:
                raise StoreError(f"cannot append to the archive {self.path}: {exc.strerror or exc}") from exc
            for record in records:
                seq += 1
                record.seq = seq
            data = b"".join(member(records[i : i + MEMBER_RECORDS]) for i in range(0, len(records), MEMBER_RECORDS))
            before = target.stat().st_size if target.exists() else None
            try:
                with open_file(target, "ab") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                self._write_head(target, seq)
            except OSError as exc:
                self._last_seq = None
                self._undo(target, before)  # not acknowledged: not kept (the caller keeps them elsewhere)
                raise StoreError(f"cannot append to the archive {target}: {exc.strerror or exc}") from exc
            self._last_seq = seq
            if self.on_written is not None:
                self.on_written(records)

    @staticmethod
    def _undo(target: Path, before: int | None) -> None:
        """Take back an append whose HEAD could not follow (best effort: a torn tail is cut anyway)."""
        try:
            if before is None:
                target.unlink(missing_ok=True)
            else:
                with open(target, "r+b") as fh:
                    fh.truncate(before)
                    os.fsync(fh.fileno())
        except OSError:
            pass

    def _target(self, segments: list[Path], first_seq: int) -> Path:
        """The segment to append to: the last one, unless it is full or damaged."""
        fresh = self.path / f"{first_seq:012d}{_SUFFIX}"
        if not segments:
            return fresh
        last = segments[-1]
        size = last.stat().st_size
        if size >= _SEGMENT_BYTES:
            return fresh
        head = self._head()
        if head is not None and head.get("segment") == last.name and size != head.get("size"):
            # shorter than HEAD vouches for: damaged, never written behind
            self._damaged_segment = last.name
            return fresh
        if head is not None and head.get("segment") != last.name:
            return fresh  # HEAD names another segment: the last file is not the one being appended to
        return last

    # -- reading -------------------------------------------------------------------

    def records(self, after: int = 0, *, scan: Scan | None = None, repair: bool = True) -> Iterator[ArchiveRecord]:
        """Yield the readable records with ``seq > after``, in order.

        Damage met on the way is added to ``scan`` (when given); records after it are
        still yielded. Once the iterator is exhausted, ``scan`` also accounts for records
        missing at the end (up to HEAD's last sequence number).

        :param repair: settle an interrupted append first (``False``: a reader, which changes nothing).
        """
        scan = scan if scan is not None else Scan()
        if repair:
            self.repair()
        segments = self._segments()
        head = self._head()
        expected = after + 1
        seen_damage = len(scan.damage)
        starts = [int(p.name[: -len(_SUFFIX)]) for p in segments]
        for i, segment in enumerate(segments):
            nxt = starts[i + 1] if i + 1 < len(starts) else None
            if nxt is not None and nxt <= after + 1:
                continue
            for record, intact in self._read(segment, scan):
                if record.seq <= after:
                    continue
                if record.seq < expected:  # a number used twice (by an older version after a rollback):
                    scan.read += 1         # both are responses received, and both are kept
                    yield record
                    continue
                if record.seq > expected:
                    self._note_gap(scan, seen_damage, segment.name, expected, record.seq - 1)
                if intact:
                    seen_damage = len(scan.damage)
                scan.read += 1
                scan.last_seq = record.seq
                expected = record.seq + 1
                yield record
        last = int(head["last_seq"]) if head is not None else expected - 1  # type: ignore[call-overload]
        last = max(last, self.floor)
        if head is None and segments:
            scan.damage.append(Damage("HEAD", 0, "missing or unreadable: the end of the archive is unverified"))
        if last >= expected:
            where = segments[-1].name if segments else "(no segment)"
            self._note_gap(scan, seen_damage, where, expected, last, "records missing at the end")

    @staticmethod
    def _note_gap(scan: Scan, since: int, segment: str, first: int, last: int, reason: str = "records missing") -> None:
        """Blame missing records on the damage met since the last good record, or record a gap."""
        if len(scan.damage) > since:
            scan.damage[-1].add_lost(first, last)
            return
        gap = Damage(segment, 0, reason)
        gap.add_lost(first, last)
        scan.damage.append(gap)

    def _read(self, segment: Path, scan: Scan) -> Iterator[tuple[ArchiveRecord, bool]]:
        """The records of one segment, member by member, streaming (a member is small), each with
        whether its member was intact."""
        try:
            fh = open_file(segment, "rb")
        except OSError as exc:
            raise StoreError(f"archive segment {segment} is unreadable: {exc.strerror or exc}") from exc
        with fh:
            size = os.fstat(fh.fileno()).st_size
            pos = 0
            in_damage = False
            while pos < size:
                start = find_magic(fh, pos)
                if start is None or start > pos:
                    if not in_damage:
                        scan.damage.append(Damage(segment.name, pos, "unreadable bytes"))
                        in_damage = True
                    if start is None:
                        return
                assert start is not None
                records, end = read_member(fh, start)
                good = [r for r in records if r is not None]
                if end is not None and len(good) == len(records):
                    for record in good:
                        yield record, True
                    pos, in_damage = end, False
                    continue
                # a damaged member: report it once, keep what checks out, resynchronise on the next header
                if good or not in_damage:
                    scan.damage.append(Damage(segment.name, start, "damaged compressed data"))
                in_damage = True
                for record in good:
                    yield record, False
                pos = start + 1

    # -- answers the archive could not take ---------------------------------------------

    @property
    def spill_dir(self) -> Path:
        """Where answers the archive could not take wait to be adopted (``unarchived/`` beside it)."""
        return self.path.parent / "unarchived"

    @property
    def spare_spill_dir(self) -> Path:
        """Where they wait when :attr:`spill_dir` cannot be written (its disk is full): a folder of
        the temporary directory named after this archive, so that :meth:`adopt` finds them."""
        key = hashlib.sha256(str(self.path.resolve()).encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"konbini-ld-unarchived-{key}"

    def spill(self, records: list[ArchiveRecord]) -> Path:
        """Write records the archive could not take to a file of their own (in :attr:`spill_dir`,
        else :attr:`spare_spill_dir`), fsynced; :meth:`adopt` appends them later.

        :raises StoreError: they could not be written anywhere.
        """
        data = b"".join(encode(r) for r in records)
        name = f"unarchived-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{threading.get_ident()}.jsonl"
        errors = []
        for folder in (self.spill_dir, self.spare_spill_dir):
            target = folder / name
            try:
                if folder == self.spare_spill_dir:
                    folder.mkdir(mode=0o700, exist_ok=True)
                    if not _private(folder):  # (a shared temporary directory: someone else's folder)
                        raise OSError(f"{folder} is not a private folder of this user")
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                return target
            except OSError as exc:
                errors.append(f"{target}: {exc.strerror or exc}")
        raise StoreError("paid answers could not be written anywhere (" + "; ".join(errors) + ")")

    def _spill_files(self) -> Iterator[Path]:
        """The files of records waiting in :attr:`spill_dir` or :attr:`spare_spill_dir`, in order
        (a spare folder only if it is this user's alone; no symbolic links)."""
        for folder in (self.spill_dir, self.spare_spill_dir):
            if folder.is_dir() and not folder.is_symlink() and (folder == self.spill_dir or _private(folder)):
                yield from (path for path in sorted(folder.glob("unarchived-*.jsonl")) if not path.is_symlink())

    def spilled(self) -> bool:
        """Whether records wait in :attr:`spill_dir` or :attr:`spare_spill_dir` (:meth:`adopt`)."""
        return next(self._spill_files(), None) is not None

    def adopt(self) -> int:
        """Append the records waiting in :attr:`spill_dir` and :attr:`spare_spill_dir` (then
        remove their files); how many."""
        adopted = 0
        for path in list(self._spill_files()):
            records = []
            for line in path.read_bytes().splitlines():
                try:
                    records.append(decode(line))
                except ValueError:
                    continue  # a line a crash cut short: the rest is whole
            self.append(records)
            path.unlink()
            adopted += len(records)
        return adopted

    def verify(self) -> Scan:
        """Read the whole archive and report what does not read back."""
        scan = Scan()
        for _ in self.records(scan=scan):
            pass
        return scan

    def __len__(self) -> int:
        return sum(1 for _ in self.records())


def _private(folder: Path) -> bool:
    """A folder this user owns that no one else may write (and not a link)."""
    import stat

    try:
        st = folder.lstat()
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))
