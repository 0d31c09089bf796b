"""What a writer remembers about its store, in memory that does not grow with the store.

The only writer of an embedded store can skip reads: an entity it has never written needs
no lookup, and one it wrote exactly so a moment ago needs no diff. Remembering that for every
entity would cost hundreds of bytes each (a million responses: gigabytes), so a writer keeps:

* :class:`MaybeHeld`: a Bloom filter of the entities a graph may hold. "No" is certain (the
  read is skipped); "yes" is sometimes wrong (the read finds nothing, which is only a read).
  Two bytes a slot, in layers that double as they fill: two to four bytes an entity.
* :class:`Written`: what it last wrote for each entity (a digest of all of it, one of all but
  its counters, the properties held, the time observed) in 36 bytes an entity, for about a
  million entities; past that, a cache. It outlives the process: saved beside the graph when the
  store closes (:meth:`Written.save`), taken back by the next writer of the same graph
  (:meth:`Written.taken`), so a daily refresh reads only what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from array import array
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from ..errors import StoreError
from .log.safe_files import open_file

__all__ = ["WRITTEN_SLOTS", "MaybeHeld", "Written"]

_MASK = (1 << 64) - 1


class _Bloom:
    """One blocked Bloom filter of string hashes: an item sets 7 bits of one 64-bit word, so a
    lookup reads one word (about 1.3 % false positives at capacity with 16 bits an item).

    A filter of a bit array with 7 positions anywhere took a list of positions and 7 reads an
    item: 462,000 entities (a first day of 8,000 audios with their pages) checked and added in
    19 s on a busy machine against 5 s for this one."""

    BITS_PER_ITEM = 16

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.words = max(1, (capacity * self.BITS_PER_ITEM + 63) // 64)
        self.array = array("Q", [0]) * self.words
        self.added = 0

    def add(self, h: int) -> None:
        rest, i = divmod(h, self.words)  # (which word; its bits from the rest of the hash)
        mask = _bits(rest)
        word = self.array[i]
        if word & mask != mask:
            self.array[i] = word | mask
            self.added += 1

    def has(self, h: int) -> bool:
        rest, i = divmod(h, self.words)
        mask = _bits(rest)
        return self.array[i] & mask == mask


def _bits(r: int) -> int:
    """Seven bits of a 64-bit word, chosen by ``r``'s low 42 bits."""
    return (1 << (r & 63) | 1 << (r >> 6 & 63) | 1 << (r >> 12 & 63) | 1 << (r >> 18 & 63)
            | 1 << (r >> 24 & 63) | 1 << (r >> 30 & 63) | 1 << (r >> 36 & 63))


class MaybeHeld:
    """Which entities a graph may hold: ``s in held`` is ``False`` only if it certainly does not.

    Exact "no" needs to have seen every write: a graph that was empty when this process first
    asked (``complete=True``) and written since only through it. Otherwise every entity may be
    held. The filter grows by layers of doubling capacity, so it never needs the entities again.
    """

    FIRST = 1 << 16

    def __init__(self, *, complete: bool) -> None:
        self.complete = complete
        self._layers = [_Bloom(self.FIRST)] if complete else []

    def add(self, item: str) -> None:
        if not self.complete:
            return
        h = hash(item) & _MASK  # Python's string hash: stable within the process that owns the filter
        layers = self._layers
        for layer in layers:
            if layer.has(h):
                return
        last = layers[-1]
        if last.added >= last.capacity:
            last = _Bloom(last.capacity * 2)
            layers.append(last)
        last.add(h)

    def update(self, items: Iterable[str]) -> None:
        add = self.add
        for item in items:
            add(item)

    def __contains__(self, item: object) -> bool:
        if not self.complete:
            return True
        if not isinstance(item, str):
            return False
        h = hash(item) & _MASK
        for layer in self._layers:
            if layer.has(h):
                return True
        return False

    @property
    def nbytes(self) -> int:
        return sum(layer.array.itemsize * len(layer.array) for layer in self._layers)


#: Slots of a writer's table of what it wrote (36 bytes each; about a million entities). Once it
#: is this large, a new entity takes the place of the least recently written of four; those are read.
WRITTEN_SLOTS = 1 << 20

_WAYS = 4  # slots per bucket
_TIME_BITS = 46  # milliseconds since 1970 (to the year 4199); the property set's number above them
_TIME_MASK = (1 << _TIME_BITS) - 1
_MAX_SETS = (1 << (63 - _TIME_BITS)) - 1
_EPOCH = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)


