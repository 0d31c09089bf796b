"""Commands that share the graph: ``serve`` and ``push``."""

from __future__ import annotations

import click

from .options import Context, handle_errors, pass_state


@click.command()
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
@click.option("--max-body-size", default="1M", show_default=True, metavar="SIZE",
              help="Bytes a request body (a POSTed query or form) may hold; a larger one is answered 413.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer requests addressed to NAME (the Host header; '*' for any).")
@pass_state
@handle_errors
def serve(state: Context, host: str, port: int, timeout: float, max_rows: int, cors: tuple[str, ...], workers: int,
          max_memory: str, max_body_size: str, allow_hosts: tuple[str, ...]) -> None:
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
    from ...units import parse_size
    from ...urls import redact
    from ..server import ServeOptions
    from ..server import serve as run_server

    with state.open():  # create the store if needed, apply anything left in the archive, release the lock
        pass
    if host not in ("127.0.0.1", "localhost", "::1"):
        state.warn(f"listening on {host}: the endpoint is reachable from other machines (read-only)")
    options = {"archive": state.archive}
    if state.is_remote:
        options.update(update_url=state.remote.get("update_url"), gsp_url=state.remote.get("gsp_url"))
    opts = ServeOptions(str(state.location), {k: v for k, v in options.items() if v}, timeout=timeout,
                        max_rows=max_rows, cors_origins=cors, workers=workers, max_memory=parse_size(max_memory),
                        host=host, allow_hosts=allow_hosts, max_body=parse_size(max_body_size))
    state.note(f"serving {redact(str(state.location))} read-only at http://{host}:{port}/ (SPARQL endpoint /sparql); "
               "Ctrl-C stops")
    run_server(opts, host=host, port=port)


@click.command()
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
    from ...store.transfer import push as run_push
    from ...urls import redact

    with state.open(read_only=True) as store:
        counts = run_push(store, to, update_url=to_update_url, gsp_url=to_gsp_url)
    state.note(f"pushed {sum(counts.values())} triples in {len(counts)} graphs to {redact(to)}")
