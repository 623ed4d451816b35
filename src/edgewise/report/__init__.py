"""Results as JSON with one schema (see `edgewise.report.results`), rich tables, PNG plots."""

from edgewise.report.plots import bar_plot, line_plot
from edgewise.report.results import SCHEMA_VERSION, environment, jsonable, read_result, write_result
from edgewise.report.tables import output_console, print_table, table

__all__ = [
    "output_console",
    "SCHEMA_VERSION",
    "bar_plot",
    "environment",
    "jsonable",
    "line_plot",
    "print_table",
    "read_result",
    "table",
    "write_result",
]
