"""Exact merging of linear layers: Linear∘Linear, Conv∘Conv, and the sum of two convs of one input.

Notes §3.2-3.4. PyTorch convs are cross-correlations: ``y[o, i] = b[o] +
sum_{c, u} W[o, c, u] * xpad[c, s*i + u]``. For ``second(first(x))`` with
first (k1, stride s1, padding p1) and second (k2, stride s2, *no* padding):

    y[o, i] = sum_{m, v} W2[o, m, v] * (b1[m] + sum_{c, u} W1[m, c, u] * xpad[c, s1*(s2*i + v) + u])

so the merged kernel has K = s1*(k2 - 1) + k1 taps, stride s1*s2, padding p1,
and ``W[o, c, s1*v + u] += sum_m W2[o, m, v] * W1[m, c, u]``; the bias is
``b2 + sum_{m, v} W2[o, m, v] * b1[m]``. A padded `second` would see zeros
where the merged conv sees `first`'s bias and border values, so it is not
merged: the padding has to be moved onto `first` beforehand (`move_padding`,
as LayerMerge does before its last fine-tune), which changes the network.

Two convs of the same input that are added (a residual block) are one conv
when they read the input in the same frame: their kernels are summed after
padding the smaller one around its position. The identity is the 1x1 Dirac
kernel. Grouped and depthwise kernels are expanded to dense ones, merged, and
regrouped (depthwise∘depthwise stays depthwise, depthwise∘pointwise becomes dense).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class Shape:
    """The geometry of a conv without its numbers: what planning and timing need."""

    out_channels: int
    in_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1

    def offsets(self) -> tuple[tuple[int, int], ...]:
        """Per spatial axis, the input offsets (first, last) read around position stride*i."""
        return tuple((-p, k - 1 - p) for k, p in zip(self.kernel, self.padding, strict=True))


def composed(first: Shape, second: Shape) -> Shape:
    """The shape of ``second(first(x))`` as one conv; `second` must not pad (see module doc)."""
    if second.padding != (0, 0):
        raise ValueError("compose needs an unpadded second conv; move its padding first")
    kernel = tuple(s * (k2 - 1) + k1 for s, k1, k2 in
                   zip(first.stride, first.kernel, second.kernel, strict=True))
    stride = tuple(s1 * s2 for s1, s2 in zip(first.stride, second.stride, strict=True))
    return Shape(second.out_channels, first.in_channels, kernel, stride, first.padding,
                 math.gcd(first.groups, second.groups))


def summed(a: Shape, b: Shape) -> Shape | None:
    """The shape of ``a(x) + b(x)`` as one conv, or None where they read `x` in different frames
    (output grids that do not coincide, other strides or channels)."""
    same_frame = all((a0 + a1) == (b0 + b1) for (a0, a1), (b0, b1) in
                     zip(a.offsets(), b.offsets(), strict=True))
    if not (same_frame and a.stride == b.stride and a.out_channels == b.out_channels
            and a.in_channels == b.in_channels):
        return None
    low = [min(x[0], y[0]) for x, y in zip(a.offsets(), b.offsets(), strict=True)]
    high = [max(x[1], y[1]) for x, y in zip(a.offsets(), b.offsets(), strict=True)]
    return Shape(a.out_channels, a.in_channels, (high[0] - low[0] + 1, high[1] - low[1] + 1),
                 a.stride, (-low[0], -low[1]), math.gcd(a.groups, b.groups))


def moved(first: Shape, second: Shape) -> tuple[Shape, Shape]:
    """Pad `first` more so that `second` needs no padding (changes the function at the borders)."""
    padding = tuple(p + s * q for p, s, q in
                    zip(first.padding, first.stride, second.padding, strict=True))
    return replace(first, padding=padding), replace(second, padding=(0, 0))


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution with zero padding and dilation 1: weight (O, I/groups, kh, kw), bias (O)."""

    weight: Tensor
    bias: Tensor
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1

    @property
    def shape(self) -> Shape:
        out_c, in_per, kh, kw = self.weight.shape
        return Shape(out_c, in_per * self.groups, (kh, kw), self.stride, self.padding, self.groups)


