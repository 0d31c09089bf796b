"""What every command shares: the global options' state, error handling, and option bundles
(output file, format, ``--json``) so that commands read alike."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from ...errors import KonbiniError, UsageError

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["Context", "format_option", "handle_errors", "json_option", "open_output", "output_option", "pass_state",
           "report_load"]


class Context:
    """What the global options decided, shared by every command."""

    def __init__(self, store: str | None, verbose: int, quiet: bool, debug: bool, **remote: Any) -> None:
        from ...store.directory import locate

        self.verbose = verbose
        self.quiet = quiet
        self.debug = debug
        self.remote = remote
        self.location, self.archive = locate(store, remote.get("archive"), os.environ)

    @property
    def store_options(self) -> dict[str, Any]:
        """The remote-store options given (``update_url``, ``gsp_url``, ``remote_timeout``), checked."""
        from ...engines.remote_http import check_timeout

        options = {k: self.remote[k] for k in ("update_url", "gsp_url") if self.remote.get(k)}
        if self.remote.get("remote_timeout") is not None:
            options["remote_timeout"] = check_timeout(self.remote["remote_timeout"])
        return options

    @property
    def is_remote(self) -> bool:
        return isinstance(self.location, str)

    def open(self, *, read_only: bool = False) -> Any:
        from ...store.store import open_store

        if read_only and not self.is_remote and not (Path(self.location) / "oxigraph").is_dir():
            read_only = False  # nothing loaded yet: an empty store answers every query with nothing
        store = open_store(self.location, read_only=read_only, archive=self.archive, **self.store_options)
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

        return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True,
                    disable=self.quiet or not sys.stderr.isatty())

    def note(self, message: str) -> None:
        if not self.quiet:
            click.echo(message, err=True)

    def warn(self, message: str) -> None:
        if not self.quiet:
            click.echo(f"warning: {message}", err=True)


pass_state = click.make_pass_decorator(Context)


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
            from ...errors import Terminated

            click.echo("Interrupted: everything loaded so far is saved.", err=True)
            ctx.exit(143 if isinstance(exc, Terminated) else 130)

    return wrapper  # type: ignore[return-value]


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a command the way Ctrl-C does (``Terminated``, exit 143)."""
    import signal

    from ...errors import Terminated

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


def log_to_stderr(level: int) -> None:
    """konbini-ld's log lines on this invocation's stderr (-v: INFO, -vv: DEBUG)."""
    logger = logging.getLogger("konbini_ld")
    for handler in [h for h in logger.handlers if getattr(h, "konbini_cli", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.konbini_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


# -- option bundles ------------------------------------------------------------------------


def output_option(fn: F) -> F:
    """``-o/--output FILE`` (stdout when absent or ``-``)."""
    return click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of stdout.")(fn)


def json_option(fn: F) -> F:
    """``--json`` for tooling."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(fn)


def format_option(*kinds: str, default: str, help: str) -> Callable[[F], F]:
    """``-f/--format`` with the choices of the format registry that carry one of ``kinds``."""
    from ...io.formats import Format

    choices = [f.label for f in Format if any(f.can_carry(k) for k in kinds)]
    return click.option("-f", "--format", "fmt", type=click.Choice(choices), default=default, show_default=True,
                        help=help)


@contextmanager
def open_output(path: str | None) -> Iterator[IO[bytes]]:
    """A binary stream for ``path`` (stdout for ``None`` or ``-``)."""
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


def report_load(state: Context, report: Any, what: str) -> None:
    """The ``error:`` and ``warning:`` lines of an ingest, and its summary."""
    for error in report.failed:
        click.echo(f"error: {error}", err=True)
    for key, iri in report.unknown_keys.items():
        state.warn(f"unknown key {key!r} kept as <{iri}>")
    failed = f", {len(report.failed)} failed" if report.failed else ""
    if report.unchanged:
        failed += f", {report.unchanged} already there"
    state.note(f"{what} {report.loaded} response{'s' if report.loaded != 1 else ''}{failed} "
               f"(+{report.added} / -{report.removed} data triples)")
