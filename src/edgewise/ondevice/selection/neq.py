"""NEq: neurons at equilibrium stop training.

Bragagnolo, Tartaglione and Grangetto, 2022, "To update or not to update?
Neurons at equilibrium in deep models", NeurIPS 2022, arXiv 2207.09455. Each
epoch the outputs of every neuron (output channel) on a small probe set are
compared with the previous epoch's; a neuron whose similarity has stopped
moving (|velocity| < ε, see `equilibrium`) is frozen for the next epoch and
may come back later. Here freezing is real: the frozen rows get no weight
gradient, and a layer with no neuron left saves no input. The first epoch
trains everything (no velocity exists yet). NEq has no budget.

Unverified: the probe set's size (the runner's `probe_size`; the paper
suggests about one image per class).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgewise.errors import check_param
from edgewise.ondevice.ops import sparse_layers
from edgewise.ondevice.selection.base import OUT, Selection
from edgewise.ondevice.selection.equilibrium import EquilibriumSelector
from edgewise.ondevice.selection.plan import MemoryPlan
from edgewise.ondevice.selection.statistics import Statistics


def moving(velocities: dict[str, torch.Tensor], threshold: float) -> Selection:
    """The neurons with |v| >= `threshold`, and the biases of the layers that keep any."""
    channels = {n: torch.nonzero(v.abs() >= threshold).flatten() for n, v in velocities.items()}
    return Selection(channels, OUT, frozenset(n for n, i in channels.items() if i.numel()))


def everything(model: nn.Module, stats: Statistics) -> Selection:
    """Every neuron and bias of the candidate layers (the first epoch of NEq)."""
    layers = sparse_layers(model)
    return Selection(
        {n: torch.arange(layers[n].channels(OUT)) for n in stats.layers},
        OUT,
        frozenset(n for n in stats.layers if layers[n].bias is not None),
    )


@dataclass
class NEq(EquilibriumSelector):
    """Freeze the neurons whose velocity is below `eps`."""

    name = "neq"
    eps: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_param(self.name, "eps", self.eps, self.eps >= 0, ">= 0")

    def select(self, model: nn.Module, budget: MemoryPlan | None, stats: Statistics) -> Selection:
        velocities = self.velocities(stats)
        return everything(model, stats) if velocities is None else moving(velocities, self.eps)
