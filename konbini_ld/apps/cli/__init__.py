"""The ``konbini-ld`` command line: a thin click layer over the library.

Each command parses its options, calls one library function and reports; the policy
(where stores live, how ids and queries are read, the API key and URL) is the
library's. Exit codes: 0 success; 1 some work failed; 2 usage error; 3 the API
refused the key (401/403); 4 credits exhausted (402); 130 interrupted; 143 terminated.
"""

from __future__ import annotations

import logging
import traceback

import click

from ...errors import KonbiniError
from ...io.text import one_line
from .ingest import compact, fetch, load, rebuild
from .options import Context, Program, log_to_stderr, sigterm_as_interrupt
from .read import export, list_queries, plot, query, stats, validate
from .serving import publish, push, serve

__all__ = ["main"]


@click.group(cls=Program, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--store", envvar="KONBINI_LD_STORE", metavar="PATH|URL",
              help="Store directory (default: $XDG_DATA_HOME/konbini-ld/store), or the query endpoint URL of a "
              "SPARQL 1.1 server; env KONBINI_LD_STORE.")
@click.option("--update-url", envvar="KONBINI_LD_UPDATE_URL", metavar="URL",
              help="Remote store: SPARQL update endpoint (derived for Oxigraph, Fuseki, GraphDB, Virtuoso).")
@click.option("--gsp-url", envvar="KONBINI_LD_GSP_URL", metavar="URL|none",
              help="Remote store: Graph Store Protocol endpoint (derived for known servers); 'none' for a server "
              "without one (SPARQL Update and CONSTRUCT instead).")
@click.option("--remote-timeout", envvar="KONBINI_LD_REMOTE_TIMEOUT", metavar="SECONDS",
              help="Remote store: seconds each request to the server may take, start to last byte (default 60).")
@click.option("--archive", envvar="KONBINI_LD_ARCHIVE", metavar="DIR",
              help="Archive directory (default: inside the store; per endpoint for a remote store).")
@click.option("-v", "--verbose", count=True, help="More detail on stderr (repeat for debug logging).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr; no progress bars or summaries.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="konbini-ld")
@click.pass_context
def main(ctx: click.Context, store: str | None, update_url: str | None, gsp_url: str | None,
         remote_timeout: str | None, archive: str | None, verbose: int, quiet: bool, debug: bool) -> None:
    """konbini-ld: TikTok audio data from KonbiniAPI as a linked-data graph.

    Load or fetch ActivityStreams JSON-LD responses into a persistent RDF store,
    query it with named SPARQL queries, export it, serve it.
    """
    log_to_stderr(logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)])
    # SIGTERM is Ctrl-C from the first moment (a command stops cleanly, exit 143), not only
    # once a command has got round to saying so
    ctx.with_resource(sigterm_as_interrupt())
    try:
        ctx.obj = Context(store, verbose, quiet, debug, update_url=update_url, gsp_url=gsp_url,
                          remote_timeout=remote_timeout, archive=archive)
    except KonbiniError as exc:  # (a global option's value: the commands' handler is not in place yet)
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {one_line(str(exc))}", err=True)
        ctx.exit(exc.exit_code)


for command in (load, fetch, query, plot, list_queries, export, serve, publish, push, validate, stats, rebuild, compact):
    main.add_command(command)
