"""``python -m konbini_ld.fakeapi``: the loopback stand-in for KonbiniAPI, to try ``fetch`` end
to end without a key or a credit (the test suite and the benchmarks use the same server).

It serves a synthetic corpus of audios (ids from :func:`~konbini_ld.sources.konbini.fakeapi.audio_id`)
and their pages of videos, speaks the API's error envelope and credit headers, answers 402 once
its credits are spent and 401 to another key, and can be slowed down (``--latency``). ``--day``
picks the synthetic calendar: counters grow from one day to the next, so fetching again on a
later day adds points to the history.

    python -m konbini_ld.fakeapi --port 8787 &
    KONBINI_API_URL=http://127.0.0.1:8787 KONBINI_API_KEY=demo-key konbini-ld fetch --videos 7000000000000000000
"""

from __future__ import annotations

import argparse
import sys
import threading

from .sources.konbini.fakeapi import FakeKonbiniAPI, audio_id

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m konbini_ld.fakeapi", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8787, help="port on 127.0.0.1 (0: any free port; default 8787)")
    parser.add_argument("--key", default="demo-key", help="the API key it accepts (default demo-key)")
    parser.add_argument("--credits", type=int, default=25_000, help="credits before it answers 402 (default 25000)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer (default 0)")
    parser.add_argument("--day", type=int, default=0, help="the synthetic day: counters grow day by day (default 0)")
    parser.add_argument("--audios", type=int, default=100_000, help="audios that exist (default 100000)")
    parser.add_argument("--pages", type=int, default=3, help="pages of videos per audio (default 3)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535 or args.credits < 0 or args.latency < 0 or args.audios < 1 or args.pages < 0:
        parser.error("--port 0-65535; --credits, --latency, --pages 0 or more; --audios 1 or more")
    try:
        api = FakeKonbiniAPI(api_key=args.key, credits=args.credits, latency=args.latency, audios=args.audios,
                             pages=args.pages, port=args.port)
    except OSError as exc:
        print(f"Error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    api.day = args.day
    api.start()
    examples = " ".join(audio_id(i) for i in range(3))
    print(f"fake KonbiniAPI on {api.url} (key {args.key!r}, {args.credits} credits, day {args.day}); "
          f"audio ids include {examples}\n"
          f"  KONBINI_API_URL={api.url} KONBINI_API_KEY={args.key} konbini-ld fetch --videos {audio_id(0)}",
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
