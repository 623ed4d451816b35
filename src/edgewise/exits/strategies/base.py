"""The face every exit training strategy shares, and the small records the loop hands it.

A strategy says *what* trains and *how it is scored*; the loop in
`edgewise.exits.train` owns everything else (optimiser, epochs, data, devices):

- ``stages(net) -> list[Stage]``: what trains, in order. One `edgewise.engine.fit`
  runs per stage.
- ``before_stage(net, stage, data)``: called before a stage (LwF takes its snapshot).
- ``loss(outputs, target, run) -> Tensor``: the scalar loss of one batch, from the
  exits' logits ``outputs[0..stage.depth-1]`` (each ``(N, K)``), the labels ``(N,)``
  and a read-only `Run` record.
- ``after_stage(net, stage, data)``: called after a stage (EWC's Fisher and anchor).
- ``state_dict() / load_state_dict(state)``: the learned state (names ending in
  ``_``), tensors only, kept apart from the hyperparameters in ``self.params``.

A strategy never touches the optimiser or the engine, and changes the network only
by what it returns (the loss).

Hyperparameters live in a dataclass (`StrategyParams` subclass) whose ``check``
raises the standard message, e.g. "The 'ewc_lambda' parameter of sequential-ewc
must be >= 0. Got -1.".
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgewise.errors import ParameterError, check_param

Batches = Iterable[tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Stage:
    """One block of training: which exits are computed and which modules learn.

    depth: number of exits the forward pass computes (``outputs`` has this length;
        stage ``i`` and head ``i`` run for every ``i < depth``).
    train_stages: indices of backbone segments whose parameters learn.
    train_heads: indices of heads whose parameters learn.
    new_exits: exits trained here for the first time; an exit's accuracy at the end
        of that stage is the reference its forgetting is measured against.
    name: a label for logs and run folders.
    """

    depth: int
    train_stages: tuple[int, ...]
    train_heads: tuple[int, ...]
    new_exits: tuple[int, ...]
    name: str

    @classmethod
    def whole(cls, n: int, name: str) -> Stage:
        """One stage in which all ``n`` exits are new and every segment and head learns."""
        every = tuple(range(n))
        return cls(depth=n, train_stages=every, train_heads=every, new_exits=every, name=name)

    def modules(self, net: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
        """(trained, frozen) modules among the ``depth`` stages and heads that run."""
        trained, frozen = [], []
        for i in range(self.depth):
            (trained if i in self.train_stages else frozen).append(net.stages[i])
            (trained if i in self.train_heads else frozen).append(net.heads[i])
        return trained, frozen

    def parameters(self, net: nn.Module) -> list[nn.Parameter]:
        """The parameters this stage optimises, each once, in module order."""
        seen: set[int] = set()
        out = []
        for module in self.modules(net)[0]:
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out


@dataclass(frozen=True)
class Run:
    """What a strategy may read while scoring one batch (the loop owns it).

    net: the network being trained (read only: a strategy returns a loss, no more).
    stage: the current stage; stage_index its position in ``stages(net)``.
    inputs: the batch's images, for strategies that run a reference network (LwF).
    epoch: 0-based epoch within the stage; epochs: the stage's number of epochs.
    label_smoothing: applied to every cross-entropy term.
    """

    net: nn.Module
    stage: Stage
    stage_index: int
    inputs: Tensor
    epoch: int
    epochs: int
    label_smoothing: float = 0.0


@dataclass
class StrategyParams:
    """Base of every strategy's hyperparameter dataclass; ``check`` validates them."""

    def check(self, owner: str) -> None:
        """Raise `ParameterError` with the standard message for a bad value."""


def check_weights(owner: str, name: str, value: Sequence[float] | None) -> None:
    """Optional per-exit weights: a sequence of finite numbers >= 0."""
    if value is None:
        return
    ok = isinstance(value, (list, tuple)) and len(value) > 0
    ok = ok and all(isinstance(v, (int, float)) and v >= 0 and v == v for v in value)
    check_param(owner, name, value, ok, "a non-empty sequence of numbers >= 0 (or None)")


def check_length(owner: str, name: str, value: Sequence[float] | None, n: int) -> None:
    """Per-exit weights must have one entry per exit (checked once the network is known)."""
    if value is not None and len(value) != n:
        check_param(owner, name, value, False, f"one value per exit ({n} values)")


