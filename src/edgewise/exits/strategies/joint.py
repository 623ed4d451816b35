"""Joint training: every exit at once, on a weighted sum of the exits' losses.

``L = sum_e w_e CE_e``. With ``schedule="fixed"`` the weights are constant (default
all 1: MSDNet's unweighted sum, Huang et al. 2018, arXiv 1703.09844). With
``schedule="ramp"`` the internal exits' weights grow linearly over the epochs up
to their final value, as in SDN training (Kaya, Hong, Dumitras 2019, "Shallow-Deep
Networks: Understanding and Mitigating Network Overthinking", arXiv 1810.07052):
``w_i(t) = min(C_i, 0.01 + t C_i / T)`` for internal exit ``i`` at 1-based epoch
``t`` of ``T``, the final exit keeping weight 1.

Unverified:
- ramp's ``C_i`` for a count other than SDN's six internal exits: default
  ``0.9 (i + 1) / n``, which is SDN's 0.15 ... 0.90 when ``n = 6`` (SDN ties
  ``C_i`` to the exit's position in the backbone's cost).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from edgewise.errors import check_param
from edgewise.exits.strategies.base import (
    ExitStrategy,
    Run,
    Stage,
    StrategyParams,
    check_length,
    check_weights,
    cross_entropies,
    num_exits,
    weighted_sum,
)
from edgewise.exits.strategies.maths import sdn_max_weights, sdn_ramp

SCHEDULES = ("fixed", "ramp")


@dataclass
class JointParams(StrategyParams):
    """schedule: "fixed" or "ramp" (SDN).
    weights: fixed: one weight per exit (default all 1); ramp: the final weight ``C_i``
        of each internal exit (default SDN's line), the final exit keeping 1.
    """

    schedule: str = "fixed"
    weights: tuple[float, ...] | None = None

    def check(self, owner: str) -> None:
        check_param(owner, "schedule", self.schedule, self.schedule in SCHEDULES,
                    f"one of {', '.join(SCHEDULES)}")
        check_weights(owner, "weights", self.weights)


class Joint(ExitStrategy):
    """All stages and heads in one stage, on the weighted sum of the exits' losses."""

    name = "joint"
    Params = JointParams

    def stages(self, net: nn.Module) -> list[Stage]:
        n = num_exits(net)
        self.exit_weights(n, 0, 1)  # checks the weights' length now, not mid-training
        return [Stage.whole(n, "joint")]

    def exit_weights(self, n: int, epoch: int, epochs: int) -> list[float]:
        """Weight of each of ``n`` exits at 0-based ``epoch`` of ``epochs``."""
        p = self.params
        if p.schedule == "fixed":
            check_length(self.name, "weights", p.weights, n)
            return [float(w) for w in p.weights] if p.weights is not None else [1.0] * n
        check_length(self.name, "weights", p.weights, n - 1)
        final = list(p.weights) if p.weights is not None else sdn_max_weights(n - 1)
        return sdn_ramp(final, epoch, epochs) + [1.0]

    def loss(self, outputs: Sequence[Tensor], target: Tensor, run: Run) -> Tensor:
        weights = self.exit_weights(len(outputs), run.epoch, run.epochs)
        return weighted_sum(cross_entropies(outputs, target, run.label_smoothing), weights)
