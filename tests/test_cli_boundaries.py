"""What a command line can be given, and where its output can go: every value is checked
before work starts, and every failure ends in one ``Error:`` line and the documented exit
code (2 usage, 1 work failed), never a traceback without ``--debug``."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from helpers import SEED, VIDEOS

from konbini_ld.apps.cli import main

KHABY = "https://www.tiktok.com/@khaby.lame"


def one_error(r: Any, code: int) -> str:
    """The result failed with ``code`` and said why in exactly one ``Error:`` line, no traceback."""
    assert r.exit_code == code, (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, r.stderr
    return errors[0]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the samples, shared by the tests that only read it."""
    store = tmp_path_factory.mktemp("loaded") / "store"
    r = CliRunner().invoke(main, ["--store", str(store), "load", str(SEED), str(VIDEOS)], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    return store


def cli(store: Path, *args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(main, ["--store", str(store), *args], input=input, catch_exceptions=False)


def konbini(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "konbini_ld", *args], timeout=60, **kwargs)


# -- where output goes ---------------------------------------------------------------------

FULL_STDOUT = [
    ("query", "top-audios"),
    ("query", "top-audios", "-f", "csv"),
    ("query", "audio", "-p", "audio=https://www.tiktok.com/music/original-sound-7611615657754381599", "-f", "turtle"),
    ("export",),
    ("export", "-f", "jsonld"),
    ("stats",),
    ("stats", "--json"),
    ("queries",),
    ("validate", "-f", "turtle"),
]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", FULL_STDOUT, ids=[" ".join(a[:2]) for a in FULL_STDOUT])
def test_a_full_stdout_is_one_error_line_and_exit_1(loaded: Path, args: tuple[str, ...]) -> None:
    with open("/dev/full", "wb") as full:
        out = konbini("--store", str(loaded), *args, stdout=full, stderr=subprocess.PIPE)
    stderr = out.stderr.decode()
    assert out.returncode == 1, stderr
    assert stderr.splitlines() == ["Error: cannot write standard output: No space left on device"], stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_output_file_names_the_file(loaded: Path) -> None:
    r = cli(loaded, "query", "top-audios", "-f", "csv", "-o", "/dev/full")
    assert one_error(r, 1) == "Error: cannot write /dev/full: No space left on device"


@pytest.mark.parametrize("args", [("query", "top-audios"), ("export",), ("stats",), ("queries",)])
def test_a_reader_that_goes_away_ends_the_command_quietly(loaded: Path, args: tuple[str, ...]) -> None:
    read, write = os.pipe()
    os.close(read)  # nobody will ever read: the first write meets a closed pipe
    try:
        out = konbini("--store", str(loaded), *args, stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert out.returncode == 0 and out.stderr == b"", out.stderr


def test_a_query_for_nobody_is_not_evaluated(loaded: Path) -> None:
    """Standard output a pipe nobody reads, or closed: a runaway query is not run first (it would
    run to its time limit for nothing); the command ends at once, quietly for the pipe, in one
    line for a closed stdout."""
    read, write = os.pipe()
    os.close(read)
    try:
        out = konbini("--store", str(loaded), "query", "-e", RUNAWAY, "--timeout", "120", stdout=write,
                      stderr=subprocess.PIPE)  # (the helper's own limit is 60 s: a run to 120 s fails it)
    finally:
        os.close(write)
    assert out.returncode == 0 and out.stderr == b"", out.stderr
    closed = subprocess.run([sys.executable, "-c", "import os, sys; os.close(1); from konbini_ld._entry import run; "
                             "sys.argv[0] = 'konbini-ld'; run()", "--store", str(loaded), "query", "-e", RUNAWAY,
                             "--timeout", "120"], stderr=subprocess.PIPE, timeout=60)
    assert closed.returncode == 1 and closed.stderr.decode().strip().splitlines() == [
        "Error: cannot write standard output: Bad file descriptor"], closed.stderr


def test_an_unexpected_failure_is_one_line_and_debug_shows_the_traceback(loaded: Path, monkeypatch: Any) -> None:
    import konbini_ld.store.store as store_module

    def broken(self: Any) -> Any:
        raise RuntimeError("something\nnobody expected")

    monkeypatch.setattr(store_module.Store, "stats", broken)
    r = CliRunner().invoke(main, ["--store", str(loaded), "stats"])
    assert one_error(r, 1) == ("Error: unexpected RuntimeError: something nobody expected "
                              "(run with --debug for the traceback)")
    r = CliRunner().invoke(main, ["--store", str(loaded), "--debug", "stats"])
    assert r.exit_code == 1 and "Traceback" in r.stderr and 'raise RuntimeError("something' in r.stderr, r.stderr
    assert r.stderr.splitlines()[-1] == "Error: unexpected RuntimeError: something nobody expected"


@pytest.mark.parametrize(("args", "code"), [
    (("--remote-timeout", "-1", "stats"), 2),  # (a global option's value)
    (("query", "no-such-query"), 2),
    (("fetch", "--dry-run", "not-an-id"), 2),
    (("--store", "{missing}", "stats"), 1),
])
def test_debug_shows_the_traceback_and_keeps_the_exit_code(loaded: Path, tmp_path: Path, args: tuple[str, ...],
                                                            code: int) -> None:
    """``--debug`` adds where an error was raised; the error line and the exit code are those
    the command gives without it (a script checking the code sees the same)."""
    args = tuple(a.replace("{missing}", str(tmp_path / "missing")) for a in args)
    plain = CliRunner(env={"KONBINI_API_KEY": "sk-unused-12345678"}).invoke(main, ["--store", str(loaded), *args])
    debug = CliRunner(env={"KONBINI_API_KEY": "sk-unused-12345678"}).invoke(
        main, ["--store", str(loaded), "--debug", *args])
    assert plain.exit_code == debug.exit_code == code, (plain.stderr, debug.stderr)
    assert "Traceback" in debug.stderr and "Traceback" not in plain.stderr
    assert debug.stderr.splitlines()[-1] == plain.stderr.splitlines()[-1], debug.stderr


def test_an_os_error_is_one_line_naming_the_file(loaded: Path, monkeypatch: Any) -> None:
    import konbini_ld.store.store as store_module

    def broken(self: Any) -> Any:
        raise PermissionError(13, "Permission denied", "/somewhere/file")

    monkeypatch.setattr(store_module.Store, "stats", broken)
    r = CliRunner().invoke(main, ["--store", str(loaded), "stats"])
    assert one_error(r, 1) == "Error: /somewhere/file: Permission denied"


# -- option values -----------------------------------------------------------------------------

#: Text as a command line can carry it: any code point, the surrogate escapes Python gives bytes
#: that are not UTF-8, control characters, digits of other scripts.
ARGUMENT_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=60) | st.sampled_from(
    ["0", "-1", "nan", "NaN", "inf", "-inf", "1e309", "99999999999d", "999999d", "PT99999999999999999999H",
     "\udcff", "\x00", "७", "P", "PT", "0d", "<>", '"x"^^<bad iri>', '"x"@not a tag', '"\\x"', '"\\ud800"']
)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "1e309", "abc", "", "86401"])
def test_fetch_timeout_bounds_nothing_unless_positive_and_finite(tmp_path: Path, value: str) -> None:
    r = cli(tmp_path / "s", "fetch", "--timeout", value, "--dry-run", "7611615657754381599")
    line = one_error(r, 2)
    assert "--timeout" in line and "seconds" in line, line


