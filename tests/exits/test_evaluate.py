"""evaluate: per-exit accuracy, the policy, budgets calibrated on val, the oracle, the plot."""

from __future__ import annotations

import math

import pytest
import torch

from edgewise.exits.evaluate import evaluate, oracle, simulate
from edgewise.exits.network import ExitCosts
from edgewise.exits.outputs import ExitOutputs, collect
from edgewise.exits.policies import Policy

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

COSTS = ExitCosts("macs", stages=(20.0, 30.0, 50.0), heads=(0.0, 0.0, 0.0), batch_size=1)


def handmade() -> ExitOutputs:
    """Four inputs of class 0: right at exits {0}, {1, 2}, {2}, and at none."""
    right, wrong = [5.0, 0.0], [0.0, 5.0]
    rows = {0: [right, wrong, wrong], 1: [wrong, right, right], 2: [wrong, wrong, right],
            3: [wrong, wrong, wrong]}
    logits = torch.tensor([[rows[n][e] for n in range(4)] for e in range(3)])
    return ExitOutputs(logits, torch.zeros(4, dtype=torch.long))


def test_oracle_sends_each_input_to_its_first_right_exit():
    result = oracle(handmade(), COSTS)
    assert result["accuracy"] == 0.75
    # costs 0.2, 0.5, 1.0, and the last exit's 1.0 for the input no exit gets right
    assert result["cost"] == pytest.approx((0.2 + 0.5 + 1.0 + 1.0) / 4)


def test_simulate_counts_accuracy_distribution_and_cost():
    run = simulate(handmade(), Policy("max-prob", (0.9, 0.9)), COSTS)
    assert run["exits"].tolist() == [0, 0, 0, 0]  # every exit is confident here
    assert run["accuracy"] == 0.25 and run["cost"] == pytest.approx(0.2)
    run = simulate(handmade(), Policy("max-prob", (math.inf, 0.9)), COSTS)
    assert run["exit_distribution"] == [0.0, 1.0, 0.0]
    assert run["cost"] == pytest.approx(0.5)


def test_evaluate_a_trained_network(trained, splits, tmp_path):
    val = collect(trained, splits.val)
    policy = Policy("max-prob", (0.9, 0.9))
    result = evaluate(trained, splits.test, policy, val=val, plot=tmp_path / "frontier.png")
    assert result.exit_names == ["block1", "block2", "fc"]
    assert len(result.exit_accuracy) == 3 and sum(result.exit_distribution) == pytest.approx(1)
    assert result.exit_costs == result.exit_macs  # currency: macs
    assert result.oracle["accuracy"] >= max(result.exit_accuracy)
    assert result.expected_macs == pytest.approx(
        sum(p * c for p, c in zip(result.exit_distribution, result.exit_costs, strict=True)))
    assert set(result.budgets) == {"0.25", "0.5", "0.75", "1"}
    assert result.budgets["0.25"] is None  # cheaper than the first exit
    for budget in ("0.5", "0.75", "1"):
        assert result.budgets[budget]["cost"] <= float(budget) + 0.03
    assert result.budgets["1"]["accuracy"] >= result.budgets["0.5"]["accuracy"]
    assert len(result.frontier) >= 10
    assert (tmp_path / "frontier.png").stat().st_size > 1000
    assert result.to_dict()["policy"]["thresholds"] == [0.9, 0.9]


def test_evaluate_in_latency(trained, splits):
    result = evaluate(trained, splits.test, cost="latency", batch_size=32,
                      val=collect(trained, splits.val), budgets=(0.9,))
    assert result.currency == "latency" and result.policy is None
    assert result.exit_costs != result.exit_macs
    assert result.budgets["0.9"]["cost"] <= 0.93
