"""ASI: Tucker ranks fixed offline under a memory budget, tracked by one subspace-iteration step.

Paper: L.-T. Nguyen, A. Quélennec, V.-T. Nguyen, E. Tartaglione, "Beyond
Low-rank Decomposition: A Shortcut Approach for Efficient On-Device Learning",
ICML 2025, arXiv:2505.05086.

Idea: HOSVD (`hosvd`) pays an SVD per mode per step and its memory varies
from batch to batch. ASI fixes the ranks once, before training: on a
calibration batch, for each compressed layer and each candidate threshold
epsilon, it records the HOSVD ranks, their memory (prod K + sum D K elements)
and the weight-gradient error ||dW_lowrank - dW_exact||_F; a multiple-choice
knapsack then picks one candidate per layer that minimises the summed error
with the summed memory under the budget. During training each mode's factor
is refreshed by one warm-started subspace-iteration step,
U <- orth(A_(m) A_(m)^T U_prev), so the memory is constant and known in advance.

The knapsack here is solved exactly by dynamic programming over the layers
with a Pareto frontier of (bytes, error) states, where the paper's code
backtracks over all combinations; the budget is never exceeded (bytes are
counted exactly, not discretised).

Unverified: the candidates 0.1..0.9 and 0.95..0.999 (the paper sweeps
0.4..0.9; higher ones let a generous budget buy accuracy), to which a
rank-1-everywhere option is added so that any budget above the rank-1 memory
is feasible; without a budget every layer takes the ranks of `epsilon` = 0.9
on the calibration batch; the first step starts from the exact leading subspace of that
batch (the paper draws a random Gaussian start), as does any step whose batch
size differs from the previous one; the calibration runs the model in eval
mode with cross-entropy on the given targets, or on the model's own
predictions when no targets are given. The budget is in bytes of the cores and
factors that the compressed layers save, at the calibration batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgewise.errors import BudgetError, UserError, check_param
from edgewise.ondevice.compress.base import (
    CalibrationBatch,
    Compressor,
    compressed,
    is_fraction,
    layer_weight_grad,
    split_batch,
)
from edgewise.ondevice.compress.tensor_ops import (
    Tucker,
    explained_variance_rank,
    leading_subspace,
    mode_spectrum,
    subspace_iteration,
    tucker_compress,
    tucker_numel,
)

DEFAULT_CANDIDATES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


@dataclass
class SubspaceCodec:
    """Fixed ranks per mode; each factor refreshed by `steps` warm-started subspace-iteration steps.

    The factors of the last batch (``bases_``) are the warm start of the next;
    they are the very tensors saved for backward, so they are counted there.
    """

    ranks: tuple[int, ...]
    steps: int = 1
    bases_: tuple[Tensor | None, ...] = field(default=(), repr=False)

    def compress(self, x: Tensor) -> Tucker:
        factors = []
        for mode, size in enumerate(x.shape):
            rank = min(self.ranks[mode], size)
            previous = self.bases_[mode] if mode < len(self.bases_) else None
            if rank == size:
                factors.append(None)
            elif previous is None or previous.shape != (size, rank) or previous.dtype != x.dtype \
                    or previous.device != x.device:
                factors.append(leading_subspace(x, mode, rank))
            else:
                factors.append(subspace_iteration(x, mode, previous, self.steps))
        tucker = tucker_compress(x, factors)
        self.bases_ = tucker.factors
        return tucker


@dataclass(frozen=True)
class Option:
    """One candidate for one layer: its Tucker ranks, bytes saved and weight-gradient error."""

    ranks: tuple[int, ...]
    nbytes: int
    error: float


def knapsack(options: Sequence[Sequence[tuple[int, float]]], budget: int) -> list[int]:
    """Multiple-choice knapsack: one option per group, minimal summed cost, summed size <= budget.

    `options[g]` lists ``(size, cost)`` pairs of group g. Dynamic programming
    over the groups keeps the Pareto frontier of partial choices (size
    ascending, cost strictly descending); sizes are exact integers, so the
    answer never exceeds the budget. Returns the chosen index per group.
    """
    frontier: list[tuple[int, float, tuple[int, ...]]] = [(0, 0.0, ())]
    for group in options:
        merged = sorted(
            (size + option_size, cost + option_cost, picks + (index,))
            for size, cost, picks in frontier
            for index, (option_size, option_cost) in enumerate(group)
            if size + option_size <= budget
        )
        frontier = []
        for state in merged:
            if not frontier or state[1] < frontier[-1][1]:
                frontier.append(state)
        if not frontier:
            minimum = sum(min(size for size, _ in group) for group in options)
            raise BudgetError(f"A budget of {budget} cannot be met: the smallest choice needs {minimum}.")
    return list(frontier[-1][2])


def calibrate(
    model: nn.Module, targets: dict[str, nn.Module], batch: CalibrationBatch, owner: str
) -> dict[str, tuple[Tensor, Tensor]]:
    """Each target's input and output gradient on one batch: name -> (x, dL/dy).

    The model runs in eval mode (no BatchNorm statistics change) with the
    targets' weights trainable; modes and flags are restored afterwards.
    """
    inputs, labels = split_batch(batch, owner)
    seen: dict[str, tuple[Tensor, Tensor]] = {}

    def recorder(name: str):
        def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
            seen[name] = (args[0].detach(), output)
        return hook

    handles = [layer.register_forward_hook(recorder(name)) for name, layer in targets.items()]
    flags = {name: layer.weight.requires_grad for name, layer in targets.items()}
    training = model.training
    try:
        model.eval()
        for layer in targets.values():
            layer.weight.requires_grad_(True)
        with torch.enable_grad():
            logits = model(inputs)
            loss = F.cross_entropy(logits, logits.argmax(1) if labels is None else labels)
            missing = [name for name in targets if name not in seen]
            if missing:
                raise UserError(f"Layer {missing[0]!r} did not run on the calibration batch of {owner}.")
            outputs = [seen[name][1] for name in targets]
            grads = torch.autograd.grad(loss, outputs, allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
        for name, layer in targets.items():
            layer.weight.requires_grad_(flags[name])
        model.train(training)
    return {
        name: (seen[name][0], torch.zeros_like(seen[name][1]) if grad is None else grad)
        for name, grad in zip(targets, grads, strict=True)
    }


def layer_options(
    layer: nn.Module, x: Tensor, grad: Tensor, candidates: Sequence[float]
) -> dict[float, Option]:
    """The HOSVD option of each candidate epsilon and, under key 0.0, rank 1 in every mode."""
    spectra = [mode_spectrum(x, mode) for mode in range(x.dim())]
    exact = layer_weight_grad(layer, Tucker(x, (None,) * x.dim()), grad)
    found: dict[tuple[int, ...], Option] = {}

    def option(ranks: tuple[int, ...]) -> Option:
        if ranks not in found:
            factors = [None if k == d else v[:, :k]
                       for (_, v), k, d in zip(spectra, ranks, x.shape, strict=True)]
            approx = layer_weight_grad(layer, tucker_compress(x, factors), grad)
            nbytes = tucker_numel(x.shape, ranks) * x.element_size()
            found[ranks] = Option(ranks, nbytes, float((approx - exact).norm()))
        return found[ranks]

    options = {eps: option(tuple(explained_variance_rank(e, eps) for e, _ in spectra))
               for eps in candidates}
    options[0.0] = option((1,) * x.dim())
    return options


def plan_ranks(
    model: nn.Module,
    targets: dict[str, nn.Module],
    calibration_batch: CalibrationBatch | None,
    candidates: Sequence[float],
    epsilon: float,
    budget_bytes: int | None,
    owner: str,
) -> dict[str, Option]:
    """The option per target: the knapsack's over `candidates` under `budget_bytes`, else `epsilon`'s."""
    check_param(owner, "calibration_batch", calibration_batch, calibration_batch is not None,
                "a batch (inputs, or inputs and targets) to fix the ranks offline")
    recorded = calibrate(model, targets, calibration_batch, owner)
    if budget_bytes is None:
        return {name: layer_options(targets[name], x, g, [epsilon])[epsilon]
                for name, (x, g) in recorded.items()}
    options = {name: list(layer_options(targets[name], x, g, candidates).values())
               for name, (x, g) in recorded.items()}
    minimum = sum(min(o.nbytes for o in opts) for opts in options.values())
    if budget_bytes < minimum:
        raise BudgetError(
            f"The activation budget of {budget_bytes} bytes is below the {minimum} bytes that "
            f"{owner} needs with rank 1 in every mode of its {len(targets)} compressed layers; "
            f"give at least {minimum} bytes or compress fewer layers."
        )
    picks = knapsack([[(o.nbytes, o.error) for o in opts] for opts in options.values()], budget_bytes)
    return {name: opts[pick] for (name, opts), pick in zip(options.items(), picks, strict=True)}


@dataclass
class ASI(Compressor):
    """Activation subspace iteration: ranks planned under `budget_bytes` from `candidates` thresholds.

    Without a budget, the ranks of `epsilon` on the calibration batch. `steps`
    subspace-iteration steps refresh the factors every training step.
    After `wrap`, ``plan_`` holds each layer's chosen `Option` (ranks, bytes, gradient error).
    """

    name: ClassVar[str] = "asi"
    takes_budget: ClassVar[bool] = True
    candidates: tuple[float, ...] = DEFAULT_CANDIDATES
    epsilon: float = 0.9
    steps: int = 1
    plan_: dict[str, Option] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        check_param(self.name, "candidates", self.candidates,
                    isinstance(self.candidates, (tuple, list)) and len(self.candidates) > 0
                    and all(is_fraction(e) for e in self.candidates),
                    "a non-empty sequence of thresholds in (0, 1]")
        check_param(self.name, "epsilon", self.epsilon, is_fraction(self.epsilon), "in (0, 1]")
        check_param(self.name, "steps", self.steps,
                    isinstance(self.steps, int) and not isinstance(self.steps, bool) and self.steps >= 1,
                    "an int >= 1")

    def wrap(
        self,
        model: nn.Module,
        targets: dict[str, nn.Module],
        *,
        budget_bytes: int | None,
        calibration_batch: CalibrationBatch | None,
    ) -> dict[str, nn.Module]:
        """Plan the ranks (see `plan_ranks`, kept in ``plan_``), then replace each target."""
        self.plan_ = plan_ranks(model, targets, calibration_batch, self.candidates, self.epsilon,
                                budget_bytes, self.name)
        return {name: self.replacement(layer, SubspaceCodec(self.plan_[name].ranks, self.steps))
                for name, layer in targets.items()}

    def replacement(self, layer: nn.Module, codec: SubspaceCodec) -> nn.Module:
        """The layer that stands for `layer`, its input saved through `codec`."""
        return compressed(layer, codec)
