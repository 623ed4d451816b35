import itertools
import random

import pytest
import torch
from torch import nn

from edgewise.cost import saved_activation_bytes
from edgewise.errors import BudgetError, ParameterError
from edgewise.ondevice.compress import make_compressor, prepare_compression
from edgewise.ondevice.compress.asi import SubspaceCodec, knapsack
from edgewise.ondevice.compress.base import Compressed, select_layers


def test_knapsack_picks_the_optimum_where_greedy_fails():
    groups = [
        [(1, 10.0), (3, 4.0), (5, 0.5)],
        [(1, 9.0), (2, 5.0), (4, 1.0)],
    ]
    # best: 3 + 2 bytes for 4 + 5 = 9; taking the best first option (5 bytes) leaves 9 + 0.5
    assert knapsack(groups, budget=6) == [1, 1]
    assert knapsack(groups, budget=9) == [2, 2]
    assert knapsack(groups, budget=2) == [0, 0]


def test_knapsack_matches_brute_force_and_never_exceeds_the_budget():
    rng = random.Random(0)
    for _ in range(40):
        groups = [
            [(rng.randint(1, 20), rng.random()) for _ in range(rng.randint(1, 4))]
            for _ in range(rng.randint(1, 5))
        ]
        budget = rng.randint(sum(min(s for s, _ in g) for g in groups), 60)
        picks = knapsack(groups, budget)
        size = sum(groups[g][p][0] for g, p in enumerate(picks))
        cost = sum(groups[g][p][1] for g, p in enumerate(picks))
        best = min(
            sum(c for _, c in combo)
            for combo in itertools.product(*groups)
            if sum(s for s, _ in combo) <= budget
        )
        assert size <= budget
        assert cost == pytest.approx(best)


def test_knapsack_rejects_an_impossible_budget():
    with pytest.raises(BudgetError, match="needs 5"):
        knapsack([[(2, 1.0), (3, 0.0)], [(3, 1.0)]], budget=4)


def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )


def batch(n=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 12, 12, generator=generator), torch.randint(0, 3, (n,), generator=generator)


WRAPPED = ["0", "2", "4", "8"]
# rank 1 everywhere, a mode of size 1 kept whole: inputs (8,1,12,12), (8,4,12,12), (8,8,6,6), (8,8)
RANK_ONE_BYTES = 4 * ((1 + 8 + 12 + 12) + (1 + 8 + 4 + 12 + 12) + (1 + 8 + 8 + 6 + 6) + (1 + 8 + 8))


def wrapped_bytes(model, x, y):
    per_module = saved_activation_bytes(model, x, y).per_module
    return sum(per_module[name] for name in WRAPPED)


@pytest.mark.parametrize("budget", [RANK_ONE_BYTES, 2000, 6000, 20000])
def test_the_budget_is_never_exceeded(budget):
    model = tiny_cnn()
    x, y = batch()
    prepare_compression(model, "asi", budget_bytes=budget, calibration_batch=(x, y))
    planner_options = {name: model.get_submodule(name).codec.ranks for name in WRAPPED}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(3):  # the warm-started steps keep the planned sizes
        xs, ys = batch(seed=step)
        assert wrapped_bytes(model, xs, ys) <= budget
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(xs), ys).backward()
        optimizer.step()
    assert {name: model.get_submodule(name).codec.ranks for name in WRAPPED} == planner_options


def test_the_plan_reports_the_bytes_that_are_measured():
    model = tiny_cnn()
    x, y = batch()
    asi = make_compressor("asi")
    targets = select_layers(model, None, asi.layer_types, "asi")
    for name, wrapper in asi.wrap(model, targets, budget_bytes=5000, calibration_batch=(x, y)).items():
        model.set_submodule(name, wrapper)
    assert wrapped_bytes(model, x, y) == sum(option.nbytes for option in asi.plan_.values())


def test_a_larger_budget_gives_a_smaller_gradient_error():
    errors = []
    for budget in (RANK_ONE_BYTES, 3000, 30000):
        model = tiny_cnn()
        asi = make_compressor("asi")
        asi.wrap(model, select_layers(model, None, asi.layer_types, "asi"),
                 budget_bytes=budget, calibration_batch=batch())
        errors.append(sum(option.error for option in asi.plan_.values()))
    assert errors[0] > errors[1] > errors[2]


def test_an_impossible_budget_is_a_clear_budget_error():
    model = tiny_cnn()
    with pytest.raises(BudgetError, match=f"below the {RANK_ONE_BYTES} bytes .* rank 1 in every mode"):
        prepare_compression(model, "asi", budget_bytes=RANK_ONE_BYTES - 1, calibration_batch=batch())
    assert not any(isinstance(m, Compressed) for m in model.modules())  # nothing swapped


def test_asi_needs_a_calibration_batch():
    with pytest.raises(ParameterError, match="The 'calibration_batch' parameter of asi must be"):
        prepare_compression(tiny_cnn(), "asi", budget_bytes=10000)


def test_full_rank_asi_trains_exactly_like_the_dense_model():
    dense, model = tiny_cnn().double(), tiny_cnn().double()
    x, y = batch()
    x = x.double()
    prepare_compression(model, "asi", calibration_batch=(x, y), epsilon=1.0)
    for net in (dense, model):
        nn.functional.cross_entropy(net(x), y).backward()
    for (name, p), q in zip(dense.named_parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=1e-5, msg=name)


def test_calibration_leaves_the_model_as_it_was():
    model = tiny_cnn()
    model[0].weight.requires_grad_(False)
    model.train()
    prepare_compression(model, "asi", layers=["0", "4"], calibration_batch=batch()[0])
    assert model.training and not model[0].weight.requires_grad and model[4].weight.requires_grad
    assert model[0].weight.grad is None and model[4].weight.grad is None


def test_subspace_codec_handles_a_smaller_last_batch():
    codec = SubspaceCodec((4, 4, 3, 3))
    big, small = torch.randn(8, 4, 5, 5), torch.randn(3, 4, 5, 5)
    assert codec.compress(big).core.shape == (4, 4, 3, 3)  # the channel mode is whole
    assert codec.compress(small).core.shape == (3, 4, 3, 3)
    assert codec.compress(big).core.shape == (4, 4, 3, 3)
