"""Run a query's work within a time limit, and let Ctrl-C (or SIGTERM) end it at once.

The engine evaluates without holding the interpreter, and cannot be interrupted while it does:
run in the calling thread, a query ignores Ctrl-C until it ends. :func:`within` runs the work in
a thread of its own (with the main thread's stack size, which the query guard's limits assume)
while the calling thread waits, so a signal or the time limit ends the wait at once. The
abandoned evaluation goes on in the background until the process exits, which the command line
does next. The engine's objects may only be dropped by the thread that made them: an error is
handed over with its frames' variables cleared.

>>> within(5, lambda: 6 * 7)
42
"""

from __future__ import annotations

import resource
import threading
import time
import traceback
from collections.abc import Callable
from typing import TypeVar

from ..errors import QueryError

__all__ = ["within"]

T = TypeVar("T")

#: The evaluating thread's stack: the main thread's (the guard's depth limits are measured on it).
_STACK = 64 << 20


def _stack_size() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_STACK)
    return _STACK if soft == resource.RLIM_INFINITY else max(soft, 8 << 20)


def within(seconds: float | None, work: Callable[[], T], *, what: str = "the query") -> T:
    """``work()``, or :class:`~konbini_ld.errors.QueryError` once ``seconds`` have passed
    (``None``: no limit). A ``KeyboardInterrupt`` in the calling thread ends the wait at once."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            seen: set[int] = set()
            link: BaseException | None = exc
            while link is not None and id(link) not in seen:  # the engine's objects die in this thread
                seen.add(id(link))
                traceback.clear_frames(link.__traceback__)
                link = link.__cause__ or link.__context__
            box["error"] = exc

    previous = threading.stack_size(_stack_size())
    try:
        worker = threading.Thread(target=target, name="konbini-ld-query", daemon=True)
        worker.start()
    finally:
        threading.stack_size(previous)
    deadline = None if seconds is None else time.monotonic() + seconds
    while worker.is_alive():
        left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
        if left <= 0:
            raise QueryError(f"{what} was stopped after the {seconds:g} s time limit (--timeout)")
        worker.join(left)
    if "error" in box:
        error = box.pop("error")
        try:
            raise error  # type: ignore[misc]
        finally:
            del error  # (its frames include this one: held here, a reference cycle)
    return box.pop("value")  # type: ignore[return-value]
