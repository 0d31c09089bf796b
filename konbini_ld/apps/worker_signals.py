"""Imported first by the process query workers are forked from (and by nothing else): it and every
worker forked from it leave Ctrl-C and SIGTERM to ``serve``.

A signal sent to the whole process group (a terminal's Ctrl-C, ``kill -TERM -PGID``, a service
manager's stop) reaches them too. Were they to end at once, the queries running would lose the
grace ``serve`` gives them; ``serve`` ends them itself (SIGKILL), and they end with it however it
ends (:func:`konbini_ld.apps.query_workers._follow`).
"""

from __future__ import annotations

import signal

__all__: list[str] = []

signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
