from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner
from helpers import KHABY, NEWER, SEED, VIDEOS, seed_data, write_json
from rdflib import Graph, Literal, Namespace

from konbini_ld.apps.cli import main
from konbini_ld.query.validate import validate

SH = Namespace("http://www.w3.org/ns/shacl#")


def test_the_samples_conform(store: Any) -> None:
    store.load([SEED, NEWER, VIDEOS])
    report = validate(store)
    assert report.conforms and report.results == []


def test_violations_name_node_path_and_value(store: Any, tmp_path: Path) -> None:
    bad = seed_data()
    bad["attributedTo"]["followerCount"] = -5
    bad["icon"] = {"type": "Image", "width": 3}  # no url
    store.load([write_json(tmp_path / "bad.json", {"data": bad})])
    report = validate(store)
    assert not report.conforms
    lines = [str(r) for r in report.results]
    assert any(KHABY in line and "ks:followerCount" in line and "-5" in line for line in lines), lines
    assert any("as:url" in line and "an image needs a url" in line for line in lines), lines


def test_cli_exit_codes_and_turtle_report(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    runner = CliRunner()
    runner.invoke(main, ["--store", store, "load", str(SEED)], catch_exceptions=False)
    ok = runner.invoke(main, ["--store", store, "validate"], catch_exceptions=False)
    assert ok.exit_code == 0 and "conforms" in ok.stderr
    bad = seed_data()
    bad["videoCount"] = -1
    runner.invoke(main, ["--store", store, "load", str(write_json(tmp_path / "b.json", {"data": bad}))])
    r = runner.invoke(main, ["--store", store, "validate"], catch_exceptions=False)
    assert r.exit_code == 1 and "ks:videoCount" in r.stdout and "does not conform" in r.stderr
    r = runner.invoke(main, ["--store", store, "validate", "--format", "turtle"], catch_exceptions=False)
    assert r.exit_code == 1
    g = Graph().parse(data=r.stdout, format="turtle")
    assert (None, SH.conforms, Literal(False)) in g


def test_what_the_api_always_sends_is_required_and_the_unusual_is_a_warning(store: Any, tmp_path: Path) -> None:
    nameless = seed_data()
    del nameless["name"]
    lonely = seed_data()
    lonely["id"] = "https://www.tiktok.com/music/lonely-1"
    del lonely["attributedTo"]
    anonymous = seed_data()
    anonymous["id"] = "https://www.tiktok.com/music/anonymous-2"
    anonymous["attributedTo"] = {"type": "Person", "id": "https://www.tiktok.com/@nobody"}
    for i, doc in enumerate((nameless, lonely, anonymous)):
        store.load([write_json(tmp_path / f"{i}.json", {"data": doc})])
    report = validate(store)
    assert not report.conforms
    by = {(r.severity, r.message) for r in report.results}
    assert ("Violation", "an audio needs one name (the API always sends it)") in by
    assert ("Warning", "an audio with no creator is unusual") in by
    assert ("Violation", "a person needs one username (preferredUsername: the API always sends it)") in by
    assert "violations" in report.summary() and "warning" in report.summary()


def test_warnings_alone_conform(store: Any, tmp_path: Path) -> None:
    lonely = seed_data()
    del lonely["attributedTo"]
    store.load([write_json(tmp_path / "l.json", {"data": lonely})])
    report = validate(store)
    assert report.conforms and {r.severity for r in report.results} == {"Warning"}
