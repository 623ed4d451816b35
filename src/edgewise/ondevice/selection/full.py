"""Full fine-tuning: every weight and every bias trains, every epoch.

The reference of the sparse-update papers (e.g. Lin et al., 2022, "On-Device
Training Under 256KB Memory", arXiv 2206.15472, the "full update" row). Run
through the lean operations it computes the same gradients as stock PyTorch
(to rounding) while saving less; it ignores the budget, so under a budget it
fails the per-step check unless everything fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgewise.ondevice.ops import sparse_layers
from edgewise.ondevice.selection.base import IN, Selection, Selector
from edgewise.ondevice.selection.plan import MemoryPlan
from edgewise.ondevice.selection.statistics import Statistics


@dataclass
class Full(Selector):
    """All weights and biases of all layers."""

    name = "full"

    def select(self, model: nn.Module, budget: MemoryPlan | None, stats: Statistics) -> Selection:
        layers = sparse_layers(model)
        return Selection(
            {n: torch.arange(layers[n].channels(IN)) for n in stats.layers},
            IN,
            frozenset(n for n in stats.layers if layers[n].bias is not None),
        )
