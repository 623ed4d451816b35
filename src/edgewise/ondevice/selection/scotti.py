"""SCoTTi: NEq with a threshold that is optimised instead of hand-set.

Li, Tartaglione and Nguyen, 2023, "SCoTTi: Save Computation at Training
Time with an adaptive framework", ICCV 2023 Workshops, arXiv 2312.12483. The
abstract describes an "optimizable threshold parameter" that reduces the
number of neuron updates; the paper itself could not be read (method notes
§2.3), so the rule here is our own reading. Each epoch the threshold τ
minimises J(τ) = (share of neurons updated) + λ·(share of the velocity mass
frozen). J's minimiser freezes a neuron when its share of the velocity mass
is below λ⁻¹ times its share of the count, i.e. τ* = mean|v| / λ; the learned
threshold follows it smoothly, τ ← (1 − s)·τ + s·τ*. Then, as in NEq, the
neurons with |v| ≥ τ train. The first epoch trains everything.

Unverified: the objective J, the trade-off λ (`tradeoff`, 1.0), the smoothing
s (`smoothing`, 0.5), the initial threshold (`eps`, NEq's 1e-3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from edgewise.errors import check_param
from edgewise.ondevice.selection.base import Selection
from edgewise.ondevice.selection.equilibrium import EquilibriumSelector
from edgewise.ondevice.selection.neq import everything, moving
from edgewise.ondevice.selection.plan import MemoryPlan
from edgewise.ondevice.selection.statistics import Statistics


@dataclass
class SCoTTi(EquilibriumSelector):
    """NEq whose threshold is re-optimised every epoch (see the module docstring)."""

    name = "scotti"
    eps: float = 1e-3
    tradeoff: float = 1.0
    smoothing: float = 0.5
    threshold_: Tensor = field(default=None, init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_param(self.name, "eps", self.eps, self.eps >= 0, ">= 0")
        check_param(self.name, "tradeoff", self.tradeoff, self.tradeoff > 0, "> 0")
        check_param(self.name, "smoothing", self.smoothing, 0 < self.smoothing <= 1, "in (0, 1]")
        self.threshold_ = torch.tensor(float(self.eps), dtype=torch.float64)

    def select(self, model: nn.Module, budget: MemoryPlan | None, stats: Statistics) -> Selection:
        velocities = self.velocities(stats)
        if velocities is None:
            return everything(model, stats)
        optimum = torch.cat([v.abs() for v in velocities.values()]).mean() / self.tradeoff
        self.threshold_ = (1 - self.smoothing) * self.threshold_ + self.smoothing * optimum
        return moving(velocities, float(self.threshold_))
