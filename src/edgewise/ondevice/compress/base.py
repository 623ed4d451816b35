"""The face of an activation compressor, and the drop-in layers it plugs into.

A trained conv or linear layer keeps its input for backward only to compute its
weight gradient; the input gradient needs only the weight (method notes §0.1).
The wrappers here run the layer's own forward, but hand the input to a *codec*
that returns a compact Tucker form (`tensor_ops.Tucker`), and save only that form
and the weight with ``ctx.save_for_backward``. Backward computes the input
gradient from the weight and the weight gradient from the factors.

A compressor (one file per method, registered in `COMPRESSORS`) is a dataclass
of parameters with one method, `Compressor.wrap`: given the model and the layers
to compress, return a wrapper for each. `prepare_compression` swaps them in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable
from torch.nn import grad as nn_grad

from edgewise.engine import TrainingDiverged
from edgewise.errors import ParameterError, check_param
from edgewise.ondevice.compress.tensor_ops import (
    Tucker,
    conv2d_weight_grad,
    linear_weight_grad,
)
from edgewise.registry import lookup

DEFAULT_LAYERS = 4
"""Layers compressed when none are named: the last four trainable ones (the papers tune the last 2 or 4)."""

CalibrationBatch = Tensor | tuple[Tensor, Tensor]


class Codec(Protocol):
    """Turns a layer input into the Tucker form that is saved for backward."""

    def compress(self, x: Tensor) -> Tucker: ...


class Compressor(ABC):
    """An activation-compression method: parameters (a dataclass) plus `wrap`.

    `layer_types` are the layers it can compress; `takes_budget`: whether `wrap`
    plans its ranks under a ``budget_bytes`` (asi, wasi) or refuses one because
    its ranks follow a threshold batch by batch (svd, hosvd); subclasses
    validate their parameters in ``__post_init__`` with the standard message.
    """

    name: ClassVar[str]
    layer_types: ClassVar[tuple[type[nn.Module], ...]] = (nn.Conv2d, nn.Linear)
    takes_budget: ClassVar[bool] = False

    @abstractmethod
    def wrap(
        self,
        model: nn.Module,
        targets: dict[str, nn.Module],
        *,
        budget_bytes: int | None,
        calibration_batch: CalibrationBatch | None,
    ) -> dict[str, nn.Module]:
        """A compressed replacement for each of `targets` (qualified name -> layer) in `model`."""


class Compressed:
    """Marks a layer as already compressed (it is never selected again)."""


def save_compressed(
    ctx: FunctionCtx, x: Tensor, codec: Codec, weights: Sequence[Tensor], compress: bool
) -> None:
    """Save `weights` and, when `compress`, the codec's Tucker form of `x`, all through the ctx."""
    saved = list(weights)
    if compress:
        try:
            tucker = codec.compress(x)
        except torch.linalg.LinAlgError as exc:  # even in float64 (`mode_spectrum`)
            raise TrainingDiverged(_undecomposable(x)) from exc
        saved += [tucker.core, *tucker.factors]
    ctx.num_weights = len(weights)
    ctx.save_for_backward(*saved)


def _undecomposable(x: Tensor) -> str:
    """Why a layer's input could not be decomposed: what a diverged training leaves there."""
    if not bool(torch.isfinite(x).all()):
        return ("Training diverged: a layer's input holds NaN or infinite values before "
                "compression; try a lower lr.")
    return (f"Training has most likely diverged: a layer's input (largest magnitude "
            f"{float(x.abs().max()):.1e}) could not be decomposed for compression; try a lower lr.")


def load_compressed(ctx: FunctionCtx) -> tuple[tuple[Tensor, ...], Tucker | None]:
    """The weights and the Tucker form (None if not saved) kept by `save_compressed`."""
    saved = ctx.saved_tensors
    weights, rest = saved[: ctx.num_weights], saved[ctx.num_weights :]
    return tuple(weights), Tucker(rest[0], tuple(rest[1:])) if rest else None


class _CompressedConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, codec, stride, padding, dilation, groups):
        ctx.geometry = (x.shape, stride, padding, dilation, groups)
        save_compressed(ctx, x, codec, [weight], ctx.needs_input_grad[1])
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (weight,), tucker = load_compressed(ctx)
        shape, stride, padding, dilation, groups = ctx.geometry
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = (
            nn_grad.conv2d_input(shape, weight, grad, stride, padding, dilation, groups)
            if need_x
            else None
        )
        grad_w = (
            conv2d_weight_grad(tucker, grad, weight.shape, stride, padding, dilation, groups)
            if need_w
            else None
        )
        grad_b = grad.sum((0, 2, 3)) if need_b else None
        return grad_x, grad_w, grad_b, None, None, None, None, None


