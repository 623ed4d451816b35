"""The training state the loop owns, its per-epoch history, and its checkpoint in a run folder.

``checkpoints/last.safetensors`` holds ``model/<name>``, ``optimizer/<index>/<key>`` and
``rng/<stream>`` tensors; its JSON holds the epochs done, the step, the config, the
metrics so far, the optimizer's other values and the random states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from edgewise.engine import checkpoint as ckpt
from edgewise.engine.config import TrainConfig
from edgewise.engine.rundir import write_metrics
from edgewise.errors import UserError

# Config fields that may change when a run is resumed: they do not change the result.
RESUMABLE_CHANGES = ("device", "eval_batch_size", "threads")


@dataclass
class TrainState:
    """What the loop shares with `loss_fn` and callbacks. The loop owns it: a callback
    returns values (or changes the model it is given) and never sets these fields."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    device: torch.device
    epoch: int = 0  # 0-based index of the current epoch
    step: int = 0  # optimizer steps taken so far
    metrics: list[dict[str, float]] = field(default_factory=list)  # one row per finished epoch
    rank: int = 0
    world_size: int = 1


@dataclass
class History:
    """Per-epoch metrics: ``rows[e]`` holds epoch e+1's train/val loss and accuracy, lr, seconds."""

    rows: list[dict[str, float]]

    def __getitem__(self, key: str) -> list[float]:
        return [row[key] for row in self.rows]

    @property
    def last(self) -> dict[str, float]:
        return self.rows[-1]


def save_state(state: TrainState, run: Path) -> None:
    """Write the metrics, ``checkpoints/last`` and, when asked and improved, ``checkpoints/best``."""
    model_tensors = {f"model/{k}": v for k, v in state.model.state_dict().items()}
    opt_tensors, opt_meta = ckpt.optimizer_to_flat(state.optimizer)
    rng_tensors, rng_meta = ckpt.rng_to_flat()
    meta = {
        "format": "edgewise.checkpoint",
        "version": 1,
        "epoch": state.epoch + 1,
        "step": state.step,
        "world_size": state.world_size,
        "config": state.config.to_dict(),
        "metrics": state.metrics,
        "optimizer": opt_meta,
        "schedule": {"name": state.config.schedule, "step": state.step},
        "rng": rng_meta,
    }
    ckpt.save_checkpoint(
        run / "checkpoints" / "last", model_tensors | opt_tensors | rng_tensors, meta
    )
    write_metrics(run, state.metrics)
    accuracies = [row.get("val_accuracy", -1.0) for row in state.metrics]
    if state.config.save_best and accuracies[-1] > max(accuracies[:-1], default=-1.0):
        ckpt.save_checkpoint(
            run / "checkpoints" / "best",
            model_tensors,
            {"epoch": state.epoch + 1, "val_accuracy": accuracies[-1]},
        )


def restore_state(state: TrainState, path: Path) -> None:
    """Load the state saved by `save_state`; a checkpoint of another model or config is a `UserError`."""
    tensors, meta = ckpt.load_checkpoint(path)
    saved, now = meta["config"], state.config.to_dict()
    changed = [k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if changed:
        k = changed[0]
        raise UserError(
            f"Cannot resume {path}: it was trained with {k}={saved.get(k)!r}, not {now[k]!r}."
        )
    if meta["world_size"] != state.world_size:
        raise UserError(
            f"Cannot resume {path}: it ran on {meta['world_size']} processes, not {state.world_size}."
        )
    weights = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    _check_matches(weights, state.model.state_dict(), path)
    state.model.load_state_dict(weights)
    ckpt.optimizer_from_flat(state.optimizer, tensors, meta["optimizer"])
    ckpt.rng_from_flat(tensors, meta["rng"])
    state.epoch, state.step, state.metrics = meta["epoch"], meta["step"], meta["metrics"]


def _check_matches(
    saved: dict[str, torch.Tensor], live: dict[str, torch.Tensor], path: Path
) -> None:
    """Raise a one-line `UserError` naming the first difference of names or shapes."""
    missing, extra = sorted(live.keys() - saved.keys()), sorted(saved.keys() - live.keys())
    shapes = [k for k in live.keys() & saved.keys() if live[k].shape != saved[k].shape]
    if missing or extra:
        raise UserError(
            f"The checkpoint {path} does not match the model: {len(missing)} tensors missing "
            f"(e.g. {missing[:2]}), {len(extra)} unexpected (e.g. {extra[:2]})."
        )
    if shapes:
        k = sorted(shapes)[0]
        raise UserError(
            f"The checkpoint {path} does not match the model: {k!r} has shape "
            f"{tuple(saved[k].shape)} there and {tuple(live[k].shape)} in the model."
        )
