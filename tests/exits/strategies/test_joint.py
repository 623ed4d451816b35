"""joint, two-stage, heads-only and distill: stage plans, weights and losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgewise.errors import ParameterError
from edgewise.exits.strategies import Run, get
from edgewise.exits.strategies.base import exit_outputs


def _run(net, stage, x, epoch=0, epochs=1, index=0):
    return Run(net=net, stage=stage, stage_index=index, inputs=x, epoch=epoch, epochs=epochs)


def _ces(outputs, y):
    return [F.cross_entropy(z, y) for z in outputs]


def test_joint_fixed_is_the_weighted_sum(tiny_net, batch):
    x, y = batch
    strategy = get("joint", weights=(0.5, 0.0, 2.0))
    (stage,) = strategy.stages(tiny_net)
    assert stage.train_stages == (0, 1, 2) and stage.train_heads == (0, 1, 2)
    outputs = exit_outputs(tiny_net, x)
    ce = _ces(outputs, y)
    got = strategy.loss(outputs, y, _run(tiny_net, stage, x))
    assert got.item() == pytest.approx((0.5 * ce[0] + 2.0 * ce[2]).item(), rel=1e-6)
    # default: MSDNet's unweighted sum
    assert get("joint").loss(outputs, y, _run(tiny_net, stage, x)).item() == pytest.approx(
        sum(ce).item(), rel=1e-6)


def test_joint_ramp_weights_at_given_epochs():
    strategy = get("joint", schedule="ramp")
    # seven exits: six internal ones with SDN's C_i = 0.15 ... 0.90, the final at 1
    w0 = strategy.exit_weights(7, 0, 4)
    assert w0 == pytest.approx([0.0475, 0.085, 0.1225, 0.16, 0.1975, 0.235, 1.0])
    w1 = strategy.exit_weights(7, 1, 4)
    assert w1 == pytest.approx([0.085, 0.16, 0.235, 0.31, 0.385, 0.46, 1.0])
    assert strategy.exit_weights(7, 3, 4) == pytest.approx([0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.0])
    custom = get("joint", schedule="ramp", weights=(0.5, 1.0))
    assert custom.exit_weights(3, 0, 2) == pytest.approx([0.26, 0.51, 1.0])


def test_joint_ramp_loss_uses_the_epoch(tiny_net, batch):
    x, y = batch
    strategy = get("joint", schedule="ramp")
    (stage,) = strategy.stages(tiny_net)
    outputs = exit_outputs(tiny_net, x)
    ce = _ces(outputs, y)
    w = strategy.exit_weights(3, 1, 5)  # C = 0.45, 0.9; t = 2 of 5
    assert w == pytest.approx([0.01 + 2 * 0.45 / 5, 0.01 + 2 * 0.9 / 5, 1.0])
    got = strategy.loss(outputs, y, _run(tiny_net, stage, x, epoch=1, epochs=5))
    hand = sum(wi * c for wi, c in zip(w, ce, strict=True))
    assert got.item() == pytest.approx(hand.item(), rel=1e-6)


def test_weights_of_the_wrong_length_are_rejected_before_training(tiny_net):
    with pytest.raises(ParameterError, match="The 'weights' parameter of joint must be one "
                       r"value per exit \(3 values\)"):
        get("joint", weights=(1.0, 1.0)).stages(tiny_net)
    with pytest.raises(ParameterError, match=r"one value per exit \(2 values\)"):
        get("joint", schedule="ramp", weights=(1.0, 1.0, 1.0)).stages(tiny_net)
    with pytest.raises(ParameterError, match="distill"):
        get("distill", weights=(1.0,)).stages(tiny_net)


def test_two_stage_trains_the_backbone_then_everything(tiny_net, batch):
    x, y = batch
    strategy = get("two-stage")
    first, second = strategy.stages(tiny_net)
    assert (first.train_stages, first.train_heads, first.new_exits) == ((0, 1, 2), (2,), (2,))
    assert (second.train_heads, second.new_exits) == ((0, 1, 2), (0, 1))
    outputs = exit_outputs(tiny_net, x)
    ce = _ces(outputs, y)
    assert strategy.loss(outputs, y, _run(tiny_net, first, x)).item() == pytest.approx(
        ce[2].item())
    assert strategy.loss(outputs, y, _run(tiny_net, second, x, index=1)).item() == \
        pytest.approx(sum(ce).item(), rel=1e-6)


def test_heads_only_trains_internal_heads(tiny_net, batch):
    x, y = batch
    strategy = get("heads-only")
    (stage,) = strategy.stages(tiny_net)
    assert stage.train_stages == () and stage.train_heads == (0, 1)
    trained, frozen = stage.modules(tiny_net)
    assert list(tiny_net.stages) + [tiny_net.heads[2]] == [m for m in frozen]
    ids = {id(p) for p in stage.parameters(tiny_net)}
    assert ids == {id(p) for h in (0, 1) for p in tiny_net.heads[h].parameters()}
    outputs = exit_outputs(tiny_net, x)
    ce = _ces(outputs, y)
    assert strategy.loss(outputs, y, _run(tiny_net, stage, x)).item() == pytest.approx(
        (ce[0] + ce[1]).item(), rel=1e-6)
    (with_final,) = get("heads-only", train_final_head=True).stages(tiny_net)
    assert with_final.train_heads == (0, 1, 2)


def test_distill_adds_kl_to_the_detached_final_exit(tiny_net, batch):
    x, y = batch
    strategy = get("distill", temperature=3.0, distill_weight=0.5)
    (stage,) = strategy.stages(tiny_net)
    outputs = exit_outputs(tiny_net, x)
    ce = _ces(outputs, y)
    teacher = F.softmax(outputs[2].detach() / 3.0, 1)
    kd = sum(9.0 * F.kl_div(F.log_softmax(z / 3.0, 1), teacher, reduction="batchmean")
             for z in outputs[:2])
    loss = strategy.loss(outputs, y, _run(tiny_net, stage, x))
    assert loss.item() == pytest.approx((sum(ce) + 0.5 * kd).item(), rel=1e-5)
    # the final head learns from the labels only: the KL sends it no gradient
    final_w = tiny_net.heads[2][2].weight
    kd_only = strategy.loss(outputs, y, _run(tiny_net, stage, x)) - sum(_ces(outputs, y))
    (g,) = torch.autograd.grad(kd_only, final_w, allow_unused=True)
    assert g is None or g.abs().max() < 1e-6
