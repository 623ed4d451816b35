"""Sequential training plus Elastic Weight Consolidation of the earlier exits.

Stage ``s`` minimises ``CE(p_s(x), y) + (lambda / 2) sum_i F_i (theta_i - theta*_i)^2``:
the shared parameters move freely where the earlier exits do not care, and are held
near their anchor ``theta*`` (the values after the previous stage) where the earlier
exits' log-likelihood is sensitive. ``F`` is the diagonal empirical Fisher,
``F_i = E_x[(d/d theta_i log p_e(y|x))^2]``, estimated on training data after each
stage for the exit that stage added, at that stage's final weights, and accumulated
across stages (``fisher_accumulate``: "sum", as in multi-task EWC, or "mean", the
running average). Earlier heads are frozen, so only backbone parameters are
penalised. EWC: Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in
neural networks", arXiv 1612.00796; applied to sequentially added exits by
Zniber, Karrakchou, Ghogho 2026, arXiv 2605.05358.

Stability. SGD is unstable on a quadratic whose curvature ``h`` exceeds a bound set
by the optimiser (``lr * h < 2`` plain, ``< 2 (1 + beta) / (1 + 2 beta)`` with Nesterov
momentum ``beta``: 1.36 at 0.9), and raw Fisher entries span orders of magnitude (on
a ResNet-8's first exit from 0.05 (median) to 22 (its stem)), so a raw lambda strong
enough to protect the typical weight diverges on the stiffest ones. By default
(``fisher_normalize="quantile"``) the penalty therefore uses
``min(F_i / F_q, 1)``, with ``F_q`` the ``fisher_quantile`` quantile of all entries:
no coordinate is stiffer than ``lambda``, the top ``1 - q`` share the full stiffness and
the others keep their Fisher proportions (``q = 1`` is plain max-normalisation).
The default lambda = 10 is stable up to lr ~0.13 with Nesterov momentum 0.9.

Unverified:
- the paper's lambda and Fisher variant. The quantile normalisation and clipping
  are ours (for a lambda that is stable and transfers between networks);
  ``ewc_lambda`` = 10 and ``fisher_quantile`` = 0.9 were tuned on Fashion-MNIST
  (ResNet-8 at width 0.5, exits after layer1 and layer2, 10k training images, SGD
  lr 0.1 one-cycle, 4 epochs for exit 1 then 2 per stage): plain sequential's
  drop of exit-1 validation accuracy fell from 19.3 to 0.3 points, the final
  exit 1.9 points below sequential's. Max-normalisation (q = 1) at lambda = 10
  only cut the drop to 13.4 points, and lambda = 20 diverged.
- Fisher from ``fisher_samples`` = 1024 training samples, per-sample gradients.
"""

from __future__ import annotations

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
    from_prefix,
    num_exits,
)
from edgewise.exits.strategies.maths import ewc_penalty, fisher_diagonal, fisher_quantile
from edgewise.exits.strategies.sequential import Sequential, SequentialParams

ACCUMULATE = ("sum", "mean")
NORMALIZE = ("quantile", "none")


@dataclass
class SequentialEWCParams(SequentialParams):
    """ewc_lambda: lambda >= 0 of the penalty (0 gives plain sequential).
    fisher_samples: training samples (> 0) per Fisher estimate.
    fisher_accumulate: how stages' Fishers combine: "sum" or "mean".
    fisher_normalize: "quantile" (``min(F / F_q, 1)``) or "none" (raw Fisher).
    fisher_quantile: q in (0, 1] of the quantile normalisation (1: divide by the max).
    """

    ewc_lambda: float = 10.0
    fisher_samples: int = 1024
    fisher_accumulate: str = "sum"
    fisher_normalize: str = "quantile"
    fisher_quantile: float = 0.9

    def check(self, owner: str) -> None:
        super().check(owner)
        check_param(owner, "ewc_lambda", self.ewc_lambda, self.ewc_lambda >= 0, ">= 0")
        check_param(owner, "fisher_samples", self.fisher_samples,
                    isinstance(self.fisher_samples, int) and self.fisher_samples > 0,
                    "an integer > 0")
        check_param(owner, "fisher_accumulate", self.fisher_accumulate,
                    self.fisher_accumulate in ACCUMULATE, f"one of {', '.join(ACCUMULATE)}")
        check_param(owner, "fisher_normalize", self.fisher_normalize,
                    self.fisher_normalize in NORMALIZE, f"one of {', '.join(NORMALIZE)}")
        check_param(owner, "fisher_quantile", self.fisher_quantile,
                    0 < self.fisher_quantile <= 1, "in (0, 1]")


