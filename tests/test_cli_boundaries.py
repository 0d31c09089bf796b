"""What a command line can be given, and where its output can go: every value is checked
before work starts, and every failure ends in one ``Error:`` line and the documented exit
code (2 usage, 1 work failed), never a traceback without ``--debug``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
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


def test_an_unexpected_failure_is_one_line_and_debug_shows_the_traceback(loaded: Path, monkeypatch: Any) -> None:
    import konbini_ld.store.store as store_module

    def broken(self: Any) -> Any:
        raise RuntimeError("something\nnobody expected")

    monkeypatch.setattr(store_module.KonbiniStore, "stats", broken)
    r = CliRunner().invoke(main, ["--store", str(loaded), "stats"])
    assert one_error(r, 1) == ("Error: unexpected RuntimeError: something nobody expected "
                              "(run with --debug for the traceback)")
    r = CliRunner().invoke(main, ["--store", str(loaded), "--debug", "stats"])
    assert isinstance(r.exception, RuntimeError)


def test_an_os_error_is_one_line_naming_the_file(loaded: Path, monkeypatch: Any) -> None:
    import konbini_ld.store.store as store_module

    def broken(self: Any) -> Any:
        raise PermissionError(13, "Permission denied", "/somewhere/file")

    monkeypatch.setattr(store_module.KonbiniStore, "stats", broken)
    r = CliRunner().invoke(main, ["--store", str(loaded), "stats"])
    assert one_error(r, 1) == "Error: /somewhere/file: Permission denied"
