"""The README and docs/ stay true: quick start, every command documented, CI runs the documented
tests, the command-line reference is the commands' own --help, every link lands."""

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
DOCS = ROOT / "docs"
GUIDE = (DOCS / "guide.md").read_text()
OPERATIONS = (DOCS / "operations.md").read_text()


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
        assert f"### {name}" in GUIDE, name
        section = GUIDE.split(f"### {name}", 1)[1].split("\n### ", 1)[0]
        assert f"konbini-ld {name}" in section, name


def test_every_named_query_is_documented() -> None:
    for name in named_queries():
        assert f"`{name}`" in GUIDE, name


def test_every_exit_code_is_documented() -> None:
    section = OPERATIONS.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in (0, 1, 2, 3, 4, 130, 143):
        assert f"| {code} |" in section


def test_the_cli_reference_is_the_commands_own_help() -> None:
    from konbini_ld.apps.cli.reference import render

    assert (DOCS / "cli.md").read_text() == render(), (
        "docs/cli.md differs from the commands' --help: regenerate it with "
        "`.venv/bin/python -m konbini_ld.apps.cli.reference > docs/cli.md`")


def test_the_cli_reference_has_every_command_and_option() -> None:
    text = (DOCS / "cli.md").read_text()
    for name, command in main.commands.items():
        assert f"## konbini-ld {name}\n" in text, name
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("-"):
                    assert opt in text.split(f"## konbini-ld {name}\n", 1)[1].split("\n## ", 1)[0], (name, opt)


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a file's headings (lower case, punctuation dropped, spaces as hyphens)."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    return {re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", h.strip().lower())) for h in re.findall(r"^#+ (.*)$", text, re.M)}


def test_every_link_between_the_docs_lands() -> None:
    files = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    checked = 0
    for path in files:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            assert dest.exists(), f"{path.relative_to(ROOT)} links to {target}: no such file"
            if anchor and dest.suffix == ".md":
                assert anchor in _anchors(dest.read_text()), f"{path.relative_to(ROOT)} links to {target}: no such heading"
            checked += 1
    assert checked > 30


def test_the_readme_collecting_example_runs(tmp_path: Path) -> None:
    section = README.split("## Collecting sounds", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)\n```", section, re.S)
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    script = f'konbini-ld() {{ "{sys.executable}" -m konbini_ld "$@"; }}\nset -e\n{block}\n'
    out = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert "original-sound-7611615657754381599" in out.stdout
    assert "khaby.lame,khaby.lame" not in out.stdout and "khaby.lame" in (tmp_path / "creators.csv").read_text()


def test_the_data_model_shows_the_history_as_it_is_written(tmp_path: Path) -> None:
    """The history example in docs/data-model.md is what loading the sample at that time writes."""
    import konbini_ld

    text = (DOCS / "data-model.md").read_text()
    (example,) = re.findall(r"```turtle\n(<urn:konbini-ld:o:[0-9a-f]{24}>.*?)\n```", text, re.S)
    prefixes = "".join(f"@prefix {p}: <{iri}> .\n" for p, iri in (
        ("sosa", "http://www.w3.org/ns/sosa/"), ("ksh", "https://konbiniapi.com/ns/social/history#"),
        ("xsd", "http://www.w3.org/2001/XMLSchema#")))
    import pyoxigraph as ox

    documented = {f"{t.subject} {t.predicate} {t.object}" for t in ox.parse(prefixes + example, ox.RdfFormat.TURTLE)}
    with konbini_ld.open_store(None) as store:
        store.load([ROOT / "samples" / "seed-audio.json"], observed_at="2026-11-01T09:00:00Z")
        node = example.split(">", 1)[0][1:]
        written = {f"{t.subject} {t.predicate} {t.object}" for t in store.query(
            f"CONSTRUCT {{ <{node}> ?p ?o }} WHERE {{ GRAPH <urn:konbini-ld:graph:history> {{ <{node}> ?p ?o }} }}"
        ).triples()}
    assert documented == written


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


@pytest.mark.parametrize("name", ["README.md", "docs/guide.md"])
def test_the_python_api_block_runs(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    section = (ROOT / name).read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)\n```", section, re.S)
    monkeypatch.chdir(ROOT)
    exec(compile(block, name, "exec"), {})


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
