"""Shared pieces: width rounding, conv-BN blocks, the classifier."""

import pytest
import torch
from torch import nn

from edgewise.models.layers import classifier, conv_bn, scaled


@pytest.mark.parametrize(
    ("channels", "width", "divisor", "expected"),
    [(16, 1.0, 1, 16), (16, 0.5, 1, 8), (16, 0.01, 1, 1), (24, 0.75, 8, 24),
     (32, 0.5, 8, 16), (16, 0.25, 8, 8), (1280, 1.0, 8, 1280), (100, 1.0, 8, 104)],
)
def test_scaled(channels, width, divisor, expected):
    assert scaled(channels, width, divisor) == expected


def test_scaled_never_drops_more_than_ten_percent():
    for channels in range(8, 200):
        assert scaled(channels, 1.0, 8) >= 0.9 * channels


def test_conv_bn_keeps_size_and_names_its_parts():
    block = conv_bn(3, 8, 3, stride=2, activation=nn.ReLU6)
    assert [n for n, _ in block.named_children()] == ["conv", "bn", "relu"]
    assert isinstance(block.relu, nn.ReLU6) and block.conv.bias is None
    assert block(torch.randn(1, 3, 9, 9)).shape == (1, 8, 5, 5)
    assert [n for n, _ in conv_bn(3, 8, activation=None).named_children()] == ["conv", "bn"]


def test_classifier_pools_flattens_and_projects():
    head = classifier(4, 3)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(head(x), head.fc(x.mean(dim=(2, 3))))
