"""The rate and peak-RSS plot of the scale sections (bench/scale.svg, bench/wscale.svg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def rate_and_rss(samples: list[dict[str, Any]], out: Path, title: str, xlabel: str,
                 marks: list[int] | None = None) -> None:
    """Load rate (per window between samples) and peak RSS against responses loaded; ``marks``:
    where vertical lines go (a new day)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, rates, rss = [], [], []
    previous = {"n": 0, "t": 0.0}
    for s in sorted(samples, key=lambda s: (s["n"], s["t"])):
        if s["n"] > previous["n"] and s["t"] > previous["t"]:
            xs.append(s["n"])
            rates.append((s["n"] - previous["n"]) / (s["t"] - previous["t"]))
            rss.append(s["peak"])
        previous = s
    fig, left = plt.subplots(figsize=(8, 4.5))
    left.plot(xs, rates, color="tab:blue", label="ingest rate (docs/s)")
    left.set_xlabel(xlabel)
    left.set_ylabel("docs/s", color="tab:blue")
    left.set_ylim(bottom=0)
    for x in marks or []:
        left.axvline(x, color="grey", linewidth=0.5)
    right = left.twinx()
    right.plot(xs, rss, color="tab:red", label="peak RSS (MiB)")
    right.axhline(500, color="tab:red", linestyle=":", linewidth=1)
    right.set_ylabel("peak RSS (MiB)", color="tab:red")
    right.set_ylim(bottom=0)
    left.set_title(title)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
