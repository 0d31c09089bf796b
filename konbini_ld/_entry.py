"""The ``konbini-ld`` program. A signal that arrives while the command line is still loading (its
imports take a second or two on a busy machine) ends it as at any other moment: "Interrupted.",
exit 130 for Ctrl-C and 143 for SIGTERM, never a traceback. This module imports nothing before
:func:`run` runs, so that holds from a few milliseconds after the interpreter starts."""

from __future__ import annotations

__all__ = ["run"]


def run() -> None:
    """Load the command line and run it (the handler for SIGTERM is the command line's own once it runs)."""
    terminated = False
    try:
        import signal

        from .errors import Terminated, raise_interrupted, raise_pending_signal, raise_terminated, signal_within

        signal.signal(signal.SIGTERM, raise_terminated)
        signal.signal(signal.SIGINT, raise_interrupted)
        try:
            from .apps.cli import main
        except Exception as exc:  # (a signal Python wrapped where it landed: see signal_within)
            landed = signal_within(exc)
            if landed is None:
                raise
            raise landed from None
        except Terminated:
            terminated = True
            raise
        else:
            raise_pending_signal()  # (one that something swallowed while the command line was imported)
    except KeyboardInterrupt as exc:
        # (by name: a signal landing while the errors module was imported leaves Terminated unbound here)
        terminated = terminated or type(exc).__name__ == "Terminated"
        import sys

        sys.stderr.write("Interrupted.\n")
        raise SystemExit(143 if terminated else 130) from None
    main()
