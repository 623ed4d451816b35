"""The folder end to end: marked models become shallower plain modules with the same outputs."""

import pytest
import torch
from torch import nn

from edgewise.models import build
from edgewise.models.mobilenetv2 import InvertedResidual
from edgewise.prune.fold import FoldError, Timer, fold, move_padding, plan_padding
from edgewise.prune.fold.merge import Shape
from edgewise.prune.linearize import Linearized, linearize, rectifier_names


def randomise_batchnorms(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=gen))
            m.bias.data.copy_(torch.randn(n, generator=gen))
    return model.eval()


def ops(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def fold_exactly(model, x, **kwargs):
    """Move the paddings of every possible merge, then fold without the latency gate."""
    move_padding(model, plan_padding(model, tuple(x.shape[1:]), timer=False))
    result = fold(model, x, timer=False, **kwargs)
    assert result.max_abs_error < 1e-9  # float64 check inside fold
    with torch.no_grad():
        assert torch.allclose(result.module(x), model(x), atol=1e-5)
    return result


def test_resnet_with_linearized_block_rectifiers_folds_to_one_conv_per_block():
    torch.manual_seed(0)
    model = randomise_batchnorms(build("resnet", 10, (3, 16, 16), width=0.5))  # depth 8
    for name in rectifier_names(model):
        if name.endswith("relu1"):  # half the channels OFF
            linearize(model, name, torch.arange(model.get_submodule(name[:-6]).conv1.out_channels) % 2)
    x = torch.randn(4, 3, 16, 16)
    result = fold_exactly(model, x)
    # 3 blocks (identity, then two with a strided projection) -> one conv each, plus stem and fc
    assert ops(result.module, nn.Conv2d) == 1 + 3
    assert sum(d["absorbs_residual"] for d in result.summary()["decisions"]) == 3
    kernels = sorted(m.kernel_size for m in result.module.modules() if isinstance(m, nn.Conv2d))
    assert kernels == [(3, 3), (5, 5), (7, 7), (7, 7)]


def test_inverted_residual_with_both_relu6_linearized_is_one_dense_3x3():
    torch.manual_seed(0)
    model = randomise_batchnorms(nn.Sequential(InvertedResidual(8, 8, 1, 6)))
    linearize(model, "0.expand.relu", torch.ones(48))
    linearize(model, "0.depthwise.relu", torch.ones(48))
    x = torch.randn(2, 8, 9, 9)
    result = fold_exactly(model, x)
    convs = [m for m in result.module.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and convs[0].kernel_size == (3, 3) and convs[0].groups == 1
    assert convs[0].in_channels == convs[0].out_channels == 8


def test_strided_depthwise_and_projection_merge_without_moving_padding():
    torch.manual_seed(0)
    model = randomise_batchnorms(nn.Sequential(InvertedResidual(8, 16, 2, 6)))
    linearize(model, "0.depthwise.relu", torch.ones(48))  # depthwise (stride 2) -> project (1x1)
    x = torch.randn(2, 8, 10, 10)
    result = fold(model, x, timer=False)
    assert result.max_abs_error < 1e-9
    assert ops(result.module, nn.Conv2d) == 2 and ops(result.module, nn.ReLU6) == 1


def test_off_channel_is_removed_and_its_constant_goes_into_the_next_bias():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 5, 1), nn.ReLU(), nn.Conv2d(5, 6, 3, padding=1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2),
    )
    randomise_batchnorms(model)
    with torch.no_grad():
        model[0].weight[1] = 0  # channel 1 is the constant relu(bn(bias)) ...
        model[1].running_mean[1], model[1].bias[1] = 0.0, 0.7  # ... = 0.7 * ..., > 0
        model[0].weight[2] = 0
        model[1].bias[2] = -5.0  # channel 2 is always OFF
        model[3].weight[3] = 0  # conv 4->5, channel 3: constant into a *padded* conv
        model[3].bias[3] = 1.0
    x = torch.randn(3, 3, 8, 8)
    result = fold(model, x, timer=False, tail=False)  # else the padded conv goes into the tail
    assert result.max_abs_error < 1e-9
    convs = [m for m in result.module.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [2, 5, 6]  # 1 and 2 gone; 3 kept (padding)
    assert result.counts["channels_removed"] == 2


def test_all_off_block_becomes_a_constant_added_to_the_skip():
    torch.manual_seed(0)
    model = randomise_batchnorms(build("resnet", 10, (3, 12, 12), width=0.5))
    linearize(model, "layer1.0.relu1", torch.zeros(8))
    x = torch.randn(2, 3, 12, 12)
    result = fold(model, x, timer=False)
    assert result.max_abs_error < 1e-9
    assert ops(result.module, nn.Conv2d) == ops(model, nn.Conv2d) - 2  # the branch is gone
    assert result.counts["nodes_made_constant"] >= 1


def test_linear_after_linearized_gelu_merges():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 24), nn.GELU(), nn.Linear(24, 6))
    linearize(model, "1", torch.ones(24))
    x = torch.randn(2, 5, 6)  # tokens (N, T, C)
    result = fold(model, x, timer=False)
    assert result.max_abs_error < 1e-9
    assert ops(result.module, nn.Linear) == 1