@pytest.mark.parametrize(("option", "value"), [
    ("--refresh-older-than", "99999999999d"), ("--refresh-older-than", "999999d"),
    ("--refresh-older-than", "PT99999999999999999999H"), ("--refresh-older-than", "P9999999999D"),
    ("--refresh-older-than", "soon"), ("--concurrency", "0"), ("--max-pages", "-1"), ("--max-credits", "-1"),
    ("--retries", "0"), ("--api-url", "http://127.0.0.1:99999"), ("--api-url", "http://[::1"),
    ("--api-url", "https://"),
])
def test_fetch_values_out_of_range_are_usage_errors(tmp_path: Path, option: str, value: str) -> None:
    r = cli(tmp_path / "s", "fetch", "--dry-run", option, value, "7611615657754381599")
    one_error(r, 2)
    assert not (tmp_path / "s").exists()  # refused before the store was opened


@pytest.mark.parametrize(("option", "value"), [
    ("--batch-size", "0"), ("--batch-size", "-1"), ("--observed-at", "garbage"), ("--observed-at", "2026-13-45"),
    ("--observed-at", "9999-12-31T23:59:59-01:00"), ("--observed-at", "0000-01-01"), ("--observed-at", ""),
])
def test_load_values_out_of_range_are_usage_errors(tmp_path: Path, option: str, value: str) -> None:
    r = cli(tmp_path / "s", "load", option, value, str(SEED))
    one_error(r, 2)


