"""Folding BatchNorm and other per-channel affine maps into a neighbouring conv or linear layer.

In eval mode BatchNorm is ``y = x * s + t`` per channel with
s = gamma / sqrt(var + eps) and t = beta - mean * s (notes §3.1; `eps` is read
from the layer, not assumed). Folded into the layer before it (output side):
W'[o] = W[o] * s[o] and b'[o] = b[o] * s[o] + t[o], exact everywhere. Folded
into the layer after it (input side): W'[:, c] = W[:, c] * s[c] and
b' = b + sum over c and kernel taps of W[:, c] * t[c], exact only when that
layer pads nothing (a padded border would see the shift where it sees zeros).
"""

from __future__ import annotations

import torch
from torch import Tensor


def bn_scale_shift(
    mean: Tensor, var: Tensor, eps: float, weight: Tensor | None = None, bias: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(scale, shift) of eval-mode BatchNorm, in float64 (so that folding loses nothing)."""
    scale = torch.rsqrt(var.double() + eps)
    if weight is not None:
        scale = scale * weight.double()
    shift = -mean.double() * scale
    if bias is not None:
        shift = shift + bias.double()
    return scale, shift


def _per_channel(values: Tensor, ndim: int, axis: int) -> Tensor:
    shape = [1] * ndim
    shape[axis] = -1
    return values.view(shape)


def fold_into_output(weight: Tensor, bias: Tensor, scale: Tensor, shift: Tensor) -> tuple[Tensor, Tensor]:
    """The (weight, bias) of ``affine(layer(x))`` for a conv (O, I, kh, kw) or linear (O, I) layer."""
    return weight * _per_channel(scale, weight.dim(), 0), bias * scale + shift


def fold_into_input(weight: Tensor, bias: Tensor, scale: Tensor, shift: Tensor) -> tuple[Tensor, Tensor]:
    """The (weight, bias) of ``layer(affine(x))`` for a linear layer or an unpadded, ungrouped conv."""
    spatial = tuple(range(2, weight.dim()))
    summed = weight.sum(spatial) if spatial else weight
    return weight * _per_channel(scale, weight.dim(), 1), bias + summed @ shift
