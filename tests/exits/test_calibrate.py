"""calibrate: thresholds that keep the expected cost within the budget, as accurately as possible."""

from __future__ import annotations

import math

import pytest
import torch

from edgewise.errors import BudgetError, ParameterError
from edgewise.exits.calibrate import calibrate, search
from edgewise.exits.evaluate import simulate
from edgewise.exits.network import ExitCosts
from edgewise.exits.outputs import ExitOutputs, collect
from edgewise.exits.policies import first_exit

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

COSTS = ExitCosts("macs", stages=(30.0, 30.0, 40.0), heads=(1.0, 1.0, 0.0), batch_size=1)


def fake_outputs(n: int, seed: int, strengths=(1.0, 2.0, 3.0), classes: int = 5) -> ExitOutputs:
    """Exits that get better with depth; an input's difficulty is shared by all exits."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    ease = torch.rand(n, generator=g) * 2
    logits = []
    for strength in strengths:
        z = torch.randn(n, classes, generator=g)
        z[torch.arange(n), labels] += strength * ease
        logits.append(z)
    return ExitOutputs(torch.stack(logits), labels)


@pytest.mark.parametrize("rule", ["entropy", "max-prob", "patience"])
@pytest.mark.parametrize("budget", [0.5, 0.75, 0.9])
def test_budget_holds_on_held_out_data_within_2_percent(rule, budget):
    val, test = fake_outputs(3000, seed=1), fake_outputs(3000, seed=2)
    policy = search(val, COSTS, budget, rule)
    assert policy.info["val_cost"] <= budget + 1e-9
    assert simulate(val, policy, COSTS)["cost"] == pytest.approx(policy.info["val_cost"])
    assert simulate(test, policy, COSTS)["cost"] <= budget + 0.02


@pytest.mark.parametrize("rule", ["max-prob", "patience"])
def test_the_search_costs_handoffs_as_the_simulation_does(rule):
    costs = ExitCosts("latency", stages=(30.0, 30.0, 40.0), heads=(2.0, 1.0, 0.5), batch_size=8,
                      handoffs=(4.0, 3.0))
    val = fake_outputs(2000, seed=7)
    policy = search(val, costs, 0.7, rule)
    assert policy.info["val_cost"] <= 0.7 + 1e-9
    assert simulate(val, policy, costs)["cost"] == pytest.approx(policy.info["val_cost"])


def test_more_budget_buys_accuracy_up_to_the_deepest_exit():
    val = fake_outputs(2000, seed=3)
    cheapest = search(val, COSTS, 0.32)
    richest = search(val, COSTS, 1.0)
    middle = search(val, COSTS, 0.6)
    assert cheapest.info["val_accuracy"] < middle.info["val_accuracy"] <= richest.info["val_accuracy"]
    assert richest.info["val_accuracy"] >= float(val.accuracy().max()) - 1e-9


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_search_matches_brute_force_on_small_problems(seed):
    val = fake_outputs(150, seed=seed)
    costs = ExitCosts("macs", stages=(30.0, 30.0, 40.0), heads=(0.0, 0.0, 0.0), batch_size=1)
    policy = search(val, costs, 0.6, grid=400)  # the fine grid holds every score
    scores = policy.scores(list(val.logits)).double()
    every = torch.cartesian_prod(*[torch.tensor([-math.inf, math.inf, *s.tolist()]) for s in scores])
    exits = first_exit(scores, every.double())
    accuracy = val.correct.float()[exits, torch.arange(150)].mean(dim=1)
    cost = costs.fractions()[exits].mean(dim=1)
    best = float(accuracy[cost <= 0.6 + 1e-12].max())
    assert policy.info["val_accuracy"] == pytest.approx(best)


def test_a_budget_no_policy_can_meet_is_a_clear_error():
    with pytest.raises(BudgetError, match=r"No policy meets a budget of 0.2 .* costs 0.310"):
        search(fake_outputs(100, seed=5), COSTS, 0.2)


def test_budget_is_validated_with_the_standard_message():
    with pytest.raises(ParameterError, match=r"The 'budget' parameter of calibrate must be in \(0, 1\]. Got 1.5."):
        search(fake_outputs(100, seed=5), COSTS, 1.5)


def test_calibrate_a_trained_network_in_macs_and_in_latency(trained, splits):
    val = collect(trained, splits.val)
    test = collect(trained, splits.test)
    policy = calibrate(trained, val, budget=0.7)
    assert simulate(test, policy, trained.costs("macs"))["cost"] <= 0.72
    assert simulate(test, policy, trained.costs("macs"))["accuracy"] > float(test.accuracy()[0])
    timed = calibrate(trained, val, budget=0.7, cost="latency", batch_size=32)
    assert timed.info["cost"] == "latency" and timed.info["batch_size"] == 32
    assert simulate(val, timed, trained.costs("latency", 32))["cost"] <= 0.7 + 1e-9
