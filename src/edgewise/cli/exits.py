"""`edgewise exits train | eval | infer`: early-exit networks from the command line.

``train`` cuts a zoo model at the given exits, trains it with a strategy, calibrates the
thresholds on the validation split for a budget and evaluates on the test split; the run
folder ``runs/<name>/`` gets ``network.safetensors`` + ``network.json``, ``result.json``
and ``frontier.png``. ``eval`` re-evaluates a saved network; ``infer`` runs real dynamic
inference on the test split and times it against the static network.
"""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from edgewise import data, engine, exits, models, report
from edgewise.cli.app import app, console
from edgewise.cli.train import NO_FLIP
from edgewise.errors import ParameterError, UserError
from edgewise.exits.speed import compare, use_fastest_format
from edgewise.exits.strategies import STRATEGIES
from edgewise.registry import lookup

exits_app = typer.Typer(help="Early-exit networks: train, evaluate, run.", no_args_is_help=True)
app.add_typer(exits_app, name="exits")

EXITS_HELP = "Where exits go: module names (layer1,layer2) or fractions of the cost (0.25,0.5)."


def parse_exits(text: str) -> list[str] | list[float]:
    """"layer1,layer2.0" -> names; "0.25,0.5" -> fractions."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        return [float(item) for item in items]
    except ValueError:
        if any(item.replace(".", "", 1).isdigit() for item in items):
            raise ParameterError(f"--exits mixes names and fractions: {text!r}.") from None
        return items


def print_evaluation(result: exits.ExitEvaluation, title: str) -> None:
    """Two tables: every exit, then the calibrated budgets with the policy and the oracle."""
    unit = "MACs" if result.currency == "macs" else "latency"
    rows = [[name, f"{100 * c:.1f} %", f"{100 * a:.2f} %",
             f"{100 * d:.1f} %" if result.exit_distribution else "-"]
            for name, c, a, d in zip(result.exit_names, result.exit_costs, result.exit_accuracy,
                                     result.exit_distribution or [0] * len(result.exit_names),
                                     strict=True)]
    report.print_table(f"{title}: exits", ["exit", f"cost ({unit})", "accuracy", "policy exits"],
                       rows, console=console)
    rows = [[f"{100 * float(b):.0f} %", "-" if r is None else f"{100 * r['accuracy']:.2f} %",
             "-" if r is None else f"{100 * r['cost']:.1f} %"] for b, r in result.budgets.items()]
    if result.accuracy is not None:
        rows.append(["policy", f"{100 * result.accuracy:.2f} %", f"{100 * result.expected_cost:.1f} %"])
    rows.append(["oracle", f"{100 * result.oracle['accuracy']:.2f} %",
                 f"{100 * result.oracle['cost']:.1f} %"])
    report.print_table(f"{title}: test accuracy at a budget (thresholds from val)",
                       ["budget", "accuracy", f"cost ({unit})"], rows, console=console)


@exits_app.command("train")
def train_command(
    model_name: str = typer.Argument(..., metavar="MODEL", help="Zoo model (see 'edgewise models list')."),
    data_name: str = typer.Option(..., "--data", help="Dataset (see 'edgewise data list')."),
    exit_points: str = typer.Option("0.33,0.66", "--exits", help=EXITS_HELP),
    head: str = typer.Option("pool-linear", "--head", help="Exit head: pool-linear or conv-pool-linear."),
    strategy: str = typer.Option("joint", "--strategy", help="Training strategy (joint, cgt-hard, ...)."),
    epochs: int = typer.Option(10, "--epochs", help="Training epochs (per stage for staged strategies)."),
    width: float = typer.Option(1.0, "--width", help="Width multiplier."),
    depth: int | None = typer.Option(None, "--depth", help="Depth, for resnet (8 or 18) and the like."),
    batch_size: int = typer.Option(128, "--batch-size", help="Images per step."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (default: the recipe's)."),
    budget: float = typer.Option(0.5, "--budget", help="Budget of the saved policy, fraction of the full cost."),
    rule: str = typer.Option("max-prob", "--rule", help="Exit policy: max-prob, entropy or patience."),
    cost: str = typer.Option("macs", "--cost", help="Currency of budgets and fractions: macs or latency."),
    init: Path | None = typer.Option(None, "--init", help="Start from a model saved by 'edgewise train'."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initialisation and the data order."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    name: str | None = typer.Option(None, "--name", help="Run name: runs/<name>/."),
    root: Path | None = typer.Option(None, "--root", help="Folder holding the dataset's files."),
    limit: int | None = typer.Option(None, "--limit", help="Cap on each split's size."),
) -> None:
    """Train an early-exit MODEL, calibrate it to a budget, and print its accuracy at budgets."""
    points = parse_exits(exit_points)
    lookup(STRATEGIES, strategy, "exit strategy")  # fails before the data is read
    run_dir = Path("runs") / (name or f"exits-{model_name}-{data_name}-{strategy}")
    if run_dir.exists():
        raise UserError(f"The run folder {run_dir} already exists; pass --name for a new run.")
    recipe = engine.recipe(model_name, epochs) | ({"lr": lr} if lr else {})
    config = engine.TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, device=device,
                                augment=True, hflip=data_name not in NO_FLIP, **recipe)
    splits = data.load(data_name, root=root, limit=limit)
    engine.seed_everything(seed)
    model = load_model(init) if init else models.build(
        model_name, splits.num_classes, splits.input_shape, width,
        **({} if depth is None else {"depth": depth}))
    net = exits.EarlyExitNetwork.from_model(model, points, head=head, cost=cost)
    console.print(f"Training {model_name} with exits after {', '.join(net.exit_names[:-1])} on "
                  f"{splits.name} ({len(splits.train)} images) with {strategy}; run folder {run_dir}")
    trained = exits.train(net, splits, strategy, config, run_dir=run_dir / "train", progress=True)
    net.cpu().eval()
    net.policy = exits.calibrate(net, splits.val, budget, rule, cost)
    result = exits.evaluate(net, splits.test, val=splits.val, cost=cost,
                            plot=run_dir / "frontier.png")
    exits.save(net, run_dir / "network")
    report.write_result(run_dir / "result.json", {
        "model": models.spec_of(model), "data": splits.name, "strategy": strategy,
        "training": trained.to_dict(), "evaluation": result.to_dict()}, kind="exits")
    print_evaluation(result, f"{model_name} + {strategy} on {splits.name}")
    console.print(f"Run folder: {run_dir}")


def load_model(path: Path) -> torch.nn.Module:
    """A zoo model with the weights that 'edgewise train' saved at `path`."""
    tensors, meta = engine.load_checkpoint(path)
    if "spec" not in meta:
        raise UserError(f"{path} is not a model saved by 'edgewise train' (no spec in it).")
    model = models.from_spec(meta["spec"])
    model.load_state_dict(tensors)
    return model


@exits_app.command("eval")
def eval_command(
    path: Path = typer.Argument(..., help="A network saved by 'edgewise exits train'."),
    data_name: str = typer.Option(..., "--data", help="Dataset it was trained on."),
    rule: str | None = typer.Option(None, "--rule", help="Policy for the budgets (default: the saved one)."),
    cost: str = typer.Option("macs", "--cost", help="Currency of budgets: macs or latency."),
    batch_size: int = typer.Option(256, "--batch-size", help="Batch size of latency profiles."),
    root: Path | None = typer.Option(None, "--root", help="Folder holding the dataset's files."),
    limit: int | None = typer.Option(None, "--limit", help="Cap on each split's size."),
) -> None:
    """Evaluate a saved network on the test split; budgets are calibrated on val."""
    net = exits.load(path)
    splits = data.load(data_name, root=root, limit=limit)
    out = path.parent
    result = exits.evaluate(net, splits.test, val=splits.val, rule=rule, cost=cost,
                            batch_size=batch_size, plot=out / "eval-frontier.png")
    report.write_result(out / "eval.json", {"data": splits.name, "evaluation": result.to_dict()},
                        kind="exits-eval")
    print_evaluation(result, f"{path.name} on {splits.name}")
    console.print(f"Wrote {out / 'eval.json'} and {out / 'eval-frontier.png'}")


@exits_app.command("infer")
def infer_command(
    path: Path = typer.Argument(..., help="A network saved by 'edgewise exits train'."),
    data_name: str = typer.Option(..., "--data", help="Dataset it was trained on."),
    batch_size: int = typer.Option(256, "--batch-size", help="Images per call (1 for one at a time)."),
    budget: float | None = typer.Option(None, "--budget", help="Recalibrate to this budget (default: saved policy)."),
    cost: str = typer.Option("latency", "--cost", help="Currency of --budget: macs or latency."),
    images: int = typer.Option(2048, "--images", help="How many test images to time."),
    repeats: int = typer.Option(7, "--repeats", help="Timed repeats (the median is kept)."),
    root: Path | None = typer.Option(None, "--root", help="Folder holding the dataset's files."),
) -> None:
    """Run real dynamic inference on test images; time it against the static network."""
    net = exits.load(path)
    splits = data.load(data_name, root=root)
    x, y = splits.test.tensors[0][:images], splits.test.tensors[1][:images]
    use_fastest_format(net, x[:batch_size])  # before calibrating: latency depends on it
    if budget is not None:
        net.policy = exits.calibrate(net, splits.val, budget, net.policy.rule if net.policy
                                     else "max-prob", cost, batch_size=batch_size)
    if net.policy is None:
        raise UserError(f"{path} has no policy: pass --budget.")
    predictions = torch.cat([net.infer(b, net.policy)[0] for b in x.split(batch_size)])
    speed = compare(net, net.policy, x[: min(images, 200 if batch_size == 1 else images)],
                    batch_size, repeats=repeats)
    rows = [
        ["accuracy", f"{100 * float((predictions == y).float().mean()):.2f} %"],
        ["exit distribution", " / ".join(f"{100 * d:.1f} %" for d in speed.exit_distribution)],
        [f"static, batch {batch_size}", f"{1e3 * speed.static_s:.2f} ms"],
        [f"dynamic, batch {batch_size}", f"{1e3 * speed.dynamic_s:.2f} ms"],
        ["speed-up measured", f"{speed.speedup:.2f}x"],
        ["speed-up predicted (latency profile)", f"{speed.predicted_speedup:.2f}x"],
        ["threads / memory format", f"{speed.threads} / {speed.dynamic_format}"],
    ]
    report.print_table(f"{path.name}: dynamic inference on {splits.name}", ["metric", "value"],
                       rows, console=console)
