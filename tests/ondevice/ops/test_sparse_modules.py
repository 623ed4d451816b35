"""`prepare` and the sparse modules: the prepared model computes what the stock one did,
full selection gives the stock gradients, and an update touches only the selected channels."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgewise.models import build
from edgewise.ondevice.ops import (
    IN,
    OUT,
    GlobalMean,
    Rectifier,
    SparseConv2d,
    SparseLinear,
    fold_batchnorm,
    prepare,
    sparse_layers,
)

TOL = dict(rtol=1e-5, atol=1e-5)


def tiny(name):
    """A small zoo model with non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = build(name, 3, (1, 10, 10), width=0.25)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("name", ["resnet", "mobilenetv2"])
def test_prepare_keeps_the_function_and_swaps_the_modules(name):
    model = tiny(name)
    x = torch.randn(4, 1, 10, 10)
    expected = model(x)
    prepared = prepare(copy.deepcopy(model), x[:1])
    torch.testing.assert_close(prepared(x), expected, **TOL)
    kinds = {type(m) for m in prepared.modules()}
    assert {SparseConv2d, SparseLinear, Rectifier, GlobalMean} <= kinds
    assert not kinds & {nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.AdaptiveAvgPool2d}
    assert not any(p.requires_grad for p in prepared.parameters())


def test_fold_batchnorm_folds_each_conv_bn_pair_once():
    model = tiny("resnet")
    x = torch.randn(2, 1, 10, 10)
    expected = model(x)
    bns = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert fold_batchnorm(model, x) == bns
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(x), expected, **TOL)


@pytest.mark.parametrize("name", ["resnet", "mobilenetv2"])
def test_full_selection_gives_the_stock_gradients(name):
    model = tiny(name)
    x, y = torch.randn(4, 1, 10, 10), torch.tensor([0, 1, 2, 1])
    stock = copy.deepcopy(model)
    fold_batchnorm(stock, x[:1])  # the same function, stock layers
    F.cross_entropy(stock(x), y).backward()
    prepared = prepare(copy.deepcopy(model), x[:1])
    for layer in sparse_layers(prepared).values():
        layer.select(torch.arange(layer.channels(IN)), IN, bias=True)
    F.cross_entropy(prepared(x), y).backward()
    grads = dict(stock.named_parameters())
    for name_, p in prepared.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[name_].grad, **TOL)


@pytest.mark.parametrize("axis", [IN, OUT])
def test_an_update_changes_only_the_selected_channels(axis):
    torch.manual_seed(0)
    layer = SparseConv2d(nn.Conv2d(4, 6, 3, padding=1))
    before = layer.weight.detach().clone()
    index = torch.tensor([1, 3])
    layer.select(index, axis)
    optimizer = torch.optim.SGD([layer.weight_slice], lr=0.1)
    layer(torch.randn(2, 4, 5, 5)).square().sum().backward()
    optimizer.step()
    layer.commit()
    changed = (layer.weight != before).flatten(2).any(-1)  # (out, in)
    expected = torch.zeros(6, 4, dtype=torch.bool)
    if axis == IN:
        expected[:, index] = True
    else:
        expected[index, :] = True
    assert torch.equal(changed, expected)
    assert layer.bias.grad is None and not layer.weight.requires_grad


def test_forward_uses_the_trained_slice_without_an_explicit_commit():
    layer = SparseLinear(nn.Linear(3, 2))
    layer.select(torch.tensor([0]), IN)
    with torch.no_grad():
        layer.weight_slice.fill_(7.0)
    assert torch.equal(layer(torch.tensor([[1.0, 0.0, 0.0]])) - layer.bias, torch.full((1, 2), 7.0))


def test_reselection_keeps_the_trained_values():
    layer = SparseLinear(nn.Linear(3, 2))
    layer.select(torch.tensor([2]), IN)
    with torch.no_grad():
        layer.weight_slice.fill_(5.0)
    layer.select(torch.tensor([0, 1]), IN)
    assert torch.equal(layer.weight[:, 2], torch.full((2,), 5.0))
    assert layer.weight_slice.shape == (2, 2)


def test_whole_weight_trains_without_a_slice_copy():
    layer = SparseLinear(nn.Linear(3, 2))
    layer.select(torch.arange(3), IN)
    assert layer.weight.requires_grad and layer.weight_slice.numel() == 0


def test_channel_slices_of_grouped_convolutions_are_refused():
    layer = SparseConv2d(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="grouped"):
        layer.select(torch.tensor([0]), IN)
    layer.select(torch.arange(4), IN)  # the whole weight is fine
    assert layer.weight.requires_grad
