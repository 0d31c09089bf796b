"""Which counters a run has observed already: the first point of a counter in a run stands.

A *round* is the run that fetched a response (``fetch`` stamps its answers), else the response's
observation time (one ``load`` without times; each ``Date`` of recorded exchanges). An audio's
``videoCount`` arrives twice in a ``fetch --videos`` run (from the audio and from the copy of it
in its page of videos, milliseconds apart): one point. A creator met in many pages of one run: one
point a counter.

Which rounds are taken depends on the order observations come in and on nothing else (not on how
they are cut into batches, nor on the order of a set, nor on the process): each round is given a
position when it is opened, and the last ``limit`` to 1.25 × ``limit`` opened since the current
round's first observation are remembered (:class:`_Window`). Observations are written in archive
order, so a ``rebuild`` keeps the points the runs wrote. A run that opens more rounds than that
may write a second point of a counter met again after its round was forgotten. A run stopped
with answers archived and not written: the same process's writer goes on from what it
remembers; another process reads back from the history graph which rounds the run took
(:meth:`Rounds.recall`), which past the limit finds rounds the run had forgotten.
"""

from __future__ import annotations

import sys
import threading
from array import array
from collections.abc import Iterable, Mapping, Sequence

from ..engines.base import Engine, select
from ..lexical import observation_time
from ..model import Observation
from ..vocab import COUNTERS, HISTORY_GRAPH, KS, KSH, PROV, PROV_GRAPH, SOSA

__all__ = ["Rounds"]

_COUNTERS_NT = frozenset(f"<{iri}>" for iri in COUNTERS)
_FOI = f"<{SOSA}hasFeatureOfInterest>"
_TIME = f"<{SOSA}resultTime>"

Key = tuple[str, str, str]  # (round, entity, counter), N-Triples IRIs


def _key(round_: str, s: str, p: str) -> int:
    """A round's 64-bit name (never 0). Two rounds of one process share it with odds of 1 in 2^64 a
    pair (strings' hashes are keyed per process unless ``PYTHONHASHSEED`` fixes them)."""
    if _WIDE:
        return hash((round_, s, p)) or 1
    return ((hash((round_, s, p)) & 0xFFFFFFFF) | (hash((p, s, round_)) << 32)) or 1


_WIDE = sys.hash_info.width >= 64


def _run_start(run: str | None) -> str | None:
    """When a run began: its id is the command and its start (``fetch:2026-11-01T12:00:00.000Z``)."""
    if not run or ":" not in run:
        return None
    at = run.split(":", 1)[1]
    return at if len(at) == 24 and at.endswith("Z") else None


