"""A counter's history as the query page draws it (``web/app.js``, ``renderChart``), written as
SVG on the server: one panel per counter, each on its own scale, with the same geometry and
classes, so that an entity's page (served or published as a static file) shows it without a
script."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

__all__ = ["chart_svg"]

_W, _H, _L, _R, _T, _B = 720, 150, 110, 20, 24, 28


def _ms(at: str) -> float | None:
    try:
        return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


def _number(y: float) -> str:
    """As the page writes numbers: thousands separated from 100 up, else four significant digits.

    >>> _number(1234567.0), _number(85.0), _number(0.12345)
    ('1,234,567', '85', '0.1235')
    """
    if abs(y) >= 100:
        return f"{round(y):,}"
    return f"{float(f'{y:.4g}'):g}"


def _day(ms: float) -> str:
    """As the page writes times: UTC, to the minute.

    >>> _day(0.0)
    '1970-01-01 00:00'
    """
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def chart_svg(series: dict[str, list[tuple[str, float]]]) -> tuple[str, int]:
    """The panels (SVG markup) for the series with two points or more, and how many there are.

    :param series: counter name → [(ISO time, value)], oldest first.
    """
    points = {name: sorted((t, v) for at, v in values if (t := _ms(at)) is not None)
              for name, values in series.items()}
    points = {name: p for name, p in points.items() if len(p) >= 2}
    if not points:
        return "", 0
    times = [t for p in points.values() for t, _ in p]
    t0, t1 = min(times), max(times)

    def x(t: float) -> float:
        return _L + ((_W - _L - _R) / 2 if t1 == t0 else (t - t0) / (t1 - t0) * (_W - _L - _R))

    panels = []
    for name in sorted(points):
        p = points[name]
        ys = [v for _, v in p]
        lo, hi = min(ys), max(ys)
        if lo == hi:
            lo, hi = lo - 1, hi + 1

        def y(v: float, lo: float = lo, hi: float = hi) -> float:
            return _T + (1 - (v - lo) / (hi - lo)) * (_H - _T - _B)

        n = escape(name)
        parts = [
            f'<svg class="panel" viewBox="0 0 {_W} {_H}" role="img" data-series="{n}" '
            f'aria-label="{n} over time" xmlns="http://www.w3.org/2000/svg">',
            f'<text x="4" y="16" class="name">{n}</text>',
            f'<line x1="{_L}" y1="{_H - _B}" x2="{_W - _R}" y2="{_H - _B}" class="axis"/>',
            f'<line x1="{_L}" y1="{_T}" x2="{_L}" y2="{_H - _B}" class="axis"/>',
            f'<text x="{_L - 6}" y="{y(hi) + 4:.1f}" class="tick" text-anchor="end">{_number(hi)}</text>',
            f'<text x="{_L - 6}" y="{y(lo) + 4:.1f}" class="tick" text-anchor="end">{_number(lo)}</text>',
            f'<text x="{_L}" y="{_H - 8}" class="tick">{_day(t0)}</text>',
            f'<text x="{_W - _R}" y="{_H - 8}" class="tick" text-anchor="end">{_day(t1)}</text>',
            '<polyline class="line" points="' + " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in p) + '"/>',
        ]
        for t, v in p:
            parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3" class="dot">'
                         f"<title>{_day(t)}: {_number(v)}</title></circle>")
        parts.append("</svg>")
        panels.append("".join(parts))
    return "\n".join(panels), len(panels)
