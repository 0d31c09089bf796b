"""What every command shares: the global options' state, error handling, and option bundles
(output file, format, ``--json``) so that commands read alike."""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from ...errors import (
    ExportError,
    KonbiniError,
    Terminated,
    UsageError,
    first_signal_code,
    forget_signals,
    raise_pending_signal,
    signal_within,
)

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["Context", "OutputError", "Parsed", "emit", "format_option", "handle_errors", "json_option", "open_output",
           "output_errors", "output_option", "pass_state", "report_load", "report_warnings", "seconds_type"]


class Context:
    """What the global options decided, shared by every command."""

    def __init__(self, store: str | None, verbose: int, quiet: bool, debug: bool, **remote: Any) -> None:
        from ...store.log.directory import check_endpoint_url, locate

        for option, url in (("--update-url", remote.get("update_url")), ("--gsp-url", remote.get("gsp_url"))):
            if url is not None and not (option == "--gsp-url" and url.strip().lower() == "none"):
                if not url.startswith(("http://", "https://")):
                    raise UsageError(f"{option} must be an http(s) URL")
                check_endpoint_url(url, option)
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

    def open(self, *, read_only: bool = False, or_read_only: bool = False) -> Any:
        """Open the store; ``or_read_only``: a command that only reads (but would rather open it
        as a writer, to apply what an interrupted run left) reads a store it cannot write."""
        from ...errors import StoreBusyError, StoreError
        from ...pipeline.collection import open_store
        from ...store.log.directory import has_unapplied
        from ...store.log.lock import NotWritableError

        raise_pending_signal()  # (a signal swallowed while the command's modules were imported: stop before the store)
        reader = read_only or or_read_only
        if read_only and not self.is_remote and not (Path(self.location) / "oxigraph").is_dir() \
                and not (Path(self.location) / "REBUILD").exists():  # (not a graph being switched)
            if not has_unapplied(Path(self.archive or self.location)):
                # (a mistyped --store, someone's folder: nothing is made there, nothing answers as an empty store)
                raise StoreError(f"there is no konbini-ld store at {self.location} (load something first)")
            read_only = False  # a first run stopped before its graph: the writer applies its archive
        options: dict[str, Any] = {"archive": self.archive, **self.store_options}
        try:
            store = open_store(self.location, read_only=read_only, **options)
        except NotWritableError as exc:
            if not reader or read_only:
                raise
            store = open_store(self.location, read_only=True, **options)  # (says so if there is no store)
            if or_read_only:
                self.warn(f"{str(exc).split(' (', 1)[0]}: reading it as it is")
        except StoreBusyError:
            if not or_read_only:
                raise
            # another process writes it (and applies what an interrupted run left): read beside it
            store = open_store(self.location, read_only=True, **options)
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
        from ...io.text import one_line

        if not self.quiet:
            click.echo(f"warning: {one_line(message)}", err=True)


pass_state = click.make_pass_decorator(Context)


#: Commands that write the store: interrupted, they keep what they wrote.
_WRITERS = frozenset({"load", "fetch", "rebuild", "push"})


