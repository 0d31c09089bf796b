"""The query worker processes of ``serve``: forked from a server process that has the
modules loaded (a worker starts in tens of milliseconds, so replacing one is cheap), kept
ready while idle (one that dies is replaced at once), stopped cleanly. Which query runs where
is :mod:`.worker_pool`'s decision.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from .query_workers import PRELOAD, ServeOptions, _worker

__all__ = ["POLL_SECONDS", "Pool", "Proc", "Processes", "has_data", "resident_bytes", "size_text", "wait_readable"]

log = logging.getLogger(__name__)

#: Seconds between looks at a running query (its memory, its time).
POLL_SECONDS = 0.05


@dataclass(eq=False)
class Proc:
    """A worker process and the server's end of its pipe."""

    process: Any
    conn: Any
    #: when its current query was handed to it (busy workers)
    started: float = 0.0
    #: when it started on its current query (it says so on receiving it); None until then
    running_since: float | None = None
    #: the processor time it had used then (None: unknown, its age is then the time since)
    cpu_since: float | None = None
    #: why it was stopped from outside its own query ("evicted", "time", "memory"), if it was
    stopped: str | None = None
    watched: bool = False
    closed: bool = False
    #: the fingerprints of its current query's family and text, and whether that family was
    #: stopped lately
    mark: bytes = b""
    exact: bytes = b""
    again: bool = False

    @property
    def pid(self) -> int:
        try:
            return int(self.process.pid or 0)
        except ValueError:
            return 0

    def alive(self) -> bool:
        return not self.closed and bool(self.process.is_alive())


@dataclass(eq=False)
class Pool:
    idle: list[Proc] = field(default_factory=list)
    busy: list[Proc] = field(default_factory=list)
    starting: int = 0

    @property
    def total(self) -> int:
        return len(self.idle) + len(self.busy) + self.starting


class Processes:
    """Worker processes: ``workers`` kept ready, at most ``2 × workers`` busy and one more ahead."""

    def __init__(self, opts: ServeOptions) -> None:
        self.opts = opts
        self.ctx = _context()
        self.pool = Pool()
        self.keep = max(1, opts.workers)
        #: when idle workers died lately (see :meth:`_idle_died`)
        self._idle_deaths: list[float] = []
        self.limit = self.keep * 2
        self._tasks: set[Any] = set()
        self._stopping = False

    def _spawn(self) -> Proc:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(child, self.opts.location, self.opts.store_options, os.getpid()),
                                daemon=True)
        proc.start()
        child.close()
        return Proc(proc, parent)

    async def _start_one(self) -> Proc | None:
        self.pool.starting += 1
        try:
            return await anyio.to_thread.run_sync(self._spawn)
        except (OSError, EOFError) as exc:  # (EOFError: the fork server was killed; the next start replaces it)
            log.warning("could not start a query worker: %s", exc)
            return None
        finally:
            self.pool.starting -= 1

    def _kill(self, proc: Proc) -> None:
        """Stop a worker and close its pipe (only by whoever waits on it: a closed descriptor's
        number can be reused by the next connection)."""
        self._unwatch(proc)
        if proc.closed:
            return
        proc.closed = True
        try:
            proc.process.kill()
            proc.process.join(5)
        except (OSError, ValueError, AssertionError):
            pass
        try:
            proc.conn.close()
        except OSError:
            pass
        try:
            proc.process.close()
        except (ValueError, AssertionError):
            pass

    def _watch(self, proc: Proc) -> None:
        """Replace an idle worker the moment it dies."""
        try:
            asyncio.get_running_loop().add_reader(proc.process.sentinel, self._idle_died, proc)
            proc.watched = True
        except (OSError, ValueError, RuntimeError):
            pass

    def _unwatch(self, proc: Proc) -> None:
        if proc.watched:
            proc.watched = False
            try:
                asyncio.get_running_loop().remove_reader(proc.process.sentinel)
            except (OSError, ValueError, RuntimeError):
                pass

    def _idle_died(self, proc: Proc) -> None:
        if proc in self.pool.idle:
            self.pool.idle.remove(proc)
            self._kill(proc)
            self._changed()
            now = time.monotonic()
            self._idle_deaths = [t for t in self._idle_deaths if now - t < _DEATHS_WINDOW] + [now]
            if len(self._idle_deaths) <= _DEATHS_ALLOWED:
                log.warning("a query worker (pid %s) died while idle; starting another", proc.pid)
                self._spawn_ahead(min_idle=1)
                return
            # workers that die as they start (a package upgraded in place, a broken environment):
            # not started again and again, flooding the log; a query still starts one when it needs it
            log.warning("query workers keep dying while idle (%d in %.0f s): the next is started in %.0f s, "
                        "or when a query needs one (if konbini-ld was upgraded in place, restart serve)",
                        len(self._idle_deaths), _DEATHS_WINDOW, _DEATHS_PAUSE)
            try:
                asyncio.get_running_loop().call_later(_DEATHS_PAUSE, self._spawn_ahead, 1)
            except RuntimeError:
                pass

    def _spawn_ahead(self, min_idle: int = 1) -> None:
        """Start workers in the background until ``min_idle`` are ready (within the limit)."""
        if self._stopping:
            return
        missing = min(min_idle - len(self.pool.idle) - self.pool.starting, self.limit + 1 - self.pool.total)
        for _ in range(max(0, missing)):
            task = asyncio.get_running_loop().create_task(self._add_idle())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _add_idle(self) -> None:
        proc = await self._start_one()
        if proc is None:
            return
        if self._stopping:
            self._kill(proc)
            return
        self.pool.idle.append(proc)
        self._watch(proc)
        self._changed()

    def _changed(self) -> None:
        event = getattr(self, "_event", None)
        if event is not None:
            event.set()

    async def start(self) -> None:
        self._event = asyncio.Event()
        _start_fork_server(self.ctx)
        for _ in range(self.keep):
            proc = await self._start_one()
            if proc is not None:
                self.pool.idle.append(proc)
                self._watch(proc)

    def drain(self) -> None:
        """The server is stopping: from now on no query starts (those waiting are answered 503 at
        once), none is run again and no worker is started or kept idle. Queries running go on, for
        the server's grace period; :meth:`stop` then ends every worker."""
        self._stopping = True
        for proc in self.pool.idle:
            self._kill(proc)
        self.pool.idle.clear()
        self._changed()

    async def stop(self) -> None:
        self._stopping = True
        for proc in self.pool.idle + self.pool.busy:
            self._kill(proc)
        self.pool.idle.clear()
        self.pool.busy.clear()

    def _take_idle(self) -> Proc | None:
        while self.pool.idle:
            proc = self.pool.idle.pop()
            self._unwatch(proc)
            if proc.alive():
                return proc
            self._kill(proc)  # died while idle (its sentinel not yet seen)
        return None

    def _release(self, proc: Proc) -> None:
        """Give a worker back after a complete answer: it is the next one handed out (its views
        and caches are warm); spares beyond ``workers`` and the one ahead are retired."""
        if proc in self.pool.busy:
            self.pool.busy.remove(proc)
        if proc.alive() and len(self.pool.idle) < self.keep + 1 and not self._stopping:
            self.pool.idle.append(proc)
            self._watch(proc)
        else:
            self._kill(proc)
        self._changed()

    def _discard(self, proc: Proc) -> None:
        if proc in self.pool.busy:
            self.pool.busy.remove(proc)
        self._kill(proc)
        self._changed()
        self._spawn_ahead()


