"""sequential-lwf: the snapshot and the distillation of earlier exits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgewise.exits.strategies import Run, get
from edgewise.exits.strategies.base import exit_outputs


def _stage(net, index, **params):
    strategy = get("sequential-lwf", **params)
    stage = strategy.stages(net)[index]
    return strategy, stage


def _run(net, stage, x, index):
    return Run(net=net, stage=stage, stage_index=index, inputs=x, epoch=0, epochs=1)


def test_no_snapshot_before_the_first_stage(tiny_net, batch):
    strategy, stage = _stage(tiny_net, 0)
    strategy.before_stage(tiny_net, stage, [batch])
    assert strategy.snapshot_ == {}
    x, y = batch
    outputs = exit_outputs(tiny_net, x, 1)
    assert strategy.loss(outputs, y, _run(tiny_net, stage, x, 0)).item() == pytest.approx(
        F.cross_entropy(outputs[0], y).item())


@pytest.mark.parametrize("training", [False, True])
def test_distillation_is_zero_when_the_network_equals_its_snapshot(tiny_net, batch, training):
    x, y = batch
    strategy, stage = _stage(tiny_net, 2)
    tiny_net.eval()
    strategy.before_stage(tiny_net, stage, [batch])
    tiny_net.train(training)
    outputs = exit_outputs(tiny_net, x, stage.depth)
    kd = strategy.distillation(outputs, _run(tiny_net, stage, x, 2))
    if training:  # BatchNorm on batch statistics vs the snapshot's running statistics
        assert kd.item() >= 0
    else:
        assert kd.item() == pytest.approx(0.0, abs=1e-7)
        loss = strategy.loss(outputs, y, _run(tiny_net, stage, x, 2))
        assert loss.item() == pytest.approx(F.cross_entropy(outputs[2], y).item(), rel=1e-6)


def test_distillation_grows_when_the_backbone_moves(tiny_net, batch):
    x, y = batch
    strategy, stage = _stage(tiny_net, 2, temperature=2.0)
    tiny_net.eval()
    strategy.before_stage(tiny_net, stage, [batch])
    with torch.no_grad():
        old = exit_outputs(tiny_net, x, 2)
        tiny_net.stages[0][0].weight.add_(torch.randn_like(tiny_net.stages[0][0].weight))
    outputs = exit_outputs(tiny_net, x, 3)
    kd = strategy.distillation(outputs, _run(tiny_net, stage, x, 2))
    hand = sum(4.0 * F.kl_div(F.log_softmax(outputs[e] / 2, 1), F.softmax(old[e] / 2, 1),
                              reduction="batchmean") for e in range(2))
    assert kd.item() > 0
    assert kd.item() == pytest.approx(hand.item(), rel=1e-4)
    # the gradient reaches the shared backbone, not the frozen snapshot
    kd.backward()
    assert tiny_net.stages[0][0].weight.grad.abs().sum() > 0
    teacher = strategy.teacher(tiny_net)
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_old_ce_weight_adds_the_earlier_exits_ce(tiny_net, batch):
    x, y = batch
    strategy, stage = _stage(tiny_net, 1, lwf_lambda=0.0, old_ce_weight=0.5)
    strategy.before_stage(tiny_net, stage, [batch])
    outputs = exit_outputs(tiny_net, x, 2)
    expected = F.cross_entropy(outputs[1], y) + 0.5 * F.cross_entropy(outputs[0], y)
    got = strategy.loss(outputs, y, _run(tiny_net, stage, x, 1))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_snapshot_survives_a_state_round_trip(tiny_net, batch):
    x, _ = batch
    strategy, stage = _stage(tiny_net, 1)
    tiny_net.eval()
    strategy.before_stage(tiny_net, stage, [batch])
    with torch.no_grad():
        tiny_net.stages[0][0].weight.add_(0.2)
    restored = get("sequential-lwf")
    restored.load_state_dict(strategy.state_dict())
    outputs = exit_outputs(tiny_net, x, 2)
    run = _run(tiny_net, stage, x, 1)
    assert restored.distillation(outputs, run).item() == pytest.approx(
        strategy.distillation(outputs, run).item(), rel=1e-6)
    assert restored.distillation(outputs, run).item() > 0