class Rounds:
    """The rounds taken: one point of each counter of an entity a round (see the module).

    A batch is planned on one thread (:meth:`firsts`) while the one before it is written on
    another (:meth:`reserve`, then :meth:`written` or :meth:`release`): a round opened by that
    write is *pending* until it ends, and the planner waits for it (:meth:`claim`) rather than
    open it again.
    """

    def __init__(self, limit: int = 200_000) -> None:
        self._seen = _Window(limit)
        #: rounds opened by a write in progress (taken unless that write is rejected): their positions
        self._pending: dict[int, int] = {}
        #: rounds a replay read back as taken by the run that archived its answers (:meth:`recall`)
        self._recalled: set[int] = set()
        #: rounds a rejected write had opened: open again to the pairs that waited on it (:meth:`claim`)
        self._released: set[int] = set()
        #: the round of the last observation met
        self._current: str | None = None

    @property
    def limit(self) -> int:
        """How many of the last rounds opened are remembered, at least (up to 1.25 times as many).
        Set before the first round: what is remembered is forgotten."""
        return self._seen.limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._seen.limit = value

    def __len__(self) -> int:
        """How many rounds written are remembered."""
        return self._seen.held()

    def taken(self, key: Key) -> bool:
        """Whether the round ``key`` is taken (written, or being written)."""
        h = _key(*key)
        at = self._pending.get(h)
        return (at is not None and at >= self._seen.floor) or h in self._seen or h in self._recalled

    @staticmethod
    def _round(o: Observation) -> str:
        return o.response.run or o.response.observed

    def firsts(self, o: Observation, batch: dict[int, int]) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """The (entity, counter) pairs of ``o`` that open their round (N-Triples IRIs), beside the
        rounds already taken and those ``batch`` opened (``o``'s are added to it); and the pairs
        whose round a write in progress opened (:meth:`claim` decides once it is done)."""
        round_ = self._round(o)
        out, waiting = set(), set()
        seen, pending, recalled = self._seen, self._pending, self._recalled
        if round_ != self._current:  # observations of another round: generations count from here
            self._current = round_
            seen.restart()
        # (a day of pages opens a million rounds: the window's state is kept local, and given back)
        span, opened, floor, boundary = seen._span, seen.opened, seen.floor, seen.boundary
        held = seen._held
        in_batch, in_pending = batch.get, pending.get
        for s, p in o.groups:
            if p not in _COUNTERS_NT:
                continue
            h = (hash((round_, s, p)) or 1) if _WIDE else _key(round_, s, p)
            at = in_batch(h)
            if at is not None and at >= floor:
                continue
            # pending before seen: :meth:`written` adds a round to seen before it leaves pending,
            # so whatever the writer's thread does between the two looks, a round is in one of them
            at = in_pending(h)
            if h in held:
                continue
            if at is not None and at >= floor:
                waiting.add((s, p))
            elif h not in recalled:
                batch[h] = opened
                out.add((s, p))
                opened += 1
                if opened == boundary:  # a generation begins
                    seen.opened = opened
                    seen.begin()
                    floor, boundary = seen.floor, boundary + span
        seen.opened = opened
        return out, waiting

    def recall(self, engine: Engine, prepared: Sequence[Observation], ends: Mapping[str, str]) -> None:
        """(Replaying answers an earlier process archived and did not write: it was stopped.) The
        rounds that process took already, read from the history graph: nothing but a run can have
        written a point of its counters between its start and its last answer (``ends``: each
        answer of a run is observed after it starts, and runs write one after another); a round
        without a run is its time."""
        self._recalled = set()
        since: dict[tuple[str, str], str] = {}  # (round, entity) → the earliest time of its points
        for o in prepared:
            if not o.ok:
                continue
            round_ = self._round(o)
            run_start = _run_start(o.response.run)
            start = min(run_start, o.response.observed) if run_start else o.response.observed
            for s, p in o.groups:
                if p in _COUNTERS_NT and not self.taken((round_, s, p)):
                    since[(round_, s)] = start
        if not since:
            return
        # entity → (time, counter, whether a fetched answer has that time) of its points: a point
        # of a run is at the time of one of its answers, never of a load's (stamped as it says)
        taken: dict[str, list[tuple[str, str, bool]]] = {}
        entities = sorted({s for _, s in since})
        for i in range(0, len(entities), 1_000):
            values = " ".join(entities[i : i + 1_000])
            for row in select(
                engine, f"SELECT ?e ?t ?m ?fetched WHERE {{ GRAPH <{HISTORY_GRAPH}> {{ VALUES ?e {{ {values} }} "
                f"?o {_FOI} ?e ; {_TIME} ?t ; ?m ?v . FILTER(STRSTARTS(STR(?m), \"{KSH}\")) }} "
                f"BIND(EXISTS {{ GRAPH <{PROV_GRAPH}> {{ ?a <{KS}requested> ?k ; <{PROV}endedAtTime> ?t }} }} AS ?fetched) }}",
                union=False,
            ):
                e, t, m, fetched = row[0], row[1], row[2], row[3]
                taken.setdefault(str(e), []).append((observation_time(t.value), f"<{KS}{m.value[len(KSH):]}>",
                                                     fetched is not None and fetched.value == "true"))
        for o in prepared:
            if not o.ok:
                continue
            round_ = self._round(o)
            exact = not _run_start(o.response.run)
            latest = ends.get(o.response.run or "", o.response.observed)
            for s, p in o.groups:
                earliest = since.get((round_, s))
                if earliest is None or p not in _COUNTERS_NT:
                    continue
                if any(q == p and (t == earliest if exact else fetched and earliest <= t <= latest)
                       for t, q, fetched in taken.get(s, ())):
                    self._recalled.add(_key(round_, s, p))

    def reserve(self, batch: dict[int, int]) -> None:
        """A batch opening these rounds is being written."""
        self._pending.update(batch)

    def release(self, batch: dict[int, int]) -> None:
        """The write of a batch failed: the rounds it opened are open again."""
        self._released.update(batch)
        for h in batch:
            self._pending.pop(h, None)

    def claim(self, waiting: list[tuple[Observation, set[tuple[str, str]]]], batch: dict[int, int]
              ) -> list[tuple[Observation, set[tuple[str, str]]]]:
        """(Once the write in progress is done.) Of the pairs that waited on it, those whose round
        it did not take after all (it was rejected): they open their round in ``batch``. (A round
        that write took stays taken, even if as many rounds were opened since as are remembered: the
        pair was met while it was held.)"""
        out = []
        released, self._released = self._released, set()
        for o, pairs in waiting:
            round_ = self._round(o)
            mine = set()
            for s, p in pairs:
                h = _key(round_, s, p)
                if h in released and h not in batch and not self.taken((round_, s, p)):
                    batch[h] = self._seen.open()
                    mine.add((s, p))
            if mine:
                out.append((o, mine))
        return out

    def written(self, batch: dict[int, int]) -> None:
        """(Once its write succeeded.) The rounds a batch opened: later batches leave them out.

        Seen before they stop being pending: a batch planned meanwhile on another thread finds
        each round in one or the other, never in neither (it would open it again: a second point)."""
        self._seen.update(batch.items())
        for h in batch:
            self._pending.pop(h, None)


