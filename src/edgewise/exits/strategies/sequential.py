"""Sequential (layer-wise) training: exits are added one at a time to a shared backbone.

Stage ``s`` adds exit ``s``: it trains head ``s`` together with the backbone
segments ``0..s`` on that exit's CE, while the heads of earlier exits stay frozen
(and in eval mode). Training the new exit moves the shared weights under the
earlier heads, so earlier exits forget: the stability-plasticity trade-off that
Zniber, Karrakchou and Ghogho address with EWC (`sequential-ewc`) and LwF
(`sequential-lwf`) ("Balancing Stability and Plasticity in Sequentially Trained
Early-Exiting Neural Networks", 2026, arXiv 2605.05358). ``freeze="prefix"`` is
the zero-forgetting baseline of the same notes: stage ``s`` trains only segment
``s`` and head ``s``.

Subclasses reuse this stage plan and add a term to `loss` (``old_exits(run)``
names the exits that already exist in a stage).

Unverified:
- whether the paper's stage ``s`` also trains the final classifier of the
  backbone from the start; here the final exit is simply the last one added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from edgewise.errors import check_param
from edgewise.exits.strategies.base import ExitStrategy, Run, Stage, StrategyParams, num_exits

FREEZE = ("heads", "prefix")


@dataclass
class SequentialParams(StrategyParams):
    """freeze: "heads" (earlier heads frozen, the shared backbone trains) or "prefix"
    (earlier heads and segments frozen: no forgetting, less plasticity).
    """

    freeze: str = "heads"

    def check(self, owner: str) -> None:
        check_param(owner, "freeze", self.freeze, self.freeze in FREEZE,
                    f"one of {', '.join(FREEZE)}")


class Sequential(ExitStrategy):
    """One stage per exit, shallow to deep; each scores the new exit's CE."""

    name = "sequential"
    Params = SequentialParams

    def stages(self, net: nn.Module) -> list[Stage]:
        plan = []
        for s in range(num_exits(net)):
            segments = (s,) if self.params.freeze == "prefix" else tuple(range(s + 1))
            plan.append(Stage(depth=s + 1, train_stages=segments, train_heads=(s,),
                              new_exits=(s,), name=f"exit-{s}"))
        return plan

    @staticmethod
    def old_exits(run: Run) -> range:
        """The exits trained in earlier stages (all but the stage's new one)."""
        return range(run.stage.depth - 1)

    def loss(self, outputs: Sequence[Tensor], target: Tensor, run: Run) -> Tensor:
        return F.cross_entropy(outputs[-1], target, label_smoothing=run.label_smoothing)
