"""The public API surface and the error hierarchy."""

from __future__ import annotations

import inspect

import konbini_ld
from konbini_ld import errors


def test_all_is_complete_and_sorted() -> None:
    public = {name for name in dir(konbini_ld) if not name.startswith("_")}
    modules = {name for name, value in vars(konbini_ld).items() if inspect.ismodule(value)}
    assert set(konbini_ld.__all__) == public - modules - {"annotations"}
    assert konbini_ld.__all__ == sorted(konbini_ld.__all__)


def test_every_error_derives_from_one_root_and_has_an_exit_code() -> None:
    classes = [c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, Exception)]
    assert {c.__name__ for c in classes} == set(errors.__all__)
    for cls in classes:
        assert issubclass(cls, errors.KonbiniError)
        assert cls.exit_code in (1, 2, 3, 4)
    assert errors.AuthError.exit_code == 3
    assert errors.CreditsExhaustedError.exit_code == 4
    assert errors.UsageError.exit_code == 2


def test_every_error_class_is_drawn_in_the_module_docstring() -> None:
    for name in errors.__all__:
        assert name in (errors.__doc__ or ""), name


def test_input_errors_name_their_source_and_line() -> None:
    e = errors.ExpandError("bad", source="x.jsonl", line=3)
    assert str(e) == "x.jsonl:3: bad"


# -- the Python API, item by item ------------------------------------------------------------

import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from datetime import datetime  # noqa: E402
from decimal import Decimal  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from helpers import AUDIO_IRI, SEED, VIDEOS, seed_data  # noqa: E402


def test_open_store_takes_a_path_a_url_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with konbini_ld.open_store(None) as memory, konbini_ld.open_store(tmp_path / "s") as disk, \
            konbini_ld.open_store(str(tmp_path / "t")) as text:
        assert not memory.engine.capabilities.persistent and disk.engine.capabilities.persistent
        assert text.location == tmp_path / "t"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(konbini_ld.UsageError, match="not a directory or an http"):
        konbini_ld.open_store("ftp://x/sparql")
    assert not (tmp_path / "ftp:").exists()  # refused before anything is made (no store at ./ftp:/x/sparql)


def test_load_takes_dicts_paths_and_streams(tmp_path: Path) -> None:
    bare = seed_data()
    with konbini_ld.open_store(None) as store:
        assert store.load({"data": bare}).loaded == 1                      # the envelope
        assert store.load(bare).loaded == 1                                # the bare object
        assert store.load(SEED).loaded == 1                                # a Path
        assert store.load(str(VIDEOS)).loaded == 1                         # a str path
        # the same bytes again, however given: the same observation, already there
        assert store.load(io.StringIO(SEED.read_text())).unchanged == 1    # a text stream
        with open(SEED, "rb") as fh:
            assert store.load(fh).unchanged == 1                           # a binary file
        report = store.load([bare, SEED, io.BytesIO(b'{"data": null}')])  # a mixed list
        assert report.loaded + report.unchanged == 2 and len(report.failed) == 1
        with pytest.raises(konbini_ld.UsageError, match="cannot load a int"):
            store.load([42])  # type: ignore[list-item]


def test_load_reads_stdin_only_when_given_it(monkeypatch: pytest.MonkeyPatch) -> None:
    class Untouchable(io.StringIO):
        def read(self, *a: Any) -> str:
            raise AssertionError("stdin was read")

        readline = read  # type: ignore[assignment]

    monkeypatch.setattr(sys, "stdin", Untouchable())
    with konbini_ld.open_store(None) as store:
        assert store.load([]).loaded == 0 and store.load([seed_data()]).loaded == 1
    monkeypatch.setattr(sys, "stdin", io.StringIO(SEED.read_text()))
    with konbini_ld.open_store(None) as store:
        assert store.load("-").loaded == 1
    monkeypatch.setattr(sys, "stdin", io.StringIO(SEED.read_text()))
    with konbini_ld.open_store(None) as store:
        assert store.load([sys.stdin]).loaded == 1


@pytest.fixture
def loaded() -> Any:
    with konbini_ld.open_store(None) as store:
        store.load([SEED, VIDEOS])
        yield store