#: More idle workers dying than this within :data:`_DEATHS_WINDOW` seconds pauses their
#: replacement for :data:`_DEATHS_PAUSE` seconds.
_DEATHS_ALLOWED = 3
_DEATHS_WINDOW = 10.0
_DEATHS_PAUSE = 10.0


def _context() -> Any:
    """Fork workers from a server process that has the modules loaded; spawn where there is none."""
    try:
        ctx = mp.get_context("forkserver")
    except ValueError:
        return mp.get_context("spawn")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _start_fork_server(ctx: Any) -> None:
    """Start the process workers are forked from with Ctrl-C and SIGTERM ignored from its first
    instruction (an ignored signal stays ignored across exec), so a signal sent to the whole
    process group while it loads its modules is the server's alone (a signal sent to the server in
    the few milliseconds this takes is lost: send it again)."""
    import threading

    if ctx.get_start_method() != "forkserver" or threading.current_thread() is not threading.main_thread():
        return
    from multiprocessing import forkserver

    held = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        forkserver.ensure_running()
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


def has_data(conn: Any) -> bool:
    try:
        return bool(conn.poll(0))
    except (EOFError, OSError):
        return True  # (the read that follows reports it)


async def wait_readable(fds: Sequence[int], timeout: float) -> None:
    """Wait until one of ``fds`` is readable, or ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    added = []
    try:
        for fd in fds:
            loop.add_reader(fd, wake)
            added.append(fd)
        await asyncio.wait_for(ready, timeout=max(timeout, 0.001))
    except TimeoutError:
        pass
    finally:
        for fd in added:
            loop.remove_reader(fd)


def resident_bytes(pid: int) -> int:
    """Resident memory of a process (Linux ``/proc``; 0 where it cannot be read)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def cpu_seconds(pid: int) -> float | None:
    """Processor time a process has used (Linux ``/proc``; ``None`` where it cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def size_text(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= factor:
            return f"{n / factor:g} {unit}"
    return f"{n} bytes"