class ExitStrategy:
    """Base of every strategy; subclasses set `name`, `Params` and override the hooks."""

    name: ClassVar[str] = "strategy"
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def __init__(self, **params: Any) -> None:
        fields = [f.name for f in dataclasses.fields(self.Params)]
        for key in params:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                valid = ", ".join(fields) if fields else "none"
                raise ParameterError(
                    f"{self.name} has no parameter {key!r}.{hint} Valid parameters: {valid}."
                )
        self.params = self.Params(**params)
        self.params.check(self.name)

    # -- the face ---------------------------------------------------------------------
    def stages(self, net: nn.Module) -> list[Stage]:
        """What trains, in order."""
        raise NotImplementedError

    def before_stage(self, net: nn.Module, stage: Stage, data: Batches) -> None:
        """Hook before a stage; default: nothing."""

    def loss(self, outputs: Sequence[Tensor], target: Tensor, run: Run) -> Tensor:
        """Scalar loss of one batch."""
        raise NotImplementedError

    def after_stage(self, net: nn.Module, stage: Stage, data: Batches) -> None:
        """Hook after a stage; default: nothing."""

    def state_dict(self) -> dict[str, Tensor]:
        """Learned state (tensors only); empty for stateless strategies."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore what `state_dict` returned."""
        if state:
            raise ParameterError(
                f"{self.name} keeps no learned state; got keys {sorted(state)[:3]}."
            )

    def describe(self) -> dict[str, Any]:
        """Name and hyperparameters, JSON-ready."""
        values = {k: list(v) if isinstance(v, tuple) else v
                  for k, v in dataclasses.asdict(self.params).items()}
        return {"name": self.name, "params": values}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self.params).items())
        return f"{type(self).__name__}({args})"


# -- helpers shared by the strategies --------------------------------------------------


def num_exits(net: nn.Module) -> int:
    """Number of exits of an early-exit network (one head per stage)."""
    return len(net.heads)


def exit_outputs(net: nn.Module, x: Tensor, depth: int | None = None) -> list[Tensor]:
    """Logits of exits ``0..depth-1``: stage ``i`` feeds stage ``i+1`` and head ``i``.

    Running only the first ``depth`` stages saves the deeper ones' compute when a
    stage (sequential training) scores only the shallow exits.
    """
    depth = len(net.heads) if depth is None else depth
    outputs = []
    h = x
    for i in range(depth):
        h = net.stages[i](h)
        outputs.append(net.heads[i](h))
    return outputs


def cross_entropies(outputs: Sequence[Tensor], target: Tensor, label_smoothing: float = 0.0,
                    reduction: str = "mean") -> list[Tensor]:
    """Cross-entropy of every exit against the labels (per sample if reduction='none')."""
    return [F.cross_entropy(z, target, reduction=reduction, label_smoothing=label_smoothing)
            for z in outputs]


def weighted_sum(losses: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """``sum_e w_e L_e``; exits with weight 0 add nothing (and no gradient)."""
    total = losses[0].new_zeros(())
    for w, value in zip(weights, losses, strict=True):
        if w:
            total = total + float(w) * value
    return total


def as_tensor_dict(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Detached CPU copies of ``state`` under ``prefix.`` (for `state_dict`)."""
    return {f"{prefix}.{k}": v.detach().cpu().clone() for k, v in state.items()}


def from_prefix(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of ``state`` under ``prefix.``, prefix removed."""
    head = prefix + "."
    return {k[len(head):]: v for k, v in state.items() if k.startswith(head)}


def check_keys(owner: str, state: dict[str, Tensor], prefixes: Iterable[str]) -> None:
    """Reject a state dict with keys this strategy does not know."""
    allowed = tuple(p + "." for p in prefixes)
    unknown = [k for k in state if not k.startswith(allowed)]
    if unknown:
        raise ParameterError(
            f"{owner} cannot load state key {unknown[0]!r}: expected keys under "
            f"{', '.join(repr(p) for p in prefixes)}."
        )


@torch.no_grad()
def exit_accuracies(net: nn.Module, batches: Batches) -> list[float]:
    """Accuracy of every exit on ``batches`` (the network is put in eval mode and restored)."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    correct: list[int] = []
    total = 0
    try:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            outs = exit_outputs(net, x)
            if not correct:
                correct = [0] * len(outs)
            for e, z in enumerate(outs):
                correct[e] += int((z.argmax(1) == y).sum())
            total += len(y)
    finally:
        net.train(was_training)
    return [c / max(total, 1) for c in correct]
