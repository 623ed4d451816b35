"""The one training loop (`fit`) and `evaluate`.

`fit` reads top to bottom: per epoch, shuffle with a generator seeded from
``(seed, epoch)``, take batches (this rank's shard when data-parallel), set the
step's learning rate, compute the loss, stop on a non-finite one, step (gradients
clipped first when configured); then validate, let callbacks add metrics, and
write the run folder and the checkpoint.
Everything a resumed run needs is in the checkpoint (weights, optimizer, random
states, step), so resuming reproduces an uninterrupted run exactly on the CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, TensorDataset, default_collate

from edgewise.engine.augment import crop_flip
from edgewise.engine.config import TrainConfig
from edgewise.engine.optim import build_optimizer, clip_gradients, lr_factor, set_lr
from edgewise.engine.rundir import write_json
from edgewise.engine.runtime import (
    Processes,
    generator,
    resolve_device,
    seed_everything,
    start_processes,
)
from edgewise.engine.state import History, TrainState, restore_state, save_state
from edgewise.errors import DataError, ParameterError, UserError


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class Splits(Protocol):
    train: Dataset
    val: Dataset


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, torch.Tensor]]


def cross_entropy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, state: Any):
    """The default loss: cross-entropy of ``model(images)``, label-smoothed as configured
    while training (not under ``no_grad``, so validation losses stay plain)."""
    logits = model(images)
    smoothing = (
        state.config.label_smoothing if state is not None and torch.is_grad_enabled() else 0.0
    )
    return F.cross_entropy(logits, labels, label_smoothing=smoothing), logits


def fit(
    model: nn.Module,
    splits: Splits,
    config: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    loss_fn: LossFn | None = None,
    callbacks: Sequence[object] = (),
    parameters: Iterable | None = None,
    progress: bool = True,
) -> History:
    """Train `model` in place on ``splits.train``, validating on ``splits.val`` each epoch.

    `loss_fn(model, images, labels, state) -> (loss, logits)` replaces cross-entropy.
    `callbacks` may define ``on_fit_start``, ``on_epoch_start``, ``on_epoch_end`` (a returned
    dict is added to the epoch's metrics) and ``on_fit_end``, each called with the
    `TrainState`. `parameters` are those to optimise (default: all with ``requires_grad``).
    With `run_dir`, the config, metrics and a checkpoint are written there after each
    epoch; `resume` continues from its last checkpoint (or starts when there is none).
    """
    if resume and run_dir is None:
        raise ParameterError("resume=True needs the run_dir of the run to continue.")
    run = Path(run_dir) if run_dir is not None else None
    last = run / "checkpoints" / "last.safetensors" if run is not None else None
    loss_fn = loss_fn or cross_entropy
    with _session(config) as procs, _progress_bar(progress and procs.rank == 0) as bar:
        state, net = _prepare(model, config, procs, parameters, last if resume else None)
        writes = run is not None and procs.rank == 0
        if writes:
            write_json(run / "config.json", config.to_dict() | {"world_size": procs.world_size})
        steps = _steps_per_epoch(len(splits.train), config.batch_size, procs.world_size)
        task = bar.add_task("training", total=(config.epochs - state.epoch) * steps, info="")
        _call(callbacks, "on_fit_start", state)
        for epoch in range(state.epoch, config.epochs):
            state.epoch = epoch
            _call(callbacks, "on_epoch_start", state)
            started = time.perf_counter()
            model.train()
            sums = torch.zeros(3, dtype=torch.float64, device=procs.device)  # loss * n, correct, n
            augment_rng = generator(config.seed, epoch, procs.rank, 1)
            for index, batch in enumerate(_shard(len(splits.train), config, epoch, procs, steps)):
                images, labels = _take(splits.train, batch, procs.device)
                if config.augment:
                    images = crop_flip(images, augment_rng, config.hflip)
                set_lr(state.optimizer, lr_factor(config, state.step, steps))
                loss, logits = loss_fn(net, images, labels, state)
                step_sums = procs.sum(_batch_sums(loss.detach(), logits, labels))
                if not math.isfinite(step_sums[0].item()):
                    raise _diverged(epoch, index, step_sums[0].item(), last)
                state.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clip_gradients(state.optimizer, config.grad_clip)
                state.optimizer.step()
                state.step += 1
                sums += step_sums
                bar.update(
                    task,
                    advance=1,
                    description=f"epoch {epoch + 1}/{config.epochs}",
                    info=_describe(_train_metrics(sums)),
                )
            row = {"epoch": epoch + 1} | _train_metrics(sums)
            if len(splits.val) > 0:
                val = _evaluate(model, splits.val, config.eval_batch_size, procs, loss_fn, state)
                row |= {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}
            row |= {
                "lr": state.optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - started,
            }
            state.metrics.append(row)
            for extra in _call(callbacks, "on_epoch_end", state):
                row |= extra or {}
            if writes:
                save_state(state, run)
            bar.update(task, info=_describe(row))
        _call(callbacks, "on_fit_end", state)
    return History(state.metrics)


@contextmanager
def _session(config: TrainConfig) -> Iterator[Processes]:
    """The run's processes and thread count; both are given back at the end."""
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    procs = start_processes(config.device)
    try:
        yield procs
    finally:
        procs.close()
        torch.set_num_threads(threads)


def _prepare(model, config, procs, parameters, resume_from) -> tuple[TrainState, nn.Module]:
    """Move the model, build the optimizer, seed or restore, wrap for data parallelism."""
    model.to(procs.device)
    chosen = (
        parameters if parameters is not None else (p for p in model.parameters() if p.requires_grad)
    )
    optimizer = build_optimizer(chosen, config)
    state = TrainState(
        model, optimizer, config, procs.device, rank=procs.rank, world_size=procs.world_size
    )
    seed_everything(config.seed)
    if resume_from is not None and resume_from.is_file():
        restore_state(state, resume_from)
    if procs.world_size == 1:
        return state, model
    device_ids = [procs.device.index] if procs.device.type == "cuda" else None
    return state, DistributedDataParallel(model, device_ids=device_ids)


def _train_metrics(sums: torch.Tensor) -> dict[str, float]:
    loss, correct, n = sums.tolist()
    return {"train_loss": loss / n, "train_accuracy": correct / n}


def _describe(row: dict[str, float]) -> str:
    names = {"train_loss": "loss", "train_accuracy": "acc", "val_accuracy": "val_acc"}
    return " ".join(f"{short} {row[key]:.4f}" for key, short in names.items() if key in row)


def _diverged(epoch: int, index: int, loss: float, last: Path | None) -> TrainingDiverged:
    kept = (
        f"the last good checkpoint is {last}"
        if last is not None and last.is_file()
        else "no checkpoint"
    )
    return TrainingDiverged(
        f"Training diverged at epoch {epoch + 1}, step {index + 1}: the loss is {loss} ({kept}); "
        "try a lower lr."
    )


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    *,
    loss_fn: LossFn | None = None,
) -> dict[str, float]:
    """Mean loss and accuracy of `model` (in eval mode, without gradients) over `dataset`.

    `device` defaults to the model's; a given one moves the model there. `loss_fn` is as
    in `fit` (default: plain cross-entropy) and is called with ``state=None``.
    """
    if device is not None:
        model.to(resolve_device(device))
    where = next(model.parameters(), torch.empty(0)).device
    return _evaluate(
        model, dataset, batch_size, Processes(0, 1, where, False), loss_fn or cross_entropy, None
    )


