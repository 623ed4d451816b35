import pytest
import torch
from torch import nn

from edgewise.ondevice.ops import prepare, sparse_layers
from edgewise.ondevice.selection import MemoryPlan, Statistics

BATCH = 4


def small_net() -> nn.Sequential:
    """conv-BN-ReLU, a depthwise conv, a pointwise conv, then a pooled linear head: 4 layers."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.BatchNorm2d(6), nn.ReLU6(),
        nn.Conv2d(6, 8, 1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    ).eval()


@pytest.fixture
def setting():
    """A prepared small net, a memory plan whose limit holds a few channels but not all the
    layers, and statistics; as (model, plan, stats)."""
    torch.manual_seed(0)
    x = torch.randn(3 * BATCH, 1, 8, 8)
    y = torch.arange(3 * BATCH) % 3
    model = prepare(small_net(), x[:1])
    head = list(sparse_layers(model))[-1]
    images, labels = x[:BATCH].clone(), y[:BATCH].clone()
    unlimited = MemoryPlan(model, images, labels, head)
    first = unlimited.costs[unlimited.layers[0]]
    limit = first.path + 4 * first.channel(1)  # reaches the first layer, but not with all of it
    plan = MemoryPlan(model, images, labels, head, limit)
    batches = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, 3 * BATCH, BATCH)]
    stats = Statistics(model, plan.layers, x[:6], batches, seed=0)
    return model, plan, stats
