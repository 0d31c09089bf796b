"""Imported first by the process query workers are forked from: there, it makes that process and
every worker forked from it leave Ctrl-C and SIGTERM to ``serve``. Imported anywhere else (a test
run that imports every module, a user's ``import``), it does nothing.

A signal sent to the whole process group (a terminal's Ctrl-C, ``kill -TERM -PGID``, a service
manager's stop) reaches the workers too. Were they to end at once, the queries running would lose
the grace ``serve`` gives them; ``serve`` ends them itself (SIGKILL), and they end with it however
it ends (:func:`konbini_ld.apps.query_workers._follow`).
"""

from __future__ import annotations

import signal
import sys

__all__: list[str] = []


def _preloaded_by_fork_server() -> bool:
    """Whether this import is multiprocessing's fork server preloading its modules."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "main" and frame.f_globals.get("__name__") == "multiprocessing.forkserver":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


if _preloaded_by_fork_server():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
