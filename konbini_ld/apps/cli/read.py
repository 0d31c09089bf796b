"""Commands that read the graph: ``query``, ``plot``, ``queries``, ``export``, ``stats``, ``validate``."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from ...errors import UsageError
from .options import Context, check_stdout, emit, format_option, seconds_type, handle_errors, json_option, open_output, output_option, pass_state

if TYPE_CHECKING:
    from ...query.run import QueryResult


def _parse_params(values: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"-p takes NAME=VALUE, got {item!r}")
        params[name.lstrip("?$")] = value
    return params


@click.command()
@click.argument("name", required=False, metavar="NAME|FILE.rq")
@click.option("-e", "--expr", "inline", metavar="SPARQL", help="Inline SPARQL instead of a named query or file.")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="Bind ?NAME to VALUE (as an RDF term).")
@format_option("results", "table", "graph", default="table",
               help="Output format (a graph format for CONSTRUCT and DESCRIBE; parquet for a DataFrame file).")
@output_option
@click.option("--plot", "plot_to", metavar="FILE.png|svg|pdf",
              help="Also draw the result over time (a result with a time column, like history's).")
@click.option("--raw", is_flag=True,
              help="csv, tsv: write every value exactly, also one a spreadsheet would run as a formula (by default "
                   "such a value gets a leading ').")
@click.option("--timeout", type=seconds_type(), default=None, metavar="SECONDS",
              help="Stop the query (and its output) after SECONDS, exit 1 (default: no limit; Ctrl-C stops it "
                   "at any time).")
@pass_state
@handle_errors
def query(state: Context, name: str | None, inline: str | None, params: tuple[str, ...], fmt: str,
          output: str | None, plot_to: str | None, raw: bool, timeout: float | None) -> None:
    """Run a named query, a .rq file, or inline SPARQL (-e).

    Parameters are bound as RDF terms, never pasted into the query text: a named
    query's header declares each one's type; for inline queries <…> is an IRI,
    an absolute http(s) URL is an IRI, anything else a string.

    csv and tsv are safe to open in a spreadsheet: a value that would run as a
    formula (=…, +…, -…, @…) gets a leading ' (--raw writes values exactly).
    table shows control characters as escapes (\\x1b), never sends them.

    \b
    Examples:
      konbini-ld query top-audios
      konbini-ld query audios-by-creator -p creator=https://www.tiktok.com/@khaby.lame
      konbini-ld query -e 'SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }' -f csv
      konbini-ld query audio -p audio=https://www.tiktok.com/music/original-sound-7611615657754381599 -f turtle
      konbini-ld query creators -f parquet -o creators.parquet
      konbini-ld query trending -p since=7d
      konbini-ld query history -p entity=https://www.tiktok.com/@khaby.lame --plot khaby.png
    """
    from ...query.bounded import within

    if output in (None, "-") and not (plot_to is not None and output is None and fmt == "table"):
        check_stdout()  # (before the evaluation: nobody may be there to read its answer)
    query = _prepare(name, inline, params)  # (a wrong name, file or parameter is said before the store is opened)
    with state.open(read_only=True) as store:
        def work() -> None:
            result = _run(store, query)
            if plot_to is not None:
                _plot(state, result, plot_to)
                if output is None and fmt == "table":
                    return
            with open_output(output) as out:
                result.write(out, fmt, escape_formulas=not raw)

        within(timeout, work)


def _prepare(name: str | None, inline: str | None, params: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
    """The query named, read or given inline, with its parameters bound (usage errors are raised here)."""
    from pathlib import Path

    from ...query.catalog import parse_query_text, resolve_query

    if (name is None) == (inline is None):
        raise UsageError("give a query NAME, a FILE.rq, or -e SPARQL (exactly one)")
    nq = parse_query_text(inline, name="(inline)") if inline is not None else resolve_query(
        Path(name) if name is not None and Path(name).is_file() else str(name))
    return nq, nq.bind(_parse_params(params))


def _run(store: object, query: tuple[Any, dict[str, Any]]) -> QueryResult:
    from ...pipeline.collection import KonbiniStore
    from ...query.run import run_query

    assert isinstance(store, KonbiniStore)
    nq, bound = query
    return store.answer(nq.text, bound) or run_query(store.engine, nq.text, bound, name=nq.name, index=nq.index)


def _plot(state: Context, result: QueryResult, path: str) -> None:
    from ...query.plot import plot as draw

    panels = draw(result, path)
    state.note(f"plotted {panels} series to {path}")


@click.command()
@click.argument("name", required=False, default="history", metavar="[NAME|FILE.rq]")
@click.option("-e", "--expr", "inline", metavar="SPARQL", help="Inline SPARQL instead of a named query or file.")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="Bind ?NAME to VALUE (as an RDF term).")
@click.option("-o", "--output", metavar="FILE.png|svg|pdf", help="Where to draw it (default: NAME.png).")
@pass_state
@handle_errors
def plot(state: Context, name: str, inline: str | None, params: tuple[str, ...], output: str | None) -> None:
    """Draw a query's result over time (by default the history of an entity's counters).

    One panel per counter, each on its own scale. Any query whose result has a
    column of times can be drawn; the format follows the file's suffix.

    \b
    Examples:
      konbini-ld plot history -p entity=https://www.tiktok.com/@khaby.lame -o khaby.png
      konbini-ld plot -p entity=https://www.tiktok.com/music/original-sound-7611615657754381599 -o sound.svg
    """
    from pathlib import Path

    target = output or f"{Path(name).stem if inline is None else 'query'}.png"
    query = _prepare(None if inline is not None else name, inline, params)
    with state.open(read_only=True) as store:
        result = _run(store, query)
        _plot(state, result, target)


@click.command("queries")
@json_option
@handle_errors
def list_queries(as_json: bool) -> None:
    """List the named queries with their descriptions and parameters.

    \b
    Example:
      konbini-ld queries
    """
    from ...query.catalog import named_queries

    qs = named_queries()
    if as_json:
        emit(json.dumps([q.describe() for q in qs.values()], indent=2))
        return
    for q in qs.values():
        emit(f"{q.name}: {q.description or q.title}")
        for p in q.params:
            opt = "" if p.required else " (optional)"
            emit(f"    -p {p.name}=<{p.type}>{opt}  {p.description}")


@click.command()
@format_option("graph", default="turtle", help="RDF format.")
@output_option
@click.option("--inline-context", is_flag=True, help="JSON-LD: embed the two contexts instead of naming their URLs.")
@pass_state
@handle_errors
def export(state: Context, fmt: str, output: str | None, inline_context: bool) -> None:
    """Write the whole graph.

    turtle, nt and rdfxml hold the union of the data, provenance and history graphs; nq
    and trig keep them as named graphs; jsonld is compacted with the API's two
    contexts, so it reads like the API. rdfxml cannot carry the characters XML 1.0 has
    no room for (U+0000, U+FFFE…): a graph holding one is refused, the character named,
    and no file is left.

    \b
    Examples:
      konbini-ld export -f turtle -o graph.ttl
      konbini-ld export -f jsonld > graph.jsonld
    """
    with state.open(read_only=True) as store, open_output(output) as out:
        store.export(out, fmt, inline_context=inline_context)


@click.command()
@json_option
@pass_state
@handle_errors
def stats(state: Context, as_json: bool) -> None:
    """Audios, persons, videos, triples, last fetch, credits spent, history points.

    \b
    Example:
      konbini-ld stats --json
    """
    from ...urls import redact

    with state.open(read_only=True) as store:
        s = store.stats()
    if as_json:
        emit(json.dumps(s.as_dict(), indent=2))
        return
    rows = [
        ("audios", s.audios), ("persons", s.persons), ("videos", s.videos), ("triples", s.triples),
        ("responses", s.responses), ("archived", s.archived), ("last observed", s.last_observed or "never"),
        ("last fetch", s.last_fetch or "never"), ("credits spent", s.credits_spent), ("history points", s.points),
        ("store", redact(str(state.location))),
    ]
    if s.unapplied:
        rows.insert(6, ("not yet in graph", f"{s.unapplied} (archived; applied when the store is next opened for writing)"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        emit(f"{k.ljust(width)}  {v}")


@click.command()
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "turtle"]), default="text", show_default=True,
              help="turtle: the machine-readable SHACL report.")
@click.option("--shapes", type=click.Path(exists=True, dir_okay=False),
              help="Validate against these shapes (Turtle) instead.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Results shown in text form.")
@click.option("--workers", type=click.IntRange(1, 256), metavar="N",
              help="Processes sharing out a large graph's nodes (default: one per CPU, at most 8; 1: one).")
@pass_state
@handle_errors
def validate(state: Context, fmt: str, shapes: str | None, limit: int, workers: int | None) -> None:
    """Check the graph against the bundled SHACL shapes (Audio, Person, Video, Image).

    Exits 0 when the graph has no violations, 1 when it has (warnings and
    information are reported, and fail nothing). The Turtle report follows
    SHACL: sh:conforms is false whenever there is any result, warnings included.

    \b
    Examples:
      konbini-ld validate
      konbini-ld validate --format turtle > report.ttl
    """
    from ...query.validate import iter_lines
    from ...query.validate import validate as run_validate

    with state.open(read_only=True) as store:
        report = run_validate(store, shapes=shapes, workers=workers)
    if fmt == "turtle":
        emit(report.turtle())
    else:
        for line in iter_lines(report, limit):
            emit(line)
    state.note(report.summary())
    if not report.ok:
        sys.exit(1)
