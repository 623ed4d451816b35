"""sequential-ewc: the penalty, the Fisher's accumulation and the anchor."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgewise.exits.strategies import Run, get
from edgewise.exits.strategies.base import exit_outputs


def _after_first_stage(net, batch, **params):
    strategy = get("sequential-ewc", **params)
    stages = strategy.stages(net)
    strategy.after_stage(net, stages[0], [batch])
    return strategy, stages


def test_fisher_covers_the_shared_backbone_only(tiny_net, batch):
    strategy, _ = _after_first_stage(tiny_net, batch)
    assert set(strategy.fisher_) == {n for n, _ in tiny_net.named_parameters()
                                     if n.startswith("stages.0.")}
    assert all((f >= 0).all() for f in strategy.fisher_.values())
    assert any(f.sum() > 0 for f in strategy.fisher_.values())
    assert strategy.fisher_count_ == 1


def test_penalty_is_zero_at_the_anchor_and_grows_with_distance(tiny_net, batch):
    strategy, _ = _after_first_stage(tiny_net, batch, ewc_lambda=10.0)
    assert strategy.penalty(tiny_net).item() == 0.0
    weight = tiny_net.stages[0][0].weight
    direction = torch.randn_like(weight)
    values = []
    for step in (0.01, 0.1, 1.0):
        with torch.no_grad():
            weight.copy_(strategy.anchor_["stages.0.0.weight"] + step * direction)
        values.append(strategy.penalty(tiny_net).item())
    assert 0 < values[0] < values[1] < values[2]
    # quadratic in the distance
    assert values[2] / values[1] == pytest.approx(100.0, rel=1e-3)


def test_penalty_equals_hand_value_for_a_known_fisher(tiny_net, batch):
    strategy, _ = _after_first_stage(tiny_net, batch, ewc_lambda=3.0, fisher_normalize="none")
    weight = tiny_net.stages[0][0].weight
    strategy.fisher_ = {"stages.0.0.weight": torch.full_like(weight, 2.0)}
    strategy.anchor_ = {"stages.0.0.weight": weight.detach() - 0.5}
    # (3 / 2) * sum(2 * 0.5^2) = 0.75 * numel
    assert strategy.penalty(tiny_net).item() == pytest.approx(0.75 * weight.numel())


def test_max_normalisation_divides_by_the_largest_entry(tiny_net, batch):
    strategy, _ = _after_first_stage(tiny_net, batch, ewc_lambda=3.0, fisher_quantile=1.0)
    weight, bias = tiny_net.stages[0][1].weight, tiny_net.stages[0][1].bias
    strategy.fisher_ = {"stages.0.1.weight": torch.full_like(weight, 2.0),
                        "stages.0.1.bias": torch.full_like(bias, 8.0)}
    strategy.anchor_ = {"stages.0.1.weight": weight.detach() - 0.5,
                        "stages.0.1.bias": bias.detach() - 1.0}
    # F / 8: weight 0.25, bias 1.0; (3 / 2) * (0.25 * 0.25 + 1.0 * 1.0) per channel
    expected = 1.5 * (0.0625 + 1.0) * weight.numel()
    assert strategy.penalty(tiny_net).item() == pytest.approx(expected, rel=1e-6)
    assert strategy.stiffness()["stages.0.1.bias"].max().item() == 1.0


def test_quantile_normalisation_clips_the_stiffest_entries(tiny_net, batch):
    strategy, _ = _after_first_stage(tiny_net, batch, fisher_quantile=0.5)
    strategy.fisher_ = {"a": torch.tensor([1.0, 2.0, 4.0, 100.0])}
    # the 0.5 quantile (2nd smallest of 4) is 2.0: min(F / 2, 1)
    assert strategy.stiffness()["a"].tolist() == [0.5, 1.0, 1.0, 1.0]
    strategy.fisher_ = {"a": torch.tensor([0.0, 0.0, 3.0])}  # a zero quantile: no scaling
    assert strategy.stiffness()["a"].tolist() == [0.0, 0.0, 1.0]


def test_loss_adds_the_penalty_only_when_earlier_exits_exist(tiny_net, batch):
    x, y = batch
    strategy, stages = _after_first_stage(tiny_net, batch, ewc_lambda=1.0)
    with torch.no_grad():
        tiny_net.stages[0][0].weight.add_(0.3)
    penalty = strategy.penalty(tiny_net)
    assert penalty > 0
    for index, stage in enumerate(stages[:2]):
        outputs = exit_outputs(tiny_net, x, stage.depth)
        run = Run(net=tiny_net, stage=stage, stage_index=index, inputs=x, epoch=0, epochs=1)
        ce = F.cross_entropy(outputs[-1], y)
        expected = ce + (penalty if index else 0.0)
        assert strategy.loss(outputs, y, run).item() == pytest.approx(expected.item(), rel=1e-6)


def test_penalty_pulls_towards_the_anchor(tiny_net, batch):
    strategy, _ = _after_first_stage(tiny_net, batch, ewc_lambda=1.0, fisher_normalize="none")
    weight = tiny_net.stages[0][0].weight
    with torch.no_grad():
        weight.add_(0.3)
    (g,) = torch.autograd.grad(strategy.penalty(tiny_net), weight)
    f = strategy.fisher_["stages.0.0.weight"]
    assert torch.allclose(g, f * 0.3, atol=1e-6)  # lambda F (theta - theta*)


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_fisher_accumulates_across_stages(tiny_net, batch, mode):
    strategy = get("sequential-ewc", fisher_accumulate=mode)
    stages = strategy.stages(tiny_net)
    strategy.after_stage(tiny_net, stages[0], [batch])
    first = {k: v.clone() for k, v in strategy.fisher_.items()}
    strategy.after_stage(tiny_net, stages[1], [batch])
    from edgewise.exits.strategies.maths import fisher_diagonal
    second = fisher_diagonal(tiny_net, 1, list(strategy.fisher_), [batch], 1024)
    assert set(strategy.fisher_) > set(first)  # stage 1's segment joined
    for name, f in strategy.fisher_.items():
        old = first.get(name, torch.zeros_like(f))
        expected = old + second[name] if mode == "sum" else (old + second[name]) / 2
        assert torch.allclose(f, expected, atol=1e-8)
    assert strategy.fisher_count_ == 2
    # the anchor moves to the latest weights
    assert torch.equal(strategy.anchor_["stages.1.0.weight"], tiny_net.stages[1][0].weight)
    # nothing after the final stage
    strategy.after_stage(tiny_net, stages[2], [batch])
    assert strategy.fisher_count_ == 2


def test_zero_lambda_is_plain_sequential(tiny_net, batch):
    strategy, _ = _after_first_stage(tiny_net, batch, ewc_lambda=0.0)
    with torch.no_grad():
        tiny_net.stages[0][0].weight.add_(1.0)
    assert strategy.penalty(tiny_net).item() == 0.0