@lru_cache(maxsize=4096)
def _ms(at: str) -> int:
    """An observation time (konbini-ld's spelling) as milliseconds since 1970, or 0 if it does not
    round-trip (it is then not remembered)."""
    try:
        ms = (datetime(int(at[0:4]), int(at[5:7]), int(at[8:10]), int(at[11:13]), int(at[14:16]),
                       int(at[17:19]), int(at[20:23]) * 1000) - _EPOCH) // _MS
    except (ValueError, IndexError):
        return 0
    return ms if 0 < ms <= _TIME_MASK and _spelled(ms) == at else 0


@lru_cache(maxsize=4096)
def _spelled(ms: int) -> str:
    return f"{_EPOCH + ms * _MS:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def digest(text: str) -> int:
    """A 64-bit digest of ``text`` that is the same in every process (never 0).

    Hashed 2,047 bytes at a time: :mod:`hashlib` lets other threads run while it hashes 2,048
    bytes or more, and a writer's thread that lets go of the interpreter for a few microseconds
    waits up to a switch interval (5 ms) to get it back from a fetch's busy threads. An entity's
    text is a few kilobytes: digested whole, 34,000 of them took 2.0 s of a ``fetch --videos``
    of 300 audios against 0.2 s alone.
    """
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) < _HELD:
        h = hashlib.blake2b(raw, digest_size=8)
    else:
        h = hashlib.blake2b(digest_size=8)
        view = memoryview(raw)
        for at in range(0, len(raw), _HELD):
            h.update(view[at:at + _HELD])
    value = int.from_bytes(h.digest(), "little", signed=True)
    return value or 1


#: The most bytes :mod:`hashlib` hashes without letting other threads run (CPython's
#: ``HASHLIB_GIL_MINSIZE`` is 2,048).
_HELD = 2047


def _hashes(entity: str) -> tuple[int, int]:
    raw = hashlib.blake2b(entity.encode("utf-8", "surrogatepass"), digest_size=12).digest()
    return int.from_bytes(raw[:8], "little", signed=True) or 1, int.from_bytes(raw[8:], "little") & 0x7FFFFFFF


#: What a saved table starts with.
_MAGIC = b"konbini-ld written 1\n"
#: The most of a saved table read (a larger file is not one konbini-ld wrote).
_MOST = 64 << 20
_COLUMNS = ("_hashes", "_checks", "_digests", "_stables", "_info")


