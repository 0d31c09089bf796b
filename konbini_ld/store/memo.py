"""What a writer remembers about its store, in memory that does not grow with the store.

The only writer of an embedded store can skip reads: an entity it has never written needs
no lookup, and one it wrote exactly so a moment ago needs no diff. Remembering that for every
entity would cost hundreds of bytes each (a million responses: gigabytes), so a writer keeps:

* :class:`MaybeHeld`: a Bloom filter of the entities a graph may hold. "No" is certain (the
  read is skipped); "yes" is sometimes wrong (the read finds nothing, which is only a read).
  About two bytes per entity.
* :class:`Recent`: the most recently used entries of a mapping, a fixed number of them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["RECENT", "MaybeHeld", "Recent"]

K = TypeVar("K")
V = TypeVar("V")

_MASK = (1 << 64) - 1


class _Bloom:
    """One Bloom filter of strings over a ``bytearray`` (about 1% false positives at capacity)."""

    BITS_PER_ITEM = 10
    HASHES = 7

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.bits = capacity * self.BITS_PER_ITEM
        self.array = bytearray((self.bits + 7) // 8)
        self.added = 0

    def positions(self, item: str) -> list[int]:
        h = hash(item) & _MASK  # Python's string hash: stable within the process that owns the filter
        h1, h2, m = h & 0xFFFFFFFF, (h >> 32) | 1, self.bits
        return [(h1 + i * h2) % m for i in range(self.HASHES)]

    def add(self, item: str) -> None:
        array = self.array
        new = False
        for p in self.positions(item):
            byte, bit = p >> 3, 1 << (p & 7)
            if not array[byte] & bit:
                array[byte] |= bit
                new = True
        self.added += new

    def __contains__(self, item: str) -> bool:
        array = self.array
        return all(array[p >> 3] & (1 << (p & 7)) for p in self.positions(item))


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
        if self.complete and item not in self:
            last = self._layers[-1]
            if last.added >= last.capacity:
                last = _Bloom(last.capacity * 2)
                self._layers.append(last)
            last.add(item)

    def update(self, items: Iterable[str]) -> None:
        for item in items:
            self.add(item)

    def __contains__(self, item: object) -> bool:
        if not self.complete:
            return True
        return isinstance(item, str) and any(item in layer for layer in self._layers)

    @property
    def nbytes(self) -> int:
        return sum(len(layer.array) for layer in self._layers)


#: Entities whose last write and observation times a writer keeps in memory (the others are read).
RECENT = 50_000


class Recent(OrderedDict[K, V], Generic[K, V]):
    """A mapping that keeps its ``size`` most recently set or read (with :meth:`recall`) entries."""

    def __init__(self, size: int | None = None) -> None:
        super().__init__()
        self.size = RECENT if size is None else size

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)

    def update(self, other: object = (), /, **kw: V) -> None:
        items = other.items() if hasattr(other, "items") else other
        for key, value in items:  # type: ignore[union-attr]
            self[key] = value

    def recall(self, key: K) -> V | None:
        """The entry for ``key`` (now the most recent), or ``None``."""
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value
