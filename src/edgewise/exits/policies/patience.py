"""Patience: leave once enough consecutive exits agree on the class.

PABEE (Zhou et al., 2020, arXiv:2006.04152): a counter grows by one at each exit whose
argmax equals the previous exit's and resets to 0 otherwise; exit ``e`` lets an input
leave when the counter reaches that exit's threshold. The counter is 0 at the first exit,
so a threshold of 0 there sends everything out at once, and 1 needs one agreeing pair.
Unverified: PABEE uses one patience for all exits; here each exit has its own.
"""

from __future__ import annotations

import torch
from torch import Tensor

from edgewise.exits.policies.base import Rule, State


class Patience(Rule):
    stateful = True

    def score(self, logits: Tensor, state: State) -> tuple[Tensor, State]:
        prediction = logits.argmax(dim=1)
        if state is None:
            count = torch.zeros_like(prediction)
        else:
            previous, count = state
            count = torch.where(prediction == previous, count + 1, 0)
        return count.float(), (prediction, count)
