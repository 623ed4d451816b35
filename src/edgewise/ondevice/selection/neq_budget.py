"""Budgeted velocity selection: NEq's velocities rank the neurons, a memory budget cuts the list.

Quélennec, Tartaglione, Mozharovskyi and Nguyen, 2023, "Towards On-device
Learning on the Edge: Ways to Select Neurons to Update under a Budget
Constraint", WACV 2024 Workshops, arXiv 2312.05282. Each epoch, neurons
(output channels) are sorted by |velocity| / (parameters of the neuron),
largest first, and taken while the budget holds; the first epoch, before any
velocity exists, takes a random order (one of the paper's initialisations).
The paper's budget counts parameters; here it is the measured memory of a
step (weight gradients plus saved activations: a layer with any neuron
selected keeps its whole input). Biases stay frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgewise.ondevice.selection.base import OUT, Selection, require_budget
from edgewise.ondevice.selection.equilibrium import EquilibriumSelector
from edgewise.ondevice.selection.plan import MemoryPlan
from edgewise.ondevice.selection.statistics import Statistics


@dataclass
class NEqBudget(EquilibriumSelector):
    """The fastest-moving neurons per parameter, until the memory budget is full."""

    name = "neq-budget"

    def select(self, model: nn.Module, budget: MemoryPlan | None, stats: Statistics) -> Selection:
        plan = require_budget(self.name, budget)
        velocities = self.velocities(stats)
        pool = [(n, c) for n in stats.layers for c in range(plan.costs[n].channels[OUT])]
        if velocities is None:
            order = torch.randperm(len(pool), generator=stats.generator)
        else:
            per_param = torch.cat([
                velocities[n].abs() / plan.costs[n].weight[OUT] for n in stats.layers
            ])
            order = torch.argsort(per_param, descending=True, stable=True)
        return plan.fill((pool[i] for i in order.tolist()), OUT)
