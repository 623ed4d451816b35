"""A spatial exit head: average-pool to a small grid, flatten, one linear layer.

Pooling to a grid instead of to one value keeps where a feature fired, which an exit right
after the first layers needs (a 16-channel map pooled to 1x1 says little about a 28x28
image). The idea is SDN's internal classifier (Kaya, Hong, Dumitras, 2019,
arXiv:1810.07052), which pools by a factor of 4, and ZTW's (Wolczyk et al., 2021,
arXiv:2106.05409), which pools to 4x4. The pooling (adaptive average pooling's regions) is
done as one matrix product with a fixed ``(H*W, g*g)`` matrix, several times faster on a CPU
than PyTorch's pooling kernels; SDN's learned mix with max pooling is left out because max
pooling cannot be done that way and costs about as much as the network's first convolution.

Unverified: ``grid=4`` (maps smaller than that keep their size).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from edgewise.errors import ParameterError, check_param


class GridLinear(nn.Module):
    """(N, C, H, W) -> grid average (N, C, g, g) -> flatten -> logits (N, num_classes)."""

    def __init__(self, feature_shape: tuple[int, ...], num_classes: int, grid: int = 4) -> None:
        super().__init__()
        if len(feature_shape) != 3:
            raise ParameterError(
                f"The grid-linear head needs a (C, H, W) feature map; this exit point gives "
                f"shape {tuple(feature_shape)}: use the pool-linear head there."
            )
        check_param("grid-linear", "grid", grid, grid >= 1, ">= 1")
        channels, height, width = feature_shape
        rows, cols = _regions(height, min(grid, height)), _regions(width, min(grid, width))
        self.register_buffer("pool", torch.kron(rows, cols), persistent=False)  # (H*W, g*g)
        self.linear = nn.Linear(channels * rows.shape[1] * cols.shape[1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear((x.flatten(2) @ self.pool).flatten(1))


def _regions(size: int, cells: int) -> Tensor:
    """(size, cells) averaging weights of adaptive pooling: cell i covers
    ``[floor(i * size / cells), ceil((i + 1) * size / cells))``."""
    weights = torch.zeros(size, cells)
    for i in range(cells):
        start, stop = (i * size) // cells, math.ceil((i + 1) * size / cells)
        weights[start:stop, i] = 1.0 / (stop - start)
    return weights
