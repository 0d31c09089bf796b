"""The index answers a named query only when the query says so itself: a ``# projection:`` line
and the very text that projection was written for. Any edit runs on the graph as written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_search_index import GROWING, assert_same_growth, rows_of

from konbini_ld import open_store
from konbini_ld.apps.cli import main
from konbini_ld.query.catalog import get_named_query, named_queries
from konbini_ld.query.run import run_query
from konbini_ld.sources.konbini.corpus import corpus_lines
from konbini_ld.store.index.projections import PROJECTIONS, declared

#: An edit of each projected query that changes what it answers on the test store.
EDITS = {
    "top-audios": ("LIMIT 100", "LIMIT 3"),
    "creators": ("", "LIMIT 2\n"),  # (appended)
    "verified-creators": ("", "LIMIT 1\n"),
    "original-vs-licensed": ("", "LIMIT 1\n"),
    "trending": ("LIMIT 1000", "LIMIT 2"),
    "rising-creators": ("LIMIT 1000", "LIMIT 2"),
    "recent-observations": ("LIMIT 50", "LIMIT 1"),
    "search": ("LIMIT 100", "LIMIT 1"),
}
PARAMS: dict[str, dict[str, Any]] = {"search": {"text": "night"}}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Audios observed on three days (the series grow), with their creators."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(line.rstrip("\n") + "\n" for line in corpus_lines(300, observations=3)))
    store = tmp_path_factory.mktemp("projections") / "store"
    with open_store(store) as s:
        s.load(path)
    return store


def test_every_projection_is_declared_by_the_query_it_answers() -> None:
    declaring = {q.projection: q for q in named_queries().values() if q.projection}
    assert set(declaring) == set(PROJECTIONS)
    for name, query in declaring.items():
        digest = hashlib.sha256(query.text.encode("utf-8")).hexdigest()
        assert PROJECTIONS[name].digest == digest, (
            f"queries/{query.name}.rq changed: its projection answers the text it was written for "
            f"(record digest {digest} in konbini_ld/store/index/projections.py once the projection "
            "answers the new text)")
        assert declared(query.text) is PROJECTIONS[name]


@pytest.mark.parametrize("name", sorted(EDITS))
def test_each_projection_gives_its_querys_answer(store_dir: Path, name: str) -> None:
    query = get_named_query(name)
    with open_store(store_dir, read_only=True) as store:
        bound = query.bind(PARAMS.get(name, {}))
        projected = store.answer(query.text, bound)
        assert projected is not None, name
        plain = run_query(store.engine, query.text, bound)
        got, expected = rows_of(projected), rows_of(plain)
        assert projected.variables == plain.variables
        assert got, name
        if name in GROWING:
            assert_same_growth(got, expected, name)
        elif name == "recent-observations":  # LIMIT 50 takes any of the activities tied at the 50th time
            unlimited = set(rows_of(run_query(store.engine, query.text.replace("LIMIT 50", "LIMIT 100000"), bound)))
            assert set(got) <= unlimited and {r[0] for r in got} == {r[0] for r in expected}
        elif name in ("top-audios", "creators", "verified-creators", "search"):
            # rows the query's ORDER BY leaves tied may come in any order (and at its LIMIT, any of them)
            assert len(got) == len(expected) and len({r[0] for r in got}) == len({r[0] for r in expected})
        else:
            assert got == expected, name


@pytest.mark.parametrize("name", sorted(EDITS))
def test_an_edited_query_runs_as_written(store_dir: Path, tmp_path: Path, name: str) -> None:
    query = get_named_query(name)
    old, new = EDITS[name]
    assert old in query.text
    edited = query.text.replace(old, new, 1) if old else query.text.rstrip("\n") + "\n" + new
    with open_store(store_dir, read_only=True) as store:
        assert store.answer(edited, query.bind(PARAMS.get(name, {}))) is None  # not the text it was written for
        assert store.answer(query.text + "\n# a comment\n", query.bind(PARAMS.get(name, {}))) is None
        expected = run_query(store.engine, edited, query.bind(PARAMS.get(name, {}))).records()
    path = tmp_path / f"{name}.rq"
    path.write_text(edited)
    args = [f"-p{k}={v}" for k, v in PARAMS.get(name, {}).items()]
    r = CliRunner().invoke(main, ["--store", str(store_dir), "query", str(path), *args, "-f", "json"])
    assert r.exit_code == 0, r.stderr
    answered = json.loads(r.stdout)["results"]["bindings"]
    assert len(answered) == len(expected)  # the edit's meaning, not the projection's
    assert len(answered) < len(run_query_plain(store_dir, query.text, PARAMS.get(name, {})))


def run_query_plain(store_dir: Path, text: str, params: dict[str, Any]) -> list[Any]:
    with open_store(store_dir, read_only=True) as store:
        return list(run_query(store.engine, text, get_named_query_bind(text, params)).rows())


def get_named_query_bind(text: str, params: dict[str, Any]) -> dict[str, Any]:
    from konbini_ld.query.catalog import parse_query_text

    return parse_query_text(text, name="q").bind(params)


def test_a_query_text_without_a_declaration_is_never_projected(store_dir: Path) -> None:
    """The text of a shipped query with its header taken out (as pasted into ``-e``): on the graph."""
    query = get_named_query("top-audios")
    body = "\n".join(line for line in query.text.splitlines() if not line.startswith("# projection"))
    with open_store(store_dir, read_only=True) as store:
        assert store.answer(body, {}) is None


def test_a_view_opened_before_a_writers_batches_answers_of_its_own_state(tmp_path: Path) -> None:
    """A read-only store held while a writer goes on: the index beside the graph moves on with
    the writer, the view does not. Its named queries answer of the graph it reads, as its plain
    queries do, never of the index's later state."""
    from konbini_ld.sources.konbini.corpus import corpus_lines as lines

    store_dir = tmp_path / "store"
    first, later = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("".join(lines(30)), encoding="utf-8")
    later.write_text("".join(list(lines(60))[30:]), encoding="utf-8")
    with open_store(store_dir) as writer:
        writer.load([first])
    query = get_named_query("top-audios")
    with open_store(store_dir, read_only=True) as view:
        before = rows_of(run_query(view.engine, query.text, {}))
        with open_store(store_dir) as writer:  # (another writer, while the view is held)
            writer.load([later])
        answered = rows_of(view.run_named("top-audios"))
        assert sorted(answered) == sorted(before) and {r[0] for r in before} == {r[0] for r in answered}
    with open_store(store_dir, read_only=True) as fresh:  # (a view opened now reads the later state)
        now = rows_of(fresh.run_named("top-audios"))
        assert len({r[0] for r in now}) == 60 and sorted(now) == sorted(rows_of(run_query(fresh.engine, query.text, {})))