class MacTimer(Timer):
    """A deterministic stand-in: a conv 'takes' its MACs, an addition one unit."""

    def layer(self, shape, in_shape):
        if not isinstance(shape, Shape):
            return float(shape[0] * shape[1])
        kh, kw = shape.kernel
        per_pixel = shape.out_channels * shape.in_channels // shape.groups * kh * kw
        return per_pixel * in_shape[-1] * in_shape[-2] / shape.stride[0] ** 2

    def residual(self, skip, in_shape, out_shape):
        return 1.0 if skip is None else 1.0 + self.layer(skip, in_shape)


def test_gate_keeps_merges_that_measure_slower_and_reports_both_timings():
    torch.manual_seed(0)
    model = randomise_batchnorms(build("resnet", 10, (3, 16, 16), width=0.5))
    linearize(model, "layer1.0.relu1", torch.ones(8))
    plans = plan_padding(model, (3, 16, 16), timer=MacTimer())
    assert plans == []  # 3x3+3x3 -> 5x5 costs 25/18 the MACs: not worth moving padding
    block = randomise_batchnorms(nn.Sequential(InvertedResidual(16, 16, 1, 6)))
    for name in ("0.expand.relu", "0.depthwise.relu"):
        linearize(block, name, torch.ones(96))
    plans = plan_padding(block, (16, 8, 8), timer=MacTimer())
    assert len(plans) == 1 and plans[0].absorbs_residual
    assert plans[0].latency_merged_s < plans[0].latency_unmerged_s
    move_padding(block, plans)
    result = fold(block, torch.randn(2, 16, 8, 8), timer=MacTimer())
    decision = result.summary()["decisions"][0]
    assert decision["applied"] and decision["macs_merged"] < decision["macs_unmerged"]
    assert decision["latency_merged_s"] < decision["latency_unmerged_s"]


def test_real_timer_records_both_timings():
    model = nn.Sequential(nn.Conv2d(2, 4, 1), Linearized(torch.ones(4)), nn.Conv2d(4, 2, 1))
    result = fold(model, torch.randn(1, 2, 4, 4), timer=Timer(repeats=3, warmup=1))
    decision = result.summary()["decisions"][0]
    assert decision["latency_unmerged_s"] > 0 and decision["latency_merged_s"] > 0
    assert decision["applied"] == (decision["latency_merged_s"] < decision["latency_unmerged_s"])


def test_unsupported_layer_is_named_in_a_clear_error():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Softmax(dim=1))
    with pytest.raises(FoldError, match=r"Cannot fold '1' \(Softmax\)"):
        fold(model, torch.randn(1, 1, 5, 5), timer=False)


def test_a_constant_network_still_returns_one_row_per_input():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 3))
    with torch.no_grad():
        model[0].weight.zero_()
    x = torch.randn(5, 1, 5, 5)
    result = fold(model, x, timer=False)
    assert result.module(x).shape == (5, 3) and result.max_abs_error < 1e-9


class TwoBranches(nn.Module):
    """A block whose main branch is one conv, added to a 1x1 projection of the same input."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Conv2d(4, 6, 3, padding=1)
        self.skip = nn.Conv2d(4, 6, 1)

    def forward(self, x):
        return torch.relu(self.main(x) + self.skip(x))


def test_two_convs_of_one_input_added_become_one_conv():
    model = TwoBranches()
    x = torch.randn(2, 4, 7, 7)
    result = fold(model, x, timer=False)
    assert result.max_abs_error < 1e-9
    assert ops(result.module, nn.Conv2d) == 1