#: how many generations of rounds are held: the current one and four full ones
_GENERATIONS = 5


class _Window:
    """The rounds written among the last ``limit`` (to 1.25 × ``limit``) opened, by generation.

    Rounds are given positions as they are opened (:meth:`open`, on the planning thread); each
    generation holds ``limit / 4`` positions, and the rounds of the current one and of the four
    before it are held: a set of their 64-bit names (one lookup a round), and each generation's
    names in an array, to forget them (about 80 bytes a round in all). When a generation begins,
    the oldest is forgotten whole: which rounds are held depends on positions alone. A round is
    held by one generation at most: it is opened again only once forgotten. When observations
    of another round begin (:meth:`restart`), everything is forgotten and generations count from
    there: a process that starts with a run forgets what a rebuild, which meets that run after
    others, forgets."""

    __slots__ = ("_held", "_lock", "_members", "_span", "base", "limit", "opened")
    _held: set[int]
    _members: dict[int, array[int]]
    _span: int
    base: int
    opened: int

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()  # (the writer's thread adds; the planner's begins generations)
        self.limit = limit

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name == "limit":  # (set before the first round: what is held is forgotten)
            assert isinstance(value, int)
            object.__setattr__(self, "_span", max(1, -(-value // (_GENERATIONS - 1))))
            object.__setattr__(self, "opened", 0)
            object.__setattr__(self, "base", 0)
            object.__setattr__(self, "_held", set())
            object.__setattr__(self, "_members", {0: array("q")})  # generation → the names it holds

    @property
    def oldest(self) -> int:
        """The oldest generation held (numbered from :attr:`base`)."""
        return (self.opened - self.base) // self._span - (_GENERATIONS - 1)

    @property
    def floor(self) -> int:
        """The position of the oldest round held."""
        return self.base + max(0, self.oldest) * self._span

    @property
    def boundary(self) -> int:
        """The position the next generation begins at."""
        return self.base + ((self.opened - self.base) // self._span + 1) * self._span

    def open(self) -> int:
        """The position of a round opened now."""
        at = self.opened
        self.opened = at + 1
        if (self.opened - self.base) % self._span == 0:
            self.begin()
        return at

    def begin(self) -> None:
        """(Once :attr:`opened` reached a generation's first position.) Begin it: the oldest is
        forgotten."""
        generation = (self.opened - self.base) // self._span
        with self._lock:
            self._members[generation] = array("q")
            gone = self._members.pop(generation - _GENERATIONS, None)
            if gone is not None:
                self._held.difference_update(gone)

    def restart(self) -> None:
        """Forget every round; generations count from the next position."""
        with self._lock:
            self.base = self.opened
            self._held = set()
            self._members = {0: array("q")}

    def __contains__(self, h: int) -> bool:
        return h in self._held

    def held(self) -> int:
        return len(self._held)

    def update(self, rounds: Iterable[tuple[int, int]]) -> None:
        """Hold these rounds written (name, position): not those of a generation forgotten."""
        with self._lock:
            span, base, members, held = self._span, self.base, self._members, self._held
            for h, at in rounds:
                added = members.get((at - base) // span) if at >= base else None
                if added is not None:
                    held.add(h)
                    added.append(h)