class SequentialEWC(Sequential):
    """`sequential`'s stages; the loss adds the EWC penalty around the last anchor.

    Learned state: ``fisher_`` and ``anchor_`` (parameter name -> tensor) and
    ``fisher_count_`` (how many stage estimates the Fisher combines).
    """

    name = "sequential-ewc"
    Params = SequentialEWCParams

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.fisher_: dict[str, Tensor] = {}
        self.anchor_: dict[str, Tensor] = {}
        self.fisher_count_ = 0
        self._named: tuple[int, dict[str, Tensor]] | None = None
        self._stiffness: tuple[dict[str, Tensor], dict[str, Tensor]] | None = None

    def after_stage(self, net: nn.Module, stage: Stage, data: Batches) -> None:
        if stage.depth >= num_exits(net):
            return  # no exit comes after the last: nothing left to protect
        shared = {id(p) for i in range(stage.depth) for p in net.stages[i].parameters()}
        names = [n for n, p in net.named_parameters() if id(p) in shared]
        for e in stage.new_exits:
            new = fisher_diagonal(net, e, names, data, self.params.fisher_samples)
            self._accumulate(new)
        params = dict(net.named_parameters())
        self.anchor_ = {n: params[n].detach().clone() for n in self.fisher_}

    def _accumulate(self, new: dict[str, Tensor]) -> None:
        k = self.fisher_count_
        merged = {}
        for name in self.fisher_.keys() | new.keys():
            old = self.fisher_.get(name)
            f = new.get(name)
            old = torch.zeros_like(f) if old is None else old
            f = torch.zeros_like(old) if f is None else f
            if self.params.fisher_accumulate == "sum":
                merged[name] = old + f
            else:  # running average over the stages' estimates
                merged[name] = (k * old + f) / (k + 1)
        self.fisher_ = merged
        self.fisher_count_ = k + 1

    def stiffness(self) -> dict[str, Tensor]:
        """The Fisher as the penalty uses it: ``min(F / F_q, 1)``, or raw."""
        if self._stiffness is None or self._stiffness[0] is not self.fisher_:
            stiff = dict(self.fisher_)
            if self.params.fisher_normalize == "quantile" and stiff:
                scale = fisher_quantile(self.fisher_, self.params.fisher_quantile)
                stiff = {n: (f / scale).clamp(max=1.0) for n, f in stiff.items()}
            self._stiffness = (self.fisher_, stiff)
        return self._stiffness[1]

    def penalty(self, net: nn.Module) -> Tensor:
        """``(lambda / 2) sum_i F_i (theta_i - theta*_i)^2`` for the network's current weights."""
        if not self.fisher_ or not self.params.ewc_lambda:
            return torch.zeros((), device=next(net.parameters()).device)
        if self._named is None or self._named[0] != id(net):
            self._named = (id(net), dict(net.named_parameters()))
        return ewc_penalty(self._named[1], self.stiffness(), self.anchor_, self.params.ewc_lambda)

    def loss(self, outputs: Sequence[Tensor], target: Tensor, run: Run) -> Tensor:
        ce = F.cross_entropy(outputs[-1], target, label_smoothing=run.label_smoothing)
        if not list(self.old_exits(run)):
            return ce
        return ce + self.penalty(run.net)

    def state_dict(self) -> dict[str, Tensor]:
        return {**as_tensor_dict(self.fisher_, "fisher_"),
                **as_tensor_dict(self.anchor_, "anchor_"),
                "fisher_count_": torch.tensor(self.fisher_count_)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        check_keys(self.name, {k: v for k, v in state.items() if k != "fisher_count_"},
                   ("fisher_", "anchor_"))
        self.fisher_ = from_prefix(state, "fisher_")
        self.anchor_ = from_prefix(state, "anchor_")
        self.fisher_count_ = int(state.get("fisher_count_", torch.tensor(0)))
        self._named = None
