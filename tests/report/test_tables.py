"""Tables: the given columns and rows, floats shortened."""

from rich.console import Console

from edgewise.report import print_table, table


def test_table_has_the_columns_and_rows():
    result = table("title", ["metric", "value"], [["accuracy", 0.912345678], ["params", 75_000]])
    assert [c.header for c in result.columns] == ["metric", "value"]
    assert result.row_count == 2
    assert list(result.columns[1].cells) == ["0.9123", "75000"]


def test_print_table_writes_to_the_console():
    console = Console(record=True, width=80)
    print_table("edgewise", ["a", "b"], [["x", 1.5]], console=console)
    text = console.export_text()
    assert "edgewise" in text and "x" in text and "1.5" in text