@settings(max_examples=150, deadline=None)
@given(ARGUMENT_TEXT)
def test_any_duration_text_is_a_duration_or_a_usage_error(text: str) -> None:
    from datetime import UTC, datetime, timedelta

    from konbini_ld.errors import UsageError
    from konbini_ld.units import MAX_DURATION, parse_duration

    try:
        value = parse_duration(text)
    except UsageError:
        return
    assert timedelta(0) <= value <= MAX_DURATION
    datetime.now(UTC) - value  # "that long ago" is a time  # noqa: B018


@settings(max_examples=150, deadline=None)
@given(ARGUMENT_TEXT)
def test_any_timeout_text_is_a_bounded_wait_or_a_usage_error(text: str) -> None:
    import math

    from konbini_ld.errors import UsageError
    from konbini_ld.units import MAX_SECONDS, parse_seconds

    try:
        value = parse_seconds(text)
    except UsageError:
        return
    assert math.isfinite(value) and 0 < value <= MAX_SECONDS


@settings(max_examples=150, deadline=None)
@given(ARGUMENT_TEXT)
def test_any_observation_time_text_is_a_time_or_a_usage_error(text: str) -> None:
    from konbini_ld.errors import UsageError
    from konbini_ld.units import parse_time

    try:
        parse_time(text)
    except UsageError:
        pass


_MEMORY: list[Any] = []


def _memory_store() -> Any:
    from konbini_ld import open_store

    if not _MEMORY:
        store = open_store(None)
        store.load([SEED])
        _MEMORY.append(store)
    return _MEMORY[0]


PARAMETERISED = [("history", "entity"), ("trending", "since"), ("search", "text"), ("audio", "audio"),
                 ("SELECT ?x WHERE { BIND(1 AS ?y) }", "x"), ("SELECT ?x WHERE { ?x ?p ?o } LIMIT 1", "x")]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(PARAMETERISED), ARGUMENT_TEXT)
def test_any_parameter_value_binds_or_is_a_usage_error(query: tuple[str, str], value: str) -> None:
    """``-p name=value`` with any text: an answer, or a usage error naming the parameter."""
    from konbini_ld.errors import UsageError
    from konbini_ld.query.catalog import resolve_query
    from konbini_ld.query.run import run_query

    store = _memory_store()
    nq = resolve_query(query[0])
    try:
        bound = nq.bind({query[1]: value})
    except UsageError:
        return
    result = store.answer(nq.text, bound) or run_query(store.engine, nq.text, bound, name=nq.name, index=nq.index)
    result.write(io.BytesIO(), "table")


def test_the_library_refuses_the_same_values(tmp_path: Path) -> None:
    from datetime import timedelta

    from konbini_ld import fetch, open_store
    from konbini_ld.errors import UsageError

    with open_store(None) as store:
        for batch_size in (0, -1, 1.5, True):
            with pytest.raises(UsageError, match="batch_size"):
                store.load([SEED], batch_size=batch_size)  # type: ignore[arg-type]
        bad: list[dict[str, Any]] = [{"concurrency": 0}, {"max_pages": -1}, {"max_credits": -1},
                                     {"refresh_older_than": timedelta(days=10**6)},
                                     {"refresh_older_than": timedelta(days=-1)}]
        for options in bad:
            with pytest.raises(UsageError):
                fetch(store, None, ["7611615657754381599"], dry_run=True, **options)


# -- plot ------------------------------------------------------------------------------------

_XSD = "http://www.w3.org/2001/XMLSchema#"


def _points(*pairs: tuple[str, str]) -> str:
    rows = " ".join(f'("{t}"^^<{_XSD}dateTime> {v})' for t, v in pairs)
    return f"SELECT ?t ?v WHERE {{ VALUES (?t ?v) {{ {rows} }} }}"


