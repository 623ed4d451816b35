"""A stronger exit head for convolutional feature maps: 3x3 conv + BN + ReLU, pool, linear.

One extra convolution lets an early exit build features of its own instead of reading the
backbone's raw activations, at the cost of ``9 * C_in * channels * H * W / stride^2`` MACs.

Unverified: ``channels`` defaults to the input's channel count and ``stride`` to 2 when
the map is at least 8x8 (1 otherwise); papers leave the head's width open.
"""

from __future__ import annotations

from torch import Tensor, nn

from edgewise.errors import ParameterError, check_param
from edgewise.exits.heads.base import GlobalPool


class ConvPoolLinear(nn.Module):
    """(N, C, H, W) -> conv (N, channels, H', W') -> pooled (N, channels) -> (N, num_classes)."""

    def __init__(
        self, feature_shape: tuple[int, ...], num_classes: int, channels: int | None = None
    ) -> None:
        super().__init__()
        if len(feature_shape) != 3:
            raise ParameterError(
                f"The conv-pool-linear head needs a (C, H, W) feature map; this exit point gives "
                f"shape {tuple(feature_shape)}: use the pool-linear head there."
            )
        c_in, height, width = feature_shape
        channels = c_in if channels is None else channels
        check_param("conv-pool-linear", "channels", channels, channels >= 1, ">= 1")
        stride = 2 if min(height, width) >= 8 else 1
        self.conv = nn.Conv2d(c_in, channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = GlobalPool()
        self.linear = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.pool(self.relu(self.bn(self.conv(x)))))
