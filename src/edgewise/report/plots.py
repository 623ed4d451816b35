"""PNG plots drawn with matplotlib's Agg canvas (no pyplot, no display, no global backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def line_plot(
    path: str | Path,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str,
) -> Path:
    """Save one line per ``name: (xs, ys)`` as a PNG at `path`; return the path."""
    figure, axes = _figure()
    for name, (xs, ys) in series.items():
        axes.plot(list(xs), list(ys), marker="o", markersize=3, label=name)
    return _save(figure, axes, path, xlabel, ylabel, title, legend=len(series) > 1)


def bar_plot(path: str | Path, bars: Mapping[str, float], ylabel: str, title: str) -> Path:
    """Save one bar per ``name: value`` as a PNG at `path`; return the path."""
    figure, axes = _figure()
    axes.bar(list(bars), list(bars.values()), color="tab:blue")
    axes.tick_params(axis="x", labelrotation=30)
    return _save(figure, axes, path, "", ylabel, title, legend=False)


def _figure() -> tuple[Figure, Any]:
    """A figure drawn by the Agg canvas: no pyplot, no global backend, no display needed."""
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(
    figure: Figure, axes: Any, path: str | Path, xlabel: str, ylabel: str, title: str, legend: bool
) -> Path:
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(alpha=0.3)
    if legend:
        axes.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=120)
    return path
