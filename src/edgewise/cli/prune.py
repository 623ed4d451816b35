"""`edgewise prune egp|nepenthe|tlc --model M --data D` and `edgewise prune fold CHECKPOINT`.

A method command prunes a trained model (a checkpoint from 'edgewise train', or a
zoo name, trained first), folds it, and writes to runs/<name>/: ``pruned`` and
``folded`` checkpoints (safetensors + JSON; the folded one loads without the
model's class), ``result.json`` (layers removed, parameters, MACs, latency
against the BatchNorm-folded original, accuracy before and after, every merge
decision with its timings) and ``entropy.png``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import torch
import typer

from edgewise import data, engine, models, report
from edgewise.cli.app import app, console
from edgewise.errors import UserError
from edgewise.prune import PRUNERS, pruner
from edgewise.prune.fold import Timer, fold
from edgewise.prune.io import load_model, save_folded, save_pruned
from edgewise.prune.report import costs, entropy_plot
from edgewise.prune.run import reduce_depth

prune_app = typer.Typer(
    help="Depth reduction: remove rectifier layers (EGP, NEPENTHE, TLC), then fold and merge.",
    no_args_is_help=True,
)
app.add_typer(prune_app, name="prune")


def _method_params(method: str, values: list[str]) -> dict:
    """``["ratio=0.25", ...]`` as keyword arguments of `method`'s parameters (JSON values)."""
    fields = {f.name for f in dataclasses.fields(PRUNERS[method].Params)}
    params = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            raise UserError(
                f"--param takes KEY=VALUE with KEY one of {', '.join(sorted(fields))}; got {item!r}."
            )
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def _trained_model(model_arg: str, splits, width: float, depth: int | None, epochs: int,
                   device: str):
    """The checkpoint at `model_arg`, or zoo model `model_arg` trained for `epochs`."""
    if Path(model_arg).exists() or model_arg.endswith(".safetensors"):
        return load_model(model_arg)[0]
    model = models.build(model_arg, splits.num_classes, splits.input_shape, width,
                         **({} if depth is None else {"depth": depth}))
    config = engine.TrainConfig(epochs=epochs, schedule="onecycle", augment=True, device=device)
    console.print(f"Training {model_arg} for {epochs} epochs first")
    engine.fit(model, splits, config)
    return model


def _summary_rows(summary: dict) -> list[list[str]]:
    rows = [
        ["rectifier layers removed", f"{summary['rectifiers_removed']} / {summary['rectifiers']}"],
        ["test accuracy", f"{100 * summary['accuracy_before']:.2f} % -> "
                          f"{100 * summary['accuracy_after']:.2f} %"],
        ["parameters", f"{summary['before']['params']} -> {summary['after']['params']}"],
        ["MACs / input", f"{summary['before']['macs'] / 1e6:.2f} M -> "
                         f"{summary['after']['macs'] / 1e6:.2f} M"],
    ]
    for batch, row in summary["latency"].items():
        rows.append([f"latency, batch {batch}",
                     f"{1e3 * row['baseline']['median_s']:.3f} ms -> "
                     f"{1e3 * row['folded']['median_s']:.3f} ms ({row['speedup']:.2f}x)"])
    rows.append(["max |folded - pruned| (test set)", f"{summary['max_abs_difference']:.1e}"])
    return rows


