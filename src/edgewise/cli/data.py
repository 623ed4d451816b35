"""`edgewise data list` and `edgewise data show NAME`: what can be loaded, and what it holds."""

from __future__ import annotations

from pathlib import Path

import torch
import typer
from rich.table import Table

from edgewise import data
from edgewise.cli.app import app, console

data_app = typer.Typer(help="List and inspect the datasets edgewise loads.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("list")
def list_command() -> None:
    """List the datasets, and where each is found on this machine."""
    table = Table(title="datasets")
    for column in ("name", "description", "found"):
        table.add_column(column)
    for name in data.list_datasets():
        reader = data.DATASETS[name]
        found = reader.locate()
        table.add_row(
            name, reader.description, found or "[yellow]not found[/] (--root or $EDGEWISE_DATA)"
        )
    console.print(table)


@data_app.command("show")
def show(
    name: str = typer.Argument(..., help="Dataset name (see 'edgewise data list')."),
    root: Path | None = typer.Option(None, "--root", help="Folder holding the dataset's files."),
) -> None:
    """Load a dataset and print its split sizes, input shape and class counts."""
    splits = data.load(name, root=root)
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    summary = Table(title=name)
    summary.add_column("property")
    summary.add_column("value", justify="right")
    for split, dataset in parts.items():
        summary.add_row(f"{split} images", str(len(dataset)))
    summary.add_row("input shape (C, H, W)", " x ".join(map(str, splits.input_shape)))
    summary.add_row("classes", str(splits.num_classes))
    summary.add_row("found in", str(data.DATASETS[name].locate(root)))
    console.print(summary)

    counts = {
        split: torch.bincount(dataset.tensors[1], minlength=splits.num_classes).tolist()
        for split, dataset in parts.items()
    }
    per_class = Table(title=f"{name}: images per class")
    per_class.add_column("label", justify="right")
    per_class.add_column("class")
    for split in parts:
        per_class.add_column(split, justify="right")
    for label, class_name in enumerate(splits.class_names):
        per_class.add_row(str(label), class_name, *(str(counts[s][label]) for s in parts))
    console.print(per_class)
