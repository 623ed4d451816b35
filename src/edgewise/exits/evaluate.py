"""Evaluate an early-exit network from logits cached once: exits, policy, budgets, oracle.

Reported for one split (normally test): every exit's accuracy and the cost of reaching it;
the policy's accuracy, exit distribution and expected cost; accuracy at budgets of 25, 50,
75 and 100 % of the full network's cost, with thresholds calibrated on a separate split
(normally val) and applied here; the frontier of (cost, accuracy) over a grid of budgets;
and the oracle, where each input leaves at the first exit that classifies it right.

The oracle follows SDN's overthinking analysis (Kaya, Hong, Dumitras, 2019,
arXiv:1810.07052): an input that no exit gets right is charged the cost of the last exit
(with every head evaluated), as a policy would pay to reach it. No confidence policy can
beat its accuracy at its cost; the gap measures the policy's headroom.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from edgewise import report
from edgewise.errors import BudgetError
from edgewise.exits.calibrate import search
from edgewise.exits.network import EarlyExitNetwork, ExitCosts
from edgewise.exits.outputs import ExitOutputs, collect
from edgewise.exits.policies import Policy

BUDGETS = (0.25, 0.5, 0.75, 1.0)
FRONTIER_POINTS = 12


@dataclass
class ExitEvaluation:
    """What `evaluate` measured; costs are fractions of the full (static) network's.

    `exit_costs` and `exit_macs` are the costs of reaching each exit with every head
    evaluated; `budgets` maps each budget to the test accuracy and cost reached with
    thresholds calibrated on the calibration split (None where no policy fits it).
    """

    exit_names: list[str]
    exit_accuracy: list[float]
    exit_costs: list[float]
    exit_macs: list[float]
    full_macs: int
    currency: str
    oracle: dict[str, float]
    policy: dict[str, Any] | None = None
    accuracy: float | None = None
    exit_distribution: list[float] | None = None
    expected_cost: float | None = None
    expected_macs: float | None = None
    budgets: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    frontier: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def simulate(outputs: ExitOutputs, policy: Policy, costs: ExitCosts) -> dict[str, Any]:
    """Apply `policy` to cached `outputs`: accuracy, exit distribution (E,), expected cost."""
    num_exits = outputs.logits.shape[0]
    policy.check(num_exits)
    exits = policy.exits(policy.scores(list(outputs.logits)))
    right = outputs.correct.gather(0, exits.unsqueeze(0)).squeeze(0)
    reach = costs.fractions(policy.evaluated(num_exits))
    return {
        "accuracy": float(right.float().mean()),
        "exit_distribution": (torch.bincount(exits, minlength=num_exits) / len(exits)).tolist(),
        "cost": float(reach[exits].mean()),
        "exits": exits,
    }


def oracle(outputs: ExitOutputs, costs: ExitCosts) -> dict[str, float]:
    """Each input at the first exit that is right (else the last): accuracy and mean cost."""
    correct = outputs.correct
    any_right = correct.any(dim=0)
    first = torch.where(any_right, correct.to(torch.uint8).argmax(dim=0), correct.shape[0] - 1)
    return {"accuracy": float(any_right.float().mean()),
            "cost": float(costs.fractions()[first].mean())}


def evaluate(
    net: EarlyExitNetwork,
    split: Dataset | ExitOutputs,
    policy: Policy | None = None,
    *,
    val: Dataset | ExitOutputs | None = None,
    rule: str | None = None,
    cost: str = "macs",
    budgets: Sequence[float] = BUDGETS,
    batch_size: int = 256,
    plot: str | Path | None = None,
) -> ExitEvaluation:
    """Evaluate `net` on `split`, with `policy` (default ``net.policy``) if there is one.

    With `val`, thresholds for each of `budgets` and for the frontier are calibrated there
    with `rule` (default: the policy's rule, else "max-prob") in `cost` ("macs" or
    "latency" at `batch_size`), then applied to `split`. `plot` writes the frontier plot
    (``frontier.png``) there.
    """
    outputs = split if isinstance(split, ExitOutputs) else collect(net, split)
    macs = net.costs("macs")
    costs = net.costs(cost, batch_size)
    policy = policy or net.policy
    rule = rule or (policy.rule if policy else "max-prob")
    result = ExitEvaluation(
        exit_names=list(net.exit_names),
        exit_accuracy=outputs.accuracy().tolist(),
        exit_costs=costs.fractions().tolist(),
        exit_macs=macs.fractions().tolist(),
        full_macs=round(macs.full),
        currency=cost,
        oracle=oracle(outputs, costs),
    )
    if policy is not None:
        run = simulate(outputs, policy, costs)
        result.policy = policy.to_dict()
        result.accuracy = run["accuracy"]
        result.exit_distribution = run["exit_distribution"]
        result.expected_cost = run["cost"]
        result.expected_macs = simulate(outputs, policy, macs)["cost"]
    if val is not None:
        calibration = val if isinstance(val, ExitOutputs) else collect(net, val)
        result.budgets = {f"{b:g}": _at_budget(outputs, calibration, costs, macs, b, rule)
                          for b in budgets}
        top = float(costs.fractions().max())
        grid = torch.linspace(float(costs.fractions()[0]), min(top, 1.0), FRONTIER_POINTS)
        points = [_at_budget(outputs, calibration, costs, macs, float(b), rule) for b in grid]
        result.frontier = [p for p in points if p is not None]
    if plot is not None:
        frontier_plot(result, plot)
    return result


def _at_budget(outputs: ExitOutputs, calibration: ExitOutputs, costs: ExitCosts,
               macs: ExitCosts, budget: float, rule: str) -> dict[str, Any] | None:
    try:
        policy = search(calibration, costs, budget, rule)
    except BudgetError:
        return None
    run = simulate(outputs, policy, costs)
    return {"budget": budget, "accuracy": run["accuracy"], "cost": run["cost"],
            "macs": simulate(outputs, policy, macs)["cost"],
            "exit_distribution": run["exit_distribution"],
            "thresholds": policy.to_dict()["thresholds"]}


def frontier_plot(result: ExitEvaluation, path: str | Path) -> Path:
    """Accuracy against cost: the calibrated frontier, each exit alone, and the oracle."""
    series = {"each exit alone": (result.exit_costs, result.exit_accuracy),
              "oracle": ([result.oracle["cost"]], [result.oracle["accuracy"]])}
    if result.frontier:
        series["policy, calibrated on val"] = ([p["cost"] for p in result.frontier],
                                               [p["accuracy"] for p in result.frontier])
    report.line_plot(path, series, xlabel=f"cost ({result.currency}, fraction of full network)",
                     ylabel="accuracy", title="Early exits: accuracy against cost")
    return Path(path)