def _evaluate(model, dataset, batch_size, procs, loss_fn, state) -> dict[str, float]:
    """Evaluate this rank's share of `dataset` and sum over the ranks."""
    if len(dataset) == 0:
        raise DataError("Cannot evaluate on an empty dataset.")
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=procs.device)
    mine = torch.arange(procs.rank, len(dataset), procs.world_size)
    with torch.no_grad():
        for batch in mine.split(batch_size):
            images, labels = _take(dataset, batch, procs.device)
            loss, logits = loss_fn(model, images, labels, state)
            sums += _batch_sums(loss, logits, labels)
    model.train(was_training)
    loss, correct, n = procs.sum(sums).tolist()
    return {"loss": loss / n, "accuracy": correct / n}


def _batch_sums(loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[loss * n, correct, n]`` of one batch, to be summed over batches and ranks."""
    n = labels.numel()
    correct = (logits.argmax(dim=1) == labels).sum()
    return torch.stack(
        [
            loss.double() * n,
            correct.double(),
            torch.tensor(float(n), device=loss.device, dtype=torch.float64),
        ]
    )


def _steps_per_epoch(n: int, batch_size: int, world_size: int) -> int:
    """Full batches per rank (the last partial one is dropped; a set smaller than one batch is one batch)."""
    return max(1, n // world_size // batch_size)


def _shard(
    n: int, config: TrainConfig, epoch: int, procs: Processes, steps: int
) -> Iterator[torch.Tensor]:
    """This rank's batches of epoch `epoch`. All ranks draw one permutation seeded from
    ``(seed, epoch)`` and deal it out in turn, so step i's batches of all ranks together
    are exactly the one-process batch i of size ``world_size * batch_size``."""
    order = torch.randperm(n, generator=generator(config.seed, epoch))
    mine = order[: n - n % procs.world_size][procs.rank :: procs.world_size]
    for step in range(steps):
        yield mine[step * config.batch_size : (step + 1) * config.batch_size]


def _take(
    dataset: Dataset, indices: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(images, labels)`` at `indices`, on `device` (fast path for a `TensorDataset`)."""
    if isinstance(dataset, TensorDataset):
        images, labels = (t[indices] for t in dataset.tensors[:2])
    else:
        images, labels = default_collate([dataset[i] for i in indices.tolist()])[:2]
    return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def _call(callbacks: Sequence[object], hook: str, state: TrainState) -> list:
    """Call `hook` on every callback that has it; return what they return."""
    return [getattr(c, hook)(state) for c in callbacks if hasattr(c, hook)]


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        disable=not enabled,
    )
