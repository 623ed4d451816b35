"""A tiny early-exit network (EarlyExitNetwork.from_model on a 3-block CNN) and a batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgewise.exits.network import EarlyExitNetwork


def _block(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


def tiny_exit_net(num_classes: int = 4, width: int = 4) -> EarlyExitNetwork:
    """Stages: three conv+BN+ReLU blocks on 1x8x8 images; exits after blocks 0 and 1
    (pool-linear heads) and the classifier (pool, flatten, linear)."""
    model = nn.Sequential(
        _block(1, width), _block(width, width), _block(width, 2 * width),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes)),
    )
    return EarlyExitNetwork.from_model(model, exits=["0", "1"], input_shape=(1, 8, 8))


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return tiny_exit_net()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 4, (16,), generator=g)
