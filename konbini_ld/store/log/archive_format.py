"""The archive's on-disk format: records, as CRC-checked JSON lines in small gzip members.

A segment is a sequence of gzip members of at most :data:`MEMBER_RECORDS` records each; a
line is ``"<crc32 hex> <record JSON>"`` (lines written by earlier versions are JSON alone
and are checked by their member's CRC). A damaged member loses only its own records, and a
reader can resynchronise on the next member header.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO

from ...model import Response
from ...urls import source_iri

__all__ = ["MEMBER_RECORDS", "ArchiveRecord", "decode", "encode", "find_magic", "fsync_dir", "member", "read_member"]

MEMBER_RECORDS = 64
MAGIC = b"\x1f\x8b\x08"


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
    :ivar note: why an answer is kept only as evidence (:attr:`konbini_ld.model.Response.note`).
    :ivar evidence: credit header values that were not believed, as received.
    :ivar run: the run that observed it.
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
    note: str | None = None
    evidence: dict[str, str] | None = None
    run: str | None = None

    @classmethod
    def of(cls, response: Response) -> ArchiveRecord:
        """The record that archives ``response`` (numbered when appended)."""
        return cls(
            0, at=response.observed, source=source_iri(response.source), body=response.body, line=response.line,
            status=response.status, credits_used=response.credits_used, credits_remaining=response.credits_remaining,
            key=response.key, note=response.note, evidence=response.evidence, run=response.run,
        )

    @property
    def replayable(self) -> bool:
        """Whether replaying it does anything: answers kept as evidence are recorded in provenance
        (what they cost, why they were not taken); archived answers other than 200 and 404 hold
        nothing to apply."""
        return self.status is None or self.status in (200, 404) or self.note is not None

    def response(self) -> Response:
        """The response this record holds."""
        return Response(
            body=self.body, source=self.source, line=self.line, observed_at=self.at, status=self.status,
            credits_used=self.credits_used, credits_remaining=self.credits_remaining, key=self.key,
            observed_given=True, note=self.note, evidence=self.evidence, run=self.run,
        )


_FIELDS = tuple(f.name for f in fields(ArchiveRecord))
_ALWAYS = frozenset({"seq", "at", "source", "body", "line", "status", "credits_used", "credits_remaining", "key"})


def encode(record: ArchiveRecord) -> bytes:
    # fields at their default are left out: records stay as small as before they existed
    text = json.dumps({name: value for name in _FIELDS if (value := getattr(record, name)) is not None
                       or name in _ALWAYS}, ensure_ascii=False, separators=(",", ":"))
    data = text.encode("utf-8")
    return b"%08x " % zlib.crc32(data) + data + b"\n"


def decode(line: bytes) -> ArchiveRecord:
    """One line back into a record; ``ValueError`` when it does not check out."""
    if line[:1] != b"{":
        crc, _, data = line.partition(b" ")
        if len(crc) != 8 or int(crc, 16) != zlib.crc32(data):
            raise ValueError("checksum mismatch")
        line = data
    value = json.loads(line)
    if not isinstance(value, dict) or not isinstance(value.get("seq"), int) or not isinstance(value.get("body"), str):
        raise ValueError("not an archive record")
    return ArchiveRecord(**{k: v for k, v in value.items() if k in _FIELDS})  # (fields of later versions: ignored)


def member(records: list[ArchiveRecord]) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip container, fastest level
    return compressor.compress(b"".join(encode(r) for r in records)) + compressor.flush()


def find_magic(fh: IO[bytes], pos: int) -> int | None:
    """Offset of the next gzip member header at or after ``pos``."""
    chunk_size = 1 << 20
    fh.seek(pos)
    carry = b""
    base = pos
    while True:
        chunk = fh.read(chunk_size)
        if not chunk:
            return None
        data = carry + chunk
        i = data.find(MAGIC)
        if i >= 0:
            return base + i
        carry = data[-(len(MAGIC) - 1) :]
        base += len(data) - len(carry)


def read_member(fh: IO[bytes], start: int) -> tuple[list[ArchiveRecord | None], int | None]:
    """Decode the member at ``start``: its lines (``None`` for a line that does not check out),
    and the offset where it ends (``None`` when it is cut short or its compressed data is damaged)."""
    fh.seek(start)
    decompressor = zlib.decompressobj(31)
    out: list[bytes] = []
    end: int | None = None
    read = 0
    try:
        while not decompressor.eof:
            chunk = fh.read(1 << 13)
            if not chunk:
                break
            read += len(chunk)
            out.append(decompressor.decompress(chunk))
        if decompressor.eof:
            end = start + read - len(decompressor.unused_data)
    except zlib.error:
        pass
    lines = b"".join(out).split(b"\n")
    tail = lines.pop()
    records: list[ArchiveRecord | None] = []
    for line in lines:
        if line.strip():
            try:
                records.append(decode(line))
            except (ValueError, TypeError):
                records.append(None)
    if tail.strip():
        records.append(None)
    return records, end


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
