"""ConvNet: VGG-style blocks, doubling widths, max-pool between blocks."""

import pytest
import torch
from torch import nn

from edgewise import models
from edgewise.errors import ParameterError


def test_blocks_widths_and_pools():
    model = models.build("convnet", 10, (1, 28, 28), depth=3)
    assert [n for n, _ in model.block1.named_children()] == [
        "conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "pool"]
    assert "pool" not in dict(model.block3.named_children())
    assert [model.get_submodule(f"block{i}").conv2.out_channels for i in (1, 2, 3)] == [32, 64, 128]
    assert model[:-1](torch.randn(1, 1, 28, 28)).shape == (1, 128, 7, 7)


@pytest.mark.parametrize(("side", "deepest"), [(8, 4), (28, 5), (32, 6)])
def test_deepest_stack_that_fits_the_image(side, deepest):
    model = models.build("convnet", 10, (1, side, side), depth=deepest)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == deepest - 1
    assert model(torch.randn(2, 1, side, side)).shape == (2, 10)
    with pytest.raises(ParameterError, match=rf"must be an int in \[1, {deepest}\] for a {side}x{side} input"):
        models.build("convnet", 10, (1, side, side), depth=deepest + 1)
