"""Unstructured magnitude pruning shared by EGP and NEPENTHE: layers, budgets, smallest weights.

A *layer* here is a rectifier with the weights of the conv/linear layers that
feed it (`structure.feeders`); its size n_l is the number of its weights not
yet pruned. A round's budget is ``round(ratio * sum_l n_l)`` weights, so that
after r rounds the pruned fraction of these weights is 1 - (1 - ratio)^r
(up to rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from edgewise.prune.masks import Masks
from edgewise.prune.structure import feeders


@dataclass
class Layer:
    """A rectifier, the weight parameters feeding it, and how many of them are left."""

    rectifier: str
    params: list[str]
    size: int
    mean_magnitude: float  # mean |w| over the weights left


def prunable_layers(model: nn.Module, masks: Masks, rectifiers: list[str]) -> list[Layer]:
    """The `rectifiers` with weights left to prune (each weight counted once, first come)."""
    seen: set[str] = set()
    layers = []
    for name, modules in feeders(model).items():
        if name not in rectifiers:
            continue
        params = [f"{m}.weight" for m in modules if f"{m}.weight" not in seen]
        seen.update(params)
        left = [model.get_parameter(p).detach()[masks.get(model, p)] for p in params]
        size = sum(t.numel() for t in left)
        if size:
            magnitude = float(torch.cat([t.abs().flatten() for t in left]).mean())
            layers.append(Layer(name, params, size, magnitude))
    return layers


def round_budget(ratio: float, sizes: list[int]) -> int:
    """Weights to prune this round: ``round(ratio * sum(sizes))``."""
    return int(round(ratio * sum(sizes)))


def egp_allocation(scores: Tensor, sizes: Tensor, budget: int) -> Tensor:
    """EGP's per-layer shares of `budget` (integers summing to it, each <= its layer's size).

    r_l = (sum_k s_k) / s_l and q_l = budget * softmax(r)_l over the layers not
    yet full; a layer whose share exceeds its size is capped, leaves the pool,
    and the rest is shared again (water-filling). Rounding keeps the sum exact
    (largest remainders first).
    """
    scores, sizes = scores.to(torch.float64), sizes.to(torch.float64)
    share = torch.zeros_like(sizes)
    pool = torch.ones_like(sizes, dtype=torch.bool)
    left = float(min(budget, int(sizes.sum())))
    scores = scores.clamp_min(torch.finfo(torch.float64).tiny)
    while pool.any() and left > 0:
        ratio = scores[pool].sum() / scores[pool]
        want = left * torch.softmax(ratio, 0)
        full = want >= sizes[pool]
        if not full.any():
            share[pool] = want
            break
        index = pool.nonzero().flatten()[full]
        share[index] = sizes[index]
        left -= float(sizes[index].sum())
        pool[index] = False
    counts = share.floor()
    remainder = min(budget, int(sizes.sum())) - int(counts.sum())
    room = (share - counts).masked_fill(counts >= sizes, -1.0)
    counts[room.argsort(descending=True)[:remainder]] += 1
    return counts.to(torch.int64)


def prune_smallest(model: nn.Module, masks: Masks, params: list[str], count: int,
                   scale: dict[str, float] | None = None) -> None:
    """Prune the `count` weights of `params` with the smallest |w| * scale[param] (scale 1 by default)."""
    if count <= 0:
        return
    keys = []
    for name in params:
        weight = model.get_parameter(name).detach()
        key = weight.abs().to(torch.float64) * (1.0 if scale is None else scale[name])
        keys.append(key.masked_fill(~masks.get(model, name), float("inf")).flatten())
    flat = torch.cat(keys)
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[flat.argsort(stable=True)[:count]] = True
    start = 0
    for name, key in zip(params, keys, strict=True):
        shape = model.get_parameter(name).shape
        masks.prune(model, name, chosen[start:start + key.numel()].view(shape))
        start += key.numel()
