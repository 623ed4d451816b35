"""Every registered head maps features of any supported shape to logits."""

from __future__ import annotations

import pytest
import torch

from edgewise.errors import ParameterError, UnknownNameError
from edgewise.exits.heads import HEADS, build_head


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_maps_a_feature_map_to_logits_and_learns(name):
    head = build_head(name, (6, 9, 9), 5)
    x = torch.randn(4, 6, 9, 9)
    target = torch.randint(0, 5, (4,))
    optimizer = torch.optim.Adam(head.parameters(), lr=0.01)
    first = torch.nn.functional.cross_entropy(head(x), target)
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(head(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert head(x).shape == (4, 5)
    assert loss < first


def test_pool_linear_reads_tokens_and_vectors():
    tokens = torch.randn(2, 7, 12)
    head = build_head("pool-linear", (7, 12), 3)
    torch.testing.assert_close(head(tokens), head.linear(tokens.mean(dim=1)))
    assert build_head("pool-linear", (12,), 3)(torch.randn(2, 12)).shape == (2, 3)


@pytest.mark.parametrize("name", ["conv-pool-linear", "grid-linear"])
def test_convolutional_heads_reject_tokens(name):
    with pytest.raises(ParameterError, match="needs a \\(C, H, W\\) feature map"):
        build_head(name, (7, 12), 3)


@pytest.mark.parametrize("shape", [(3, 28, 28), (3, 14, 14), (3, 7, 9), (3, 2, 3)])
def test_grid_head_pools_like_adaptive_average_pooling(shape):
    head = build_head("grid-linear", shape, 5)
    x = torch.randn(2, *shape)
    grid = (min(4, shape[1]), min(4, shape[2]))
    expected = head.linear(torch.nn.functional.adaptive_avg_pool2d(x, grid).flatten(1))
    torch.testing.assert_close(head(x), expected)
    torch.testing.assert_close(head(x.contiguous(memory_format=torch.channels_last)), expected)
    assert set(head.state_dict()) == {"linear.weight", "linear.bias"}  # pooling is not saved


def test_conv_head_rejects_bad_width():
    with pytest.raises(ParameterError, match="The 'channels' parameter of conv-pool-linear must be >= 1"):
        build_head("conv-pool-linear", (4, 8, 8), 3, channels=0)


def test_unknown_head_suggests_a_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'pool-linear'"):
        build_head("pool_linear", (4, 8, 8), 3)
