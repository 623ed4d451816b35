"""Self-distillation: every earlier exit learns from the final exit as well as the labels.

``L = sum_e w_e CE_e + alpha * sum_{e<E} T^2 KL(softmax(z_E / T) || softmax(z_e / T))``
with the final logits ``z_E`` detached (the teacher gets no gradient from the
students). One stage, all parameters. This is ZTW's ``distill_last`` mode
(Wolczyk et al. 2021, "Zero Time Waste: Recycling Predictions in Early Exit
Neural Networks", arXiv 2106.05409) with Hinton et al.'s temperature-scaled KL
("Distilling the Knowledge in a Neural Network", 2015, arXiv 1503.02531); the
same idea drives "Be Your Own Teacher" (Zhang et al. 2019, arXiv 1905.08094).

Unverified:
- temperature 2 and distillation weight 1 (ZTW uses CE against the teacher's
  softmax, i.e. T = 1, with a tuned weight).
- CE weights default to all 1.
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
from edgewise.exits.strategies.maths import kl_with_temperature


@dataclass
class DistillParams(StrategyParams):
    """temperature: T > 0 of the softened distributions.
    distill_weight: alpha >= 0 in front of the distillation terms.
    weights: CE weight per exit (default all 1).
    """

    temperature: float = 2.0
    distill_weight: float = 1.0
    weights: tuple[float, ...] | None = None

    def check(self, owner: str) -> None:
        check_param(owner, "temperature", self.temperature, self.temperature > 0, "> 0")
        check_param(owner, "distill_weight", self.distill_weight,
                    self.distill_weight >= 0, ">= 0")
        check_weights(owner, "weights", self.weights)


class Distill(ExitStrategy):
    """Joint CE plus distillation from the (detached) final exit into each earlier exit."""

    name = "distill"
    Params = DistillParams

    def stages(self, net: nn.Module) -> list[Stage]:
        n = num_exits(net)
        check_length(self.name, "weights", self.params.weights, n)
        return [Stage.whole(n, "distill")]

    def loss(self, outputs: Sequence[Tensor], target: Tensor, run: Run) -> Tensor:
        p = self.params
        weights = p.weights or [1.0] * len(outputs)
        ce = weighted_sum(cross_entropies(outputs, target, run.label_smoothing), weights)
        if not p.distill_weight:
            return ce
        teacher = outputs[-1].detach()
        kd = sum(kl_with_temperature(z, teacher, p.temperature) for z in outputs[:-1])
        return ce + p.distill_weight * kd
