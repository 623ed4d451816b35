"""The affine tail after the last nonlinearity collapses into one exact Linear layer."""

import torch
from torch import nn

from edgewise.cost import count_macs
from edgewise.models import build
from edgewise.models.mobilenetv2 import InvertedResidual
from edgewise.prune.fold import Timer, fold
from edgewise.prune.fold.tail import affine_map
from edgewise.prune.linearize import linearize, rectifier_names

from .test_fold import ops, randomise_batchnorms


def resnet_with_linear_last_stage() -> nn.Module:
    """ResNet-18 layout, last stage (strided projection, padded 3x3 convs) without rectifiers."""
    torch.manual_seed(0)
    model = randomise_batchnorms(build("resnet", 10, (1, 16, 16), depth=18, width=0.125))
    for name in rectifier_names(model):
        if name.startswith("layer4"):
            linearize(model, name, torch.ones(64))
    return model


def test_linear_last_stage_becomes_one_linear_layer_equal_to_the_jacobian():
    model = resnet_with_linear_last_stage()
    x = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    result = fold(model, x.float(), timer=False)
    tail = result.summary()["tail"]
    assert tail["applied"] and tail["start"] == "layer3_1_relu2"
    assert ops(result.module, nn.Conv2d) == ops(model, nn.Conv2d) - 5  # layer4's convs went
    # the Linear's weight is d logits / d (layer3 output), by autograd on the original model
    reference = model.double()
    layer3_output = reference.layer3(reference.layer2(reference.layer1(reference.stem(x[:1]))))
    fc = [m for m in result.module.modules() if isinstance(m, nn.Linear)][-1]

    def logits(h):
        return reference.classifier(reference.layer4(h))

    jacobian = torch.autograd.functional.jacobian(logits, layer3_output)
    assert fc.weight.shape == (10, 32 * 4 * 4)  # layer3: 32 channels, 16 px halved twice
    torch.testing.assert_close(fc.weight.double(), jacobian.reshape(10, -1), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(result.module(x.float()), reference(x).float(),
                                   rtol=1e-4, atol=1e-4)


def test_depthwise_and_strided_tail_maps_exactly():
    torch.manual_seed(0)
    model = randomise_batchnorms(nn.Sequential(
        InvertedResidual(4, 8, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)))
    linearize(model, "0.expand.relu", torch.ones(12))
    linearize(model, "0.depthwise.relu", torch.ones(12))
    x = torch.randn(5, 4, 7, 7)
    result = fold(model, x, timer=False)
    assert result.max_abs_error < 1e-9
    assert ops(result.module, nn.Conv2d) == 0 and ops(result.module, nn.Linear) == 1


def test_affine_map_of_a_known_map():
    weight = torch.randn(3, 12, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64)
    module = nn.Sequential(nn.Flatten(), nn.Linear(12, 3).double())
    with torch.no_grad():
        module[1].weight.copy_(weight)
        module[1].bias.copy_(bias)
    found_weight, found_bias = affine_map(module, (1, 3, 2, 2))
    torch.testing.assert_close(found_weight, weight)
    torch.testing.assert_close(found_bias, bias)


def test_a_tail_with_a_rectifier_or_a_single_layer_is_left_alone():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(36, 2))
    result = fold(model, torch.randn(2, 2, 5, 5), timer=False)
    assert result.tail is None and ops(result.module, nn.Conv2d) == 2


class MacTimer(Timer):
    """A deterministic stand-in: a module 'takes' its MACs."""

    def module(self, module, in_shape):
        return float(count_macs(module, torch.zeros(1, *in_shape[1:])).total)


def test_gate_keeps_a_tail_whose_matrix_costs_more_than_its_layers():
    # 1x1 convs on 16x16 pixels: 2,048 + 1,024 + 5,120 MACs, against 10,240 as one matrix
    model = nn.Sequential(nn.Conv2d(4, 2, 1), nn.Conv2d(2, 2, 1), nn.Flatten(), nn.Linear(512, 10))
    result = fold(model, torch.randn(2, 4, 16, 16), timer=MacTimer())
    tail = result.summary()["tail"]
    assert not tail["applied"] and tail["macs_merged"] == 4 * 256 * 10
    assert tail["latency_merged_s"] > tail["latency_unmerged_s"]
    assert ops(result.module, nn.Linear) == 1 and ops(result.module, nn.Conv2d) >= 1
    small = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8, 10))
    result = fold(small, torch.randn(2, 4, 5, 5), timer=MacTimer())
    assert result.summary()["tail"]["applied"] and ops(result.module, nn.Conv2d) == 0
