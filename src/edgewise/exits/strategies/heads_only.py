"""Heads-only ("IC-only", disjoint) training: a pretrained backbone stays frozen.

Only the internal exits' heads learn, on the weighted sum of their losses; the
backbone and (by default) the final classifier keep their pretrained weights, and
their BatchNorm statistics stay as they are (frozen modules run in eval mode).
This is SDN's conversion of a pretrained CNN (Kaya, Hong, Dumitras 2019,
arXiv 1810.07052) and DeeBERT's second stage (Xin et al. 2020, arXiv 2004.12993).
No exit can forget: the shared weights never move.

Unverified:
- SDN trains the heads on the plain sum of their losses; per-exit weights are
  exposed (default all 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

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


@dataclass
class HeadsOnlyParams(StrategyParams):
    """weights: one per trained head (default all 1).
    train_final_head: also fine-tune the final classifier (default: frozen).
    """

    weights: tuple[float, ...] | None = None
    train_final_head: bool = False

    def check(self, owner: str) -> None:
        check_weights(owner, "weights", self.weights)


class HeadsOnly(ExitStrategy):
    """One stage: the heads learn, the backbone is frozen."""

    name = "heads-only"
    Params = HeadsOnlyParams

    def stages(self, net: nn.Module) -> list[Stage]:
        n = num_exits(net)
        heads = tuple(range(n if self.params.train_final_head else n - 1))
        check_length(self.name, "weights", self.params.weights, len(heads))
        return [Stage(depth=n, train_stages=(), train_heads=heads, new_exits=heads,
                      name="heads")]

    def loss(self, outputs: Sequence[Tensor], target: Tensor, run: Run) -> Tensor:
        heads = run.stage.train_heads
        weights = self.params.weights or [1.0] * len(heads)
        losses = cross_entropies([outputs[h] for h in heads], target, run.label_smoothing)
        return weighted_sum(losses, weights)
