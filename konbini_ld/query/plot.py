"""Query results drawn over time: a counter's history as a PNG, SVG or PDF (matplotlib, the
``plot`` extra).

A result is drawn when it has a time column (the query's ``# index:`` column, else the
first column of times). Rows shaped like ``history``'s (``counter`` and ``value``) give one
series per counter; otherwise every numeric column is a series. Each series gets its own
panel and scale: a follower count in the hundreds of millions and a following count in the
tens do not share an axis.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import ExportError, UsageError

if TYPE_CHECKING:
    from .run import QueryResult

__all__ = ["FORMATS", "Series", "plot", "series_of"]

#: What a plot can be written as, by file suffix.
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
#: Panels drawn at most (the series with the most points first).
MAX_PANELS = 12

Series = dict[str, list[tuple[datetime, float]]]


def _local(iri: str) -> str:
    return iri.rstrip("/#").rsplit("#", 1)[-1].rsplit("/", 1)[-1] or iri


def _number(value: object) -> bool:
    """A value a panel can draw: an int, float or Decimal that is finite (NaN and infinities are skipped)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond a double
        return False


def _time(value: object) -> datetime | None:
    """A time to draw at: a naive time is UTC (as konbini-ld writes every time)."""
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _time_column(result: QueryResult, records: list[dict[str, Any]]) -> str:
    candidates = ([result.index] if result.index else []) + result.variables
    for column in candidates:
        values = [r[column] for r in records if r.get(column) is not None]
        if values and all(isinstance(v, datetime) for v in values):
            return column
    raise UsageError("nothing to plot: the result has no column of times (try the history query)")


def series_of(result: QueryResult) -> tuple[str, Series, str | None]:
    """The time column, the series (name → time-ordered points), and what they are about
    (the single entity of a ``history`` result, else ``None``).

    :raises UsageError: not a table, no time column, or nothing numeric to draw.
    """
    if result.kind != "SELECT":
        raise UsageError(f"an {result.kind} result has no rows to plot" if result.kind == "ASK"
                         else f"a {result.kind} result has no rows to plot")
    records = result.records()
    if not records:
        raise UsageError("nothing to plot: the query returned no rows")
    time = _time_column(result, records)
    out: Series = {}
    subject: str | None = None
    if "counter" in result.variables and "value" in result.variables:
        entities = {str(r["entity"]) for r in records if r.get("entity") is not None} if "entity" in result.variables else set()
        subject = next(iter(entities)) if len(entities) == 1 else None
        for r in records:
            at, counter, value = _time(r[time]), r["counter"], r["value"]
            if at is None or counter is None or not _number(value):
                continue
            assert isinstance(value, (int, float, Decimal))
            name = _local(str(counter))
            if len(entities) > 1 and r.get("entity") is not None:
                name = f"{_local(str(r['entity']))} {name}"
            out.setdefault(name, []).append((at, float(value)))
    else:
        for column in result.variables:
            if column == time:
                continue
            points: list[tuple[datetime, float]] = []
            for r in records:
                at, value = _time(r[time]), r[column]
                if at is not None and _number(value):
                    assert isinstance(value, (int, float, Decimal))
                    points.append((at, float(value)))
            if points:
                out[column] = points
    if not out:
        raise UsageError("nothing to plot: no numeric values beside the times")
    for points in out.values():
        points.sort(key=lambda p: p[0])
    return time, out, subject


def plot(result: QueryResult, output: str | os.PathLike[str] | IO[bytes], *, format: str | None = None,
         title: str | None = None) -> int:
    """Draw ``result`` over time into ``output`` (a path whose suffix names the format, or a
    binary stream with ``format``). Returns the number of panels drawn.

    The picture is drawn in memory first: a result that cannot be drawn leaves no file behind.

    :raises UsageError: nothing to plot, an unknown format, a file that cannot be made, or
        matplotlib is not installed.
    :raises ExportError: the values cannot be drawn (times or values beyond what matplotlib
        places on an axis), or the file cannot be written (a full disk).
    """
    fmt = format or (FORMATS.get(Path(os.fspath(output)).suffix.lower()) if isinstance(output, (str, os.PathLike)) else None)
    if fmt is None or fmt not in FORMATS.values():
        raise UsageError(f"plot to a file ending in {', '.join(FORMATS)} (or give format=)")
    time, series, subject = series_of(result)
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the extra is installed for tests
        raise UsageError("plotting needs matplotlib: pip install 'konbini-ld[plot]'") from exc
    names = sorted(series, key=lambda n: (-len(series[n]), n))[:MAX_PANELS]
    names.sort()
    picture = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # an overflow in the tick arithmetic is a failure
            _draw(names, series, time, title or (f"History of {subject}" if subject else "History"), picture, fmt)
    except (ValueError, OverflowError, ArithmeticError, RuntimeWarning) as exc:  # matplotlib's date and tick
        raise ExportError(f"cannot draw these values: {exc}") from exc  # arithmetic (years 1 and 9999, ±1e308)
    _write(output, picture.getvalue())
    return len(names)


def _draw(names: list[str], series: Series, time: str, title: str, out: IO[bytes], fmt: str) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(9, 1.2 + 2.0 * len(names)), layout="constrained")
    axes: Any = figure.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        xs = [p[0] for p in series[name]]
        ys = [p[1] for p in series[name]]
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.6, color="#1f6feb")
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.4g}"))
        ax.grid(True, alpha=0.3)
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes[-1].set_xlabel(time)
    figure.suptitle(title)
    figure.savefig(out, format=fmt)


def _write(output: str | os.PathLike[str] | IO[bytes], data: bytes) -> None:
    if not isinstance(output, (str, os.PathLike)):
        output.write(data)
        return
    path = os.fspath(output)
    try:
        fh = open(path, "wb")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with fh:
            fh.write(data)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc
