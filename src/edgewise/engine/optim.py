"""Optimizers and learning-rate schedules, each a plain function found through a registry.

A schedule maps the step ``i`` of ``n`` (counted after the warm-up) to a factor of
the peak learning rate. The loop sets the rate of every step from the step number alone,
so a resumed run gets exactly the rates of an uninterrupted one, with no scheduler
object to save.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch

from edgewise.registry import lookup

if TYPE_CHECKING:
    from edgewise.engine.config import TrainConfig


def sgd(params: Iterable, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )


def adam(params: Iterable, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def adamw(params: Iterable, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def cosine(i: int, n: int) -> float:
    """Half a cosine from 1 down towards 0."""
    return 0.5 * (1 + math.cos(math.pi * i / n))


def step(i: int, n: int) -> float:
    """1, then 0.1 from half-way, then 0.01 from three quarters."""
    return 0.1 ** ((i >= 0.5 * n) + (i >= 0.75 * n))


def onecycle(
    i: int, n: int, pct_start: float = 0.3, div: float = 25.0, final_div: float = 1e4
) -> float:
    """Smith's one-cycle, step for step as torch's `OneCycleLR` (without momentum cycling):
    a cosine rise from 1/div to 1 over the first 30 % of the steps, then a cosine fall
    to 1/(div * final_div) at the last step."""
    start, low, peak = 1 / div, 1 / (div * final_div), pct_start * n - 1
    if i <= peak:
        return _cosine_between(start, 1.0, i / peak)
    return _cosine_between(1.0, low, (i - peak) / (n - 1 - peak))


def _cosine_between(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def constant(i: int, n: int) -> float:
    return 1.0


OPTIMIZERS: dict[str, Callable[[Iterable, TrainConfig], torch.optim.Optimizer]] = {
    "adam": adam,
    "adamw": adamw,
    "sgd": sgd,
}

SCHEDULES: dict[str, Callable[[int, int], float]] = {
    "cosine": cosine,
    "none": constant,
    "onecycle": onecycle,
    "step": step,
}


def build_optimizer(params: Iterable, config: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer over `params` (tensors or param-group dicts)."""
    optimizer = lookup(OPTIMIZERS, config.optimizer, "optimizer")(params, config)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return optimizer


def lr_factor(config: TrainConfig, step_index: int, steps_per_epoch: int) -> float:
    """The factor of the peak rate at global step `step_index`: linear warm-up, then the schedule."""
    warmup = config.warmup_epochs * steps_per_epoch
    if step_index < warmup:
        return (step_index + 1) / warmup
    total = config.epochs * steps_per_epoch
    return lookup(SCHEDULES, config.schedule, "schedule")(step_index - warmup, total - warmup)


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float | None) -> None:
    """Scale the gradients of the optimised parameters down to a total L2 norm of `max_norm`
    when theirs is larger (None: leave them)."""
    if max_norm is not None:
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Scale every group's initial rate by `factor`."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