def interrupted_code(exc: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM: the first signal's, when the program's handlers saw it."""
    return first_signal_code() or (143 if isinstance(exc, Terminated) else 130)


def say_interrupted(ctx: click.Context, command: str | None) -> None:
    """The one line saying ``command`` was stopped (said once, whatever signals follow)."""
    if ctx.meta.get("konbini-ld.interrupted"):
        return
    ctx.meta["konbini-ld.interrupted"] = True
    saved = ": everything loaded so far is saved" if command in _WRITERS else ""
    click.echo(f"Interrupted{saved}.", err=True)


class Program(click.Group):
    """konbini-ld's command group. A command stopped by a signal says so in one line and exits 130
    (Ctrl-C) or 143 (SIGTERM); a second signal landing while it does (a terminal's Ctrl-C, then a
    service manager's SIGTERM) is caught here, never click's "Aborted!" with exit 1."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        if parent is None:
            forget_signals()  # a command begins (in a program that runs several): no signal has come yet
        # (a signal while the program's own options are read: click would say "Aborted!", exit 1)
        try:
            return super().make_context(info_name, args, parent, **extra)
        except KeyboardInterrupt as exc:
            click.echo("Interrupted.", err=True)
            sys.exit(interrupted_code(exc))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            say_interrupted(ctx, ctx.invoked_subcommand)
            ctx.exit(interrupted_code(exc))


def handle_errors(fn: F) -> F:
    """Map every failure to one ``Error:`` line on stderr and its exit code.

    A :class:`KonbiniError` carries its own code (2 for usage errors); anything else that
    escapes a command (an operating-system error, a defect) is still one line, exit 1, with
    the traceback only under ``--debug``. A reader that went away (``| head``) ends the
    command quietly.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        state: Context | None = ctx.find_object(Context)
        debug = state is not None and state.debug
        try:
            result = fn(*args, **kwargs)
            raise_pending_signal()  # (one that something swallowed: the command ran on, but was asked to stop)
            return result
        except KonbiniError as exc:
            if debug:  # (where it was raised, then the same line and the same exit code)
                traceback.print_exc()
            _error_line(str(exc))
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            # (a second signal landing here, a terminal's Ctrl-C then a service manager's SIGTERM,
            # is caught by the program's group: see Program.invoke)
            say_interrupted(ctx, ctx.info_name)
            ctx.exit(interrupted_code(exc))
        except OSError as exc:
            if _broken_pipe(exc):
                # The reader went away (`| head`): stop quietly, like other Unix tools.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                ctx.exit(0)
            if debug:
                traceback.print_exc()
            where = f"{exc.filename}: " if exc.filename else ""
            _error_line(f"{where}{exc.strerror or exc}")
            ctx.exit(1)
        except MemoryError:
            if debug:
                traceback.print_exc()
            _error_line("out of memory")
            ctx.exit(1)
        except Exception as exc:  # a defect: still one line; --debug shows where
            signal = signal_within(exc)
            if signal is not None:  # (a signal Python wrapped where it landed: see signal_within)
                say_interrupted(ctx, ctx.info_name)
                ctx.exit(interrupted_code(signal))
            if debug:
                traceback.print_exc()
                _error_line(f"unexpected {type(exc).__name__}: {exc}")
                ctx.exit(1)
            _error_line(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
            ctx.exit(1)

    return wrapper  # type: ignore[return-value]


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a command the way Ctrl-C does (``Terminated``, exit 143)."""
    import signal

    from ...errors import raise_terminated

    try:
        previous = signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _broken_pipe(exc: OSError) -> bool:
    return isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE


def _error_line(message: str) -> None:
    from ...io.text import one_line

    click.echo(f"Error: {one_line(message)}", err=True)


class OutputError(ExportError):
    """Standard output or an output file cannot take what a command writes (a full disk…)."""


@contextmanager
def output_errors(label: str) -> Iterator[None]:
    """Turn a failed write to ``label`` (``standard output`` or a file) into one clear error;
    a closed pipe is left to end the command quietly."""
    try:
        yield
    except OSError as exc:
        if _broken_pipe(exc):
            raise
        raise OutputError(f"cannot write {label}: {exc.strerror or exc}") from exc
    except KonbiniError as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError) and not _broken_pipe(cause) and not isinstance(exc, OutputError):
            raise OutputError(f"cannot write {label}: {cause.strerror or cause}") from exc
        raise


def check_stdout() -> None:
    """Before a long evaluation: standard output closed, or a pipe whose reader has gone, is
    found now, not once the work is done (a pipe nobody reads ends the command quietly, as a
    write to it would).

    :raises OutputError: standard output is closed.
    """
    import io
    import select
    import stat

    stream = sys.stdout
    if stream is None:
        raise OutputError("cannot write standard output: it is closed")
    try:
        fd = stream.fileno()
    except (io.UnsupportedOperation, AttributeError, ValueError):
        return  # (not a file descriptor: an embedding application's stream)
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise OutputError(f"cannot write standard output: {exc.strerror or exc}") from None
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if any(events & select.POLLERR for _, events in poller.poll(0)):
            raise BrokenPipeError(errno.EPIPE, "the reader of standard output has gone")


def emit(text: str = "") -> None:
    """One line of a command's output on stdout (a full disk is one ``Error:`` line)."""
    with output_errors("standard output"):
        click.echo(text)


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


# -- option values ---------------------------------------------------------------------------


class Parsed(click.ParamType):  # type: ignore[type-arg]
    """An option value read by one of the library's parsers (:mod:`konbini_ld.units`): what it
    refuses is a usage error naming the option (exit 2)."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.parse(value if isinstance(value, str) else str(value))
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


def seconds_type() -> Parsed:
    """Seconds that bound a wait: more than 0, at most a day."""
    from ...units import parse_seconds

    return Parsed("seconds", parse_seconds)


def size_type() -> Parsed:
    """A size in bytes (``512K``, ``3M``, ``1G``), at least one byte."""
    from ...units import parse_size

    def at_least_one(text: str) -> int:
        value = parse_size(text)
        if value < 1:
            raise UsageError(f"{text!r} is less than one byte")
        return value

    return Parsed("size", at_least_one)


# -- option bundles ------------------------------------------------------------------------


def batch_options(fn: F) -> F:
    """``--batch-size N`` and ``--batch-bytes SIZE``: what one write to the graph takes at most (the
    library's defaults, spelled out: ``--help`` imports no store; a test holds them equal)."""
    fn = click.option("--batch-bytes", type=size_type(), default="2M", show_default=True,
                      metavar="SIZE", help="Response text per write batch at most: a batch's memory follows it "
                                           "(pages of videos are ~35 audios each).")(fn)
    return click.option("--batch-size", type=click.IntRange(1), default=500, show_default=True,
                        help="Responses per write batch at most.")(fn)


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
    """A binary stream for ``path`` (stdout for ``None`` or ``-``); a file whose writing fails (or
    is interrupted) is removed, not left half-written."""
    if path is None or path == "-":
        with output_errors("standard output"):
            yield sys.stdout.buffer
            sys.stdout.buffer.flush()
        return
    try:
        fh = open(path, "wb")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    with output_errors(path), fh:
        try:
            yield fh
        except BaseException:  # (a half-written file is taken for the whole: none is left)
            fh.close()
            if os.path.isfile(path):
                os.unlink(path)
            raise


#: Keys no context defines shown by name (the rest are counted).
_SHOWN = 100


def report_load(state: Context, report: Any, what: str) -> None:
    """The ``error:`` and ``warning:`` lines of an ingest, and its summary."""
    from ...io.text import one_line

    for error in report.failed:
        click.echo(f"error: {one_line(str(error))}", err=True)
    for key, iri in list(report.unknown_keys.items())[:_SHOWN]:
        state.warn(f"unknown key {key!r} kept as <{iri}>")
    if len(report.unknown_keys) > _SHOWN:
        state.warn(f"… and {len(report.unknown_keys) - _SHOWN} more keys no context defines")
    report_warnings(state, report)
    failed = f", {len(report.failed)} failed" if report.failed else ""
    if report.unchanged:
        failed += f", {report.unchanged} already there"
    state.note(f"{what} {report.loaded} response{'s' if report.loaded != 1 else ''}{failed} "
               f"(+{report.added} / -{report.removed} data triples)")


def report_warnings(state: Context, report: Any) -> None:
    """The ``warning:`` lines of values loaded as sent that cannot be right (the first hundred)."""
    for warning in report.warnings:
        state.warn(warning)
    if report.warned > len(report.warnings):
        state.warn(f"… and {report.warned - len(report.warnings)} more values like these")
