"""NEq's equilibrium maths, shared by `neq`, `neq-budget` and `scotti` (method notes §2.1).

For neuron (output channel) i of a layer, with outputs y_i on a fixed probe set:

- similarity φ_i^t = mean over probe samples of cos(y_i^t, y_i^{t-1}), each
  output map flattened; a pair with a zero norm counts as similarity 1;
- variation Δφ_i^t = φ_i^t − φ_i^{t−1} (φ^0 = 0);
- velocity v_i^t = Δφ_i^t − μ·v_i^{t−1} (v^0 = 0), μ in [0, 0.5].

A neuron with |v_i| < ε is at equilibrium and is frozen for the next epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from edgewise.errors import check_param
from edgewise.ondevice.selection.base import Selector
from edgewise.ondevice.selection.statistics import Statistics

__all__ = ["EquilibriumSelector", "similarity"]


def similarity(current: Tensor, previous: Tensor) -> Tensor:
    """φ per neuron: (N, C, ...) outputs now and before -> (C,) mean cosine over the N samples."""
    a = current.flatten(2).double()
    b = previous.flatten(2).double()
    dot = (a * b).sum(-1)
    norms = a.norm(dim=-1) * b.norm(dim=-1)
    cosine = torch.where(norms > 0, dot / norms.clamp_min(1e-300), torch.ones_like(dot))
    return cosine.mean(0)


@dataclass
class EquilibriumSelector(Selector):
    """The NEq state every epoch updates: previous outputs, similarities and velocities by layer.

    Subclasses call `velocities` once per `select`; it returns None at the first
    epoch, when no previous outputs exist yet.
    """

    mu: float = 0.5
    previous_: dict[str, Tensor] = field(default_factory=dict, init=False, repr=False)
    phi_: dict[str, Tensor] = field(default_factory=dict, init=False, repr=False)
    velocity_: dict[str, Tensor] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        check_param(self.name, "mu", self.mu, 0 <= self.mu <= 0.5, "in [0, 0.5]")

    def velocities(self, stats: Statistics) -> dict[str, Tensor] | None:
        """Advance φ and v by one epoch from the probe outputs; the velocities, or None at first."""
        outputs = stats.outputs()
        first = not self.previous_
        for name, out in outputs.items():
            if name in self.previous_:
                phi = similarity(out, self.previous_[name])
                zero = torch.zeros_like(phi)
                delta = phi - self.phi_.get(name, zero)
                self.velocity_[name] = delta - self.mu * self.velocity_.get(name, zero)
                self.phi_[name] = phi
            self.previous_[name] = out
        return None if first else {n: self.velocity_[n] for n in outputs}