def dense(weight: Tensor, groups: int) -> Tensor:
    """The block-diagonal (O, I, kh, kw) kernel of a grouped (O, I/groups, kh, kw) one."""
    if groups == 1:
        return weight
    out_c, in_per, *k = weight.shape
    full = weight.new_zeros(out_c, in_per * groups, *k)
    out_per = out_c // groups
    for g in range(groups):
        full[g * out_per:(g + 1) * out_per, g * in_per:(g + 1) * in_per] = weight[
            g * out_per:(g + 1) * out_per]
    return full


def regroup(weight: Tensor, groups: int) -> Tensor:
    """The (O, I/groups, kh, kw) blocks on the diagonal of a block-diagonal dense kernel.

    Merging a g1-grouped with a g2-grouped conv (or adding them) gives a kernel
    that is block-diagonal for gcd(g1, g2) groups, since those blocks are unions
    of both layers' blocks; that is the `groups` the callers pass.
    """
    out_per, in_per = weight.shape[0] // groups, weight.shape[1] // groups
    return torch.cat([weight[g * out_per:(g + 1) * out_per, g * in_per:(g + 1) * in_per]
                      for g in range(groups)])


def compose(first: Conv, second: Conv) -> Conv:
    """The one conv equal to ``second(first(x))``; `second` must not pad (see module doc)."""
    shape = composed(first.shape, second.shape)
    w1, w2 = dense(first.weight, first.groups), dense(second.weight, second.groups)
    (s1h, s1w), (k1h, k1w), (k2h, k2w) = first.stride, first.shape.kernel, second.shape.kernel
    merged = w1.new_zeros(shape.out_channels, shape.in_channels, *shape.kernel)
    for v in range(k2h):
        for u in range(k2w):
            merged[:, :, s1h * v:s1h * v + k1h, s1w * u:s1w * u + k1w] += torch.einsum(
                "om,mchw->ochw", w2[:, :, v, u], w1)
    bias = second.bias + w2.sum((2, 3)) @ first.bias
    return Conv(regroup(merged, shape.groups), bias, shape.stride, shape.padding, shape.groups)


def can_add(a: Conv, b: Conv) -> bool:
    """Whether ``a(x) + b(x)`` is one conv (see `summed`)."""
    return summed(a.shape, b.shape) is not None


def add(a: Conv, b: Conv) -> Conv:
    """The one conv equal to ``a(x) + b(x)`` (check `can_add` first)."""
    shape = summed(a.shape, b.shape)
    merged = a.weight.new_zeros(shape.out_channels, shape.in_channels, *shape.kernel)
    for conv in (a, b):
        (oh, _), (ow, _) = conv.shape.offsets()
        kh, kw = conv.shape.kernel
        top, left = oh + shape.padding[0], ow + shape.padding[1]
        merged[:, :, top:top + kh, left:left + kw] += dense(conv.weight, conv.groups)
    return Conv(regroup(merged, shape.groups), a.bias + b.bias, shape.stride, shape.padding,
                shape.groups)


def identity(channels: int, dtype: torch.dtype = torch.float32) -> Conv:
    """The identity as a 1x1 depthwise Dirac conv (a residual skip)."""
    return Conv(torch.ones(channels, 1, 1, 1, dtype=dtype), torch.zeros(channels, dtype=dtype),
                groups=channels)


def move_padding(first: Conv, second: Conv) -> tuple[Conv, Conv]:
    """`moved` for convs with their numbers."""
    a, b = moved(first.shape, second.shape)
    return replace(first, padding=a.padding), replace(second, padding=b.padding)


def compose_linear(w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> tuple[Tensor, Tensor]:
    """(W, b) of ``second(first(x))`` for two linear layers: W = W2 W1, b = W2 b1 + b2."""
    return w2 @ w1, w2 @ b1 + b2
