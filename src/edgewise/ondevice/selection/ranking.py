"""Shared maths of TraDy and MeDyate: channel scores per byte, layer pre-selection, weighted orders."""

from __future__ import annotations

import torch
from torch import Tensor

from edgewise.ondevice.ops import IN
from edgewise.ondevice.selection.plan import MemoryPlan

__all__ = ["affordable", "per_byte", "top_layers", "weighted_order"]


def affordable(plan: MemoryPlan, layers: list[str]) -> list[str]:
    """The `layers` that one input channel can train within the budget, the backward path to
    them included (a layer deeper in the network than the budget reaches is never a candidate)."""
    return [n for n in layers if plan.costs[n].path + plan.costs[n].channel(IN) <= plan.limit]


def per_byte(plan: MemoryPlan, scores: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each input channel's score divided by its memory cost in bytes (weight gradient + activation
    slice): TraDy's reweighting, Θ_space of method notes §6.1."""
    return {n: s / plan.costs[n].channel(IN) for n, s in scores.items()}


def top_layers(layer_scores: dict[str, Tensor], coverage: float) -> list[str]:
    """The fewest highest-scoring layers holding `coverage` of the total score, in model order."""
    names = list(layer_scores)
    values = torch.stack([layer_scores[n].double() for n in names])
    order = torch.argsort(values, descending=True, stable=True)
    share = values[order].cumsum(0) / values.sum().clamp_min(1e-300)
    keep = int(torch.searchsorted(share, torch.tensor(coverage, dtype=share.dtype))) + 1
    kept = {names[i] for i in order[:keep].tolist()}
    return [n for n in names if n in kept]


def weighted_order(weights: Tensor, generator: torch.Generator) -> Tensor:
    """A random order of the indices of `weights` drawn without replacement, each next index
    with probability proportional to its weight (Gumbel top-k)."""
    uniform = torch.rand(weights.shape, generator=generator, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-300, 1 - 1e-16)))
    return torch.argsort(weights.double().clamp_min(1e-300).log() + gumbel, descending=True)
