"""Choose per-exit thresholds on validation data so that the expected cost fits a budget.

Problem: maximise validation accuracy over thresholds ``t_0 .. t_{E-2}`` subject to the
expected cost ``mean_n C(exit_n)`` <= ``budget`` (a fraction of the static network's cost,
in MACs or in latency measured here), where ``exit_n`` is the first exit whose score
reaches its threshold and ``C`` counts every head evaluated on the way. The last exit takes
every input that remains. A threshold of ``+inf`` disables its exit (and, for a stateless
rule, saves its head).

Search, on logits cached once. The building block is an exact move on one threshold
``t_j`` with the others fixed: the inputs that reach exit ``j`` and would leave later are
sorted by their score at ``j``; lowering ``t_j`` past each score moves one more of them to
exit ``j``, so cumulative sums give the accuracy and cost of every distinct threshold at
once, and the best feasible one (cheaper on ties) is kept. A pair move does the same for
``t_j`` on every value of another threshold ``t_i`` on a grid of ``grid`` quantiles of its
scores, since two thresholds often must move together (raising one sends inputs to an exit
whose threshold must rise too).

Seeds: every input at the first exit (the cheapest policy, which decides feasibility); the
best single threshold shared by all exits (the usual sweep, as in ZTW, Wolczyk et al.,
2021, arXiv:2106.05409); and each exit alone enabled. From each seed, single moves until a
sweep changes nothing; from the best result, single and pair moves until a sweep changes
nothing. On small problems this finds the brute-force optimum (see the tests).

Unverified: ``grid=100`` quantiles and the sweep cap (20). MSDNet (Huang et al., 2018,
arXiv:1703.09844) instead fits exit fractions ``q_e ∝ p^e`` to a one-parameter family.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor
from torch.utils.data import Dataset

from edgewise.errors import BudgetError, check_param
from edgewise.exits.network import EarlyExitNetwork, ExitCosts
from edgewise.exits.outputs import ExitOutputs, collect
from edgewise.exits.policies import Policy, first_exit, rule_of

MAX_SWEEPS = 20
INF = math.inf


def calibrate(
    net: EarlyExitNetwork,
    val: Dataset | ExitOutputs,
    budget: float = 0.5,
    rule: str = "max-prob",
    cost: str = "macs",
    *,
    batch_size: int = 256,
    grid: int = 100,
) -> Policy:
    """Thresholds for `rule` that keep the expected `cost` on `val` within `budget`.

    `val` is the validation split (or its `collect`ed outputs); `cost` is "macs" or
    "latency" (profiled at `batch_size`). Raises `BudgetError` when even the cheapest
    policy costs more than `budget`. The policy's ``info`` keeps the budget and the
    validation accuracy and cost reached.
    """
    outputs = val if isinstance(val, ExitOutputs) else collect(net, val)
    return search(outputs, net.costs(cost, batch_size), budget, rule, grid=grid,
                  names=net.exit_names)


def search(
    outputs: ExitOutputs,
    costs: ExitCosts,
    budget: float,
    rule: str = "max-prob",
    *,
    grid: int = 100,
    names: tuple[str, ...] = (),
) -> Policy:
    """The search described in the module docstring, on cached `outputs`."""
    check_param("calibrate", "budget", budget, 0 < budget <= 1, "in (0, 1]")
    check_param("calibrate", "grid", grid, grid >= 2, ">= 2")
    cheapest = float(costs.fractions()[0])
    if cheapest > budget:
        where = f" ({names[0]!r})" if names else ""
        raise BudgetError(
            f"No policy meets a budget of {budget:g} of the full network's {costs.currency}: the "
            f"cheapest, every input leaving at the first exit{where}, costs {cheapest:.3f}. "
            "Raise the budget or place an earlier exit."
        )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small tensor operations: extra threads only synchronise
    try:
        return _search(_Problem(outputs, costs, budget, rule), grid)
    finally:
        torch.set_num_threads(threads)


def _search(problem: _Problem, grid: int) -> Policy:
    n = problem.num_thresholds
    levels = torch.linspace(0, 1, grid + 1, dtype=torch.float64)
    grids = [_quantiles(s, levels) for s in problem.scores]
    singles = [(None, j) for j in range(n)]
    pairs = [(i, j) for i, j in itertools.permutations(range(n), 2)]

    def ascend(found: tuple[Tensor, float, float], moves: list) -> tuple[Tensor, float, float]:
        for _ in range(MAX_SWEEPS):
            changed = False
            for i, j in moves:
                start = found[0].unsqueeze(0) if i is None else _vary(found[0], i, grids[i])
                step = problem.move(start, j)
                if _better(step, found):
                    found, changed = step, True
            if not changed:
                break
        return found

    shared = _quantiles(problem.scores.flatten(), levels)
    seeds = [problem.best(torch.full((1, n), -INF, dtype=torch.float64)),
             problem.best(shared.unsqueeze(1).expand(-1, n))]
    seeds += [problem.move(torch.full((1, n), INF, dtype=torch.float64), j) for j in range(n)]
    found = seeds[0]
    for seed in seeds:
        step = ascend(seed, singles)
        found = step if _better(step, found) else found
    chosen, accuracy, cost = ascend(found, singles + pairs)
    info = {"budget": problem.budget_asked, "cost": problem.currency,
            "batch_size": problem.batch_size, "val_accuracy": accuracy, "val_cost": cost}
    return Policy(problem.rule, tuple(chosen.tolist()), info)


class _Problem:
    """Scores (E - 1, N), correctness (E, N) and costs, with the moves of the search."""

    def __init__(self, outputs: ExitOutputs, costs: ExitCosts, budget: float, rule: str) -> None:
        self.scores = Policy(rule, ()).scores(list(outputs.logits)).double()
        self.correct = outputs.correct.double()
        self.stateful = rule_of(rule).stateful
        self.stage = torch.tensor(costs.stages, dtype=torch.float64) / costs.full
        self.head = torch.tensor(costs.heads, dtype=torch.float64) / costs.full
        self.handoff = torch.tensor(costs.handoffs_paid(), dtype=torch.float64) / costs.full
        self.budget = budget + 1e-12
        self.num_thresholds = self.correct.shape[0] - 1
        self.rule, self.budget_asked = rule, budget
        self.currency, self.batch_size = costs.currency, costs.batch_size
        self._sorted: dict[int, tuple[Tensor, ...]] = {}

    def reach(self, thresholds: Tensor) -> Tensor:
        """Cost (K, E) of leaving at each exit under K threshold vectors (which heads run)."""
        runs = torch.ones(len(thresholds), self.num_thresholds + 1, dtype=torch.float64)
        if not self.stateful:
            runs[:, :-1] = (thresholds < INF).double()
        handed = torch.zeros_like(runs)  # inputs going on past exit e - 1 are gathered there
        handed[:, 1:] = self.handoff * runs[:, :-1]
        return torch.cumsum(self.stage + self.head * runs + handed, dim=1)

    def outcome(self, thresholds: Tensor, scores: Tensor, correct: Tensor) -> tuple[Tensor, ...]:
        """Exits (K, N), and per input whether it is right and what it costs (K, N)."""
        exits = first_exit(scores, thresholds)
        right = correct.expand(len(thresholds), -1, -1).gather(1, exits.unsqueeze(1))
        return exits, right.squeeze(1), self.reach(thresholds).gather(1, exits)

    def best(self, thresholds: Tensor) -> tuple[Tensor, float, float]:
        """The best feasible of K threshold vectors (K, E - 1): (thresholds, accuracy, cost)."""
        _, right, cost = self.outcome(thresholds, self.scores, self.correct)
        k, accuracy = _pick(right.mean(dim=1), cost.mean(dim=1), self.budget)
        return thresholds[k], accuracy, float(cost[k].mean())

    def move(self, thresholds: Tensor, j: int) -> tuple[Tensor, float, float]:
        """Best over K vectors (K, E - 1) and every value of ``t_j`` (column j is ignored)."""
        if j not in self._sorted:  # inputs by descending score at exit j, once per exit
            order = torch.argsort(self.scores[j], descending=True)
            ranked = self.scores[j][order]
            ends = torch.ones(len(order) + 1, dtype=torch.bool)
            ends[1:-1] = ranked[:-1] > ranked[1:]  # a threshold takes a tie group whole
            self._sorted[j] = (self.scores[:, order], self.correct[:, order], ranked, ends)
        scores, correct, ranked, ends = self._sorted[j]
        off = thresholds.clone()
        off[:, j] = INF
        exits, right_off, cost_off = self.outcome(off, scores, correct)
        passing = (exits > j).double()  # reach exit j and, with t_j = inf, leave later
        head = 0.0 if self.stateful else float(self.head[j])  # what running head j adds
        handoff = 0.0 if self.stateful else float(self.handoff[j])  # ... for those going on
        cost_on = cost_off + (head + handoff) * passing
        at_j = self.reach(off)[:, j : j + 1] + head
        size = exits.shape[1]
        accuracy_off = right_off.mean(dim=1, keepdim=True)
        gain = torch.cumsum((correct[j] - right_off) * passing, dim=1) / size
        extra = torch.cumsum((at_j - cost_on) * passing, dim=1) / size
        # Column 0: exit j disabled; column m + 1: t_j = the m-th highest score.
        accuracy = torch.cat([accuracy_off, accuracy_off + gain], dim=1)
        cost = torch.cat([cost_off.mean(dim=1, keepdim=True),
                          cost_on.mean(dim=1, keepdim=True) + extra], dim=1)
        cost = torch.where(ends, cost, INF)
        flat, best = _pick(accuracy.flatten(), cost.flatten(), self.budget)
        k, m = divmod(flat, size + 1)
        chosen = thresholds[k].clone()
        chosen[j] = INF if m == 0 else ranked[m - 1]
        return chosen, best, float(cost[k, m])


def _pick(accuracy: Tensor, cost: Tensor, budget: float) -> tuple[int, float]:
    """The most accurate feasible candidate, the cheapest among equals: (index, accuracy).

    The accuracy is -1 when no candidate is feasible, so that such a result never wins.
    """
    accuracy = torch.where(cost <= budget, accuracy, -1.0)
    cost = torch.where(accuracy >= accuracy.max() - 1e-12, cost, INF)
    k = int(cost.argmin())
    return k, float(accuracy[k])


def _better(a: tuple[Tensor, float, float], b: tuple[Tensor, float, float]) -> bool:
    return a[1] > b[1] + 1e-12 or (a[1] >= b[1] - 1e-12 and a[2] < b[2] - 1e-12)


def _vary(thresholds: Tensor, i: int, values: Tensor) -> Tensor:
    """Copies (K, E - 1) of `thresholds` with column `i` set to each of `values` (K,)."""
    trial = thresholds.expand(len(values), -1).clone()
    trial[:, i] = values
    return trial


def _quantiles(scores: Tensor, levels: Tensor) -> Tensor:
    """Candidate thresholds: -inf, +inf and the scores at `levels` (actual score values, so
    that float32 comparisons online agree with this float64 search)."""
    ends = torch.tensor([-INF, INF], dtype=torch.float64)
    return torch.cat([ends, torch.quantile(scores, levels, interpolation="lower")]).unique()
