"""Entropy: leave when the softmax distribution is peaked enough.

BranchyNet's test (Teerapittayanon, McDanel, Kung, 2016, arXiv:1709.01686): exit when
``H = -sum_k p_k log p_k`` (nats) is small. The score is ``-H`` so that, as for every rule,
higher means more confident: the threshold ``-0.3`` means "leave when H <= 0.3 nats".
"""

from __future__ import annotations

from torch import Tensor

from edgewise.exits.policies.base import Rule, State


class Entropy(Rule):
    def score(self, logits: Tensor, state: State) -> tuple[Tensor, State]:
        log_p = logits.float().log_softmax(dim=1)
        return (log_p.exp() * log_p).sum(dim=1), None
