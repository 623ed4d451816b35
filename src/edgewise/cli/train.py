"""`edgewise train MODEL --data NAME`: train a zoo model, test it, and keep it in runs/<name>/.

The run folder gets the engine's config, metrics and checkpoints, plus the final
``model.safetensors`` + ``model.json`` (weights and `models.spec_of`), ``result.json``
and ``accuracy.png``. Hyperparameters left out come from the model family's recipe.
"""

from __future__ import annotations

from pathlib import Path
from statistics import mean

import torch
import typer

from edgewise import cost, data, engine, models, report
from edgewise.cli.app import app, console
from edgewise.errors import UserError

# Data whose classes change when mirrored: augmentation crops them but never flips them.
NO_FLIP = ("digits", "mnist")


@app.command("train")
def train_command(
    model_name: str = typer.Argument(
        ..., metavar="MODEL", help="Model name (see 'edgewise models list')."
    ),
    data_name: str = typer.Option(..., "--data", help="Dataset (see 'edgewise data list')."),
    epochs: int = typer.Option(10, "--epochs", help="Training epochs."),
    width: float = typer.Option(1.0, "--width", help="Width multiplier."),
    depth: int | None = typer.Option(
        None, "--depth", help="Depth, for the models that take one (resnet: 8 or 18)."
    ),
    batch_size: int = typer.Option(128, "--batch-size", help="Images per step."),
    lr: float | None = typer.Option(
        None, "--lr", help="Peak learning rate (default: the family's recipe)."
    ),
    optimizer: str | None = typer.Option(
        None, "--optimizer", help="sgd, adam or adamw (default: the recipe's)."
    ),
    schedule: str | None = typer.Option(
        None, "--schedule", help="cosine, step, onecycle or none (default: the recipe's)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the initialisation, the data order and the augmentation."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    name: str | None = typer.Option(
        None, "--name", help="Run name: the run folder is runs/<name>/ (default: MODEL-DATA)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in runs/<name>/ from its last checkpoint."
    ),
    root: Path | None = typer.Option(None, "--root", help="Folder holding the dataset's files."),
    limit: int | None = typer.Option(None, "--limit", help="Cap on each split's size."),
    augment: bool = typer.Option(
        False,
        "--augment/--no-augment",
        help="Random crop (and flip) of training images; pays off in long runs.",
    ),
) -> None:
    """Train MODEL on a dataset, then print its test accuracy, MACs, parameters and time per epoch."""
    models.model_defaults(model_name)  # an unknown model name fails before the data is read
    recipe = engine.recipe(model_name, epochs)
    run_dir = Path("runs") / (name or f"{model_name}-{data_name}")
    if run_dir.exists() and not resume:
        raise UserError(
            f"The run folder {run_dir} already exists; pass --resume to continue it or --name for a new run."
        )
    overrides = {"optimizer": optimizer, "lr": lr, "schedule": schedule}
    config = engine.TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        device=device,
        augment=augment,
        hflip=data_name not in NO_FLIP,
        **(recipe | {k: v for k, v in overrides.items() if v is not None}),
    )
    engine.resolve_device(device)  # a missing GPU fails before the data is read
    splits = data.load(data_name, root=root, limit=limit)
    engine.seed_everything(seed)
    model = models.build(
        model_name,
        splits.num_classes,
        splits.input_shape,
        width,
        **({} if depth is None else {"depth": depth}),
    )
    console.print(
        f"Training {model_name} on {splits.name}: {len(splits.train)} training and {len(splits.val)} "
        f"validation images, {epochs} epochs, run folder {run_dir}"
    )
    history = engine.fit(model, splits, config, run_dir=run_dir, resume=resume)
    test = engine.evaluate(model, splits.test, config.eval_batch_size)
    model.cpu()
    with torch.no_grad():
        macs = cost.count_macs(model, splits.test.tensors[0][:1])
    spec = models.spec_of(model)
    engine.save_checkpoint(run_dir / "model", model.state_dict(), {"spec": spec, "test": test})
    summary = {
        "model": spec,
        "data": splits.name,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "macs_per_image": macs.total,
        "params": macs.params_total,
        "seconds_per_epoch": mean(history["seconds"]),
        "history": history.rows,
    }
    report.write_result(run_dir / "result.json", summary, kind="train")
    epochs_axis = history["epoch"]
    report.line_plot(
        run_dir / "accuracy.png",
        {
            "train": (epochs_axis, history["train_accuracy"]),
            "val": (epochs_axis, history["val_accuracy"]),
        },
        xlabel="epoch",
        ylabel="accuracy",
        title=f"{model_name} on {splits.name}",
    )
    rows = [
        ["test accuracy", f"{100 * test['accuracy']:.2f} %"],
        ["MACs / image", f"{macs.total / 1e6:.2f} M"],
        ["parameters", f"{macs.params_total / 1e3:.1f} k"],
        ["seconds / epoch", f"{summary['seconds_per_epoch']:.1f} s"],
    ]
    report.print_table(f"{model_name} on {splits.name}", ["metric", "value"], rows, console=console)
    console.print(f"Run folder: {run_dir}")
