"""Two-stage ("mixed") training: the backbone with its final exit first, then joint.

Stage 1 trains the backbone and the final classifier alone (plain CE of the last
exit); stage 2 trains every exit jointly with `joint`'s weighted sum. Kubaty et
al. find this regime better than both joint and heads-only ("How to Train Your
Multi-Exit Model? Analyzing the Impact of Training Strategies", Kubaty, Wojcik,
et al. 2024, arXiv 2407.14320).

Unverified:
- the paper's exact split of epochs between the two stages; here each stage runs
  the epochs `train` gives it (``stage_epochs`` to set them apart).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from edgewise.exits.strategies.base import Run, Stage, num_exits
from edgewise.exits.strategies.joint import Joint, JointParams


class TwoStage(Joint):
    """The final exit with the backbone, then all exits jointly (`joint`'s loss)."""

    name = "two-stage"
    Params = JointParams

    def stages(self, net: nn.Module) -> list[Stage]:
        n = num_exits(net)
        (joint,) = super().stages(net)
        backbone = Stage(depth=n, train_stages=tuple(range(n)), train_heads=(n - 1,),
                         new_exits=(n - 1,), name="backbone")
        return [backbone, Stage(depth=n, train_stages=joint.train_stages,
                                train_heads=joint.train_heads,
                                new_exits=tuple(range(n - 1)), name="joint")]

    def loss(self, outputs: Sequence[Tensor], target: Tensor, run: Run) -> Tensor:
        if run.stage_index == 0:  # the backbone stage: the final exit alone
            return F.cross_entropy(outputs[-1], target, label_smoothing=run.label_smoothing)
        return super().loss(outputs, target, run)
