"""`edgewise demo`: the main job, a short run on the default data that shows what the toolkit does.

It cuts a resnet-8 into an early-exit network with three exits (after the stem, layer1
and layer2, grid-linear heads), trains it twice from the same start, with `joint` and with
`cgt-hard`, on a subset of Fashion-MNIST (scikit-learn's digits when Fashion-MNIST is not
installed), calibrates thresholds on the validation split for 25, 50 and 75 % of the
full network's MACs, and prints one table of test accuracies beside the oracle's. The
run folder gets ``frontier.png``, ``result.json`` and both networks. It takes a few
minutes on two cores; ``--limit`` and ``--epochs`` trade time for accuracy.
"""

from __future__ import annotations

import copy
from pathlib import Path

import typer

from edgewise import data, engine, exits, models, report
from edgewise.cli.app import app, console
from edgewise.errors import DataError

STRATEGIES = ("joint", "cgt-hard")
EXITS = ("stem", "layer1", "layer2")
BUDGETS = (0.25, 0.5, 0.75)


def load_default_data(limit: int | None) -> data.Splits:
    """Fashion-MNIST when installed, else the bundled digits resized to 28x28."""
    try:
        return data.load("fashion-mnist", limit=limit)
    except DataError as exc:
        console.print(f"[yellow]Fashion-MNIST not available ({exc}); using digits.[/]")
        return data.load("digits", size=28, limit=limit)


@app.command()
def demo(
    epochs: int = typer.Option(3, help="Training epochs of each strategy."),
    limit: int = typer.Option(10000, help="Cap on each split's size, to keep the demo short."),
    out: Path = typer.Option(Path("runs/demo"), help="Run folder."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Train an early-exit resnet with two strategies and compare them at budgets."""
    splits = load_default_data(limit)
    engine.seed_everything(0)
    model = models.build("resnet", splits.num_classes, splits.input_shape)
    start = exits.EarlyExitNetwork.from_model(model, list(EXITS), head="grid-linear")
    config = engine.TrainConfig(epochs=epochs, seed=0, device=device,
                                **engine.recipe("resnet", epochs))
    console.print(
        f"edgewise demo: resnet-8 with exits after {', '.join(EXITS)} on {splits.name}, trained "
        f"on a subset of {len(splits.train)} images for {epochs} epochs per strategy (a short "
        f"run: 'edgewise exits train' trains on everything). Thresholds are calibrated on "
        f"{len(splits.val)} validation images, accuracies measured on {len(splits.test)} test images."
    )
    results, series = {}, {}
    for strategy in STRATEGIES:
        console.print(f"Training with {strategy} ...")
        net = copy.deepcopy(start)
        exits.train(net, splits, strategy, config, progress=True)
        net.cpu().eval()
        net.policy = exits.calibrate(net, splits.val, budget=0.5)
        result = exits.evaluate(net, splits.test, val=splits.val, budgets=BUDGETS)
        exits.save(net, out / f"{strategy}.safetensors")
        results[strategy] = result
        series[strategy] = ([p["cost"] for p in result.frontier],
                            [p["accuracy"] for p in result.frontier])
        series[f"{strategy} oracle"] = ([result.oracle["cost"]], [result.oracle["accuracy"]])
    report.line_plot(out / "frontier.png", series, xlabel="MACs (fraction of the full network)",
                     ylabel="test accuracy", title=f"Early exits on {splits.name}")
    report.write_result(out / "result.json", {
        "data": splits.name, "train_images": len(splits.train), "epochs": epochs,
        "exits": list(EXITS), "results": {k: v.to_dict() for k, v in results.items()},
    }, kind="demo")
    print_comparison(results, splits.name)
    console.print(f"Frontier plot: {out / 'frontier.png'}; run folder: {out}")


def print_comparison(results: dict[str, exits.ExitEvaluation], data_name: str) -> None:
    """One row per strategy: each exit's accuracy, accuracy at each budget, the oracle."""
    first = next(iter(results.values()))
    columns = ["strategy"]
    columns += [f"{name}\n{100 * c:.0f} %" for name, c in zip(first.exit_names, first.exit_costs,
                                                              strict=True)]
    columns += [f"budget\n{100 * b:.0f} %" for b in BUDGETS] + ["oracle\n(cost)"]
    rows = []
    for strategy, result in results.items():
        row = [strategy] + [f"{100 * a:.2f}" for a in result.exit_accuracy]
        row += ["-" if result.budgets[f"{b:g}"] is None
                else f"{100 * result.budgets[f'{b:g}']['accuracy']:.2f}" for b in BUDGETS]
        row.append(f"{100 * result.oracle['accuracy']:.2f}\n({100 * result.oracle['cost']:.0f} %)")
        rows.append(row)
    report.print_table(f"Test accuracy (%) on {data_name}: each exit (MACs to reach it), at a "
                       "budget of the full MACs (thresholds from val), oracle", columns, rows)
