"""Max-prob: leave when the top softmax probability is high enough.

The confidence test of SDN (Kaya, Hong, Dumitras, 2019, arXiv:1810.07052) and MSDNet
(Huang et al., 2018, arXiv:1703.09844): score ``max_k softmax(z)_k`` in (0, 1].
"""

from __future__ import annotations

from torch import Tensor

from edgewise.exits.policies.base import Rule, State


class MaxProb(Rule):
    def score(self, logits: Tensor, state: State) -> tuple[Tensor, State]:
        return logits.float().softmax(dim=1).amax(dim=1), None
