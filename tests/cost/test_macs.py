"""MACs against closed forms and against fvcore, an independent counter."""

import warnings

import pytest
import torch
from torch import nn

from edgewise import cost, models

with warnings.catch_warnings():  # fvcore scripts helpers with the deprecated torch.jit.script
    warnings.simplefilter("ignore", DeprecationWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS

# fvcore counts one flop per MAC for these; its norm, pool and upsample handles count
# element-wise work that MACs leave out, so they are dropped.
MATMUL_OPS = ("aten::_convolution", "aten::addmm", "aten::bmm", "aten::einsum", "aten::linear",
              "aten::matmul", "aten::mm")


def fvcore_macs(model, x):
    analysis = FlopCountAnalysis(model, x).clear_op_handles().set_op_handle(
        **{op: _DEFAULT_SUPPORTED_OPS[op] for op in MATMUL_OPS})
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis


@pytest.mark.parametrize(
    ("conv", "side"),
    [(nn.Conv2d(3, 8, 3, stride=2, padding=1), 17),
     (nn.Conv2d(8, 12, 5, groups=4, bias=False), 11),
     (nn.Conv2d(6, 6, 3, padding=1, groups=6), 7),
     (nn.Conv2d(4, 16, 1), 5)],
)
def test_conv_closed_form(conv, side):
    x = torch.randn(2, conv.in_channels, side, side)
    out_side = conv(x).shape[-1]
    k = conv.kernel_size[0]
    expected = 2 * conv.out_channels * conv.in_channels // conv.groups * k * k * out_side**2
    assert cost.count_macs(conv, x).total == expected


def test_linear_closed_form_ignores_the_bias():
    linear = nn.Linear(20, 7)
    assert cost.count_macs(linear, torch.randn(3, 20)).total == 3 * 20 * 7
    assert cost.count_macs(linear, torch.randn(3, 5, 20)).total == 3 * 5 * 20 * 7


class SelfSimilarity(nn.Module):
    """A functional matmul inside a module: (N, L, D) -> (N, L, L)."""

    def forward(self, x):
        return x @ x.transpose(1, 2)


def test_functional_matmul_counts():
    assert cost.count_macs(SelfSimilarity(), torch.randn(2, 5, 3)).total == 2 * 5 * 5 * 3


def test_per_module_includes_submodules_and_lists_every_module():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Sequential(nn.Flatten(), nn.Linear(4 * 36, 5)))
    macs = cost.count_macs(model, torch.randn(1, 1, 8, 8))
    assert macs.per_module == {"0": 4 * 9 * 36, "1": 0, "2": 4 * 36 * 5, "2.0": 0, "2.1": 4 * 36 * 5}
    assert macs.total == 4 * 9 * 36 + 4 * 36 * 5
    assert macs.params_per_module["2"] == macs.params_per_module["2.1"] == 4 * 36 * 5 + 5
    assert macs.params_total == 4 * 9 + 4 + 4 * 36 * 5 + 5


def test_a_module_called_twice_counts_twice_and_shared_parameters_once():
    linear = nn.Linear(4, 4, bias=False)
    model = nn.Sequential(linear, nn.Tanh(), linear)
    macs = cost.count_macs(model, torch.randn(1, 4))
    assert macs.total == 2 * 16 and macs.params_total == 16


@pytest.mark.parametrize("training", [True, False])
def test_counting_leaves_the_model_as_it_was(training):
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3)).train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cost.count_macs(model, torch.randn(4, 1, 6, 6) + 5)
    assert model.training is training and model[1].training is training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("convnet", {}), ("mobilenetv2", {}), ("resnet", {}), ("resnet", {"depth": 18}), ("vit", {}),
     ("vit", {"pool": "cls"})],
)
def test_zoo_models_agree_with_fvcore(name, kwargs):
    model = models.build(name, 10, (1, 28, 28), **kwargs).eval()
    x = torch.randn(1, 1, 28, 28)
    ours = cost.count_macs(model, x)
    theirs = fvcore_macs(model, x)
    assert ours.total == pytest.approx(theirs.total(), rel=0.02)
    by_module = theirs.by_module()
    for child, _ in model.named_children():
        assert ours.per_module[child] == pytest.approx(by_module[child], rel=0.02, abs=100)
    assert ours.params_total == sum(p.numel() for p in model.parameters())