def _register(method: str) -> None:
    about = inspect.getmodule(PRUNERS[method]).__doc__.splitlines()[0]
    @prune_app.command(method, help=f"{about} Prunes a trained model, folds it and reports; "
                                    "writes runs/<name>/.")
    def command(
        model_arg: str = typer.Option(..., "--model", help="A checkpoint from 'edgewise train' "
                                      "(model.safetensors) or a zoo model name, trained first."),
        data_name: str = typer.Option(..., "--data", help="Dataset (see 'edgewise data list')."),
        rounds: int = typer.Option(5, "--rounds", help="Most pruning rounds."),
        tolerance: float | None = typer.Option(
            None, "--tolerance", help="Undo a round losing more validation accuracy than this "
            "(a fraction: 0.005 is half a point)."),
        param: list[str] = typer.Option([], "--param", help=f"Method parameter KEY=VALUE, e.g. "
                                        f"ratio=0.25 (see edgewise.prune.{method})."),
        finetune_epochs: int = typer.Option(1, "--finetune-epochs", help="Epochs per round."),
        lr: float = typer.Option(0.01, "--lr", help="Fine-tuning learning rate."),
        epochs: int = typer.Option(10, "--epochs", help="Training epochs when --model is a name."),
        width: float = typer.Option(1.0, "--width", help="Width, when --model is a name."),
        depth: int | None = typer.Option(None, "--depth", help="Depth, when --model is a name."),
        limit: int | None = typer.Option(None, "--limit", help="Cap on each split's size."),
        root: Path | None = typer.Option(None, "--root", help="Folder holding the dataset."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (training)."),
        threads: int = typer.Option(1, "--threads", help="Threads for the latency timings."),
        repeats: int = typer.Option(20, "--repeats", help="Timed calls per latency measurement."),
        name: str | None = typer.Option(None, "--name", help="Run folder runs/<name>/ "
                                        f"[default: {method}-<model>-<data>]."),
    ) -> None:
        depth_pruner = pruner(method, rounds=rounds, tolerance=tolerance,
                              **_method_params(method, param))
        finetune = engine.TrainConfig(epochs=finetune_epochs, lr=lr, schedule="cosine",
                                      augment=True, device=device)
        run_dir = Path("runs") / (name or f"{method}-{Path(model_arg).stem}-{data_name}")
        if run_dir.exists():
            raise UserError(f"The run folder {run_dir} already exists; pass --name for a new run.")
        splits = data.load(data_name, root=root, limit=limit)
        model = _trained_model(model_arg, splits, width, depth, epochs, device)
        console.print(f"Pruning with {method}: up to {rounds} rounds of {finetune_epochs} epochs")
        outcome = reduce_depth(model, splits, depth_pruner, finetune,
                               timer=Timer(threads=threads, repeats=repeats),
                               repeats={1: repeats}, threads=threads, progress=True)
        meta = {"data": splits.name, "method": method, "input_shape": list(splits.input_shape)}
        save_pruned(run_dir / "pruned", outcome.pruned, meta)
        save_folded(run_dir / "folded", outcome.folded.module, meta)
        report.write_result(run_dir / "result.json", {
            **meta, **outcome.summary, "fold": outcome.folded.summary(),
            "pruner": depth_pruner.state_dict()}, kind="prune")
        entropy_plot(run_dir / "entropy.png", depth_pruner.entropy_before_,
                     {"after": depth_pruner.entropy_after_}, f"{method}: rectifier entropy")
        report.print_table(f"{method} on {splits.name} ({run_dir})", ["", "value"],
                           _summary_rows(outcome.summary), console=console)


for _method in PRUNERS:
    _register(_method)


@prune_app.command("fold")
def fold_command(
    checkpoint: Path = typer.Argument(..., help="A checkpoint from 'edgewise prune' (pruned) "
                                      "or 'edgewise train' (model)."),
    out: Path | None = typer.Option(None, "--out", help="Where to write the folded network "
                                     "[default: <checkpoint>-folded beside it]."),
    threads: int = typer.Option(1, "--threads", help="Threads for timing merge candidates."),
) -> None:
    """Fold CHECKPOINT: fold BatchNorm and removed rectifiers, merge layers where faster."""
    if not checkpoint.exists():
        raise UserError(f"No checkpoint at {checkpoint}.")
    model, meta = load_model(checkpoint)
    shape = tuple(meta["spec"]["input_shape"])
    result = fold(model, torch.randn(8, *shape, generator=torch.Generator().manual_seed(0)),
                  timer=Timer(threads=threads))
    target = out or checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + "-folded")
    path = save_folded(target, result.module, {"input_shape": list(shape), "source": str(checkpoint)})
    before, after = costs(model, shape), costs(result.module, shape)
    summary = result.summary()
    rows = [
        ["layers (conv, linear, activation, affine, add)",
         f"{summary['layers_before']} -> {summary['layers_after']}"],
        ["parameters", f"{before['params']} -> {after['params']}"],
        ["MACs / input", f"{before['macs'] / 1e6:.2f} M -> {after['macs'] / 1e6:.2f} M"],
        ["merges applied", f"{summary['merges_applied']} of {len(summary['decisions'])} candidates"],
        ["affine tail -> one Linear", "none" if summary["tail"] is None else
         ("collapsed" if summary["tail"]["applied"] else "; ".join(summary["tail"]["notes"]))],
        ["max |folded - original| (float64)", f"{result.max_abs_error:.1e}"],
        ["written", str(path)],
    ]
    report.print_table(f"fold {checkpoint.name}", ["", "value"], rows, console=console)
