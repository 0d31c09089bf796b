"""Commands that write the graph: ``load``, ``fetch``, ``rebuild``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Any

import click

from ...errors import UsageError
from ...io.text import one_line
from .options import Context, batch_options, handle_errors, pass_state, report_load, report_warnings, seconds_type

#: ``load`` compacts the store after this many responses (seconds of work that make queries faster).
COMPACT_AFTER = 50_000


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE... | -")
@batch_options
@click.option("--workers", type=click.IntRange(0, 256), metavar="N",
              help="Processes preparing responses beside the writer (default: one per CPU beyond two; 0: none).")
@click.option("--observed-at", metavar="TIME",
              help="When the responses were observed (ISO 8601; default: a recorded exchange's Date header, "
                   "else now).")
@pass_state
@handle_errors
def load(state: Context, files: tuple[str, ...], batch_size: int, batch_bytes: int, workers: int | None,
         observed_at: str | None) -> None:
    """Ingest saved API responses.

    Each FILE is a JSON file (the API's {"data": …} envelope or a bare object; one
    audio or a page of videos; or an array of these) or JSON Lines (one response
    per line). "-" reads standard input.

    Every response is an observation at a time: --observed-at, else the Date
    header of a recorded exchange, else now. Its counters join the history graph
    at that time; the current state keeps the newest observation of each value,
    whatever order files are loaded in.

    \b
    Examples:
      konbini-ld load samples/seed-audio.json responses.jsonl
      konbini-ld load --observed-at 2026-11-01T09:00:00Z snapshot-2026-11-01.jsonl
    """
    from ...units import parse_time

    when = parse_time(observed_at) if observed_at is not None else None
    with state.open() as store, state.progress(None, "resp", "loading") as bar:
        report = store.load(files, batch_size=batch_size, batch_bytes=batch_bytes, progress=bar.update,
                            observed_at=when, workers=workers)
        if report.loaded >= COMPACT_AFTER:  # a large load leaves many files: merge them for the queries
            store.compact()
    report_load(state, report, "loaded")
    if report.failed:
        sys.exit(1)


@click.command()
@click.argument("ids", nargs=-1, metavar="[ID_OR_URL]...")
@click.option("--ids-file", type=click.File("rb"), metavar="FILE|-", help="Read ids or URLs from FILE, one per line.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=32, show_default=True, help="Requests in flight.")
@click.option("--refresh", is_flag=True, help="Buy again what the store already has (not-found answers included).")
@click.option("--refresh-older-than", metavar="DURATION",
              help="Buy again only what was last bought longer ago than DURATION (30m, 12h, 7d).")
@click.option("--retry-not-found", is_flag=True,
              help="Ask again for audios and pages the API said do not exist (otherwise never asked again).")
@click.option("--dry-run", is_flag=True, help="Say what would be bought and what it would cost; buy nothing.")
@click.option("--max-credits", type=click.IntRange(0), metavar="N", help="Spend at most N credits in this run.")
@click.option("--videos", is_flag=True, help="Also fetch the pages of videos using each audio.")
@click.option("--max-pages", type=click.IntRange(0), default=1, show_default=True, help="Pages of videos per audio.")
@click.option("--api-url", metavar="URL",
              help="API base URL (default: $KONBINI_API_URL, else https://api.konbiniapi.com).")
@click.option("--timeout", type=seconds_type(), default=30.0, show_default=True,
              help="Seconds a request may take, from sending it to the answer's last byte (more than 0, at most "
                   "a day).")
@click.option("--retries", type=click.IntRange(1, 20), default=5, show_default=True,
              help="Attempts for transient failures (connection, timeout, 5xx).")
@batch_options
@click.option("--workers", type=click.IntRange(0, 256), metavar="N",
              help="Processes preparing answers for the graph beside the writer (default: one per CPU beyond one; "
                   "0: none).")
@pass_state
@handle_errors
def fetch(state: Context, ids: tuple[str, ...], ids_file: IO[bytes] | None, concurrency: int, refresh: bool,
          refresh_older_than: str | None, retry_not_found: bool, dry_run: bool, max_credits: int | None,
          videos: bool, max_pages: int, api_url: str | None, timeout: float, retries: int, batch_size: int,
          batch_bytes: int, workers: int | None) -> None:
    """Fetch audios (and with --videos the videos using them) from KonbiniAPI into the store.

    The key comes from the KONBINI_API_KEY environment variable. Each request
    costs a credit: ids the store already has are skipped (unless --refresh),
    404s are remembered, and an interrupted or credit-exhausted run resumes
    where it stopped. Every raw response is archived before it is loaded.

    To follow how counters grow, run it on a schedule with --refresh-older-than:
    each run buys again only what is older than that, and every purchase adds a
    point to the history graph (`konbini-ld query trending`). --dry-run says
    what a run would buy and cost, and buys nothing (no key needed).

    \b
    Examples:
      export KONBINI_API_KEY=...
      konbini-ld fetch 7611615657754381599
      konbini-ld fetch https://www.tiktok.com/music/original-sound-7611615657754381599 --videos --max-pages 3
      konbini-ld fetch --ids-file audio-ids.txt --max-credits 500
      konbini-ld fetch --ids-file watch-list.txt --refresh-older-than 12h --dry-run
      0 */6 * * *  konbini-ld fetch --ids-file watch-list.txt --refresh-older-than 12h -q
    """
    from ...io.inputs import bounded_lines
    from ...pipeline.fetch import fetch as run_fetch
    from ...sources.konbini.client import KonbiniClient
    from ...sources.konbini.endpoints import parse_audio_ids
    from ...units import parse_duration

    # refuse bad input before opening anything or sending a request
    values = parse_audio_ids(ids)
    if ids_file is not None:
        name = getattr(ids_file, "name", None)
        label = str(name) if isinstance(name, str) and name not in ("-", "<stdin>") else "standard input"
        values += parse_audio_ids(bounded_lines(ids_file, label), source="line")
    if not values:
        raise UsageError("give audio ids or TikTok music URLs, or --ids-file FILE")
    if refresh and refresh_older_than is not None:
        raise UsageError("give --refresh (buy everything again) or --refresh-older-than, not both")
    older = parse_duration(refresh_older_than) if refresh_older_than is not None else None
    given_url = api_url if api_url is not None else os.environ.get("KONBINI_API_URL") or None
    if given_url is not None and given_url.startswith(("http://", "https://")):
        from ...store.log.directory import check_endpoint_url

        check_endpoint_url(given_url, "--api-url" if api_url is not None else "KONBINI_API_URL")
    client = None if dry_run else KonbiniClient.from_environment(
        os.environ, api_url=api_url, timeout=timeout, retries=retries, pool_size=concurrency)
    with state.open(or_read_only=dry_run) as store, state.progress(None, "req", "fetching") as bar:
        graph: list[Any] = []

        def total(n: int) -> None:
            bar.total = n
            bar.refresh()

        def on_graph(pending: int) -> None:  # the answers are in: the graph's own progress from here
            bar.close()
            graph.append(state.progress(pending, "resp", "applying to the graph"))

        def graph_progress(n: int) -> None:
            if graph:
                graph[0].update(n)

        try:
            report = run_fetch(store, client, values, concurrency=concurrency, refresh=refresh,
                               max_credits=max_credits, refresh_older_than=older, retry_not_found=retry_not_found,
                               dry_run=dry_run, videos=videos, max_pages=max_pages, progress=bar.update,
                               on_total=total, on_graph=on_graph, graph_progress=graph_progress,
                               batch_size=batch_size, batch_bytes=batch_bytes, workers=workers)
        finally:
            for b in graph:
                b.close()
    for error in report.failed:
        click.echo(f"error: {one_line(str(error))}", err=True)
    for key, iri in report.load.unknown_keys.items():
        state.warn(f"unknown key {key!r} kept as <{iri}>")
    report_warnings(state, report.load)
    for error in report.errors:
        click.echo(f"Error: {one_line(str(error))}", err=True)
    state.note(report.summary())
    if report.stopped in ("terminated", "interrupted"):
        _end_now(report.exit_code)
    if report.exit_code:
        sys.exit(report.exit_code)


def _end_now(code: int) -> None:
    """After Ctrl-C or SIGTERM, with the store closed and the summary said: end without waiting
    for request threads a server still holds (their connections are shut, but a thread that was
    connecting may read on until its own time limit)."""
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@click.command()
@click.option("--accept-damage", is_flag=True,
              help="Rebuild from the readable records of a damaged archive (they are reported).")
@pass_state
@handle_errors
def rebuild(state: Context, accept_damage: bool) -> None:
    """Re-derive the graph from the archive of raw responses (no credits spent).

    Run it after upgrading konbini-ld when the mapping or contexts changed, or
    to recover a store whose graph is damaged or missing. The new graph is built
    beside the old one and replaces it only when complete: an interrupted
    rebuild leaves the old graph. A damaged archive stops it (exit 1) before
    anything changes, unless --accept-damage.

    \b
    Example:
      konbini-ld rebuild
    """
    from ...pipeline.collection import rebuild_store
    from ...store.log.archive import Archive

    total = Archive(Path(state.archive or state.location) / "archive").last_seq
    with state.progress(total, "resp", "rebuilding") as bar:
        report = rebuild_store(state.location, archive=state.archive, accept_damage=accept_damage,
                               progress=bar.update, **state.store_options)
    for damage in report.damage:
        click.echo(f"warning: {damage}", err=True)
    report_load(state, report, "rebuilt from")
    if report.failed:
        sys.exit(1)


@click.command()
@pass_state
@handle_errors
def compact(state: Context) -> None:
    """Rewrite the graph in its smallest form on disk (no credits spent).

    A graph written by many loads (a collector's daily runs) takes about twice
    the room of the same quads bulk-loaded at once. This copies them into a new
    graph in one bulk load and puts it in place of the old one, as rebuild
    does: an interrupted or failed run (a full disk) leaves the old graph. It
    needs free room of about twice the compacted graph while it writes (about
    the size of a graph written by daily loads), and memory of about 700 bytes
    a quad (the bulk loader holds them: 1.3 GB for 1.9 million quads; `stats`
    counts them). `serve` beside it reads on from the new graph.

    \b
    Example:
      konbini-ld compact
    """
    import time

    if state.is_remote:
        raise UsageError("compact rewrites a store directory's files; a SPARQL server keeps its own")
    from ...errors import StoreError

    graph = Path(state.location) / "oxigraph"
    if not graph.is_dir():  # (opening it for writing would make an empty one)
        raise StoreError(f"there is no konbini-ld store at {state.location} (load something first)")
    with state.open() as store:
        before = _size(graph)
        started = time.monotonic()
        quads = store.repack()
        after = _size(graph)
    state.note(f"rewrote {quads:,} quads in {time.monotonic() - started:.1f} s: the graph takes "
               f"{after / 2**20:,.1f} MiB on disk (was {before / 2**20:,.1f} MiB)")


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file()) if path.is_dir() else 0
