"""The face of an exit policy: a confidence score per input at each exit, one threshold per exit.

An input leaves at the first exit ``e`` whose score reaches the threshold ``t_e``
(``score_e >= t_e``); the last exit takes every input that remains. A rule computes the
score from exit ``e``'s logits and a state carried from earlier exits (patience's agreement
count), so the same rule runs offline on cached logits and online, exit by exit, on the
inputs that have not left yet. A threshold of ``+inf`` disables its exit; for a stateless
rule the disabled exit's head is not even evaluated, and costs count it that way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from edgewise.errors import ParameterError, check_param

State = tuple[Tensor, ...] | None


class Rule:
    """Score inputs at one exit: ``score(logits (N, K), state) -> (scores (N,) float, state)``.

    `state` is None at the first exit; every tensor in it has the batch as its first
    dimension, so that dynamic inference can keep the rows of the inputs that remain.
    `stateful` rules need every head evaluated, even behind a disabled exit.
    """

    stateful = False

    def score(self, logits: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError


@dataclass(frozen=True)
class Policy:
    """Rule name plus one threshold per exit except the last; `info` says how they were chosen.

    ``Policy("max-prob", (0.9, 0.8))`` on a three-exit network lets an input leave at exit 0
    when its top softmax probability is >= 0.9, else at exit 1 when >= 0.8, else at exit 2.
    """

    rule: str
    thresholds: tuple[float, ...]
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        from edgewise.exits.policies import rule_of  # the registry imports this module

        rule_of(self.rule)
        thresholds = tuple(float(t) for t in self.thresholds)
        check_param("policy", "thresholds", self.thresholds,
                    not any(math.isnan(t) for t in thresholds), "numbers (inf disables an exit)")
        object.__setattr__(self, "thresholds", thresholds)

    @classmethod
    def disabled(cls, rule: str, num_exits: int) -> Policy:
        """Every input goes to the last exit: the static network plus the stages' seams."""
        return cls(rule, (math.inf,) * (num_exits - 1))

    @property
    def scorer(self) -> Rule:
        from edgewise.exits.policies import rule_of

        return rule_of(self.rule)

    def check(self, num_exits: int) -> None:
        """Raise unless there is one threshold per exit but the last."""
        if len(self.thresholds) != num_exits - 1:
            raise ParameterError(
                f"The policy has {len(self.thresholds)} thresholds; this network has "
                f"{num_exits} exits, so it needs {num_exits - 1} (the last exit takes the rest)."
            )

    def evaluated(self, num_exits: int) -> tuple[bool, ...]:
        """Which heads run: all for a stateful rule, else those of enabled exits and the last."""
        self.check(num_exits)
        if self.scorer.stateful:
            return (True,) * num_exits
        return tuple(t < math.inf for t in self.thresholds) + (True,)

    def scores(self, logits: Sequence[Tensor]) -> Tensor:
        """Scores (E - 1, N) of every input at every exit but the last, from all exits' logits."""
        rule, state, rows = self.scorer, None, []
        for exit_logits in logits[:-1]:
            score, state = rule.score(exit_logits, state)
            rows.append(score)
        return torch.stack(rows) if rows else torch.empty(0, len(logits[0]))

    def exits(self, scores: Tensor) -> Tensor:
        """Exit index (N,) of every input, from `scores` (E - 1, N)."""
        return first_exit(scores, torch.tensor(self.thresholds, dtype=scores.dtype))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: infinite thresholds are written as the strings "inf" and "-inf"."""
        thresholds = [t if math.isfinite(t) else str(t) for t in self.thresholds]
        return {"rule": self.rule, "thresholds": thresholds, "info": dict(self.info)}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Policy:
        thresholds = tuple(float(t) for t in payload["thresholds"])
        return cls(payload["rule"], thresholds, dict(payload.get("info", {})))


def first_exit(scores: Tensor, thresholds: Tensor) -> Tensor:
    """Index of the first exit whose score reaches its threshold, else the last: (..., E-1, N) -> (..., N).

    `thresholds` is (..., E - 1); leading dimensions broadcast, so that many threshold
    vectors can be tried at once.
    """
    leave = scores >= thresholds.unsqueeze(-1)
    exits = torch.full(leave.shape[:-2] + leave.shape[-1:], leave.shape[-2], dtype=torch.long)
    for e in reversed(range(leave.shape[-2])):  # a few exits; faster than argmax over them
        exits = torch.where(leave[..., e, :], e, exits)
    return exits
