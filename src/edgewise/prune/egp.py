"""EGP: entropy-guided unstructured pruning that removes whole layers.

Zhu Liao, Victor Quétu, Van-Tam Nguyen, Enzo Tartaglione, "Can Unstructured
Pruning Reduce the Depth in Deep Neural Networks?", ICCV 2023 Workshops,
arXiv:2308.06619.

Idea: iterative magnitude pruning in which each layer's share of a round's
budget is driven by its entropy. Per round, for every rectifier layer l with
entropy H_l > 0 and weights left, the score s_l = H_l * mean|w| (over its
remaining weights) gives r_l = (sum_k s_k) / s_l and the share
q_l = B * softmax(r)_l of the budget B = ratio * (weights left), water-filled
where a share exceeds a layer's size. The q_l smallest weights of layer l
are pruned, the network is fine-tuned, and layers whose entropy is then zero
(every channel always ON or always OFF on the training data) are removed:
ON channels pass, OFF channels are zeroed (`Linearized`). The softmax of
inverse scores is very peaked, so in practice each round empties the layer
that is most linear already, which is what makes the depth fall.

Unverified (the paper's code sets them, the paper may not): ``ratio=0.5``
(half of the remaining weights per round) and the entropy definition of the
code (per-batch mean over non-degenerate channels; see `states`). The
per-round schedule of the paper (160 epochs of SGD) is the caller's `train`;
the entropy is recorded on ``samples`` training inputs rather than all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgewise.errors import check_param
from edgewise.prune.base import DepthPruner, NoPrunableLayerError, PrunerParams
from edgewise.prune.budget import (
    egp_allocation,
    prunable_layers,
    prune_smallest,
    round_budget,
)
from edgewise.prune.linearize import linearize, rectifier_names
from edgewise.prune.states import NeuronStates, record_states
from edgewise.prune.structure import feeders


@dataclass
class EgpParams(PrunerParams):
    """ratio: the fraction of the remaining weights pruned per round."""

    ratio: float = 0.5

    def validate(self, owner: str) -> None:
        super().validate(owner)
        check_param(owner, "ratio", self.ratio, 0 < self.ratio < 1, "in (0, 1)")


def remove_linear_layers(model: nn.Module, states: NeuronStates, threshold: float = 0.0) -> list[str]:
    """Linearize every recorded rectifier whose entropy is <= `threshold` (0: exactly linear,
    keeping the channels that were always ON); return their names."""
    removed = []
    for name in states.p_on:
        if (threshold == 0.0 and states.is_linear(name)) or (
            threshold > 0.0 and states.entropy[name] <= threshold
        ):
            linearize(model, name, states.keep(name))
            removed.append(name)
    return removed


def check_has_weights(name: str, model: nn.Module) -> None:
    """Raise `NoPrunableLayerError` when no rectifier is fed by a conv or linear layer."""
    if not any(feeders(model).get(r) for r in rectifier_names(model)):
        raise NoPrunableLayerError(
            f"{name} found no prunable layer in {type(model).__name__}: it needs rectifiers "
            "(ReLU, ReLU6, GELU modules) fed by Conv2d or Linear layers, and the model has none."
        )


class Egp(DepthPruner):
    """Entropy-guided pruning (see the module docstring)."""

    name = "egp"
    Params = EgpParams

    def check(self, model: nn.Module) -> None:
        check_has_weights(self.name, model)

    def step(self, model: nn.Module, splits: Any, index: int) -> dict[str, Any] | None:
        states = record_states(model, splits.train, max_samples=self.params.samples)
        layers = [layer for layer in prunable_layers(model, self.masks_, list(states.p_on))
                  if states.entropy[layer.rectifier] > 0]
        if not layers:
            return None
        ratio = self.params.ratio / 2 ** len(self.undone_rounds())  # halved after each undo
        budget = round_budget(ratio, [layer.size for layer in layers])
        if budget == 0:
            return None
        shares = self.prune_round(model, states, layers, budget)
        return {
            "entropy": dict(states.entropy),
            "ratio": ratio,
            "weights_left": sum(layer.size for layer in layers),
            "budget": budget,
            "shares": shares,
            "pruned_weights": self.masks_.pruned(),
        }

    def prune_round(self, model: nn.Module, states: NeuronStates, layers: list, budget: int) -> dict[str, int]:
        """Prune `budget` weights of the living `layers`; the weights each layer lost, by rectifier.

        EGP: each layer's share of the budget follows its entropy times its mean magnitude.
        """
        scores = torch.tensor([states.entropy[layer.rectifier] * layer.mean_magnitude
                               for layer in layers])
        shares = egp_allocation(scores, torch.tensor([layer.size for layer in layers]), budget)
        for layer, share in zip(layers, shares.tolist(), strict=True):
            prune_smallest(model, self.masks_, layer.params, share)
        return dict(zip([layer.rectifier for layer in layers], shares.tolist(), strict=True))

    def linear_threshold(self) -> float:
        """Entropy (bits) at or below which a rectifier is removed as linear: EGP's zero."""
        return 0.0

    def after_finetune(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        states = record_states(model, splits.train, max_samples=self.params.samples)
        return {"linearized": remove_linear_layers(model, states, self.linear_threshold())}
