"""Random channel selection filled to the budget, drawn anew every epoch.

The "random" baseline of Quélennec, Tartaglione, Mozharovskyi and Nguyen,
2023, "Towards On-device Learning on the Edge: Ways to Select Neurons to
Update under a Budget Constraint", arXiv 2312.05282, and TraDy's
D-Full-Random: every input channel of every layer is equally likely; a
random order is walked and each channel that still fits the memory budget
(weight gradient plus saved activation slice) is taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgewise.ondevice.selection.base import Selection, Selector, require_budget
from edgewise.ondevice.selection.plan import MemoryPlan
from edgewise.ondevice.selection.statistics import Statistics


@dataclass
class Random(Selector):
    """Uniformly random input channels over all layers, until the budget is full."""

    name = "random"

    def select(self, model: nn.Module, budget: MemoryPlan | None, stats: Statistics) -> Selection:
        plan = require_budget(self.name, budget)
        pool = [(n, c) for n in stats.layers for c in range(plan.costs[n].channels[1])]
        order = torch.randperm(len(pool), generator=stats.generator).tolist()
        return plan.fill(pool[i] for i in order)
