"""MobileNetV2: inverted residuals, 35 ReLU6, a small-image stem, linear bottlenecks."""

import torch
from torch import nn

from edgewise import models
from edgewise.models.mobilenetv2 import InvertedResidual


def test_standard_config():
    model = models.build("mobilenetv2", 10, (3, 32, 32))
    assert sum(isinstance(m, nn.ReLU6) for m in model.modules()) == 35
    assert sum(isinstance(m, InvertedResidual) for m in model.modules()) == 17
    assert model.head.conv.out_channels == 1280
    assert sum(m.use_residual for m in model.modules() if isinstance(m, InvertedResidual)) == 10


def test_small_images_keep_resolution_early():
    model = models.build("mobilenetv2", 10, (1, 28, 28))
    assert model.stem.conv.stride == (1, 1)
    assert model[:-1](torch.randn(1, 1, 28, 28)).shape == (1, 1280, 4, 4)
    large = models.build("mobilenetv2", 10, (3, 64, 64))
    assert large.stem.conv.stride == (2, 2)
    assert large[:-1](torch.randn(1, 3, 64, 64)).shape == (1, 1280, 2, 2)


def test_width_rounds_to_multiples_of_8():
    model = models.build("mobilenetv2", 10, (1, 28, 28), width=0.5)
    assert model.head.conv.out_channels == 640
    assert all(m.out_channels % 8 == 0 for m in model.modules() if isinstance(m, nn.Conv2d))


def test_inverted_residual_is_linear_at_the_end_and_adds_the_skip():
    block = InvertedResidual(8, 8, stride=1, expand_ratio=6).eval()
    assert [type(m) for m in block.project] == [nn.Conv2d, nn.BatchNorm2d]
    assert block.depthwise.conv.groups == 48 and block.use_residual
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(block(x), x + block.project(block.depthwise(block.expand(x))))
    assert isinstance(InvertedResidual(8, 16, stride=2, expand_ratio=1).expand, nn.Identity)
