"""`edgewise demo`: the main job, a short run on the default data that shows what the toolkit does.

Until the early-exit pillar takes it over, it trains a small resnet briefly on
Fashion-MNIST (scikit-learn's digits when Fashion-MNIST is not installed) and
prints its accuracy beside its measured cost.
"""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from edgewise import cost, data, engine, models, report
from edgewise.cli.app import app, console
from edgewise.errors import DataError


def load_default_data(limit: int | None) -> data.Splits:
    """Fashion-MNIST when installed, else the bundled digits resized to 28x28."""
    try:
        return data.load("fashion-mnist", limit=limit)
    except DataError as exc:
        console.print(f"[yellow]Fashion-MNIST not available ({exc}); using digits.[/]")
        return data.load("digits", size=28, limit=limit)


@app.command()
def demo(
    epochs: int = typer.Option(2, help="Training epochs."),
    limit: int = typer.Option(12000, help="Cap on each split's size, to keep the demo short."),
    out: Path = typer.Option(Path("runs/demo"), help="Run folder."),
) -> None:
    """Train a small resnet briefly and print its accuracy and cost."""
    splits = load_default_data(limit)
    model = models.build("resnet", splits.num_classes, splits.input_shape)
    config = engine.TrainConfig(epochs=epochs, lr=0.1, schedule="onecycle", seed=0)
    console.print(f"Training resnet-8 on {splits.name} ({len(splits.train)} images, {epochs} epochs)")
    engine.fit(model, splits, config, run_dir=out)
    test = engine.evaluate(model, splits.test)
    example = splits.test.tensors[0][:1]
    macs = cost.count_macs(model, example)
    batch = splits.test.tensors[0][:256]
    model.eval()
    with torch.inference_mode():
        timing = cost.time_it(lambda: model(batch), warmup=3, repeats=10)
    rows = [
        ["test accuracy", f"{100 * test['accuracy']:.2f} %"],
        ["MACs / image", f"{macs.total / 1e6:.2f} M"],
        ["parameters", f"{macs.params_total / 1e3:.1f} k"],
        [f"latency, batch 256 ({timing.threads} threads)", f"{1e3 * timing.median_s:.1f} ms"],
    ]
    report.print_table(f"edgewise demo: resnet on {splits.name}", ["metric", "value"], rows)
    console.print(f"Run folder: {out}")