def test_records_are_python_values(loaded: Any) -> None:
    rows = loaded.query("""
        PREFIX as: <https://www.w3.org/ns/activitystreams#> PREFIX ks: <https://konbiniapi.com/ns/social#>
        SELECT ?audio ?name ?count ?seconds ?original ?published ?ratio ?exact ?missing WHERE {
          ?audio a as:Audio ; as:name ?name ; ks:videoCount ?count ; ks:durationSeconds ?seconds .
          OPTIONAL { ?audio ks:isOriginal ?original } OPTIONAL { ?audio as:published ?published }
          BIND (1.5e0 AS ?ratio) BIND (0.1 AS ?exact)
        } LIMIT 1""", {"audio": AUDIO_IRI}).records()
    (r,) = rows
    assert r["audio"] == AUDIO_IRI and isinstance(r["audio"], str)
    assert isinstance(r["name"], str) and isinstance(r["count"], int) and r["count"] == 500000
    assert isinstance(r["seconds"], int)
    assert r["ratio"] == 1.5 and isinstance(r["ratio"], float)
    assert r["exact"] == Decimal("0.1") and isinstance(r["exact"], Decimal)
    assert r["original"] in (True, False, None) and r["missing"] is None
    assert r["published"] is None or isinstance(r["published"], datetime)
    dated = loaded.query("SELECT ?t WHERE { ?o <http://www.w3.org/ns/prov#endedAtTime> ?t } LIMIT 1").records()
    assert isinstance(dated[0]["t"], datetime) and dated[0]["t"].tzinfo is not None


def test_results_can_be_read_more_than_once(loaded: Any) -> None:
    result = loaded.run_named("top-audios")
    assert list(result.rows()) == list(result.rows()) and result.records() == result.records()


def test_to_pandas_gives_typed_columns(loaded: Any) -> None:
    frame = loaded.run_named("creators").to_pandas()
    assert list(frame.columns) == ["person", "username", "followers", "audios"]
    assert str(frame["audios"].dtype) == "Int64" and str(frame["person"].dtype) == "string"
    times = loaded.query(
        "SELECT ?o ?t WHERE { ?o <http://www.w3.org/ns/prov#endedAtTime> ?t }").to_pandas(index="t")
    assert str(times.index.dtype).startswith("datetime64") and str(times.index.tz) == "UTC"


def test_query_format_parquet(tmp_path: Path) -> None:
    import pandas as pd
    from click.testing import CliRunner

    from konbini_ld.apps.cli import main

    store = tmp_path / "s"
    CliRunner().invoke(main, ["--store", str(store), "load", str(SEED), str(VIDEOS)], catch_exceptions=False)
    out = tmp_path / "creators.parquet"
    r = CliRunner().invoke(main, ["--store", str(store), "query", "creators", "-f", "parquet", "-o", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    frame = pd.read_parquet(out)
    assert len(frame) >= 1 and str(frame["audios"].dtype) == "Int64"


def test_export_takes_a_format_name_or_enum_and_a_stream_or_path(loaded: Any, tmp_path: Path) -> None:
    a, b = io.BytesIO(), io.BytesIO()
    loaded.export(a, "turtle")
    loaded.export(b, konbini_ld.Format.TURTLE)
    assert a.getvalue() == b.getvalue() and b"@prefix" in a.getvalue()
    loaded.export(tmp_path / "g.jsonld", "jsonld", inline_context=True)
    assert "@vocab" in json.loads((tmp_path / "g.jsonld").read_text())["@context"][0] or \
        isinstance(json.loads((tmp_path / "g.jsonld").read_text())["@context"], (list, dict))
    with pytest.raises(konbini_ld.UsageError, match="unknown graph format"):
        loaded.export(io.BytesIO(), "docx")


def test_fetch_validate_and_push_are_importable_with_typed_signatures() -> None:
    import inspect

    for fn in (konbini_ld.fetch, konbini_ld.validate, konbini_ld.push, konbini_ld.open_store):
        sig = inspect.signature(fn)
        assert sig.return_annotation is not inspect.Signature.empty, fn
        assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values()), fn


def test_observations_are_typed_units() -> None:
    from konbini_ld.mapping.prepare import prepare

    o = prepare(konbini_ld.Response(SEED.read_text(), "seed.json"))
    assert o.ok and AUDIO_IRI in o.entities
    assert [t.value for t in o.values(AUDIO_IRI, "https://www.w3.org/ns/activitystreams#name")] == ["original sound"]
    assert len(list(o.triples())) == o.count
