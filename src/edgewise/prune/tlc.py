"""TLC: BatchNorm-guided layer collapse ("Till the Layers Collapse").

Zhu Liao, Nour Hezbri, Victor Quétu, Van-Tam Nguyen, Enzo Tartaglione, "Till the
Layers Collapse: Compressing a Deep Neural Network through the Lenses of Batch
Normalization Layers", AAAI 2025, arXiv:2412.15077.

Idea: read each rectifier's state off the BatchNorm before it, with no data:
its pre-activation is taken as N(beta_c, gamma_c^2), so P(OFF)_c =
Phi(-beta_c / |gamma_c|). Removing rectifier l linearizes it: channels that are
mostly ON pass unchanged, mostly OFF ones are zeroed (the BatchNorm's gamma and
beta set to 0 and kept there), and the rectifier becomes the identity. Per
round, every remaining candidate is removed on its own on a copy and ranked by
the loss increase it causes on one validation batch; if the best increase is
negative, the k best are removed together for the largest k whose joint loss
does not exceed the original, else only the best. Then the network is
fine-tuned, and the rounds go on (a round undone for losing accuracy spares
its layers from then on).

Candidates are the rectifiers fed through a BatchNorm (for a ResNet block's
``relu2`` the residual branch's ``bn2``, not the shortcut's).

Unverified: the size of the validation batch (``batch=512``; the code takes one
loader batch) and the choice of k (the code's wording admits keeping the first
k that exceeds the original loss; here the largest k that does not).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgewise.errors import check_param
from edgewise.prune.base import DepthPruner, NoPrunableLayerError, PrunerParams
from edgewise.prune.linearize import RECTIFIERS, linearize
from edgewise.prune.masks import Masks
from edgewise.prune.states import bn_off_probability, images_of
from edgewise.prune.structure import batchnorm_of


@dataclass
class TlcParams(PrunerParams):
    """batch: validation inputs on which candidates are ranked."""

    batch: int = 512

    def validate(self, owner: str) -> None:
        super().validate(owner)
        check_param(owner, "batch", self.batch, self.batch >= 1, ">= 1")


def collapse(model: nn.Module, rectifier: str, batchnorm: str, masks: Masks) -> None:
    """Linearize `rectifier`, zeroing (and masking) the BatchNorm channels that are mostly OFF."""
    bn = model.get_submodule(batchnorm)
    off = bn_off_probability(bn) >= 0.5
    masks.prune(model, f"{batchnorm}.weight", off)
    masks.prune(model, f"{batchnorm}.bias", off)
    linearize(model, rectifier, torch.ones(len(off)))


class Tlc(DepthPruner):
    """BatchNorm-guided layer collapse (see the module docstring)."""

    name = "tlc"
    Params = TlcParams

    def _candidates(self, model: nn.Module) -> dict[str, str]:
        return {r: bn for r, bn in batchnorm_of(model).items()
                if isinstance(model.get_submodule(r), RECTIFIERS)}

    def check(self, model: nn.Module) -> None:
        if not self._candidates(model):
            raise NoPrunableLayerError(
                f"tlc found no prunable layer in {type(model).__name__}: it removes rectifiers "
                "(ReLU, ReLU6, GELU modules) that follow a BatchNorm, and the model has none."
            )

    @torch.no_grad()
    def _loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
              removed: list[str], candidates: dict[str, str]) -> float:
        trial = copy.deepcopy(model).eval()
        for name in removed:
            collapse(trial, name, candidates[name], Masks())
        return float(F.cross_entropy(trial(batch[0]), batch[1]))

    def step(self, model: nn.Module, splits: Any, index: int) -> dict[str, Any] | None:
        spared = {name for record in self.undone_rounds() for name in record["linearized"]}
        candidates = {r: bn for r, bn in self._candidates(model).items() if r not in spared}
        if not candidates:
            return None
        n = min(self.params.batch, len(splits.val))
        device = next(model.parameters()).device
        labels = torch.as_tensor([int(splits.val[i][1]) for i in range(n)])
        batch = (images_of(splits.val, 0, n).to(device), labels.to(device))
        base = self._loss(model, batch, [], candidates)
        gaps = {name: self._loss(model, batch, [name], candidates) - base for name in candidates}
        order = sorted(gaps, key=gaps.__getitem__)
        k = 1
        if gaps[order[0]] < 0:
            while k < len(order) and self._loss(model, batch, order[:k + 1], candidates) <= base:
                k += 1
        for name in order[:k]:
            collapse(model, name, candidates[name], self.masks_)
        return {"loss": base, "loss_increase": gaps, "linearized": order[:k]}