@pytest.mark.parametrize(("label", "query", "code", "says"), [
    ("a time without a zone beside one with", _points(("2020-01-01T00:00:00Z", "1"), ("2020-01-02T00:00:00", "2")),
     0, "plotted 1 series"),
    ("times from year 1 to 9999", _points(("0001-01-01T00:00:00Z", "1"), ("9999-01-02T00:00:00Z", "2")),
     1, "cannot draw these values"),
    ("values of ±1e308", _points(("2020-01-01T00:00:00Z", "1e308"), ("2020-01-02T00:00:00Z", "-1e308")),
     1, "cannot draw these values"),
    ("decimals", _points(("2020-01-01T00:00:00Z", "1.5"), ("2020-01-02T00:00:00Z", "2.5")), 0, "plotted 1 series"),
    ("only NaN", _points(("2020-01-01T00:00:00Z", f'"NaN"^^<{_XSD}double>')), 2, "nothing to plot"),
    ("an ASK", "ASK {}", 2, "an ASK result has no rows"),
])
def test_plot_draws_or_says_in_one_line_why_not(loaded: Path, tmp_path: Path, label: str, query: str, code: int,
                                                says: str) -> None:
    target = tmp_path / "p.png"
    r = cli(loaded, "plot", "-e", query, "-o", str(target))
    assert "Traceback" not in r.stderr and r.exit_code == code, (label, r.stderr)
    if code:
        assert says in one_error(r, code) and not target.exists(), label  # nothing half-drawn is left
    else:
        assert says in r.stderr and target.read_bytes().startswith(b"\x89PNG"), label


@pytest.mark.parametrize("where", ["below a file", "no such directory", "full disk"])
def test_plot_to_a_file_that_cannot_be_written_is_one_line(loaded: Path, tmp_path: Path, where: str) -> None:
    (tmp_path / "afile").write_text("x")
    target, code = {"below a file": (tmp_path / "afile" / "p.png", 2),
                    "no such directory": (tmp_path / "no" / "p.png", 2),
                    "full disk": (tmp_path / "full.png", 1)}[where]
    if where == "full disk":
        if not os.path.exists("/dev/full"):
            pytest.skip("needs /dev/full")
        target.symlink_to("/dev/full")
    for command in (["plot", "history", "-p", f"entity={KHABY}", "-o", str(target)],
                    ["query", "history", "-p", f"entity={KHABY}", "--plot", str(target)]):
        line = one_error(cli(loaded, *command), code)
        assert line.startswith(f"Error: cannot write {target}: "), line


# -- a query that runs too long -------------------------------------------------------------

RUNAWAY = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l . ?m ?n ?o . ?p ?q ?r }"


