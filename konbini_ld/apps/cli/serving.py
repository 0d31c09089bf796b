"""Commands that share the graph: ``serve``, ``publish`` and ``push``."""

from __future__ import annotations

import click

from .options import Context, handle_errors, pass_state


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=7878, show_default=True)
@click.option("--timeout", default="30", show_default=True, metavar="SECONDS",
              help="Seconds a query may run (above 0, at most a day).")
@click.option("--max-rows", type=click.IntRange(1), default=10_000, show_default=True,
              help="Rows the query page shows at most; the SPARQL endpoint always answers in full (or with an "
                   "error status, past --timeout or --max-memory).")
@click.option("--cors", "cors", multiple=True, metavar="ORIGIN", help="Allow browser calls from ORIGIN ('*' for any).")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Query worker processes kept ready; up to twice as many queries run at once.")
@click.option("--max-memory", default="1G", show_default=True, metavar="SIZE",
              help="Memory one query may use (e.g. 512M, 2G; at least 64M); a query over it is stopped with 503.")
@click.option("--max-body-size", default="1M", show_default=True, metavar="SIZE",
              help="Bytes a request body (a POSTed query or form) may hold; a larger one is answered 413.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer requests addressed to NAME (the Host header; '*' for any).")
@click.option("--dumps", type=click.Path(file_okay=False, exists=True), metavar="DIR",
              help="Serve the dumps in DIR (export's files: .ttl, .nt, .nq, .trig, .jsonld, .rdf) at /dumps/ "
                   "and describe them in /void.")
@pass_state
@handle_errors
def serve(state: Context, host: str, port: int, timeout: str, max_rows: int, cors: tuple[str, ...], workers: int,
          max_memory: str, max_body_size: str, allow_hosts: tuple[str, ...], dumps: str | None) -> None:
    """Serve the graph read-only over the SPARQL 1.1 Protocol, with a query page at /.

    The endpoint is /sparql (GET ?query=, POST form, POST application/sparql-query);
    named queries run at /queries/NAME?param=value; every entity has a page at
    /resource?iri=IRI (HTML, or Turtle, N-Triples, JSON-LD, RDF/XML by Accept); /void
    describes the dataset (VoID, DCAT). Updates are refused, SERVICE
    is refused, nothing is fetched on a client's behalf. It listens on 127.0.0.1
    unless told otherwise; load and fetch can keep writing while it runs.

    \b
    Example:
      konbini-ld serve --port 7878
      curl -G -H 'Accept: text/csv' http://127.0.0.1:7878/sparql --data-urlencode 'query=SELECT * WHERE { ?s ?p ?o } LIMIT 5'
    """
    from ...urls import redact
    from ..query_workers import MIN_MEMORY
    from ..server import ServeOptions
    from ..server import serve as run_server

    seconds = _seconds(timeout, "--timeout")
    memory = _size_at_least(max_memory, "--max-memory", MIN_MEMORY)
    body = _size_at_least(max_body_size, "--max-body-size", 1024)
    with state.open(or_read_only=True):  # create the store if needed, apply anything left in the archive, release the lock
        pass
    if host not in ("127.0.0.1", "localhost", "::1"):
        state.warn(f"listening on {host}: the endpoint is reachable from other machines (read-only)")
    options = {"archive": state.archive}
    if state.is_remote:
        options.update(state.store_options)
    opts = ServeOptions(str(state.location), {k: v for k, v in options.items() if v}, timeout=seconds,
                        max_rows=max_rows, cors_origins=cors, workers=workers, max_memory=memory,
                        host=host, allow_hosts=allow_hosts, max_body=body, dumps=dumps)
    where = redact(str(state.location))
    _signals_to_the_server()
    run_server(opts, host=host, port=port, announce=lambda url: state.note(
        f"serving {where} read-only at {url} (SPARQL endpoint /sparql); Ctrl-C stops"))


def _signals_to_the_server() -> None:
    """The server handles SIGTERM itself (a graceful shutdown, then the signal's own end): not
    the command line's Ctrl-C handling, which is for commands that write."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


#: The longest ``--timeout`` accepted (a day).
MAX_TIMEOUT = 86_400.0


def _seconds(text: str, option: str) -> float:
    """A positive, finite number of seconds (at most :data:`MAX_TIMEOUT`).

    >>> _seconds("2.5", "--timeout")
    2.5
    """
    import math

    from ...errors import UsageError

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
        raise UsageError(f"{option} {text!r}: give a number of seconds above 0 and at most {MAX_TIMEOUT:g} (a day)")
    return value


def _size_at_least(text: str, option: str, least: int) -> int:
    """A size (``512M``, ``2G``) of at least ``least`` bytes."""
    from ...errors import UsageError
    from ...units import parse_size

    try:
        value = parse_size(text)
    except UsageError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if value < least:
        shown = f"{least >> 20}M" if least >= 1 << 20 else f"{least >> 10}K"
        raise UsageError(f"{option} {text!r}: give at least {shown}")
    return value


@click.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--base-url", metavar="URL",
              help="Where the site will be hosted: its Turtle files then name their documents by absolute URL.")
@click.option("--dump", "dump_formats", multiple=True, default=("turtle", "nq"), show_default=True,
              type=click.Choice(["turtle", "nt", "nq", "trig", "jsonld", "rdfxml"]),
              help="A format of the dumps written into FOLDER/dumps (repeat for more).")
@click.option("--no-dumps", is_flag=True, help="Write no dumps.")
@pass_state
@handle_errors
def publish(state: Context, folder: str, base_url: str | None, dump_formats: tuple[str, ...], no_dumps: bool) -> None:
    """Write the collection as a static site into FOLDER: one HTML page and one Turtle file
    per entity, an index, the dumps and the dataset's description (void.ttl).

    Links between the files are relative: host FOLDER on any web server, under any path.

    
    Example:
      konbini-ld publish site/ && python3 -m http.server -d site 8000
    """
    from ..publish import publish as write_site

    with state.open(read_only=True) as store:
        bar = state.progress(None, "entities", "publishing")

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            report = write_site(store, folder, base_url=base_url, dump_formats=() if no_dumps else dump_formats,
                                progress=progress)
        finally:
            bar.close()
    state.note(f"published {report.entities} entities in {report.files} files ({report.bytes / 1e6:.1f} MB) "
               f"to {folder} in {report.seconds:.1f} s")


@click.command()
@click.option("--to", "to", required=True, metavar="URL", help="Query endpoint of the target SPARQL server.")
@click.option("--to-update-url", metavar="URL", help="Target's update endpoint, if it cannot be derived.")
@click.option("--to-gsp-url", metavar="URL|none",
              help="Target's Graph Store endpoint, if it cannot be derived ('none': the target has none).")
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
    from ...errors import UsageError
    from ...store.log.directory import check_endpoint_url
    from ...store.transfer import push as run_push
    from ...urls import redact

    for option, url in (("--to", to), ("--to-update-url", to_update_url), ("--to-gsp-url", to_gsp_url)):
        if url is not None and not (option == "--to-gsp-url" and url.strip().lower() == "none"):
            if not url.startswith(("http://", "https://")):
                raise UsageError(f"{option} must be an http(s) URL (the query endpoint of a SPARQL server)")
            check_endpoint_url(url, option)

    with state.open(read_only=True) as store:
        counts = run_push(store, to, update_url=to_update_url, gsp_url=to_gsp_url,
                          remote_timeout=state.store_options.get("remote_timeout"))
    state.note(f"pushed {sum(counts.values())} triples in {len(counts)} graphs to {redact(to)}")
