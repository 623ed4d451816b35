"""Sequential training plus Learning without Forgetting for the earlier exits.

Before stage ``s`` the loop hands the strategy the network, and it keeps a frozen
snapshot. During the stage, every earlier exit ``e < s`` is kept close to what the
snapshot says on the *current* inputs:
``L_s = CE(p_s(x), y) + lambda_o sum_{e<s} T^2 KL(softmax(z_e^old / T) || softmax(z_e / T))``
(T = 2 as in LwF), optionally plus the earlier exits' own CE. The snapshot runs in
eval mode (BatchNorm with its running statistics, nothing updated): its outputs
are what the earlier exits answered at test time before the stage. LwF: Li and
Hoiem 2016, "Learning without Forgetting", arXiv 1606.09282; applied to
sequentially added exits by Zniber, Karrakchou, Ghogho 2026, arXiv 2605.05358.

Unverified:
- the paper's lambda_o. LwF's own lambda_o = 1 is the default: on Fashion-MNIST
  (ResNet-8 at width 0.5, exits after layer1 and layer2, 10k training images, SGD
  lr 0.1 one-cycle, 4 epochs for exit 1 then 2 per stage) it cut plain
  sequential's drop of exit-1 validation accuracy from 19.3 to 1.3 points, with
  the later exits within 2 points of sequential's.
- ``old_ce_weight`` = 0: the notes leave open whether old exits keep their CE.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgewise.errors import check_param
from edgewise.exits.strategies.base import (
    Batches,
    Run,
    Stage,
    as_tensor_dict,
    check_keys,
    exit_outputs,
    from_prefix,
)
from edgewise.exits.strategies.maths import kl_with_temperature
from edgewise.exits.strategies.sequential import Sequential, SequentialParams


@dataclass
class SequentialLwFParams(SequentialParams):
    """lwf_lambda: lambda_o >= 0 in front of the distillation terms.
    temperature: T > 0 of the softened distributions.
    old_ce_weight: weight >= 0 of the earlier exits' own CE (default 0: not kept).
    """

    lwf_lambda: float = 1.0
    temperature: float = 2.0
    old_ce_weight: float = 0.0

    def check(self, owner: str) -> None:
        super().check(owner)
        check_param(owner, "lwf_lambda", self.lwf_lambda, self.lwf_lambda >= 0, ">= 0")
        check_param(owner, "temperature", self.temperature, self.temperature > 0, "> 0")
        check_param(owner, "old_ce_weight", self.old_ce_weight, self.old_ce_weight >= 0, ">= 0")


class SequentialLwF(Sequential):
    """`sequential`'s stages; the loss adds distillation from a pre-stage snapshot.

    Learned state: ``snapshot_`` (the network's state dict before the current stage,
    empty before the first stage with earlier exits).
    """

    name = "sequential-lwf"
    Params = SequentialLwFParams

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.snapshot_: dict[str, Tensor] = {}
        self._teacher: nn.Module | None = None

    def before_stage(self, net: nn.Module, stage: Stage, data: Batches) -> None:
        if stage.depth <= 1:
            return  # no earlier exit to keep
        self.snapshot_ = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self._teacher = None

    def teacher(self, net: nn.Module) -> nn.Module:
        """The frozen copy of the network that `snapshot_` holds (built once per stage)."""
        if self._teacher is None:
            teacher = copy.deepcopy(net)
            teacher.load_state_dict(self.snapshot_)
            teacher.zero_grad(set_to_none=True)
            self._teacher = teacher.eval().requires_grad_(False)
        return self._teacher

    def distillation(self, outputs: Sequence[Tensor], run: Run) -> Tensor:
        """``sum_{e<s} T^2 KL(old || new)`` of the earlier exits on ``run.inputs``."""
        old = list(self.old_exits(run))
        if not old or not self.snapshot_:
            return outputs[-1].new_zeros(())
        with torch.no_grad():
            targets = exit_outputs(self.teacher(run.net), run.inputs, len(old))
        t = self.params.temperature
        return sum(kl_with_temperature(outputs[e], targets[e], t) for e in old)

    def loss(self, outputs: Sequence[Tensor], target: Tensor, run: Run) -> Tensor:
        p = self.params
        total = F.cross_entropy(outputs[-1], target, label_smoothing=run.label_smoothing)
        if p.lwf_lambda:
            total = total + p.lwf_lambda * self.distillation(outputs, run)
        if p.old_ce_weight:
            for e in self.old_exits(run):
                total = total + p.old_ce_weight * F.cross_entropy(
                    outputs[e], target, label_smoothing=run.label_smoothing)
        return total

    def state_dict(self) -> dict[str, Tensor]:
        return as_tensor_dict(self.snapshot_, "snapshot_")

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        check_keys(self.name, state, ("snapshot_",))
        self.snapshot_ = from_prefix(state, "snapshot_")
        self._teacher = None
