"""Rich tables for the end of a command or a benchmark."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A rich table; floats are shown with 4 significant digits, other cells with `str`."""
    result = Table(title=title)
    for index, column in enumerate(columns):
        result.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        result.add_row(*(f"{cell:.4g}" if isinstance(cell, float) else str(cell) for cell in row))
    return result


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    console: Console | None = None,
) -> None:
    """Print `table(title, columns, rows)` to `console` (default: stdout)."""
    (console or Console()).print(table(title, columns, rows))
