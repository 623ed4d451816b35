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

from torch import nn

from edgewise.errors import check_param
from edgewise.prune.budget import prunable_layers, prune_smallest
from edgewise.prune.egp import Egp, EgpParams
from edgewise.prune.states import NeuronStates


@dataclass
class NepentheParams(EgpParams):
    """EGP's `ratio`; threshold: the entropy (bits) at or below which a layer is removed."""

    threshold: float = 0.0

    def validate(self, owner: str) -> None:
        super().validate(owner)
        check_param(owner, "threshold", self.threshold, 0 <= self.threshold < 1, "in [0, 1)")


class Nepenthe(Egp):
    """Entropy-weighted global magnitude pruning with per-round layer removal.

    EGP's rounds, with the budget spent globally and layers removed below `threshold`.
    """

    name = "nepenthe"
    Params = NepentheParams

    def prune_round(self, model: nn.Module, states: NeuronStates, layers: list, budget: int) -> dict[str, int]:
        """Prune the `budget` weights smallest in magnitude over entropy, over all `layers`."""
        scale = {p: states.entropy[layer.rectifier] / layer.mean_magnitude
                 for layer in layers for p in layer.params}
        before = {layer.rectifier: layer.size for layer in layers}
        prune_smallest(model, self.masks_, list(scale), budget, scale)
        after = {layer.rectifier: layer.size for layer in prunable_layers(
            model, self.masks_, list(before))}
        return {name: size - after.get(name, 0) for name, size in before.items()}

    def linear_threshold(self) -> float:
        return self.params.threshold
