"""What every exit head shares: the global pool that turns any feature map into a vector.

A head is an ``nn.Module`` built as ``Head(feature_shape, num_classes, **params)``, where
`feature_shape` is the stage output's shape without the batch dimension: ``(C, H, W)`` for a
convolutional feature map, ``(T, D)`` for a token sequence, ``(D,)`` for a vector. It maps
``(N, *feature_shape)`` to logits ``(N, num_classes)``.
"""

from __future__ import annotations

from torch import Tensor, nn


class GlobalPool(nn.Module):
    """Average every dimension after the feature one: (N, C, H, W) -> (N, C), (N, T, D) -> (N, D).

    Token sequences ``(N, T, D)`` carry features last, so they are averaged over ``T``.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            return x
        if x.dim() == 3:
            return x.mean(dim=1)
        return x.flatten(2).mean(dim=2)


def pooled_width(feature_shape: tuple[int, ...]) -> int:
    """Width of `GlobalPool`'s output for an input of `feature_shape` (no batch dimension)."""
    return feature_shape[-1] if len(feature_shape) == 2 else feature_shape[0]
