"""`edgewise finetune --method M --budget-kb B --model M --data D`: fine-tune on the device's terms.

Pretrains MODEL on the source half of the task (or loads ``--source``), fine-tunes
it on the target with method M (an update-selection method, an activation
compressor, or ``vanilla``) within B kB of saved activations plus weight
gradients per step, and prints the measured memory, the step time and the test
accuracy. The run folder ``runs/<name>/`` gets ``source.safetensors`` +
``source.json`` (the pretrained model), the engine's config, metrics and
checkpoint, and ``result.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgewise import engine, models, report
from edgewise.cli.app import app, console
from edgewise.errors import UserError
from edgewise.ondevice import (
    FinetuneConfig,
    finetune,
    method_kind,
    method_names,
    pretrain,
    transfer_task,
)
from edgewise.ondevice.finetune import (
    budget_note,
    check_budget,
    check_layers,
    load_source,
    save_source,
)
from edgewise.ondevice.memory import KB

DEFAULT_WIDTHS = {"mobilenetv2": 0.35}


def parse_params(pairs: list[str]) -> dict:
    """``["k=3", "eps=1e-3", "name=x"]`` -> ``{"k": 3, "eps": 0.001, "name": "x"}`` (JSON values, else text)."""
    params = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UserError(f"A --param must look like KEY=VALUE; got {pair!r}.")
        try:
            params[key] = json.loads(text)
        except json.JSONDecodeError:
            params[key] = text
    return params


def rows_of(results: list) -> list[list]:
    """One table row per result: memory in kB, step time in ms, accuracy in %."""
    return [[r.method, r.activations / KB, r.gradients / KB, r.total / KB, r.step_time_s * 1e3,
             100 * r.accuracy] for r in results]


def ratio_rows(results: list, reference) -> list[list]:
    """Each result against the reference (vanilla): how many times less memory, time ratio."""
    return [[r.method, reference.activations / max(r.activations, 1), reference.total / r.total,
             r.step_time_s / reference.step_time_s] for r in results if r is not reference]


def parse_layers(text: str) -> int | tuple[str, ...]:
    """``--layers``: a count ("4") or qualified layer names ("block6.mlp.fc1,block6.mlp.fc2")."""
    text = text.strip()
    return int(text) if text.isdigit() else tuple(n.strip() for n in text.split(",") if n.strip())


@app.command("finetune")
def finetune_command(
    method: str = typer.Option(..., "--method", help=f"One of: {', '.join(method_names())}."),
    budget_kb: float | None = typer.Option(
        None, "--budget-kb", help="Limit on saved activations + weight gradients per step, in kB (1000 bytes)."
    ),
    model_name: str = typer.Option("mobilenetv2", "--model", help="Zoo model (see 'edgewise models list')."),
    data_name: str = typer.Option(
        "fashion-mnist", "--data",
        help="Target data: fashion-mnist (pretrain on classes 0-4, tune on 5-9), digits (pretrain on "
             "Fashion-MNIST 0-4, tune on 28x28 digits), or any dataset (first half / second half of the classes).",
    ),
    width: float | None = typer.Option(
        None, "--width", help="Width multiplier (default: 0.35 for mobilenetv2, as the papers' MCU nets; else 1)."
    ),
    epochs: int = typer.Option(5, "--epochs", help="Fine-tuning epochs."),
    batch_size: int = typer.Option(8, "--batch-size", help="Images per fine-tuning step (the budget is for this size)."),
    lr: float = typer.Option(0.05, "--lr", help="Peak learning rate (SGD without momentum, cosine)."),
    grad_clip: float = typer.Option(
        2.0, "--grad-clip", help="Total gradient norm each step is clipped to (the AMC / ASI recipe's 2.0; 0: none)."
    ),
    limit: int | None = typer.Option(2000, "--limit", help="Cap on the target's training (and validation) images."),
    layers: str = typer.Option(
        "4", "--layers",
        help="Compressors: how many of the last conv/linear layers they wrap, or their qualified names, comma-separated.",
    ),
    param: list[str] = typer.Option([], "--param", help="A method parameter KEY=VALUE (repeatable)."),
    source: Path | None = typer.Option(None, "--source", help="A pretrained source model (source.safetensors of an earlier run)."),
    pretrain_epochs: int = typer.Option(3, "--pretrain-epochs", help="Epochs of pretraining when no --source is given."),
    with_vanilla: bool = typer.Option(False, "--with-vanilla", help="Also run vanilla fine-tuning and show ratios to it."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, data order and selection."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: torch's)."),
    root: Path | None = typer.Option(None, "--root", help="Folder holding the dataset's files."),
    name: str | None = typer.Option(None, "--name", help="Run folder runs/<name>/ (default: finetune-MODEL-DATA-METHOD)."),
) -> None:
    """Fine-tune a pretrained model on a transfer task within a memory budget; print what it cost."""
    method_kind(method)  # an unknown method fails before any data is read
    configs = [FinetuneConfig(
        method=m, budget_kb=budget_kb if m == method else None, batch_size=batch_size, epochs=epochs,
        lr=lr, grad_clip=grad_clip or None, seed=seed, device=device, threads=threads, layers=parse_layers(layers),
        params=parse_params(param) if m == method else {},
    ) for m in ([method, "vanilla"] if with_vanilla and method != "vanilla" else [method])]
    note = budget_note(configs[0])
    run_dir = Path("runs") / (name or f"finetune-{model_name}-{data_name}-{method}")
    if run_dir.exists():
        raise UserError(f"The run folder {run_dir} already exists; pass --name for a new run.")
    if note is not None:
        console.print(f"note: {note}")
    task = transfer_task(data_name, root, limit=limit, seed=seed)
    if source is not None:
        model = load_source(source)
        check_layers(model, configs[0])
    else:
        width = width or DEFAULT_WIDTHS.get(model_name, 1.0)
        untrained = models.build(model_name, task.source.num_classes, task.source.input_shape, width)
        check_layers(untrained, configs[0])  # a wrong layer name or an impossible budget fails
        check_budget(untrained, task.target, configs[0])  # before pretraining
        console.print(f"Pretraining {model_name} on the source task of {data_name} ({pretrain_epochs} epochs)")
        model = pretrain(model_name, task.source, width=width, progress=True, config=engine.TrainConfig(
            epochs=pretrain_epochs, seed=seed, device=device, threads=threads))
    save_source(run_dir / "source", model)
    results = []
    for config in configs:
        console.print(f"Fine-tuning with {config.method} on {len(task.target.train)} images, batch {batch_size}")
        results.append(finetune(model, task.target, config, progress=True,
                                run_dir=run_dir / config.method if config.method != method else run_dir))
    reference = results[1] if len(results) > 1 else None
    report.write_result(run_dir / "result.json", {
        "model": model_name, "data": data_name, "budget_kb": budget_kb, "batch_size": batch_size,
        "results": [r.to_dict() for r in results],
    }, kind="finetune")
    budget = f", budget {budget_kb:g} kB" if budget_kb is not None else ""
    report.print_table(f"{model_name} on {data_name}: measured per step at batch {batch_size}{budget}",
                       ["method", "saved kB", "grads kB", "total kB", "ms/step", "test acc %"],
                       rows_of(results), console=console)
    if reference is not None:
        report.print_table("against vanilla fine-tuning",
                           ["method", "saved x less", "total x less", "time ratio"],
                           ratio_rows(results, reference), console=console)
    console.print(f"Run folder: {run_dir}")
