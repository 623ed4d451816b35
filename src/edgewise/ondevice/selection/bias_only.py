"""Bias-only fine-tuning (TinyTL's frozen-weight setting).

Cai, Gan, Zhu and Han, 2020, "TinyTL: Reduce Activations, Not Trainable
Parameters for Efficient On-Device Learning", arXiv 2007.11622. The bias
gradient is the sum of the output gradient, so a layer that trains only its
bias saves no input; what remains is the path back to it (one-bit rectifier
masks). Without a budget every bias trains; with one, biases are added from
the last layer backwards while they fit.

Unverified: TinyTL's lite residual modules are not included (plain bias-only).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from edgewise.ondevice.ops import sparse_layers
from edgewise.ondevice.selection.base import Selection, Selector
from edgewise.ondevice.selection.plan import BIAS, MemoryPlan
from edgewise.ondevice.selection.statistics import Statistics


@dataclass
class BiasOnly(Selector):
    """The biases of all layers, or of the last ones that fit the budget."""

    name = "bias-only"

    def select(self, model: nn.Module, budget: MemoryPlan | None, stats: Statistics) -> Selection:
        layers = sparse_layers(model)
        biased = [n for n in stats.layers if layers[n].bias is not None]
        if budget is None or budget.limit is None:
            return Selection(biases=frozenset(biased))
        return budget.fill((n, BIAS) for n in reversed(biased))
