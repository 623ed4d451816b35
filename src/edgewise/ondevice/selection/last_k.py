"""Fine-tune the last k layers: the static layer selection every sparse-update paper compares with.

Lin et al., 2022, "On-Device Training Under 256KB Memory", arXiv 2206.15472
(the "last k layers" baseline). In eager PyTorch the frozen prefix saves
nothing, so only the last k layers' inputs and the path above them cost
memory. Without a budget the last k layers train whole (weights and biases);
with one, the same layers are filled from the last backwards (a layer's bias,
then its input channels in index order) while they fit, and the choice never
changes between epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgewise.errors import check_param
from edgewise.ondevice.ops import sparse_layers
from edgewise.ondevice.selection.base import IN, Selection, Selector
from edgewise.ondevice.selection.plan import BIAS, MemoryPlan
from edgewise.ondevice.selection.statistics import Statistics


@dataclass
class LastK(Selector):
    """The last `k` layers before the head (which always trains)."""

    name = "last-k"
    k: int = 2

    def __post_init__(self) -> None:
        check_param(self.name, "k", self.k, isinstance(self.k, int) and self.k >= 1, "an int >= 1")

    def select(self, model: nn.Module, budget: MemoryPlan | None, stats: Statistics) -> Selection:
        layers = sparse_layers(model)
        chosen = stats.layers[-self.k:]
        if budget is None or budget.limit is None:
            return Selection(
                {n: torch.arange(layers[n].channels(IN)) for n in chosen},
                IN,
                frozenset(n for n in chosen if layers[n].bias is not None),
            )
        order = []
        for n in reversed(chosen):
            order += [(n, BIAS)] if layers[n].bias is not None else []
            order += [(n, c) for c in range(layers[n].channels(IN))]
        return budget.fill(order)
