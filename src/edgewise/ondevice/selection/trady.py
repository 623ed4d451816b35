"""TraDy: layers ranked once by memory-reweighted gradient norm, channels resampled every epoch.

Quélennec, Hezbri, Mozharovskyi, Nguyen and Tartaglione, 2025, "Study of
Training Dynamics for Memory-Constrained Fine-Tuning", ICLR 2026, arXiv
2510.19675. Layer importance is set by the architecture, channel importance
by the task. So, once before fine-tuning, each input channel c of each layer
gets its reweighted gradient norm RGN_c = ‖∂L/∂W[:, c]‖₂ / (bytes of its weight
gradient + its activation slice), a layer the sum of its channels' RGN, and
the fewest top layers holding `coverage` (97%) of the total are kept (among
the layers the budget can reach at all: training a layer keeps, besides its
channels, what backward needs on the way to it). Then,
every epoch, input channels of those layers are drawn uniformly at random
and taken while the budget (weight gradients plus saved activations) holds.

Unverified: how RGN aggregates over a layer's channels (the two notes read
differ; the sum is taken), and the offline pass, which here is a few batches
of the target task (the paper ranks on any available task).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from edgewise.errors import check_param
from edgewise.ondevice.selection.base import Selection, Selector, require_budget
from edgewise.ondevice.selection.plan import MemoryPlan
from edgewise.ondevice.selection.ranking import affordable, per_byte, top_layers
from edgewise.ondevice.selection.statistics import Statistics


@dataclass
class TraDy(Selector):
    """Uniform channel resampling inside the layers that hold `coverage` of the RGN."""

    name = "trady"
    coverage: float = 0.97
    layer_scores_: dict[str, Tensor] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        check_param(self.name, "coverage", self.coverage, 0 < self.coverage <= 1, "in (0, 1]")

    def select(self, model: nn.Module, budget: MemoryPlan | None, stats: Statistics) -> Selection:
        plan = require_budget(self.name, budget)
        if not self.layer_scores_:
            rgn = per_byte(plan, stats.gradient_norms())
            self.layer_scores_ = {n: rgn[n].sum() for n in affordable(plan, stats.layers)}
        layers = top_layers(self.layer_scores_, self.coverage)
        pool = [(n, c) for n in layers for c in range(plan.costs[n].channels[1])]
        order = torch.randperm(len(pool), generator=stats.generator).tolist()
        return plan.fill(pool[i] for i in order)