def test_query_timeout_stops_a_runaway_in_one_line(loaded: Path) -> None:
    started = time.monotonic()
    r = konbini("--store", str(loaded), "query", "-e", RUNAWAY, "--timeout", "1.5")
    assert time.monotonic() - started < 20
    assert r.returncode == 1, r.stderr
    assert r.stderr.decode().strip().splitlines() == [
        "Error: the query was stopped after the 1.5 s time limit (--timeout)"]
    fine = konbini("--store", str(loaded), "query", "top-audios", "--timeout", "30", "-f", "csv")
    assert fine.returncode == 0 and fine.stdout.startswith(b"audio,"), fine.stderr


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_a_running_query_at_once(loaded: Path, sig: signal.Signals, code: int) -> None:
    """The engine does not look at signals while it evaluates: the query runs beside the
    waiting main thread, so Ctrl-C or SIGTERM ends the command at once."""
    proc = subprocess.Popen([sys.executable, "-m", "konbini_ld", "--store", str(loaded), "query", "-e", RUNAWAY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(3)  # (started, and evaluating: the runaway takes minutes)
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 5
        assert proc.returncode == code and err.decode().strip() == "Interrupted.", err
    finally:
        proc.kill()
        proc.wait()


#: The program, with its command line's import made slow (as on a busy machine) and announced.
_SLOW_LOAD = """
import builtins, os, sys, time
real = builtins.__import__
def slow(name, *args, **kwargs):
    if name == "apps.cli" or name.endswith("apps.cli"):
        os.write(2, b"loading\\n")
        time.sleep(30)
    return real(name, *args, **kwargs)
builtins.__import__ = slow
sys.argv = ["konbini-ld", "--help"]
from konbini_ld._entry import run
run()
"""


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_command_line_loads_is_an_interruption(sig: signal.Signals, code: int) -> None:
    """The command line's imports take a second or more on a busy machine: a signal then ends it as
    at any other moment (exit 130 / 143, "Interrupted."), never a traceback."""
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_LOAD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline() == b"loading\n"
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == code and "Traceback" not in err.decode(), (proc.returncode, err)
        assert err.decode().strip() == "Interrupted.", err
    finally:
        proc.kill()
        proc.wait()


def test_a_second_signal_while_a_stopped_command_says_so_keeps_the_first_ones_line_and_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C stops a command, and a SIGTERM lands as it says so (a terminal's Ctrl-C, then a
    service manager's stop): one "Interrupted" line and exit 130, never click's "Aborted!"."""
    from konbini_ld import errors, open_store
    from konbini_ld.apps.cli import options
    from konbini_ld.pipeline.collection import KonbiniStore

    with open_store(tmp_path / "store"):
        pass
    said = options.say_interrupted

    def ctrl_c(self: Any) -> Any:
        errors.raise_interrupted(signal.SIGINT, None)

    def sigterm_meanwhile(ctx: Any, command: str | None) -> None:
        monkeypatch.setattr(options, "say_interrupted", said)
        errors.raise_terminated(signal.SIGTERM, None)

    monkeypatch.setattr(KonbiniStore, "stats", ctrl_c)
    monkeypatch.setattr(options, "say_interrupted", sigterm_meanwhile)
    r = CliRunner().invoke(main, ["--store", str(tmp_path / "store"), "stats"])
    assert r.exit_code == 130, r.output
    assert r.stderr.strip() == "Interrupted.", r.stderr


#: The program, a signal landing while its command line's import makes a class (Python wraps what
#: the handler raises there: ``RuntimeError: Error calling __set_name__``).
def _program(hook: str) -> str:
    """The program (``konbini-ld --help``), with ``hook`` (a function ``slow(name, …)`` that may
    raise or send a signal, then imports) in place of Python's ``__import__``."""
    return ("import builtins, os, signal, sys, time\nreal = builtins.__import__\n" + hook
            + "builtins.__import__ = slow\nsys.argv = ['konbini-ld', '--help']\n"
              "from konbini_ld._entry import run\nrun()\n")


def _run_program(hook: str, sig: str = "SIGINT") -> subprocess.CompletedProcess[str]:
    """Run :func:`_program` with ``signal.SIG`` in ``hook`` meaning ``sig``."""
    return subprocess.run([sys.executable, "-c", _program(hook).replace("signal.SIG)", f"signal.{sig})")],
                          capture_output=True, text=True, timeout=60)


_SIGNAL_IN_SET_NAME = """
class Field:
    def __set_name__(self, owner, name):
        os.kill(os.getpid(), signal.SIG)
        time.sleep(5)
def slow(name, *args, **kwargs):
    if name == "apps.cli" or name.endswith("apps.cli"):
        class Made:
            field = Field()
    return real(name, *args, **kwargs)
"""


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_python_wraps_where_it_lands_is_still_an_interruption(sig: str, code: int) -> None:
    """A signal landing while a class is made (an import of the command line, or a module a command
    imports when it needs it) reaches the program wrapped in a RuntimeError: still "Interrupted."
    and exit 130 / 143, never "unexpected RuntimeError" or a traceback."""
    proc = _run_program(_SIGNAL_IN_SET_NAME, sig)
    assert proc.returncode == code and proc.stderr.strip() == "Interrupted.", (proc.returncode, proc.stderr)


@pytest.mark.parametrize("handler, code", [("raise_interrupted", 130), ("raise_terminated", 143)])
def test_a_signal_wrapped_inside_a_command_is_still_an_interruption(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handler: str, code: int) -> None:
    from konbini_ld import errors, open_store
    from konbini_ld.pipeline.collection import KonbiniStore

    with open_store(tmp_path / "store"):
        pass

    class Field:
        def __set_name__(self, owner: Any, name: str) -> None:
            getattr(errors, handler)(signal.SIGTERM, None)

    def lazily_imported(self: Any) -> Any:
        class Made:  # (what a module imported on first use does: a dataclass's fields, say)
            field = Field()

    monkeypatch.setattr(KonbiniStore, "stats", lazily_imported)
    r = CliRunner().invoke(main, ["--store", str(tmp_path / "store"), "stats"])
    assert r.exit_code == code and r.stderr.strip() == "Interrupted.", (r.exit_code, r.stderr)


#: The program, a signal landing while its command line is imported, in a place that swallows what
#: the handler raises (importlib's module-lock callback prints "Exception ignored" and goes on).
_SIGNAL_SWALLOWED = """
done = []
def slow(name, *args, **kwargs):
    if not done and (name == "apps.cli" or name.endswith("apps.cli")):
        done.append(1)
        try:
            os.kill(os.getpid(), signal.SIG)
            time.sleep(5)
        except KeyboardInterrupt:
            pass
    return real(name, *args, **kwargs)
"""


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_swallowed_while_the_command_line_loads_still_stops_it(sig: str, code: int) -> None:
    proc = _run_program(_SIGNAL_SWALLOWED, sig)
    assert proc.returncode == code and proc.stderr.strip() == "Interrupted." and proc.stdout == "", proc


@pytest.mark.parametrize("handler, code", [("raise_interrupted", 130), ("raise_terminated", 143)])
def test_a_signal_swallowed_inside_a_command_stops_it_before_the_store_or_at_its_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handler: str, code: int) -> None:
    """Something swallowed what the handler raised (a finaliser, a library's catch-all): the
    command does not read the store after it, and ends as interrupted, not with exit 0."""
    from konbini_ld import errors, open_store
    from konbini_ld.pipeline.collection import KonbiniStore
    from konbini_ld.query import catalog

    store = tmp_path / "store"
    with open_store(store) as s:
        s.load([SEED])

    def swallowed() -> None:
        try:
            getattr(errors, handler)(signal.SIGINT, None)
        except KeyboardInterrupt:
            pass

    real_resolve, real_stats, asked = catalog.resolve_query, KonbiniStore.stats, []
    monkeypatch.setattr(catalog, "resolve_query", lambda *a: swallowed() or real_resolve(*a))
    monkeypatch.setattr(KonbiniStore, "answer", lambda *a, **k: asked.append(a))
    r = CliRunner().invoke(main, ["--store", str(store), "query", "top-audios", "-f", "csv"])
    assert r.exit_code == code and r.stderr.strip() == "Interrupted." and r.stdout == "", (r.exit_code, r.output)
    assert asked == []  # (stopped before the store was read)
    monkeypatch.setattr(KonbiniStore, "stats", lambda self: swallowed() or real_stats(self))
    r = CliRunner().invoke(main, ["--store", str(store), "stats"])
    assert r.exit_code == code and r.stderr.strip() == "Interrupted.", (r.exit_code, r.output)


@pytest.mark.parametrize("handler, code", [("raise_interrupted", 130), ("raise_terminated", 143)])
def test_a_signal_while_the_program_reads_its_options_is_an_interruption(
        monkeypatch: pytest.MonkeyPatch, handler: str, code: int) -> None:
    """Not click's "Aborted!" with exit 1."""
    from konbini_ld import errors

    real = click.Group.parse_args

    def interrupted(self: Any, ctx: Any, args: Any) -> Any:
        getattr(errors, handler)(signal.SIGINT, None)
        return real(self, ctx, args)

    monkeypatch.setattr(click.Group, "parse_args", interrupted)
    r = CliRunner().invoke(main, ["stats"])
    assert r.exit_code == code and r.stderr.strip() == "Interrupted.", (r.exit_code, r.output)


#: The program, a Ctrl-C landing (Python's own handler: the program's are not in place yet) while
#: it imports the module that holds its handlers.
_SIGNAL_BEFORE_THE_HANDLERS = """
def slow(name, globals=None, locals=None, fromlist=(), level=0):
    if name == "errors" and level == 1 and "konbini_ld.errors" not in sys.modules:
        raise KeyboardInterrupt
    return real(name, globals, locals, fromlist, level)
"""


def test_a_ctrl_c_while_the_program_imports_its_handlers_is_an_interruption() -> None:
    """Not ``UnboundLocalError`` (the handler's module half imported) with a traceback."""
    proc = _run_program(_SIGNAL_BEFORE_THE_HANDLERS)
    assert proc.returncode == 130 and proc.stderr.strip() == "Interrupted." and proc.stdout == "", proc
