"""sequential: one stage per exit, the new exit's CE, earlier heads frozen."""

from __future__ import annotations

import pytest
import torch.nn.functional as F

from edgewise.exits.strategies import Run, get
from edgewise.exits.strategies.base import exit_outputs


def test_stage_plan_freezes_earlier_heads(tiny_net):
    plan = get("sequential").stages(tiny_net)
    assert [(s.depth, s.train_stages, s.train_heads, s.new_exits) for s in plan] == [
        (1, (0,), (0,), (0,)),
        (2, (0, 1), (1,), (1,)),
        (3, (0, 1, 2), (2,), (2,)),
    ]
    _, frozen = plan[2].modules(tiny_net)
    assert frozen == [tiny_net.heads[0], tiny_net.heads[1]]


def test_frozen_prefix_trains_only_the_new_segment(tiny_net):
    plan = get("sequential", freeze="prefix").stages(tiny_net)
    assert [(s.train_stages, s.train_heads) for s in plan] == [((0,), (0,)), ((1,), (1,)),
                                                              ((2,), (2,))]


@pytest.mark.parametrize("name", ["sequential", "sequential-ewc", "sequential-lwf"])
def test_variants_reuse_the_sequential_plan(name, tiny_net):
    assert get(name).stages(tiny_net) == get("sequential").stages(tiny_net)


def test_loss_is_the_new_exits_ce(tiny_net, batch):
    x, y = batch
    strategy = get("sequential")
    stage = strategy.stages(tiny_net)[1]
    outputs = exit_outputs(tiny_net, x, stage.depth)
    assert len(outputs) == 2
    run = Run(net=tiny_net, stage=stage, stage_index=1, inputs=x, epoch=0, epochs=1)
    assert strategy.loss(outputs, y, run).item() == pytest.approx(
        F.cross_entropy(outputs[1], y).item())
