"""The ``konbini-ld`` command line: a thin click layer over the library.

Exit codes: 0 success; 1 some work failed; 2 usage error; 3 the API refused the
key (401/403); 4 credits exhausted (402).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from .errors import KonbiniError, UsageError

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("konbini_ld")


def default_store_path() -> Path:
    """``$XDG_DATA_HOME/konbini-ld/store`` (``~/.local/share/konbini-ld/store``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "konbini-ld" / "store"


def default_remote_archive(url: str) -> Path:
    """Where the archive of a remote store lives: one directory per endpoint URL."""
    from .urls import redact

    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", redact(url).split("://", 1)[-1]).strip("_")
    return default_store_path().parent / "remote" / slug


class Context:
    """What the global options decided, shared by every command."""

    def __init__(self, store: str | None, verbose: int, quiet: bool, debug: bool, **remote: Any) -> None:
        self.store_location = store
        self.verbose = verbose
        self.quiet = quiet
        self.debug = debug
        self.remote = remote

    @property
    def is_remote(self) -> bool:
        return bool(self.store_location) and str(self.store_location).startswith(("http://", "https://"))

    @property
    def location(self) -> Any:
        if self.is_remote:
            return self.store_location
        return Path(self.store_location) if self.store_location else default_store_path()

    @property
    def archive(self) -> Any:
        """The archive/state directory given or implied (``None``: inside a local store)."""
        if self.is_remote:
            return self.remote.get("archive") or default_remote_archive(self.location)
        return self.remote.get("archive")

    def open(self, *, read_only: bool = False) -> Any:
        from .store import open_store

        location = self.location
        kwargs = {"archive": self.archive, "update_url": self.remote.get("update_url"),
                  "gsp_url": self.remote.get("gsp_url")}
        if read_only and not self.is_remote and not (location / "oxigraph").is_dir():
            # Nothing loaded yet: an empty store answers every query with nothing.
            read_only = False
        store = open_store(location, read_only=read_only, **kwargs)
        self.report_recovery(store.recovered)
        return store

    def report_recovery(self, report: Any) -> None:
        for damage in report.damage:
            self.warn(str(damage))
        for error in report.failed:
            self.warn(f"replaying the archive: {error}")
        if report.loaded or report.failed:
            self.note(f"applied {report.loaded} archived response{'s' if report.loaded != 1 else ''} "
                      "that an interrupted run had left out of the graph")

    def progress(self, total: int | None, unit: str, desc: str) -> Any:
        """A progress bar on a terminal, nothing otherwise (or with -q)."""
        from tqdm import tqdm

        return tqdm(
            total=total,
            unit=unit,
            desc=desc,
            file=sys.stderr,
            disable=self.quiet or not sys.stderr.isatty(),
            leave=False,
            dynamic_ncols=True,
        )

    def note(self, message: str) -> None:
        if not self.quiet:
            click.echo(message, err=True)

    def warn(self, message: str) -> None:
        if not self.quiet:
            click.echo(f"warning: {message}", err=True)


def handle_errors(fn: F) -> F:
    """Map :class:`KonbiniError` to one ``Error:`` line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        state: Context | None = ctx.find_object(Context)
        try:
            return fn(*args, **kwargs)
        except KonbiniError as exc:
            if state is not None and state.debug:
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, like other Unix tools.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except KeyboardInterrupt as exc:
            from .fetch import Terminated

            click.echo("Interrupted: everything loaded so far is saved.", err=True)
            ctx.exit(143 if isinstance(exc, Terminated) else 130)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--store",
    envvar="KONBINI_LD_STORE",
    metavar="PATH|URL",
    help="Store directory (default: $XDG_DATA_HOME/konbini-ld/store), or the query endpoint URL of a "
    "SPARQL 1.1 server; env KONBINI_LD_STORE.",
)
@click.option("--update-url", envvar="KONBINI_LD_UPDATE_URL", metavar="URL",
              help="Remote store: SPARQL update endpoint (derived for Oxigraph, Fuseki, GraphDB, Virtuoso).")
@click.option("--gsp-url", envvar="KONBINI_LD_GSP_URL", metavar="URL",
              help="Remote store: Graph Store Protocol endpoint (derived for known servers).")
@click.option("--archive", envvar="KONBINI_LD_ARCHIVE", metavar="DIR",
              help="Archive directory (default: inside the store; per endpoint for a remote store).")
@click.option("-v", "--verbose", count=True, help="More detail on stderr (repeat for debug logging).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr; no progress bars or summaries.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="konbini-ld")
@click.pass_context
def main(
    ctx: click.Context,
    store: str | None,
    update_url: str | None,
    gsp_url: str | None,
    archive: str | None,
    verbose: int,
    quiet: bool,
    debug: bool,
) -> None:
    """konbini-ld: TikTok audio data from KonbiniAPI as a linked-data graph.

    Load or fetch ActivityStreams JSON-LD responses into a persistent RDF store,
    query it with named SPARQL queries, export it, serve it.
    """
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    _log_to_stderr(level)
    ctx.obj = Context(store, verbose, quiet, debug, update_url=update_url, gsp_url=gsp_url, archive=archive)


pass_state = click.make_pass_decorator(Context)


def _log_to_stderr(level: int) -> None:
    """konbini-ld's log lines on this invocation's stderr (-v: INFO, -vv: DEBUG)."""
    logger = logging.getLogger("konbini_ld")
    for handler in [h for h in logger.handlers if getattr(h, "konbini_cli", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.konbini_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


def _report_load(state: Context, report: Any, what: str) -> None:
    for error in report.failed:
        click.echo(f"error: {error}", err=True)
    for key, iri in report.unknown_keys.items():
        state.warn(f"unknown key {key!r} kept as <{iri}>")
    failed = f", {len(report.failed)} failed" if report.failed else ""
    state.note(f"{what} {report.loaded} response{'s' if report.loaded != 1 else ''}{failed} "
               f"(+{report.added} / -{report.removed} data triples)")


@main.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE... | -")
@click.option("--batch-size", default=2000, show_default=True, help="Responses per write batch.")
@pass_state
@handle_errors
def load(state: Context, files: tuple[str, ...], batch_size: int) -> None:
    """Ingest saved API responses.

    Each FILE is a JSON file (the API's {"data": …} envelope or a bare object; one
    audio or a page of videos; or an array of these) or JSON Lines (one response
    per line). "-" reads standard input.

    \b
    Example:
      konbini-ld load samples/seed-audio.json responses.jsonl
    """
    with state.open() as store, state.progress(None, "resp", "loading") as bar:
        report = store.load(files, batch_size=batch_size, progress=bar.update)
    _report_load(state, report, "loaded")
    if report.failed:
        sys.exit(1)


@main.command()
@click.argument("ids", nargs=-1, metavar="[ID_OR_URL]...")
@click.option("--ids-file", type=click.File("r"), metavar="FILE|-", help="Read ids or URLs from FILE, one per line.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=32, show_default=True, help="Requests in flight.")
@click.option("--refresh", is_flag=True, help="Buy again what the store already has.")
@click.option("--max-credits", type=click.IntRange(0), metavar="N", help="Spend at most N credits in this run.")
@click.option("--videos", is_flag=True, help="Also fetch the pages of videos using each audio.")
@click.option("--max-pages", type=click.IntRange(0), default=1, show_default=True, help="Pages of videos per audio.")
@click.option("--api-url", envvar="KONBINI_API_URL", default="https://api.konbiniapi.com", show_default=True,
              help="API base URL (env KONBINI_API_URL).")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for each answer.")
@click.option("--retries", type=click.IntRange(1, 20), default=5, show_default=True,
              help="Attempts for transient failures (connection, timeout, 5xx).")
@pass_state
@handle_errors
def fetch(
    state: Context,
    ids: tuple[str, ...],
    ids_file: IO[str] | None,
    concurrency: int,
    refresh: bool,
    max_credits: int | None,
    videos: bool,
    max_pages: int,
    api_url: str,
    timeout: float,
    retries: int,
) -> None:
    """Fetch audios (and with --videos the videos using them) from KonbiniAPI into the store.

    The key comes from the KONBINI_API_KEY environment variable. Each request
    costs a credit: ids the store already has are skipped (unless --refresh),
    404s are remembered, and an interrupted or credit-exhausted run resumes
    where it stopped. Every raw response is archived before it is loaded.

    \b
    Examples:
      export KONBINI_API_KEY=...
      konbini-ld fetch 7611615657754381599
      konbini-ld fetch https://www.tiktok.com/music/original-sound-7611615657754381599 --videos --max-pages 3
      konbini-ld fetch --ids-file audio-ids.txt --max-credits 500
    """
    from .client import KonbiniClient, parse_audio_ids
    from .fetch import fetch as do_fetch

    if os.environ.get("KONBINI_API_URL") == "" and api_url in ("", "https://api.konbiniapi.com"):
        raise UsageError("KONBINI_API_URL is set but empty: unset it to use https://api.konbiniapi.com, "
                         "or give the API's URL")
    # refuse bad input before opening anything or sending a request
    values = parse_audio_ids(ids)
    if ids_file is not None:
        values += parse_audio_ids(ids_file.read().splitlines(), source="line")
    if not values:
        raise UsageError("give audio ids or TikTok music URLs, or --ids-file FILE")
    client = KonbiniClient(
        os.environ.get("KONBINI_API_KEY", ""), base_url=api_url, timeout=(min(10.0, timeout), timeout),
        retries=retries, pool_size=concurrency,
    )
    with state.open() as store, state.progress(None, "req", "fetching") as bar, _sigterm_as_interrupt():

        def total(n: int) -> None:
            bar.total = n
            bar.refresh()

        report = do_fetch(
            store, client, values, concurrency=concurrency, refresh=refresh, max_credits=max_credits,
            videos=videos, max_pages=max_pages, progress=bar.update, on_total=total,
        )
    for error in report.failed:
        click.echo(f"error: {error}", err=True)
    for key, iri in report.load.unknown_keys.items():
        state.warn(f"unknown key {key!r} kept as <{iri}>")
    for error in report.errors:
        click.echo(f"Error: {error}", err=True)
    state.note(report.summary())
    if report.exit_code:
        sys.exit(report.exit_code)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a run the way Ctrl-C does: in-flight answers are awaited and archived."""
    import signal

    from .fetch import Terminated

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_state
@handle_errors
def stats(state: Context, as_json: bool) -> None:
    """Audios, persons, videos, triples, last fetch and credits spent.

    \b
    Example:
      konbini-ld stats --json
    """
    with state.open(read_only=True) as store:
        s = store.stats()
    if as_json:
        click.echo(json.dumps(s.as_dict(), indent=2))
        return
    rows = [
        ("audios", s.audios),
        ("persons", s.persons),
        ("videos", s.videos),
        ("triples", s.triples),
        ("responses", s.responses),
        ("archived", s.archived),
        ("last observed", s.last_observed or "never"),
        ("last fetch", s.last_fetch or "never"),
        ("credits spent", s.credits_spent),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k.ljust(width)}  {v}")
    from .urls import redact

    click.echo(f"{'store'.ljust(width)}  {redact(str(state.location))}")


def parse_size(text: str) -> int:
    """``512M``, ``2G``, ``1.5GiB``, ``1000000`` → bytes.

    >>> parse_size("512M"), parse_size("2G"), parse_size("1000")
    (536870912, 2147483648, 1000)
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise UsageError(f"{text!r} is not a size (e.g. 512M, 2G)")
    factor = 1024 ** " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * factor)


def _parse_params(values: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"-p takes NAME=VALUE, got {item!r}")
        params[name.lstrip("?$")] = value
    return params


@contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        fh = open(path, "wb")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    with fh:
        yield fh


@main.command()
@click.argument("name", required=False, metavar="NAME|FILE.rq")
@click.option("-e", "--expr", "inline", metavar="SPARQL", help="Inline SPARQL instead of a named query or file.")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="Bind ?NAME to VALUE (as an RDF term).")
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "tsv", "json", "xml", "turtle", "nt", "jsonld"]),
    default="table",
    show_default=True,
    help="Output format (turtle/nt/jsonld for CONSTRUCT and DESCRIBE).",
)
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of stdout.")
@pass_state
@handle_errors
def query(state: Context, name: str | None, inline: str | None, params: tuple[str, ...], fmt: str, output: str | None) -> None:
    """Run a named query, a .rq file, or inline SPARQL (-e).

    Parameters are bound as RDF terms, never pasted into the query text: a named
    query's header declares each one's type; for inline queries <…> is an IRI,
    an absolute http(s) URL is an IRI, anything else a string.

    \b
    Examples:
      konbini-ld query top-audios
      konbini-ld query audios-by-creator -p creator=https://www.tiktok.com/@khaby.lame
      konbini-ld query -e 'SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }' -f csv
      konbini-ld query audio -p audio=https://www.tiktok.com/music/original-sound-7611615657754381599 -f turtle
    """
    from .named import get_named_query, parse_query_text, read_query_file
    from .queries import ResultFormat

    if (name is None) == (inline is None):
        raise UsageError("give a query NAME, a FILE.rq, or -e SPARQL (exactly one)")
    if inline is not None:
        nq = parse_query_text(inline, name="(inline)")
    elif name is not None and (name.endswith((".rq", ".sparql")) or os.sep in name) and Path(name).exists():
        nq = read_query_file(name)
    else:
        assert name is not None
        nq = get_named_query(name)
    bound = nq.bind(_parse_params(params))
    with state.open(read_only=True) as store:
        result = store.query(nq.text, bound, name=nq.name)
        with _output(output) as out:
            result.write(out, ResultFormat.from_label(fmt))


@main.command("queries")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@handle_errors
def list_queries(as_json: bool) -> None:
    """List the named queries with their descriptions and parameters.

    \b
    Example:
      konbini-ld queries
    """
    from .named import named_queries

    qs = named_queries()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": q.name,
                        "title": q.title,
                        "description": q.description,
                        "form": q.form,
                        "params": [
                            {"name": p.name, "type": p.type, "required": p.required, "description": p.description}
                            for p in q.params
                        ],
                    }
                    for q in qs.values()
                ],
                indent=2,
            )
        )
        return
    for q in qs.values():
        click.echo(f"{q.name}: {q.description or q.title}")
        for p in q.params:
            opt = "" if p.required else " (optional)"
            click.echo(f"    -p {p.name}=<{p.type}>{opt}  {p.description}")


@main.command()
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["turtle", "nt", "nq", "trig", "jsonld", "rdfxml"]),
    default="turtle",
    show_default=True,
)
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of stdout.")
@click.option("--inline-context", is_flag=True, help="JSON-LD: embed the two contexts instead of naming their URLs.")
@pass_state
@handle_errors
def export(state: Context, fmt: str, output: str | None, inline_context: bool) -> None:
    """Write the whole graph.

    turtle, nt and rdfxml hold the union of the data and provenance graphs; nq
    and trig keep them as named graphs; jsonld is compacted with the API's two
    contexts, so it reads like the API.

    \b
    Examples:
      konbini-ld export -f turtle -o graph.ttl
      konbini-ld export -f jsonld > graph.jsonld
    """
    from .export import ExportFormat, export as do_export

    with state.open(read_only=True) as store, _output(output) as out:
        do_export(store.backend, ExportFormat.from_label(fmt), out, inline_context=inline_context)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=7878, show_default=True)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds a query may run.")
@click.option("--max-rows", type=click.IntRange(1), default=10_000, show_default=True,
              help="Rows (or triples) returned at most per query.")
@click.option("--cors", "cors", multiple=True, metavar="ORIGIN", help="Allow browser calls from ORIGIN ('*' for any).")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Query worker processes kept ready (as many again start while queries run long).")
@click.option("--max-memory", default="1G", show_default=True, metavar="SIZE",
              help="Memory one query may use (e.g. 512M, 2G); a query over it is stopped with 503.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer requests addressed to NAME (the Host header; '*' for any).")
@pass_state
@handle_errors
def serve(state: Context, host: str, port: int, timeout: float, max_rows: int, cors: tuple[str, ...], workers: int,
          max_memory: str, allow_hosts: tuple[str, ...]) -> None:
    """Serve the graph read-only over the SPARQL 1.1 Protocol, with a query page at /.

    The endpoint is /sparql (GET ?query=, POST form, POST application/sparql-query);
    named queries run at /queries/NAME?param=value. Updates are refused, SERVICE
    is refused, nothing is fetched on a client's behalf. It listens on 127.0.0.1
    unless told otherwise; load and fetch can keep writing while it runs.

    \b
    Example:
      konbini-ld serve --port 7878
      curl -G -H 'Accept: text/csv' http://127.0.0.1:7878/sparql --data-urlencode 'query=SELECT * WHERE { ?s ?p ?o } LIMIT 5'
    """
    from .server import ServeOptions, serve as run_server

    with state.open():  # create the store if needed, apply anything left in the archive, release the lock
        pass
    if host not in ("127.0.0.1", "localhost", "::1"):
        state.warn(f"listening on {host}: the endpoint is reachable from other machines (read-only)")
    options = {k: v for k, v in state.remote.items() if v}
    if not state.is_remote:
        options.pop("update_url", None)
        options.pop("gsp_url", None)
    opts = ServeOptions(str(state.location), options, timeout=timeout, max_rows=max_rows, cors_origins=cors,
                        workers=workers, max_memory=parse_size(max_memory), host=host, allow_hosts=allow_hosts)
    from .urls import redact

    state.note(f"serving {redact(str(state.location))} read-only at http://{host}:{port}/ (SPARQL endpoint /sparql); "
               "Ctrl-C stops")
    run_server(opts, host=host, port=port)


@main.command()
@click.option("--to", "to", required=True, metavar="URL", help="Query endpoint of the target SPARQL server.")
@click.option("--to-update-url", metavar="URL", help="Target's update endpoint, if it cannot be derived.")
@click.option("--to-gsp-url", metavar="URL", help="Target's Graph Store endpoint, if it cannot be derived.")
@pass_state
@handle_errors
def push(state: Context, to: str, to_update_url: str | None, to_gsp_url: str | None) -> None:
    """Copy the local graph into a remote SPARQL store, in bulk.

    Each of konbini-ld's named graphs replaces its namesake on the target (Graph
    Store PUT), so pushing twice leaves the target exactly as pushing once; other
    graphs on the target are left alone.

    \b
    Example:
      konbini-ld push --to http://127.0.0.1:7878/query
    """
    from .remote import push as do_push
    from .urls import redact

    with state.open(read_only=True) as store:
        counts = do_push(store, to, update_url=to_update_url, gsp_url=to_gsp_url)
    state.note(f"pushed {sum(counts.values())} triples in {len(counts)} graphs to {redact(to)}")


@main.command()
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "turtle"]), default="text", show_default=True,
              help="turtle: the machine-readable SHACL report.")
@click.option("--shapes", type=click.Path(exists=True, dir_okay=False), help="Validate against these shapes instead.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Results shown in text form.")
@pass_state
@handle_errors
def validate(state: Context, fmt: str, shapes: str | None, limit: int) -> None:
    """Check the graph against the bundled SHACL shapes (Audio, Person, Video, Image).

    Exits 0 when the graph conforms, 1 when it does not.

    \b
    Examples:
      konbini-ld validate
      konbini-ld validate --format turtle > report.ttl
    """
    from .validate import iter_lines, validate as do_validate

    with state.open(read_only=True) as store:
        report = do_validate(store, shapes=shapes)
    if fmt == "turtle":
        click.echo(report.turtle())
    else:
        for line in iter_lines(report, limit):
            click.echo(line)
    state.note(report.summary())
    if not report.conforms:
        sys.exit(1)


@main.command()
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
    from .archive import Archive
    from .store import rebuild_store

    total = Archive(Path(state.archive or state.location) / "archive").last_seq
    with state.progress(total, "resp", "rebuilding") as bar:
        report = rebuild_store(
            state.location, archive=state.archive, update_url=state.remote.get("update_url"),
            gsp_url=state.remote.get("gsp_url"), accept_damage=accept_damage, progress=bar.update,
        )
    for damage in report.damage:
        click.echo(f"warning: {damage}", err=True)
    _report_load(state, report, "rebuilt from")
    if report.failed:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