class Written:
    """What this process last wrote for each entity, in 36 bytes an entity: the digest of what it
    wrote, the digest of all but its counters, the properties the entity then held, and the time
    it was last observed.

    A cache, never a source of truth: an entry may be forgotten (its entity is then read from the
    store) but never answers for another entity. Entries are found by the entity's 64-bit string
    hash and checked with a second, independent 32-bit hash (each also names a bucket of four slots
    the entity may use, the emptier taken). When both are full, an entry of theirs moves to its own
    other bucket (making room there the same way, three buckets deep), so the table is about 95 %
    full before it doubles, up to :data:`WRITTEN_SLOTS` slots; then it forgets the least recently
    written entry of a full bucket.
    A digest includes the entity's IRI (it hashes its lines), so it cannot match another's.
    """

    def __init__(self, slots: int | None = None) -> None:
        self.max_slots = max(_WAYS, WRITTEN_SLOTS if slots is None else slots)
        self._sets: list[frozenset[str]] = [frozenset()]  # number 0: none
        self._set_ids: dict[frozenset[str], int] = {}
        self._alloc(min(1 << 12, self.max_slots))

    def _alloc(self, slots: int) -> None:
        self._hashes = array("q", (0,)) * slots  # 0: an empty slot
        self._checks = array("i", (0,)) * slots
        self._digests = array("q", (0,)) * slots  # 0: no digest
        self._stables = array("q", (0,)) * slots  # 0: no digest
        self._info = array("q", (0,)) * slots  # property set << _TIME_BITS | time (0: none)
        self._mask = slots // _WAYS - 1

    def clear(self) -> None:
        """Forget everything (the store changed under this process)."""
        self._alloc(min(1 << 12, self.max_slots))

    @property
    def nbytes(self) -> int:
        return 36 * len(self._hashes)

    def _find(self, entity: str) -> tuple[int, int, int]:
        """The slot of ``entity`` (-1 if absent), and its two hashes."""
        h, check = _hashes(entity)
        hashes = self._hashes
        for base in ((h & self._mask) * _WAYS, (check & self._mask) * _WAYS):
            for i in range(base, base + _WAYS):
                held = hashes[i]
                if held == h:
                    if self._checks[i] == check:
                        return i, h, check
                elif held == 0:
                    break  # (buckets fill from the front)
        return -1, h, check

    def _slot(self, entity: str) -> int:
        """The slot of ``entity``, made if absent, moved to the front of its bucket (which stays in
        order of use). An entity has two buckets, one by each hash; a new one goes to the emptier,
        and once the table is as large as it may be, takes the least recently written slot of a full one.
        """
        at, h, check = self._find(entity)
        if at >= 0:
            base = at - at % _WAYS
        else:
            hashes = self._hashes
            base = self._emptier((h & self._mask) * _WAYS, (check & self._mask) * _WAYS)
            if hashes[base + _WAYS - 1] != 0 and len(hashes) < self.max_slots:  # both full: make room
                first = (h & self._mask) * _WAYS
                if not self._relocate(base):
                    if first == base or not self._relocate(first):
                        self._grow()
                        return self._slot(entity)
                    base = first
            at = base + _WAYS - 1  # (the last slot is empty or the least recently written)
            hashes[at], self._checks[at], self._digests[at], self._stables[at], self._info[at] = h, check, 0, 0, 0
        if at != base:
            for column in (self._hashes, self._checks, self._digests, self._stables, self._info):
                value = column[at]
                column[base + 1 : at + 1] = column[base:at]
                column[base] = value
        return base

    def _relocate(self, base: int, depth: int = 3, away: frozenset[int] = frozenset()) -> bool:
        """Make room in the full bucket at ``base`` by moving one of its entries, the least
        recently written first, to its other bucket, making room there the same way (``depth``
        buckets deep at most, none of ``away`` again). Returns whether it did.

        Without it the table doubled when it was less than half full (a first day of 8,000 audios
        with their pages: 462,000 entities in a table of a million slots, 36 MiB); with it, a
        table is about 95 % full before it doubles.
        """
        hashes, checks, mask = self._hashes, self._checks, self._mask
        away = away | {base}
        for at in range(base + _WAYS - 1, base - 1, -1):
            h, check = hashes[at], checks[at]
            other = (h & mask) * _WAYS
            if other == base:
                other = (check & mask) * _WAYS
            if other in away:
                continue
            if hashes[other + _WAYS - 1] != 0 and not (depth > 1 and self._relocate(other, depth - 1, away)):
                continue
            to = next(j for j in range(other, other + _WAYS) if hashes[j] == 0)  # (after its entries: the least recent)
            for column in (hashes, checks, self._digests, self._stables, self._info):
                column[to] = column[at]
                column[at : base + _WAYS - 1] = column[at + 1 : base + _WAYS]  # (no gap: buckets fill from the front)
                column[base + _WAYS - 1] = 0
            return True
        return False

    def _emptier(self, first: int, second: int) -> int:
        """Of two buckets, the one holding fewer entries (the first if equal, the second if both are full)."""
        hashes = self._hashes
        for i in range(_WAYS):  # (buckets fill from the front: the first empty slot is the count)
            if hashes[first + i] == 0:
                return first
            if hashes[second + i] == 0:
                return second
        return second

    def _grow(self) -> None:
        old = (self._hashes, self._checks, self._digests, self._info, self._stables)
        self._alloc(2 * len(old[0]))
        hashes, checks, digests, info, stables = self._hashes, self._checks, self._digests, self._info, self._stables
        for i in range(len(old[0])):  # (most recent first in each bucket, which keeps its order)
            h = old[0][i]
            if h == 0:
                continue
            check = old[1][i]
            base = self._emptier((h & self._mask) * _WAYS, (check & self._mask) * _WAYS)
            if hashes[base + _WAYS - 1] != 0:
                self._relocate(base)
            at = next((j for j in range(base, base + _WAYS) if hashes[j] == 0), -1)
            if at >= 0:  # (else forgotten: both full in a table twice the size, which is rare)
                hashes[at], checks[at], digests[at], info[at], stables[at] = h, check, old[2][i], old[3][i], old[4][i]

    def state(self, entity: str) -> tuple[int, int, frozenset[str]] | None:
        """The digest of what was last written for ``entity``, the digest of all but its counters
        (0: none), and the properties it then held."""
        at = self._find(entity)[0]
        if at < 0 or self._digests[at] == 0:
            return None
        return self._digests[at], self._stables[at], self._sets[self._info[at] >> _TIME_BITS]

    def set_states(self, states: dict[str, tuple[int, int, frozenset[str]]]) -> None:
        for entity, (digest, stable, props) in states.items():
            number = self._set_ids.get(props)
            if number is None and len(self._sets) <= _MAX_SETS:
                number = self._set_ids[props] = len(self._sets)
                self._sets.append(props)
            at = self._slot(entity)
            self._digests[at] = digest if number is not None else 0
            self._stables[at] = stable if number is not None else 0
            self._info[at] = (number or 0) << _TIME_BITS | self._info[at] & _TIME_MASK

    def drop_state(self, entity: str) -> None:
        at = self._find(entity)[0]
        if at >= 0:
            self._digests[at] = 0

    def time(self, entity: str) -> str | None:
        """The time ``entity`` was last observed (konbini-ld's spelling)."""
        at = self._find(entity)[0]
        ms = self._info[at] & _TIME_MASK if at >= 0 else 0
        return _spelled(ms) if ms else None

    def set_time(self, entity: str, at: str | None) -> None:
        """Remember ``at`` (``None``: forget the time; so is one outside 1970-4199)."""
        ms = _ms(at) if at is not None else 0
        slot = self._slot(entity) if ms else self._find(entity)[0]
        if slot >= 0:
            self._info[slot] = self._info[slot] & ~_TIME_MASK | ms

    # -- beyond the process ------------------------------------------------------

    def save(self, path: Path, stamp: int) -> None:
        """Write the table to ``path`` (replaced whole), valid for the graph as it is at archive
        position ``stamp``. A table that cannot be written is not kept (it is only a cache)."""
        head: dict[str, object] = {"stamp": stamp, "slots": len(self._hashes), "max": self.max_slots, "order": sys.byteorder,
                "sets": [sorted(props) for props in self._sets]}
        body = b"".join(getattr(self, name).tobytes() for name in _COLUMNS)
        head["digest"] = hashlib.blake2b(body, digest_size=16).hexdigest()
        temp = path.with_name(path.name + ".part")
        try:
            if temp.is_symlink():
                temp.unlink()  # (ours would be a file: a link there is removed, its target untouched)
            with open_file(temp, "wb") as fh:
                fh.write(_MAGIC + json.dumps(head).encode() + b"\n")
                fh.write(body)
            os.replace(temp, path)
        except (OSError, StoreError):
            for leftover in (temp, path):
                try:
                    leftover.unlink(missing_ok=True)
                except OSError:
                    pass

    @classmethod
    def taken(cls, path: Path, stamp: int | None) -> Written:
        """The table saved at ``path`` if it was saved for the graph at archive position
        ``stamp`` and is whole, else an empty one. The file is removed either way: from now on
        only this process knows what it writes (one that stops without saving leaves none)."""
        table = cls()
        data = b""
        try:
            with open_file(path, "rb") as fh:  # (never through a link, never a FIFO or a device)
                data = fh.read(_MOST + 1)
        except FileNotFoundError:
            return table
        except (OSError, StoreError):
            pass
        try:
            path.unlink(missing_ok=True)  # (a link is removed, not what it points at)
        except OSError:
            return table  # (one that cannot be removed could outlive writes: not taken)
        try:
            if stamp is None or len(data) > _MOST or not data.startswith(_MAGIC):
                return table
            line, _, body = data[len(_MAGIC):].partition(b"\n")
            head = json.loads(line)
            slots = int(head["slots"])
            if (head["stamp"] != stamp or head["order"] != sys.byteorder or slots < _WAYS or slots % _WAYS
                    or len(body) != 36 * slots or hashlib.blake2b(body, digest_size=16).hexdigest() != head["digest"]):
                return table
            sets = [frozenset(str(p) for p in props) for props in head["sets"]]
            if not sets or sets[0] or len(sets) > _MAX_SETS + 1:
                return table
            columns = {}
            at = 0
            for name in _COLUMNS:
                column = array("i" if name == "_checks" else "q")
                size = slots * column.itemsize
                column.frombytes(body[at:at + size])
                at += size
                columns[name] = column
            if max(columns["_info"], default=0) >> _TIME_BITS >= len(sets):
                return table
        except (ValueError, KeyError, TypeError, OverflowError):
            return table
        table.max_slots = max(int(head["max"]), slots, _WAYS)
        for name, column in columns.items():
            setattr(table, name, column)
        table._mask = slots // _WAYS - 1
        table._sets = sets
        table._set_ids = {props: i for i, props in enumerate(sets) if i}
        return table
