"""Drop-in modules around the channel-sparse functions, and the swap that puts them in a model.

`prepare(model, example)` folds each BatchNorm into its convolution (exact in
eval mode, the frozen-BN setting of the papers), then swaps every ``nn.Conv2d``
and ``nn.Linear`` for a `SparseConv2d` / `SparseLinear` (all frozen), every
``nn.ReLU`` / ``nn.ReLU6`` for a one-bit-mask `Rectifier`, and a global
``nn.AdaptiveAvgPool2d(1)`` for `GlobalMean` (whose backward needs only the
shape). Then `SparseLayer.select` says which weights train.

A selected slice is its own parameter, ``weight_slice``: its gradient, and
nothing bigger, is what the optimizer sees. Each forward first writes the
slice back into ``weight``, so ``weight`` is always the current full weight
(also for evaluation); `SparseLayer.commit` does the same on demand.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from edgewise.ondevice.ops.fold import fold_batchnorm
from edgewise.ondevice.ops.functional import bitmask_clamp, sparse_conv2d, sparse_linear

__all__ = ["GlobalMean", "Rectifier", "SparseConv2d", "SparseLayer", "SparseLinear", "prepare", "sparse_layers"]

IN, OUT = 1, 0  # the axes of a selection: input channels (TraDy) or output channels (NEq neurons)


class SparseLayer(nn.Module):
    """The shared part of `SparseConv2d` and `SparseLinear`: weight, bias and the trained slice.

    Parameters: ``weight`` (frozen unless the whole weight trains), ``bias``
    (trains when selected), ``weight_slice`` (the selected channels' weights;
    empty when none). Buffer ``index`` (int64, sorted): the selected channels
    along ``axis``.
    """

    weight: nn.Parameter
    bias: nn.Parameter | None

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.weight_slice = nn.Parameter(weight.new_empty(0), requires_grad=False)
        self.register_buffer("index", torch.empty(0, dtype=torch.long), persistent=False)
        self.axis = IN

    depthwise = False
    shape: tuple[int, int]  # (output channels, input channels)

    def channels(self, axis: int) -> int:
        """The number of input (`axis` = 1) or output (0) channels."""
        return self.shape[axis]

    @property
    def slice_dim(self) -> int:
        """The dimension of ``weight`` that ``index`` indexes (a depthwise weight (C, 1, kh, kw)
        holds channel c in row c, whichever the axis)."""
        return 0 if self.depthwise else self.axis

    def select(self, index: Tensor | None, axis: int = IN, bias: bool = False) -> None:
        """Train the weights of channels `index` along `axis` (None or empty: none; all: the
        whole weight, with no slice copy) and the bias when `bias`."""
        self.commit()
        self.axis = axis
        count = 0 if index is None else index.numel()
        full = count == self.channels(axis)
        self.weight.requires_grad_(full)
        if self.bias is not None:
            self.bias.requires_grad_(bias)
        elif bias:
            raise ValueError(f"This {type(self).__name__} has no bias to train.")
        if full or count == 0:
            self.index = self.index.new_empty(0)
            self.weight_slice.data = self.weight.new_empty(0)
            self.weight_slice.requires_grad_(False)
        else:
            self.index = index.to(self.weight.device, torch.long).sort().values
            self.weight_slice.data = self.weight.detach().index_select(self.slice_dim, self.index)
            self.weight_slice.requires_grad_(True)
        self.weight_slice.grad = None
        self.weight.grad = None

    def commit(self) -> None:
        """Write the trained slice back into ``weight``."""
        if self.weight_slice.numel():
            with torch.no_grad():
                self.weight.index_copy_(self.slice_dim, self.index, self.weight_slice)

    def _trains(self, x: Tensor) -> bool:
        """Whether this call is part of a backward pass at all."""
        return torch.is_grad_enabled() and (
            x.requires_grad
            or self.weight.requires_grad
            or self.weight_slice.requires_grad
            or (self.bias is not None and self.bias.requires_grad)
        )

    def _slice_args(self) -> tuple[Tensor | None, Tensor | None]:
        if not self.weight_slice.requires_grad:
            return None, None
        self.commit()
        return self.weight_slice, self.index


class SparseConv2d(SparseLayer):
    """``nn.Conv2d`` whose backward keeps only what the selected channels need (groups 1 or depthwise)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv.weight, conv.bias)
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size = conv.kernel_size
        self.shape = (conv.out_channels, conv.in_channels)
        self.depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels

    def select(self, index: Tensor | None, axis: int = IN, bias: bool = False) -> None:
        if self.groups > 1 and not self.depthwise and index is not None:
            if 0 < index.numel() < self.channels(axis):
                raise ValueError("Channel slices of grouped convolutions need groups 1 or depthwise.")
        super().select(index, axis, bias)

    def forward(self, x: Tensor) -> Tensor:
        if not self._trains(x):
            return nn.functional.conv2d(
                x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
            )
        weight_slice, index = self._slice_args()
        return sparse_conv2d(
            x, self.weight, weight_slice, self.bias, index, self.axis,
            self.stride, self.padding, self.dilation, self.groups,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, groups={self.groups}, trained={self.index.numel()}"
        )


class SparseLinear(SparseLayer):
    """``nn.Linear`` whose backward keeps only what the selected features need."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__(linear.weight, linear.bias)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.shape = (linear.out_features, linear.in_features)

    def forward(self, x: Tensor) -> Tensor:
        if not self._trains(x):
            return nn.functional.linear(x, self.weight, self.bias)
        weight_slice, index = self._slice_args()
        return sparse_linear(x, self.weight, weight_slice, self.bias, index, self.axis)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, trained={self.index.numel()}"


class Rectifier(nn.Module):
    """ReLU (`upper` = inf) or ReLU6 (`upper` = 6) that keeps a one-bit mask for backward."""

    def __init__(self, upper: float = math.inf) -> None:
        super().__init__()
        self.upper = upper

    def forward(self, x: Tensor) -> Tensor:
        return bitmask_clamp(x, 0.0, self.upper)

    def extra_repr(self) -> str:
        return f"upper={self.upper}"


class GlobalMean(nn.Module):
    """(N, C, H, W) -> (N, C, 1, 1) mean; unlike adaptive pooling, its backward saves no input."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean((2, 3), keepdim=True)


def _lean(module: nn.Module) -> nn.Module | None:
    """The lean replacement of a stock module, or None to keep it."""
    kind = type(module)
    if kind is nn.Conv2d and module.padding_mode == "zeros" and not isinstance(module.padding, str):
        return SparseConv2d(module)
    if kind is nn.Linear:
        return SparseLinear(module)
    if kind is nn.ReLU:
        return Rectifier()
    if kind is nn.ReLU6:
        return Rectifier(6.0)
    if kind is nn.AdaptiveAvgPool2d and module.output_size in (1, (1, 1)):
        return GlobalMean()
    return None


def prepare(model: nn.Module, example: Tensor) -> nn.Module:
    """Fold BatchNorm into convolutions and swap in the lean modules, in place; all weights frozen.

    `example` is one input batch (any size), used to find which BatchNorm follows
    which convolution. Only modules of exactly the stock types are swapped, so
    another pillar's wrappers (e.g. compressed layers) are left as they are.
    Returns `model`, in eval mode (frozen BatchNorm statistics are folded away).
    """
    fold_batchnorm(model, example)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            lean = _lean(child)
            if lean is not None:
                setattr(module, child_name, lean.to(next(child.parameters(), example).device))
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def sparse_layers(model: nn.Module) -> dict[str, SparseLayer]:
    """The model's `SparseLayer` modules by qualified name, in definition order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, SparseLayer)}
