"""`edgewise models list`: the model zoo, one line per family."""

from __future__ import annotations

import typer
from rich.table import Table

from edgewise import models
from edgewise.cli.app import app, console

models_app = typer.Typer(help="List the model zoo.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def list_command() -> None:
    """List the models 'edgewise cost' and the pillars build, with their default parameters."""
    table = Table(title="models (every one also takes --width, default 1.0)")
    for column in ("name", "description", "defaults"):
        table.add_column(column)
    for name in models.list_models():
        defaults = ", ".join(f"{k}={v}" for k, v in models.model_defaults(name).items())
        table.add_row(name, models.describe(name), defaults or "-")
    console.print(table)
