"""Exit rules and the Policy they make with per-exit thresholds."""

from __future__ import annotations

import math

import pytest
import torch

from edgewise.errors import ParameterError, UnknownNameError
from edgewise.exits.policies import RULES, Policy, first_exit, rule_of


def test_max_prob_and_entropy_scores():
    logits = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    score, _ = rule_of("max-prob").score(logits, None)
    torch.testing.assert_close(score, logits.softmax(1).amax(1))
    score, _ = rule_of("entropy").score(logits, None)
    assert score[1] == pytest.approx(-math.log(3), abs=1e-6)  # uniform: entropy log 3
    assert score[0] > score[1]  # peaked is more confident


def test_patience_counts_consecutive_agreement_and_resets():
    rule = rule_of("patience")
    predictions = [[0, 1, 2], [0, 1, 1], [0, 2, 1], [0, 2, 0]]
    counts, state = [], None
    for p in predictions:
        score, state = rule.score(torch.nn.functional.one_hot(torch.tensor(p), 3).float(), state)
        counts.append(score.tolist())
    assert counts == [[0, 0, 0], [1, 1, 0], [2, 0, 1], [3, 1, 0]]


def test_first_exit_takes_the_first_confident_exit_else_the_last():
    scores = torch.tensor([[0.9, 0.2, 0.2], [0.1, 0.8, 0.1]])
    torch.testing.assert_close(first_exit(scores, torch.tensor([0.5, 0.5])), torch.tensor([0, 1, 2]))
    many = first_exit(scores, torch.tensor([[0.5, 0.5], [math.inf, 0.5], [-math.inf, 0.5]]))
    torch.testing.assert_close(many, torch.tensor([[0, 1, 2], [2, 1, 2], [0, 0, 0]]))


@pytest.mark.parametrize("rule", sorted(RULES))
def test_policy_simulates_every_rule_and_round_trips(rule):
    logits = [torch.randn(50, 4) for _ in range(3)]
    policy = Policy(rule, (0.5, -math.inf))
    exits = policy.exits(policy.scores(logits))
    assert set(exits.tolist()) <= {0, 1}
    disabled = Policy.disabled(rule, 3)
    assert (disabled.exits(disabled.scores(logits)) == 2).all()
    assert Policy.from_dict(disabled.to_dict()) == disabled
    assert disabled.to_dict()["thresholds"] == ["inf", "inf"]


def test_disabled_heads_are_skipped_unless_the_rule_keeps_state():
    assert Policy("max-prob", (math.inf, 0.5)).evaluated(3) == (False, True, True)
    assert Policy("patience", (math.inf, 1)).evaluated(3) == (True, True, True)


def test_policy_rejects_bad_thresholds_and_names():
    with pytest.raises(ParameterError, match="The 'thresholds' parameter of policy must be numbers"):
        Policy("max-prob", (float("nan"),))
    with pytest.raises(ParameterError, match="needs 2"):
        Policy("max-prob", (0.5,)).check(3)
    with pytest.raises(UnknownNameError, match="Did you mean 'max-prob'"):
        Policy("maxprob", (0.5,))