class _CompressedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, codec):
        save_compressed(ctx, x, codec, [weight], ctx.needs_input_grad[1])
        return F.linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (weight,), tucker = load_compressed(ctx)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad @ weight if need_x else None
        grad_w = linear_weight_grad(tucker, grad) if need_w else None
        grad_b = grad.reshape(-1, grad.shape[-1]).sum(0) if need_b else None
        return grad_x, grad_w, grad_b, None


def is_fraction(value: Any) -> bool:
    """Whether `value` is a number in (0, 1], the range of every explained-variance threshold."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1


def records_graph(x: Tensor, *params: Tensor | None) -> bool:
    """Whether autograd will record this call (grad mode on and something needs a gradient)."""
    return torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, *params)
    )


class CompressedConv2d(Compressed, nn.Conv2d):
    """A drop-in `nn.Conv2d` that saves its input for backward only as the codec's Tucker form.

    It shares the wrapped layer's weight and bias (the same Parameters, the same
    state-dict keys). Zero padding given as numbers only.
    """

    def __init__(self, layer: nn.Conv2d, codec: Codec) -> None:
        check_param("a compressed conv", "padding", layer.padding,
                    not isinstance(layer.padding, str) and layer.padding_mode == "zeros",
                    "zero padding given as numbers (not 'same'/'valid', not reflect/circular)")
        super().__init__(
            layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
            layer.padding, layer.dilation, layer.groups, bias=layer.bias is not None,
            device="meta",
        )
        self.weight, self.bias = layer.weight, layer.bias
        self.codec = codec

    def forward(self, x: Tensor) -> Tensor:
        if not records_graph(x, self.weight, self.bias):
            return super().forward(x)
        return _CompressedConv2d.apply(
            x, self.weight, self.bias, self.codec, self.stride, self.padding, self.dilation,
            self.groups,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, codec={self.codec!r}"


class CompressedLinear(Compressed, nn.Linear):
    """A drop-in `nn.Linear` (inputs (..., I)) that saves its input only as the codec's Tucker form."""

    def __init__(self, layer: nn.Linear, codec: Codec) -> None:
        super().__init__(
            layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta"
        )
        self.weight, self.bias = layer.weight, layer.bias
        self.codec = codec

    def forward(self, x: Tensor) -> Tensor:
        if not records_graph(x, self.weight, self.bias):
            return super().forward(x)
        return _CompressedLinear.apply(x, self.weight, self.bias, self.codec)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, codec={self.codec!r}"


def compressed(layer: nn.Module, codec: Codec) -> nn.Module:
    """The drop-in compressed version of a conv or linear `layer`."""
    return CompressedConv2d(layer, codec) if isinstance(layer, nn.Conv2d) else CompressedLinear(layer, codec)


def layer_weight_grad(layer: nn.Module, tucker: Tucker, grad_output: Tensor) -> Tensor:
    """dL/dW of a conv or linear `layer` from the Tucker form of its input and dL/dy."""
    if isinstance(layer, nn.Conv2d):
        return conv2d_weight_grad(tucker, grad_output, layer.weight.shape, layer.stride,
                                  layer.padding, layer.dilation, layer.groups)
    return linear_weight_grad(tucker, grad_output)


def select_layers(
    model: nn.Module,
    layers: int | str | Sequence[str] | None,
    types: tuple[type[nn.Module], ...],
    owner: str,
) -> dict[str, nn.Module]:
    """The layers to compress, qualified name -> module, in model order.

    `layers`: None (the last `DEFAULT_LAYERS` trainable layers of `types`), an
    int n (the last n), or qualified names. Compressed layers are never picked.
    """
    candidates = {
        name: module for name, module in model.named_modules()
        if isinstance(module, types) and not isinstance(module, Compressed)
    }
    if layers is None or isinstance(layers, int):
        count = DEFAULT_LAYERS if layers is None else layers
        check_param(owner, "layers", layers, not isinstance(count, bool) and count >= 1,
                    "an int >= 1, qualified layer names or None")
        trainable = [name for name, module in candidates.items() if module.weight.requires_grad]
        if not trainable:
            kinds = " or ".join(t.__name__ for t in types)
            raise ParameterError(f"{owner} found no trainable {kinds} layer to compress in the model.")
        names = trainable[-count:]
    else:
        names = [layers] if isinstance(layers, str) else list(layers)
        check_param(owner, "layers", layers, len(names) > 0, "an int >= 1, qualified layer names or None")
        for name in names:
            lookup(candidates, name, f"layer for {owner}")
    return {name: candidates[name] for name in candidates if name in names}


def split_batch(batch: Any, owner: str) -> tuple[Tensor, Tensor | None]:
    """``(inputs, targets or None)`` from a calibration batch: a tensor or an (inputs, targets) pair."""
    if isinstance(batch, Tensor):
        return batch, None
    ok = isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, Tensor) for t in batch)
    shown = batch if batch is None else type(batch).__name__
    check_param(owner, "calibration_batch", shown, ok,
                "a tensor of inputs or an (inputs, targets) pair of tensors")
    return batch[0], batch[1]
