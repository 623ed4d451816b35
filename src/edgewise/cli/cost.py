"""`edgewise cost MODEL --data NAME`: MACs, parameters and activation memory, per layer and in total."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from torch import nn

from edgewise import cost, data, models
from edgewise.cli.app import app, console


def own(model: nn.Module, inclusive: dict[str, int]) -> dict[str, int]:
    """Per-module values without those of the module's submodules."""
    result = {}
    for name, module in model.named_modules():
        if name:
            children = sum(inclusive.get(f"{name}.{child}", 0) for child, _ in module.named_children())
            result[name] = inclusive.get(name, 0) - children
    return result


def millions(count: int) -> str:
    return f"{count / 1e6:,.3f} M"


def mebibytes(count: int) -> str:
    return f"{count / 2**20:,.3f} MiB"


@app.command("cost")
def cost_command(
    model_name: str = typer.Argument(..., metavar="MODEL", help="Model name (see 'edgewise models list')."),
    data_name: str = typer.Option(..., "--data", help="Dataset that fixes the input shape and classes."),
    width: float = typer.Option(1.0, "--width", help="Width multiplier."),
    depth: int | None = typer.Option(None, "--depth", help="Depth, for the models that take one."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Batch size for activation memory."),
    root: Path | None = typer.Option(None, "--root", help="Folder holding the dataset's files."),
) -> None:
    """Print MACs per image, parameters and saved activations (analytic and measured) per layer."""
    models.model_defaults(model_name)  # an unknown name fails before the data is read
    splits = data.load(data_name, root=root, limit=max(batch_size, 100))
    kwargs = {} if depth is None else {"depth": depth}
    model = models.build(model_name, splits.num_classes, splits.input_shape, width, **kwargs)
    # copies: a slice would share (and count) the storage of the whole split
    images, labels = (t[:batch_size].clone() for t in splits.test.tensors)
    macs = cost.count_macs(model, images[:1])
    analytic = cost.analytic_activation_bytes(model, images)
    measured = cost.saved_activation_bytes(model, images, labels)
    columns = {
        "MACs / image": own(model, macs.per_module),
        "params": own(model, macs.params_per_module),
        "saved, analytic": analytic,
        "saved, measured": own(model, measured.per_module),
    }
    shape = "x".join(map(str, splits.input_shape))
    table = Table(
        title=f"{model_name} on {data_name} ({shape}, {splits.num_classes} classes)",
        caption=f"activation memory for a batch of {len(images)} in training mode; measured "
        "bytes are deduplicated by storage and the total includes the loss",
    )
    table.add_column("layer")
    table.add_column("type")
    for column in columns:
        table.add_column(column, justify="right")
    formats = (millions, str, mebibytes, mebibytes)
    for name, module in model.named_modules():
        values = [column.get(name, 0) for column in columns.values()]
        if name and any(values):
            table.add_row(name, type(module).__name__,
                          *(fmt(v) if v else "" for fmt, v in zip(formats, values, strict=True)))
    table.add_section()
    totals = (macs.total, macs.params_total, sum(analytic.values()), measured.total)
    table.add_row("total", "", *(fmt(v) for fmt, v in zip(formats, totals, strict=True)), style="bold")
    console.print(table)
