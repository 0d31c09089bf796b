"""How ``serve`` shares its query workers (:class:`Workers`), and where a query runs
(:func:`runner_for`).

* At most ``2 × workers`` queries run at once, each in its own process; ``workers``
  processes are kept ready, and one more is started ahead whenever none is left idle, so a
  query does not wait for a process to start. Workers are forked from a server process that
  has the modules loaded (tens of milliseconds each), so replacing one is cheap.
* A query's clock starts when its worker starts on it and counts the processor time the worker
  uses (a query kept waiting by a busy machine does not age); one that has used :data:`GRACE` seconds
  is long. Long queries keep their place (to their end or their time limit) as long as they
  hold no more than half the places. When every place is taken and a query waits, the long
  query beyond that half that became long last is stopped: it is answered 503 ("stopped to make
  room") and its process is replaced. Otherwise the waiting query waits for one of the young
  queries to end or become long, within :data:`GRACE` seconds (first come, first served; at most
  :data:`MAX_WAITING` wait, more are answered 503 at once). A query stopped (to make room, or at
  a limit), and any query of its family (:func:`_fingerprint`) sent or running within a minute,
  waits behind every other query (that very text behind the rest of its family), gives its place to a new query at once, and starts only in a
  free place: beside ``workers`` long queries, one at a time, on trial for :data:`TRIAL` seconds
  of the clock, once it has used some processor time (then it is long beyond their share and gives
  way to any query waiting; one slowed only by a busy machine is not long before
  :data:`TRIAL_BOUND`). A client that sends a
  runaway again and again, with another constant each time, does not hold places or queue ahead
  of others. So a query that needs less than :data:`GRACE`
  seconds is answered within about a second whatever runaways run beside it, and at most
  ``workers`` runaways run at once while others wait. (Runaways whose shape differs each time,
  sent by many clients at once, queue ahead of a new query as any query does: each of them holds
  a place half a second at most.) Copies of one family already running or waiting let other
  queries pass.
* A worker is checked alive before it is handed a query; one that died while idle is
  replaced at once. A query whose worker died before answering, for another reason than its
  limits (killed from outside, crashed), is run once more on a fresh worker.
* A worker's answer is taken from it as fast as it sends it, into a spool of at most
  :data:`SPOOL_MEMORY` bytes in memory (a temporary file beyond), and the worker is given back at
  once: clients that read slowly, or not at all, hold their connections, never a worker. All
  spools together hold at most :data:`SPOOL_BUDGET` bytes; past it, answers go at their
  clients' pace.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio

from .query_workers import CHUNK, GONE, STOPPING, Answer, Cut, Direct, Gone, Job, ServeOptions
from .worker_processes import (POLL_SECONDS, Proc, Processes, cpu_seconds, has_data, resident_bytes, size_text,
                               wait_readable)

__all__ = ["GRACE", "MAX_WAITING", "TRIAL", "Workers", "runner_for"]

log = logging.getLogger(__name__)

#: Seconds a query runs before a newer query may stop it when every place is taken.
GRACE = 0.5
#: Seconds (of the clock) a query of a family stopped lately runs on trial before it is long (see
#: :data:`GRACE`), once it has used a quarter of that in processor time: a query that only waits
#: for a busy machine's processors is long after :data:`TRIAL_BOUND` seconds of the clock.
TRIAL = 0.25
TRIAL_BOUND = 2.0
#: Queries that may wait for a place at once; more are answered 503.
MAX_WAITING = 64
#: Bytes of one answer kept in memory while its client reads it; the rest waits in a temporary file.
SPOOL_MEMORY = 256 << 10
#: Bytes all answers may hold in spools at once; past it, an answer is read from its worker only
#: as fast as its client takes it (the worker keeps its place meanwhile).
SPOOL_BUDGET = 512 << 20


_EVICTED = (503, "query stopped to make room for other queries: every place was taken, and as many queries as "
                 "--workers had run longer than this one (serve --workers)")


@dataclass(eq=False)
class _Waiter:
    again: bool
    #: the same query is running or waiting already (many clients sending one query at once)
    twin: bool = False
    mark: bytes = b""
    #: this very text was stopped lately (not only a query of its family): it waits behind its kin
    same: bool = False


class _Gone(Exception):
    """The client left while its query waited for a place."""


#: How often a running query asks whether its client is still there (seconds).
_GONE_EVERY = 0.25


class _Stopping(Exception):
    """The server began to stop while the query waited for a worker."""


class _CannotStart(Exception):
    """No worker process could be started (out of processes or memory)."""


#: How many stopped queries are remembered, and for how long (seconds).
_REMEMBERED = 512
_REMEMBER_SECONDS = 60.0


#: Longest query text whose family is found on the event loop; a longer one's is found in a thread.
_SHAPED = 64 * 1024


def _fingerprint(job: Job) -> bytes:
    """A query job's family (its text without its constants and variable names, its parameters'
    names, its dataset's size), in 16 bytes: queries that differ by a constant are one family."""
    import hashlib

    from ..sparql import shape

    digest = hashlib.blake2b(shape(job.sparql).encode("utf-8", "surrogatepass"), digest_size=16)
    dataset = None if job.dataset is None else tuple(len(graphs) for graphs in job.dataset)
    digest.update(repr((sorted(job.params), job.name, dataset)).encode("utf-8", "surrogatepass"))
    return digest.digest()


