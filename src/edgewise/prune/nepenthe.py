"""NEPENTHE: entropy-based unstructured pruning as a depth reducer, with layers removed each round.

Zhu Liao, Victor Quétu, Van-Tam Nguyen, Enzo Tartaglione, "NEPENTHE: Entropy-Based
Pruning as a Neural Network Depth's Reducer", arXiv:2404.16890 (v1 2024; v2, "Layer
Collapse Can be Induced by Unstructured Pruning", TMLR 2026).

Idea: magnitude pruning lowers the entropy of the rectifiers it touches, so
steer it toward the layers that are nearly linear already and remove them as
soon as they are. Where EGP hands each *layer* a softmax share of the budget,
NEPENTHE ranks every *weight* by an entropy-weighted irrelevance score,
``|w| / mean_l|w| * H_l`` (its magnitude relative to its layer, times its
layer's entropy), and prunes the B = ratio * (weights left) lowest over the
whole network: the budget goes where entropy is low, and within a layer to the
small weights. After fine-tuning, every layer whose entropy is at most
`threshold` bits is removed in that round, its channels ON at least half of
the time kept and the others zeroed.

Unverified: the code is not public and the paper leaves ``weights_to_prune``
unexplained, so the score above, ``ratio=0.5`` and ``threshold=0.0`` (remove only
exactly linear layers; a small positive value removes nearly linear ones, which
changes the function slightly) are this library's reading of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from edgewise.errors import check_param
from edgewise.prune.base import DepthPruner, PrunerParams
from edgewise.prune.budget import prunable_layers, prune_smallest, round_budget
from edgewise.prune.egp import check_has_weights, remove_linear_layers
from edgewise.prune.states import record_states


@dataclass
class NepentheParams(PrunerParams):
    """ratio: fraction of the remaining weights pruned per round; threshold: the entropy (bits)
    at or below which a layer is removed."""

    ratio: float = 0.5
    threshold: float = 0.0

    def validate(self, owner: str) -> None:
        super().validate(owner)
        check_param(owner, "ratio", self.ratio, 0 < self.ratio < 1, "in (0, 1)")
        check_param(owner, "threshold", self.threshold, 0 <= self.threshold < 1, "in [0, 1)")


class Nepenthe(DepthPruner):
    """Entropy-weighted global magnitude pruning with per-round layer removal."""

    name = "nepenthe"
    Params = NepentheParams

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
        scale = {p: states.entropy[layer.rectifier] / layer.mean_magnitude
                 for layer in layers for p in layer.params}
        before = {layer.rectifier: layer.size for layer in layers}
        prune_smallest(model, self.masks_, list(scale), budget, scale)
        after = {layer.rectifier: layer.size for layer in prunable_layers(
            model, self.masks_, list(before))}
        return {
            "entropy": dict(states.entropy),
            "ratio": ratio,
            "weights_left": sum(layer.size for layer in layers),
            "budget": budget,
            "shares": {name: size - after.get(name, 0) for name, size in before.items()},
            "pruned_weights": self.masks_.pruned(),
        }

    def after_finetune(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        states = record_states(model, splits.train, max_samples=self.params.samples)
        return {"linearized": remove_linear_layers(model, states, self.params.threshold)}
