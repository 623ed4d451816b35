"""ResNet: the CIFAR-style layouts of depth 8 and 18, and BasicBlock's parts."""

import pytest
import torch
from torch import nn

from edgewise import models
from edgewise.errors import ParameterError
from edgewise.models.resnet import BasicBlock


def conv_macs(conv: nn.Conv2d, out_side: int) -> int:
    """Cout * Cin/groups * k * k * Hout * Wout."""
    k = conv.kernel_size[0]
    return conv.out_channels * conv.in_channels // conv.groups * k * k * out_side**2


def test_depth_8_layout_and_first_stage_share():
    model = models.build("resnet", 10, (1, 28, 28))
    assert [n for n, _ in model.named_children()] == ["stem", "layer1", "layer2", "layer3", "classifier"]
    assert [len(model.get_submodule(f"layer{i}")) for i in (1, 2, 3)] == [1, 1, 1]
    assert [model.get_submodule(f"layer{i}")[0].conv2.out_channels for i in (1, 2, 3)] == [16, 32, 64]
    # MACs by closed form at 28 -> 28 -> 14 -> 7 px: the first stage is about 40% of them
    sides = {"stem": 28, "layer1": 28, "layer2": 14, "layer3": 7}
    per_stage = {
        stage: sum(conv_macs(m, side) for m in model.get_submodule(stage).modules()
                   if isinstance(m, nn.Conv2d))
        for stage, side in sides.items()
    }
    share = per_stage["layer1"] / (sum(per_stage.values()) + 64 * 10)
    assert 0.35 < share < 0.45


def test_depth_18_layout():
    model = models.build("resnet", 10, (3, 32, 32), depth=18)
    assert [n for n, _ in model.named_children()] == [
        "stem", "layer1", "layer2", "layer3", "layer4", "classifier"]
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 17
    assert sum(isinstance(m, BasicBlock) for m in model.modules()) == 8
    stem = model.stem.conv
    assert (stem.kernel_size, stem.stride, stem.out_channels) == ((3, 3), (1, 1), 64)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.classifier.fc.in_features == 512
    features = model[:-1](torch.randn(1, 3, 32, 32))
    assert features.shape == (1, 512, 4, 4)


def test_width_multiplies_stage_widths():
    model = models.build("resnet", 10, (1, 28, 28), width=0.5)
    assert [model.get_submodule(f"layer{i}")[0].conv1.out_channels for i in (1, 2, 3)] == [8, 16, 32]


def test_basic_block_projects_only_when_the_shape_changes():
    same, down = BasicBlock(8, 8, stride=1), BasicBlock(8, 16, stride=2)
    assert isinstance(same.shortcut, nn.Identity)
    assert [type(m) for m in down.shortcut] == [nn.Conv2d, nn.BatchNorm2d]
    assert down.shortcut[0].kernel_size == (1, 1)
    assert same.relu1 is not same.relu2
    assert down(torch.randn(2, 8, 10, 10)).shape == (2, 16, 5, 5)


def test_basic_block_adds_the_skip_before_the_last_relu():
    block = BasicBlock(4, 4, stride=1).eval()
    x = torch.randn(2, 4, 6, 6)
    residual = block.bn2(block.conv2(block.relu1(block.bn1(block.conv1(x)))))
    torch.testing.assert_close(block(x), torch.relu(residual + x))


def test_depth_must_be_8_or_18():
    with pytest.raises(ParameterError) as info:
        models.build("resnet", 10, (1, 28, 28), depth=20)
    assert str(info.value) == "The 'depth' parameter of resnet must be one of 8, 18. Got 20."
