"""Autograd functions that keep for backward only what the trained channels need.

Stock ``nn.Conv2d`` saves its whole input as soon as anything upstream needs a
gradient, even when its own weight is frozen (method notes §9.3), and stock
rectifiers save a float tensor where one bit would do. These functions save
through ``ctx.save_for_backward`` only:

- `sparse_conv2d` / `sparse_linear`: the weight (resident anyway) when the input
  needs a gradient; a *copied* slice ``x[:, index]`` of the selected input
  channels when only those weights train (``axis=1``); the whole input when
  output channels (neurons, ``axis=0``) or the whole weight train; nothing
  when only the bias trains.
- `bitmask_clamp`: the rectifier's pass-through mask packed to one bit per
  element.

Weight gradients are computed only for the selected slice, the shape of
``weight.index_select(axis, index)``, and ``weight`` itself gets a gradient only
when it requires one (full update). The slice's gradient is accumulated into
``weight_slice.grad`` by the backward itself, not returned to autograd: a
parameter whose shape changes between epochs (a new selection) would otherwise
meet autograd's cached gradient accumulator, which remembers the old shape as
long as any earlier graph is alive.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable
from torch.nn import grad as nn_grad

__all__ = ["bitmask_clamp", "pack_bits", "sparse_conv2d", "sparse_linear", "unpack_bits"]

_BIT_WEIGHTS = 2 ** torch.arange(8, dtype=torch.uint8)
# Multiplying eight 0/1 bytes read as one int64 by this gathers them into the top byte,
# element k into bit k (the classic multiply-and-shift bit gather).
_GATHER = 0x0102040810204080


def pack_bits(mask: Tensor) -> Tensor:
    """A bool tensor as uint8 bytes, eight elements per byte (flattened, zero-padded)."""
    flat = mask.reshape(-1)
    flat = torch.nn.functional.pad(flat, (0, -flat.numel() % 8))
    words = flat.view(torch.uint8).view(torch.int64)
    return ((words * _GATHER) >> 56).to(torch.uint8)


def unpack_bits(packed: Tensor, shape: torch.Size) -> Tensor:
    """The inverse of `pack_bits`: a bool tensor of `shape`."""
    weights = _BIT_WEIGHTS.to(packed.device)
    bits = (packed.unsqueeze(1) & weights) != 0
    return bits.reshape(-1)[: math.prod(shape)].view(shape)


class _BitmaskClamp(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, lower: float, upper: float) -> Tensor:
        ctx.shape = x.shape
        ctx.save_for_backward(pack_bits((x > lower) & (x < upper)))
        return x.clamp(lower, upper)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor):
        (packed,) = ctx.saved_tensors
        return grad * unpack_bits(packed, ctx.shape), None, None


def bitmask_clamp(x: Tensor, lower: float = 0.0, upper: float = math.inf) -> Tensor:
    """``x.clamp(lower, upper)`` (ReLU: 0..inf, ReLU6: 0..6) that saves one bit per element.

    The gradient passes where ``lower < x < upper``, as in PyTorch's ReLU and hardtanh.
    """
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x.clamp(lower, upper)
    return _BitmaskClamp.apply(x, lower, upper)


def _saved_input(x: Tensor, index: Tensor | None, axis: int, channel_dim: int, depthwise: bool) -> Tensor:
    """What the weight gradient of the selection needs of the input: a copied channel slice,
    or the input itself (no copy, so that storages shared with other saves stay shared)."""
    if index is not None and (axis == 1 or depthwise):
        return x.index_select(channel_dim, index)  # a copy: a view would keep all of x alive
    return x


def _accumulate(param: Tensor, grad: Tensor) -> None:
    """``param.grad += grad`` (``param.grad = grad`` when it has none), as autograd would."""
    if param.grad is None:
        param.grad = grad
    else:
        param.grad += grad


class _SparseConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, weight_slice, bias, index, axis, stride, padding, dilation, groups):
        x_grad, w_grad, s_grad, _ = ctx.needs_input_grad[:4]
        ctx.slice_param = weight_slice if s_grad else None  # a parameter, resident anyway
        depthwise = groups > 1
        ctx.conv = (stride, padding, dilation, groups)
        ctx.axis, ctx.x_shape, ctx.depthwise, ctx.kernel = axis, x.shape, depthwise, weight.shape[2:]
        keep_x = None
        if w_grad:
            keep_x = x
        elif s_grad:
            keep_x = _saved_input(x, index, axis, 1, depthwise)
        ctx.save_for_backward(
            keep_x, weight if x_grad else None, index if s_grad else None
        )
        return torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        keep_x, weight, index = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        x_grad, w_grad, s_grad, b_grad = ctx.needs_input_grad[:4]
        gx = gw = gb = None
        if x_grad:
            gx = nn_grad.conv2d_input(ctx.x_shape, weight, grad, stride, padding, dilation, groups)
        if w_grad:
            shape = (grad.shape[1], ctx.x_shape[1] // groups, *ctx.kernel)
            gw = nn_grad.conv2d_weight(keep_x, shape, grad, stride, padding, dilation, groups)
        if s_grad:
            k = index.numel()
            if ctx.depthwise:  # channel c of input, weight and output are one and the same
                shape, dy, g = (k, 1, *ctx.kernel), grad.index_select(1, index), k
            elif ctx.axis == 1:
                shape, dy, g = (grad.shape[1], k, *ctx.kernel), grad, 1
            else:
                shape, dy, g = (k, ctx.x_shape[1], *ctx.kernel), grad.index_select(1, index), 1
            _accumulate(ctx.slice_param, nn_grad.conv2d_weight(keep_x, shape, dy, stride, padding, dilation, g))
        if b_grad:
            gb = grad.sum((0, 2, 3))
        return gx, gw, None, gb, None, None, None, None, None, None


def sparse_conv2d(
    x: Tensor,
    weight: Tensor,
    weight_slice: Tensor | None,
    bias: Tensor | None,
    index: Tensor | None,
    axis: int,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> Tensor:
    """``conv2d(x, weight, bias)`` whose backward keeps only what the trained parts need.

    `weight` (C', C/groups, kh, kw) must already hold `weight_slice`'s values at
    `index` along `axis` (0: output channels, 1: input channels). `weight_slice`
    gets the gradient of that slice; for a depthwise conv (groups == C == C') both
    axes mean the same channels. `groups` must be 1 or the channel count when a
    slice trains.
    """
    return _SparseConv2d.apply(
        x, weight, weight_slice, bias, index, axis, stride, padding, dilation, groups
    )


class _SparseLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, weight_slice, bias, index, axis):
        x_grad, w_grad, s_grad, _ = ctx.needs_input_grad[:4]
        ctx.axis, ctx.slice_param = axis, weight_slice if s_grad else None
        keep_x = None
        if w_grad:
            keep_x = x
        elif s_grad:
            keep_x = _saved_input(x, index, axis, x.dim() - 1, False)
        ctx.save_for_backward(keep_x, weight if x_grad else None, index if s_grad else None)
        return torch.nn.functional.linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        keep_x, weight, index = ctx.saved_tensors
        x_grad, w_grad, s_grad, b_grad = ctx.needs_input_grad[:4]
        dy = grad.reshape(-1, grad.shape[-1])  # (tokens, out)
        gx = gw = gb = None
        if x_grad:
            gx = grad @ weight
        if w_grad:
            gw = dy.t() @ keep_x.reshape(-1, keep_x.shape[-1])
        if s_grad:
            xs = keep_x.reshape(-1, keep_x.shape[-1])
            rows = dy if ctx.axis == 1 else dy.index_select(1, index)
            _accumulate(ctx.slice_param, rows.t() @ xs)
        if b_grad:
            gb = dy.sum(0)
        return gx, gw, None, gb, None, None


def sparse_linear(
    x: Tensor,
    weight: Tensor,
    weight_slice: Tensor | None,
    bias: Tensor | None,
    index: Tensor | None,
    axis: int,
) -> Tensor:
    """``linear(x, weight, bias)`` for x (..., I), keeping for backward only what the trained parts need.

    As `sparse_conv2d`: `weight` (O, I) holds `weight_slice`'s values at `index`
    along `axis` (0: output features, 1: input features).
    """
    return _SparseLinear.apply(x, weight, weight_slice, bias, index, axis)
