"""The default exit head: global average pool, then one linear layer.

The cheapest head that reads any feature map (SDN's and ZTW's internal classifiers add a
learned max/avg pooling mix; plain averaging is the common simplification).
"""

from __future__ import annotations

from torch import Tensor, nn

from edgewise.exits.heads.base import GlobalPool, pooled_width


class PoolLinear(nn.Module):
    """(N, *feature_shape) -> pooled (N, width) -> logits (N, num_classes)."""

    def __init__(self, feature_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.pool = GlobalPool()
        self.linear = nn.Linear(pooled_width(feature_shape), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.pool(x))
