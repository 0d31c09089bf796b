from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import AUDIO_IRI, KHABY, NEWER, SEED, VIDEOS, seed_data, write_json

from konbini_ld.apps.cli import main


@pytest.fixture
def run(store_dir: Path) -> Any:
    def invoke(*args: str, input: str | None = None) -> Any:
        return CliRunner().invoke(main, ["--store", str(store_dir), *args], input=input, catch_exceptions=False)

    return invoke


def test_load_then_top_audios_prints_the_sample_audio_with_its_creator(run: Any) -> None:
    r = run("load", str(SEED))
    assert r.exit_code == 0, r.stderr
    assert "loaded 1 response" in r.stderr
    r = run("query", "top-audios")
    assert r.exit_code == 0
    assert AUDIO_IRI in r.stdout and "khaby.lame" in r.stdout and "500000" in r.stdout


def test_load_reads_stdin(run: Any) -> None:
    r = run("load", "-", input=json.dumps({"data": seed_data()}))
    assert r.exit_code == 0, r.stderr
    assert json.loads(run("stats", "--json").stdout)["audios"] == 1


def test_bad_inputs_get_one_clear_line_each_and_exit_1(run: Any, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.json"
    truncated.write_text(SEED.read_text()[:200])
    html = tmp_path / "error.json"
    html.write_text("<html><head><title>502 Bad Gateway</title></head></html>")
    scalar = write_json(tmp_path / "scalar.json", 42)
    wrong = write_json(tmp_path / "wrong.json", {"data": {**seed_data(), "videoCount": "lots"}})
    remote = write_json(tmp_path / "remote.json", {"data": {**seed_data(), "@context": "https://example.org/ctx"}})
    lines = tmp_path / "mixed.jsonl"
    lines.write_text(json.dumps({"data": seed_data()}) + "\n{\"data\": \n")
    missing = tmp_path / "nope.json"
    r = run("load", *map(str, [truncated, html, scalar, wrong, remote, lines, missing]))
    assert r.exit_code == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 7
    text = "\n".join(errors)
    assert f"{truncated}: invalid JSON" in text and "truncated" in text
    assert f"{html}: got an HTML page '502 Bad Gateway'" in text
    assert f"{scalar}: expected a JSON object, got a number" in text
    assert f"{wrong}: $.videoCount: expected an integer" in text
    assert f"{remote}:" in text and "example.org/ctx" in text
    assert f"{lines}:2: invalid JSON" in text
    assert f"{missing}: no such file" in text
    assert "Traceback" not in r.stderr
    # the good line of the JSON Lines file still loaded
    assert json.loads(run("stats", "--json").stdout)["audios"] == 1


def test_unknown_keys_are_warned_about_once_per_run(run: Any, tmp_path: Path) -> None:
    files = [write_json(tmp_path / f"{i}.json", {"data": {**seed_data(), "brandNewKey": i}}) for i in range(3)]
    r = run("load", *map(str, files))
    assert r.exit_code == 0
    assert sum("brandNewKey" in line for line in r.stderr.splitlines()) == 1
    out = run("query", "-e", "SELECT ?v WHERE { ?a <https://konbiniapi.com/ns/social#brandNewKey> ?v }", "-f", "csv")
    assert out.stdout.split() == ["v", "2"]


def test_query_usage_errors_exit_2(run: Any) -> None:
    run("load", str(SEED))
    assert run("query", "no-such-query").exit_code == 2
    assert run("query", "audios-by-creator").exit_code == 2
    assert run("query").exit_code == 2
    assert run("query", "top-audios", "-p", "novalue").exit_code == 2


def test_query_errors_exit_1_with_one_line(run: Any) -> None:
    run("load", str(SEED))
    r = run("query", "-e", "SELECT * WHERE { ?s ?p }")
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: (inline):1:") and len(r.stderr.splitlines()) == 1


def test_query_with_param_file_and_formats(run: Any, tmp_path: Path) -> None:
    run("load", str(SEED), str(VIDEOS))
    r = run("query", "audios-by-creator", "-p", f"creator={KHABY}", "-f", "json")
    assert json.loads(r.stdout)["results"]["bindings"][0]["audio"]["value"] == AUDIO_IRI
    rq = tmp_path / "count.rq"
    rq.write_text("SELECT (COUNT(*) AS ?n) WHERE { ?v a <https://www.w3.org/ns/activitystreams#Video> }")
    assert run("query", str(rq), "-f", "csv").stdout.split()[0] == "n"
    r = run("query", "audio", "-p", f"audio={AUDIO_IRI}", "-f", "turtle")
    assert "ks:videoCount 500000" in r.stdout
    r = run("query", "videos-using-audio", "-p", f"audio={AUDIO_IRI}", "-f", "csv")
    assert "7611615657754381599" in r.stdout


def test_queries_lists_names_descriptions_and_params(run: Any) -> None:
    r = run("queries")
    assert "top-audios:" in r.stdout and "-p creator=<iri>" in r.stdout
    listed = json.loads(run("queries", "--json").stdout)
    assert {q["name"] for q in listed} >= {"search", "provenance"}


def test_export_to_file_and_stdout(run: Any, tmp_path: Path) -> None:
    run("load", str(SEED))
    out = tmp_path / "g.ttl"
    assert run("export", "-f", "turtle", "-o", str(out)).exit_code == 0
    assert "@prefix ks:" in out.read_text()
    doc = json.loads(run("export", "-f", "jsonld").stdout)
    assert any(n.get("type") == "Audio" for n in doc["@graph"])


def test_stats_and_rebuild(run: Any) -> None:
    run("load", str(SEED), str(NEWER), str(VIDEOS))
    before = run("stats", "--json").stdout
    r = run("rebuild")
    assert r.exit_code == 0 and "rebuilt from 3 responses" in r.stderr
    after = json.loads(run("stats", "--json").stdout)
    assert after["triples"] == json.loads(before)["triples"] and after["credits_spent"] == 2


def test_stats_on_a_store_that_does_not_exist_yet(run: Any, tmp_path: Path) -> None:
    """Says there is none (a mistyped --store is not an empty store), and makes none."""
    r = run("stats")
    assert r.exit_code == 1 and r.stderr == f"Error: there is no konbini-ld store at {tmp_path / 'store'} (load something first)\n"
    assert not (tmp_path / "store").exists()
    run("load", str(SEED))
    assert "audios" in run("stats").stdout


def test_every_command_has_help() -> None:
    for name, command in main.commands.items():
        r = CliRunner().invoke(main, [name, "--help"])
        assert r.exit_code == 0 and command.help, name
        assert "Example" in r.stdout, name


def test_load_batch_size_defaults_to_the_library_s() -> None:
    from konbini_ld.apps.cli.ingest import load
    from konbini_ld.pipeline.ingest import DEFAULT_BATCH

    option = next(p for p in load.params if p.name == "batch_size")
    assert option.default == DEFAULT_BATCH  # (the command spells it out: `--help` imports no store)


def test_console_script_runs_offline_in_a_subprocess(tmp_path: Path) -> None:
    store = tmp_path / "s"
    env_cmd = [sys.executable, "-m", "konbini_ld", "--store", str(store)]
    subprocess.run([*env_cmd, "load", str(SEED)], check=True, capture_output=True)
    out = subprocess.run([*env_cmd, "query", "top-audios", "-f", "csv"], check=True, capture_output=True, text=True)
    assert "khaby.lame" in out.stdout


def test_store_in_use_is_a_clear_error(run: Any, store_dir: Path) -> None:
    from konbini_ld import open_store

    with open_store(store_dir):
        r = run("load", str(SEED))
    # the message names the holder (its command and pid), not a guess
    assert r.exit_code == 1 and "is being written by another process" in r.stderr
    assert f"pid {os.getpid()}" in r.stderr and "serve" not in r.stderr.split(";")[0]


def test_help_and_queries_start_without_heavy_imports() -> None:
    code = (
        "import sys, runpy\n"
        "sys.argv = ['konbini-ld'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('konbini_ld', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "heavy = ('rdflib', 'pyld', 'pyoxigraph', 'requests', 'starlette', 'uvicorn', 'pyshacl', 'tqdm', 'oxrdflib')\n"
        "print(','.join(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    for args in (["--help"], ["queries"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
        assert out.stderr.strip().splitlines()[-1:] in ([], [""]), (args, out.stderr)


def test_verbose_load_says_what_it_reads_and_writes(run: Any) -> None:
    quiet = run("load", str(SEED))
    r = run("-v", "load", str(SEED))
    assert r.exit_code == 0 and "INFO" not in quiet.stderr
    assert f"reading {SEED}" in r.stderr and "batch of 1 responses: 0 mapped, 1 already there" in r.stderr
