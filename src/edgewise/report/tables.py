"""Rich tables for the end of a command or a benchmark."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

# Wide enough for the benchmarks' tables when the output is a file or a pipe, where rich
# would otherwise fall back to 80 columns and cut the cells.
PIPE_WIDTH = 160


def output_console(stderr: bool = False) -> Console:
    """A rich console: the terminal's width, or `PIPE_WIDTH` columns when not a terminal
    (``COLUMNS`` set in the environment still wins)."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPE_WIDTH if piped else None)


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
    (console or output_console()).print(table(title, columns, rows))