def _text_print(job: Job) -> bytes:
    """A query job's own identity (its text, parameters and dataset), in 16 bytes."""
    import hashlib

    digest = hashlib.blake2b(job.sparql.encode("utf-8", "surrogatepass"), digest_size=16, person=b"text")
    digest.update(repr((sorted(job.params.items()), job.name, job.dataset)).encode("utf-8", "surrogatepass"))
    return digest.digest()


def _ending(proc: Proc) -> str:
    """How a worker ended: ``killed by SIGSEGV``, ``exit code 1``."""
    import signal

    try:
        proc.process.join(1)
        code = proc.process.exitcode
    except (ValueError, AssertionError):
        code = None
    if code is None:
        return "its pipe closed"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Died(Exception):
    """The worker ended before answering, not stopped by the server."""


def _past_trial(clock: float, used: float) -> bool:
    """Whether a query on trial (:data:`TRIAL`), running ``clock`` seconds and having used ``used``
    seconds of processor time, is long: a cheap one slowed by a busy machine is not."""
    return (clock >= TRIAL and used >= TRIAL / 4) or clock >= TRIAL_BOUND


class Workers(Processes):
    """Query worker processes (see the module's description for how they are shared)."""

    def __init__(self, opts: ServeOptions) -> None:
        super().__init__(opts)
        self.queue: list[_Waiter] = []
        #: bytes held in answers' spools
        self.spooled = 0
        #: queries stopped lately (evicted, or over a limit), by fingerprint → when
        self.stopped_lately: OrderedDict[bytes, float] = OrderedDict()

    def _evict(self, proc: Proc) -> None:
        """Stop the query ``proc`` runs to give its place to another (the query's own task, woken
        by the process's end, answers 503 and closes the pipe)."""
        proc.stopped = "evicted"
        self._remember(proc)
        self.pool.busy.remove(proc)
        try:
            proc.process.kill()
        except (OSError, ValueError):
            pass

    async def _acquire(self, fresh: bool = False, again: bool = False, gone: Gone | None = None,
                       mark: bytes = b"", same: bool = False) -> Proc | None:
        """A worker for a new query, first come first served; ``None`` when too many wait already
        or none can start. A query stopped a moment ago and sent ``again`` waits behind the others
        and takes only a free place: it cannot stop another query."""
        if len(self.queue) >= MAX_WAITING:
            return None
        twin = bool(mark) and (any(p.mark == mark for p in self.pool.busy) or any(w.mark == mark for w in self.queue))
        me = _Waiter(again, twin, mark, same)
        self.queue.append(me)
        try:
            while True:
                if self._stopping:
                    raise _Stopping()
                if gone is not None and await gone():
                    raise _Gone()
                if mark:  # (a family's minute may end, or begin, while it waits)
                    me.again = self._stopped_lately(mark)
                    me.same = me.same and me.again
                proc, wait = None, POLL_SECONDS
                first = (next((w for w in self.queue if not w.again and not w.twin), None)
                         or next((w for w in self.queue if not w.again), None)
                         or next((w for w in self.queue if not w.same), None) or self.queue[0])
                if first is me:
                    proc, wait = await self._place(fresh, me.again)
                    if proc is not None and self._stopping:  # (it began to stop while a worker started)
                        self._kill(proc)
                        raise _Stopping()
                    if proc is not None:
                        break
                self._event.clear()
                try:
                    await asyncio.wait_for(self._event.wait(), timeout=max(wait, 0.005))
                except TimeoutError:
                    pass
        finally:
            self.queue.remove(me)
            self._changed()  # (the next in line)
        proc.started = time.monotonic()
        proc.running_since = None
        proc.stopped = None
        self.pool.busy.append(proc)
        self._spawn_ahead()
        return proc

    async def _place(self, fresh: bool, again: bool) -> tuple[Proc | None, float]:
        """A worker now, or how long to wait before asking again."""
        while True:
            ages = self._ages()
            # queries of a family stopped lately, running: they give their place to a new query at once
            repeats = [p for p in self.pool.busy if p.again or self._stopped_lately(p.mark)]
            # and are long after TRIAL seconds, not GRACE, of the clock: the trial bounds the wait of
            # the rest of their family, whatever the machine's pace
            now = time.monotonic()
            long = [p for p, age in ages.items() if (_past_trial(now - (p.running_since or now), age)
                                                     if p in repeats else age >= GRACE)]
            # beside --workers long queries, one of those of such a family runs on trial at a time
            # (then it is long beyond their share, and gives way to any query waiting)
            on_trial = any(p not in long for p in repeats)
            room = len(set(long).union(repeats)) < self.keep or not on_trial
            if len(self.pool.busy) < self.limit and (not again or room):
                proc = None if fresh else self._take_idle()
                if proc is None:
                    if fresh and self.pool.total >= self.limit + 1 and self.pool.idle:
                        self._kill(self.pool.idle.pop(0))  # make room for a fresh one
                    if self.pool.total < self.limit + 1:
                        proc = await self._start_one()
                        if proc is None:
                            raise _CannotStart
                return proc, POLL_SECONDS  # (None: a worker is starting; wait for it)
            if repeats and not again:
                victim = repeats[0]
                log.info("stopped a query of a family stopped lately to make room (pid %s)", victim.pid)
                self._evict(victim)
                continue
            if len(long) > self.keep:  # more long queries than their share: the last to become long gives way
                newest = min(long, key=lambda p: ages[p])
                log.info("stopped a query after %.1f s of processor time to make room (pid %s)", ages[newest], newest.pid)
                self._evict(newest)
                continue
            if again:  # (it waits for a place that no more than --workers long queries leave free)
                return None, POLL_SECONDS
            young = [age for age in ages.values() if age < GRACE]  # each ends, or becomes long, within GRACE
            return None, (GRACE - max(young)) if young else POLL_SECONDS

    def _ages(self) -> dict[Proc, float]:
        """How long each running query has run: the processor time its worker has used on it (a
        query kept waiting by a busy machine does not age), else the time since it started."""
        now = time.monotonic()
        ages = {}
        for p in self.pool.busy:
            if p.running_since is None:
                continue
            used = cpu_seconds(p.pid) if p.cpu_since is not None else None
            ages[p] = used - p.cpu_since if used is not None and p.cpu_since is not None else now - p.running_since
        return ages

    async def run(self, job: Job, gone: Gone | None = None) -> tuple[str, Any]:
        """Run ``job`` on a worker. ``gone`` says whether its client has left: a query waiting for a
        place, or running, for nobody is given up (its worker stopped), so clients that send
        queries and hang up cannot keep the places from the others."""
        if len(job.sparql) <= _SHAPED:
            mark = _fingerprint(job)
        else:  # (a long text is read beside the event loop)
            mark = await anyio.to_thread.run_sync(_fingerprint, job)
        exact = _text_print(job)
        again = self._stopped_lately(mark)
        same = again and self._stopped_lately(exact)
        for attempt in range(2):
            if self._stopping:  # (no query starts, or runs again, once the server is stopping)
                return "error", STOPPING
            try:
                proc = await self._acquire(fresh=attempt > 0, again=again, gone=gone, mark=mark, same=same)
            except _CannotStart:
                return "error", (503, "no query worker could be started; try again shortly")
            except _Gone:
                return "error", GONE
            except _Stopping:
                return "error", STOPPING
            if proc is None:
                return "error", (503, f"the server is busy: {self.limit} queries are running and {MAX_WAITING} "
                                      "waiting (serve --workers); try again shortly")
            proc.mark, proc.exact, proc.again = mark, exact, self._stopped_lately(mark)
            try:
                return await self._dispatch(proc, job, gone)
            except _Died as exc:
                self._discard(proc)
                if proc.stopped == "evicted":
                    return "error", _EVICTED
                if attempt:
                    return "error", (500, f"the query worker died twice running this query ({exc})")
                log.warning("a query worker died before answering (%s); running the query on a fresh one", exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def _remember(self, proc: Proc) -> None:
        """A query stopped (evicted, or over a limit): sent again soon, it waits behind others."""
        for mark in (proc.mark, proc.exact):
            if mark:
                self.stopped_lately[mark] = time.monotonic()
                self.stopped_lately.move_to_end(mark)
            while len(self.stopped_lately) > _REMEMBERED:
                self.stopped_lately.popitem(last=False)

    def _stopped_lately(self, mark: bytes) -> bool:
        when = self.stopped_lately.get(mark)
        return when is not None and time.monotonic() - when < _REMEMBER_SECONDS

    async def _dispatch(self, proc: Proc, job: Job, gone: Gone | None = None) -> tuple[str, Any]:
        """Hand ``job`` to ``proc`` and wait for its header within the limits (and while its client
        is there: a query run for nobody is stopped)."""
        deadline = proc.started + self.opts.timeout
        asked = time.monotonic()
        sent = False
        try:
            with anyio.move_on_after(self.opts.timeout):
                await anyio.to_thread.run_sync(proc.conn.send, job, abandon_on_cancel=True)
                sent = True
        except (BrokenPipeError, EOFError, OSError):
            raise _Died(_ending(proc)) from None
        if not sent:
            self._discard(proc)
            return "error", (503, f"query stopped after the {self.opts.timeout:g} s time limit")
        while True:
            if proc.stopped == "evicted":
                self._kill(proc)
                return "error", _EVICTED
            if has_data(proc.conn):
                if proc.running_since is not None:
                    break
                try:
                    proc.conn.recv_bytes()  # (it started on the query)
                except (EOFError, OSError):
                    raise _Died(_ending(proc)) from None
                proc.running_since = time.monotonic()
                proc.cpu_since = cpu_seconds(proc.pid)
                deadline = proc.running_since + self.opts.timeout
                continue
            if not proc.alive():
                if proc.stopped == "evicted":
                    continue
                raise _Died(_ending(proc))
            now = time.monotonic()
            if gone is not None and now - asked >= _GONE_EVERY:
                asked = now
                if await gone():
                    log.info("stopped a query whose client closed the connection (pid %s)", proc.pid)
                    self._discard(proc)
                    return "error", GONE
            if resident_bytes(proc.pid) > self.opts.max_memory:
                proc.stopped = "memory"
                self._remember(proc)
                self._discard(proc)
                return "error", (503, f"query stopped: it needed more than {size_text(self.opts.max_memory)} of "
                                      "memory (serve --max-memory)")
            if now > deadline:
                proc.stopped = "time"
                self._remember(proc)
                self._discard(proc)
                return "error", (503, f"query stopped after the {self.opts.timeout:g} s time limit")
            await wait_readable((proc.conn.fileno(), proc.process.sentinel), min(POLL_SECONDS, deadline - now))
        try:
            status, payload = proc.conn.recv()
        except (EOFError, OSError):
            raise _Died(_ending(proc)) from None
        if status != "ok":
            self._release(proc)
            return status, payload
        code, media, length = payload
        if length == 0:
            self._release(proc)
            return "ok", Answer(code, media, 0, _no_chunks(), lambda complete: None)
        return await self._answer(proc, code, media, length)

    async def _answer(self, proc: Proc, code: int, media: str, length: int) -> tuple[str, Any]:
        """The answer's bytes are taken from the worker as fast as it sends them, into a spool
        (memory up to :data:`SPOOL_MEMORY`, a temporary file beyond), and the worker is given
        back as soon as the last byte is in: a client slow to read holds its connection and its
        spool, never a worker. While the spools have room the whole answer is in before the
        client is answered, so a worker that dies mid-answer costs the client nothing (the query
        runs again); past :data:`SPOOL_BUDGET` the rest follows at the client's pace."""
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115 - closed by close()
        state: dict[str, Any] = {"in": 0, "out": 0, "cut": None, "released": False, "held": 0}
        arrived, taken = asyncio.Event(), asyncio.Event()

        async def take() -> None:
            """One piece from the worker into the spool."""
            while not has_data(proc.conn):
                if proc.stopped is not None or not proc.alive():
                    raise Cut("the query's worker was stopped")
                await wait_readable((proc.conn.fileno(), proc.process.sentinel), 1.0)
            try:
                piece = proc.conn.recv_bytes()
            except (EOFError, OSError):
                raise Cut("the query's worker was stopped") from None
            spool.seek(0, 2)
            spool.write(piece)
            state["in"] += len(piece)
            state["held"] += len(piece)
            self.spooled += len(piece)
            arrived.set()

        def taken_all() -> None:
            if proc in self.pool.busy:
                state["released"] = True
                self._release(proc)

        def drop_spool() -> None:
            spool.close()
            self.spooled -= state["held"]
            state["held"] = 0

        try:
            while state["in"] < length and self.spooled < SPOOL_BUDGET:
                await take()
        except Cut:
            drop_spool()
            if proc.stopped == "evicted":
                self._kill(proc)
                return "error", _EVICTED
            raise _Died(_ending(proc)) from None
        task: asyncio.Task[None] | None = None
        if state["in"] >= length:
            taken_all()
        else:
            async def drain() -> None:
                try:
                    while state["in"] < length:
                        while self.spooled >= SPOOL_BUDGET and state["out"] < state["in"]:
                            taken.clear()  # every spool full: this answer goes at its client's pace
                            await taken.wait()
                        await take()
                    taken_all()
                except Cut as exc:
                    state["cut"] = exc
                finally:
                    arrived.set()

            task = asyncio.get_running_loop().create_task(drain())

        async def chunks() -> AsyncIterator[bytes]:
            sent = 0
            while sent < length:
                if sent >= state["in"]:
                    if state["cut"] is not None:
                        raise state["cut"]
                    arrived.clear()
                    if sent >= state["in"] and state["cut"] is None and task is not None and not task.done():
                        await arrived.wait()
                    continue
                spool.seek(sent)
                piece = spool.read(min(CHUNK, state["in"] - sent))
                sent += len(piece)
                state["out"] = sent
                taken.set()
                yield piece

        def close(complete: bool) -> None:
            drop_spool()
            if state["released"]:
                return
            if task is not None:
                task.cancel()
            if proc not in self.pool.busy:  # evicted meanwhile
                self._kill(proc)
            else:
                self._discard(proc)

        return "ok", Answer(code, media, length, chunks(), close)


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover



def runner_for(opts: ServeOptions) -> Any:
    """Worker processes for an embedded store; the server itself for a remote one."""
    return Direct(opts) if opts.location.startswith(("http://", "https://")) else Workers(opts)
