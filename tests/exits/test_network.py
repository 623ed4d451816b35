"""EarlyExitNetwork.from_model: cuts on zoo and user models, exits, parameters, costs."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from edgewise import models
from edgewise.errors import ParameterError, UnknownNameError, UserError
from edgewise.exits.network import EarlyExitNetwork, ExitCosts

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

ZOO = {
    "convnet": (["block1", "block2"], (1, 16, 16)),
    "mobilenetv2": (["block3", "block10"], (3, 16, 16)),
    "resnet": (["layer1", "layer2"], (1, 16, 16)),
    "vit": (["block2", "block4"], (1, 16, 16)),
}


def _same_outputs(net: EarlyExitNetwork, model: nn.Module, shape) -> None:
    x = torch.randn(3, *shape)
    model.eval()
    net.eval()
    with torch.no_grad():
        outputs = net(x)
        assert len(outputs) == net.num_exits
        assert all(z.shape == (3, 10) for z in outputs)
        torch.testing.assert_close(outputs[-1], model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_model_cuts_at_named_exits_and_keeps_its_output(name):
    exits, shape = ZOO[name]
    model = models.build(name, 10, shape, width=0.25)
    net = EarlyExitNetwork.from_model(model, exits)
    assert net.exit_names == (*exits, "classifier")
    assert net.heads[-1] is not model.classifier  # the model is copied, never shared
    _same_outputs(net, model, shape)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_model_takes_exits_at_mac_fractions(name):
    _, shape = ZOO[name]
    model = models.build(name, 10, shape, width=0.25)
    net = EarlyExitNetwork.from_model(model, [0.3, 0.6])
    reached = net.costs("macs").fractions()
    assert net.num_exits == 3
    assert 0 < reached[0] < reached[1] < 1
    _same_outputs(net, model, shape)


def test_nested_sequential_children_are_cuts():
    model = models.build("resnet", 10, (1, 16, 16), width=0.25, depth=18)
    net = EarlyExitNetwork.from_model(model, ["layer1.0", "layer2"])
    assert net.exit_names == ("layer1.0", "layer2", "classifier")
    _same_outputs(net, model, (1, 16, 16))


def test_fraction_lands_on_the_nearest_cut():
    model = models.build("resnet", 10, (1, 28, 28))  # stem 1 %, layer1 40 %, layer2 70 %
    assert EarlyExitNetwork.from_model(model, [0.45]).exit_names[0] == "layer1"
    assert EarlyExitNetwork.from_model(model, [0.65]).exit_names[0] == "layer2"


def test_user_residual_model_is_traced_and_cut_between_blocks(residual_model):
    net = EarlyExitNetwork.from_model(residual_model, ["block1", "block2"],
                                      input_shape=(1, 16, 16))
    assert net.exit_names == ("block1", "block2", "fc")
    _same_outputs(net, residual_model, (1, 16, 16))
    assert set(net.heads[-1].state_dict()) == {"fc.weight", "fc.bias"}  # the model's own
    with pytest.raises(UserError, match="'block3' would read the classifier's input"):
        EarlyExitNetwork.from_model(residual_model, ["block3"], input_shape=(1, 16, 16))


def test_user_model_exits_at_fractions(residual_model):
    net = EarlyExitNetwork.from_model(residual_model, [0.2, 0.5], input_shape=(1, 16, 16))
    assert net.num_exits == 3
    _same_outputs(net, residual_model, (1, 16, 16))


def test_no_cut_inside_a_residual_block_or_across_a_skip(residual_model):
    with pytest.raises(UserError, match="No valid cut after 'block1.conv1'.*block1, block2"):
        EarlyExitNetwork.from_model(residual_model, ["block1.conv1"], input_shape=(1, 16, 16))
    # The input of `down` is read again by the functional skip beside it.
    with pytest.raises(UserError, match="No valid cut after 'down'"):
        EarlyExitNetwork.from_model(residual_model, ["down"], input_shape=(1, 16, 16))


def test_a_model_whose_skip_spans_everything_has_no_valid_cut():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.act = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            y = self.act(self.conv(x)) + x
            return self.fc(self.pool(y).flatten(1))

    with pytest.raises(UserError, match="no valid cut"):
        EarlyExitNetwork.from_model(Skip(), [0.5], input_shape=(1, 8, 8))


def test_exit_errors_are_clear(residual_model):
    model = models.build("resnet", 10, (1, 16, 16), width=0.25)
    with pytest.raises(UserError, match="is the final exit"):
        EarlyExitNetwork.from_model(model, ["layer3"])
    with pytest.raises(UserError, match="same cut"):
        EarlyExitNetwork.from_model(model, ["layer1", "layer1.0"])
    with pytest.raises(UserError, match="both fall nearest"):
        EarlyExitNetwork.from_model(model, [0.3, 0.35])
    with pytest.raises(ParameterError, match="The 'exits' parameter of from_model must be fractions"):
        EarlyExitNetwork.from_model(model, [1.5])
    with pytest.raises(ParameterError, match="not a mix"):
        EarlyExitNetwork.from_model(model, ["layer1", 0.5])
    with pytest.raises(UserError, match="needs input_shape"):
        EarlyExitNetwork.from_model(residual_model, ["block1"])
    with pytest.raises(UnknownNameError, match="Did you mean 'macs'"):
        EarlyExitNetwork.from_model(model, [0.5], cost="mac")


def test_parameters_partition_the_network():
    net = EarlyExitNetwork.from_model(models.build("resnet", 10, (1, 16, 16), width=0.25),
                                      ["layer1", "layer2"])
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    heads = set().union(*(ids(net.head_parameters(i)) for i in range(net.num_exits)))
    assert heads.isdisjoint(ids(net.backbone_parameters()))
    assert heads | ids(net.backbone_parameters()) == ids(net.parameters())
    assert ids(net.exit_parameters(0)) == ids(net.stages[0].parameters()) | ids(net.head_parameters(0))
    assert ids(net.exit_parameters(2)) == ids(net.backbone_parameters()) | ids(net.head_parameters(2))


def test_exit_parameters_are_exactly_what_the_exit_depends_on(residual_model):
    net = EarlyExitNetwork.from_model(residual_model, ["block1", "block2"], input_shape=(1, 16, 16))
    net.train()
    net(torch.randn(4, 1, 16, 16))[1].sum().backward()
    touched = {id(p) for p in net.parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert touched == {id(p) for p in net.exit_parameters(1)}


def test_costs_count_every_earlier_head():
    model = models.build("resnet", 10, (1, 28, 28), width=0.5)
    net = EarlyExitNetwork.from_model(model, ["layer1", "layer2"], head="conv-pool-linear")
    costs = net.costs("macs")
    assert costs.full == pytest.approx(sum(costs.stages) + costs.heads[-1])
    assert costs.cumulative[1] == pytest.approx(sum(costs.stages[:2]) + sum(costs.heads[:2]))
    from edgewise.cost import count_macs

    assert costs.full == count_macs(model, torch.randn(1, 1, 28, 28)).total
    assert costs.fractions()[-1] > 1  # reaching the last exit pays for the earlier heads
    skipped = costs.fractions((False, True, True))
    assert skipped[1] == pytest.approx(costs.fractions()[1] - costs.heads[0] / costs.full)


def test_handoffs_are_paid_past_evaluated_exits_only():
    costs = ExitCosts("latency", stages=(1.0, 2.0, 3.0), heads=(0.5, 0.5, 0.2), batch_size=4,
                      handoffs=(0.1, 0.2))
    assert costs.full == pytest.approx(6.2)
    # by hand: 1 + .5; then .1 + 2 + .5; then .2 + 3 + .2
    assert costs.fractions().tolist() == pytest.approx([1.5 / 6.2, 4.1 / 6.2, 7.5 / 6.2])
    # exit 0 skipped: neither its head nor its handoff is paid
    assert costs.fractions((False, True, True)).tolist() == pytest.approx(
        [1 / 6.2, 3.5 / 6.2, 6.9 / 6.2])


def test_latency_costs_are_measured_per_input_and_kept():
    net = EarlyExitNetwork.from_model(models.build("resnet", 10, (1, 16, 16), width=0.25),
                                      ["layer1"])
    costs = net.costs("latency", batch_size=8)
    assert costs.currency == "latency" and costs.batch_size == 8
    assert all(t > 0 for t in costs.stages + costs.heads + costs.handoffs)
    assert len(costs.handoffs) == net.num_exits - 1  # none past the last exit
    assert net.costs("latency", batch_size=8) is costs
    placed = EarlyExitNetwork.from_model(models.build("resnet", 10, (1, 16, 16), width=0.25),
                                         [0.5], cost="latency", batch_size=8)
    assert placed.num_exits == 2


@pytest.mark.parametrize("rule", ["entropy", "max-prob", "patience"])
def test_dynamic_inference_matches_the_simulated_policy(trained, splits, rule):
    from edgewise.exits.calibrate import calibrate
    from edgewise.exits.evaluate import simulate
    from edgewise.exits.outputs import collect

    test = collect(trained, splits.test)
    policy = calibrate(trained, splits.val, budget=0.8, rule=rule)
    expected = simulate(test, policy, trained.costs())["exits"]
    predictions, exits = trained.infer(splits.test.tensors[0], policy)
    assert torch.equal(exits, expected)
    assert torch.equal(predictions, test.logits[exits, torch.arange(len(exits))].argmax(dim=1))
    if rule != "patience":
        assert len(set(exits.tolist())) > 1  # the test means something: inputs leave early
    for i in range(0, 40, 3):  # the batch-1 path
        one, where = trained.infer(splits.test.tensors[0][i : i + 1], policy)
        assert (one.item(), where.item()) == (predictions[i].item(), exits[i].item())


def test_inputs_that_left_are_not_computed_further(trained, splits):
    from edgewise.exits.policies import Policy

    seen = []
    hooks = [stage.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
             for stage in trained.stages]
    try:
        _, exits = trained.infer(splits.test.tensors[0][:64], Policy("max-prob", (0.5, 0.9)))
        assert seen == [64, int((exits >= 1).sum()), int((exits == 2).sum())][: len(seen)]
        seen.clear()
        _, exits = trained.infer(splits.test.tensors[0][:64], Policy("max-prob", (-math.inf, 0.5)))
        assert seen == [64] and (exits == 0).all()  # everyone left: later stages never run
    finally:
        for hook in hooks:
            hook.remove()


def test_disabled_exits_skip_their_heads(trained, splits):
    from edgewise.exits.policies import Policy

    calls = []
    hooks = [head.register_forward_hook(lambda m, i, o, k=k: calls.append(k))
             for k, head in enumerate(trained.heads)]
    try:
        _, exits = trained.infer(splits.test.tensors[0][:16], Policy.disabled("max-prob", 3))
        assert calls == [2] and (exits == 2).all()
        calls.clear()
        trained.infer(splits.test.tensors[0][:16], Policy.disabled("patience", 3))
        assert calls == [0, 1, 2]  # patience needs every prediction
    finally:
        for hook in hooks:
            hook.remove()


def test_infer_needs_a_policy_that_fits(trained):
    from edgewise.exits.policies import Policy

    x = torch.randn(2, 1, 16, 16)
    with pytest.raises(UserError, match="infer needs a policy"):
        trained.infer(x)
    with pytest.raises(ParameterError, match="needs 2"):
        trained.infer(x, Policy("max-prob", (0.5,)))
    training = copy.deepcopy(trained).train()
    with pytest.raises(UserError, match="eval mode"):
        training.infer(x, Policy("max-prob", (0.5, 0.5)))


def test_channels_last_gives_the_same_answers(trained, splits):
    from edgewise.exits.policies import Policy

    policy = Policy("max-prob", (0.6, 0.8))
    x = splits.test.tensors[0][:50]
    expected = trained.infer(x, policy)
    fast = copy.deepcopy(trained).set_memory_format(torch.channels_last)
    conv = next(p for p in fast.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    got = fast.infer(x, policy)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_take_rows_equals_indexing_and_keeps_the_memory_format(memory_format):
    from edgewise.exits.network import take_rows

    x = torch.randn(10, 3, 5, 4).contiguous(memory_format=memory_format)
    rows = torch.tensor([7, 0, 3])
    taken = take_rows(x, rows)
    assert torch.equal(taken, x[rows])
    assert taken.is_contiguous(memory_format=memory_format)
