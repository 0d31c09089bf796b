"""The README stays true: quick start, every command documented, CI runs the documented tests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from click.testing import CliRunner

from konbini_ld.apps.cli import main
from konbini_ld.query.catalog import named_queries

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, re.S)


def test_quick_start_has_two_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert "konbini-ld" in commands[0] and "load samples/" in commands[0] and "query top-audios" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_documented_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert quick_start_commands()[1] in ci


def test_every_command_is_documented_with_an_example() -> None:
    for name in main.commands:
        assert f"### {name}" in README, name
        section = README.split(f"### {name}", 1)[1].split("\n### ", 1)[0]
        assert f"konbini-ld {name}" in section, name


def test_every_named_query_is_documented() -> None:
    for name in named_queries():
        assert f"`{name}`" in README, name


def test_every_exit_code_is_documented() -> None:
    for code in (0, 1, 2, 3, 4, 130, 143):
        assert f"| {code} |" in README


def test_help_lists_every_command() -> None:
    out = CliRunner().invoke(main, ["--help"]).stdout
    for name in main.commands:
        assert name in out


def test_quick_start_query_works_on_the_bundled_samples(tmp_path: Path) -> None:
    store = tmp_path / "demo"
    base = [sys.executable, "-m", "konbini_ld", "--store", str(store)]
    samples = sorted(str(p) for p in (ROOT / "samples").glob("*.json"))
    subprocess.run([*base, "load", *samples], check=True, capture_output=True, cwd=tmp_path)
    out = subprocess.run([*base, "query", "top-audios"], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert "original-sound-7611615657754381599" in out.stdout and "khaby.lame" in out.stdout


def test_the_readme_python_block_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    section = README.split("## Python API", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)\n```", section, re.S)
    monkeypatch.chdir(ROOT)
    exec(compile(block, "README.md", "exec"), {})


def test_every_test_the_threat_model_names_exists() -> None:
    """docs/design/threats.md promises; each promise names the test that holds it."""
    import ast

    text = (ROOT / "docs" / "design" / "threats.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text)
    assert len(named) > 30
    defined: dict[str, set[str]] = {}
    for path, name in named:
        if path not in defined:
            tree = ast.parse((ROOT / path).read_text())
            defined[path] = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        assert name in defined[path], f"{path}::{name} is named in threats.md but does not exist"
    for section in ("API answers", "Files given to `load`", "The store directory", "HTTP clients of `serve`",
                    "Command-line values"):
        assert section in text, section
