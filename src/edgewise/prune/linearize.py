"""Rectifiers, and the mark a depth pruner leaves on the ones it removes.

A depth pruner does not delete layers itself: it swaps a rectifier for a
`Linearized` module, which lets each channel through unchanged (an ON channel,
where the rectifier acted as the identity) or sets it to zero (an OFF channel,
where the rectifier always output zero). The model keeps training with the
mark in place; `edgewise.prune.fold` later folds the mark into the
neighbouring layers, removes the OFF channels and merges what is left.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# The modules whose input sign decides their state. GELU is read by its sign too.
RECTIFIERS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.GELU)


def channel_dim(ndim: int) -> int:
    """The channel axis of an activation with `ndim` dimensions.

    (N, C) and (N, C, H, W) carry channels on axis 1; token tensors (N, T, C) on the last.
    """
    return 2 if ndim == 3 else 1


class Linearized(nn.Module):
    """A removed rectifier: ``y = x * keep`` per channel, `keep` a 0/1 vector of length C.

    ``keep[c] = 1`` for an ON channel (identity), 0 for an OFF channel (always zero).
    `kind` records which rectifier it replaced ("relu", "relu6", "gelu").
    """

    def __init__(self, keep: Tensor, kind: str = "relu") -> None:
        super().__init__()
        self.register_buffer("keep", keep.detach().to(torch.float32).flatten().clone())
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        shape = [1] * x.dim()
        shape[channel_dim(x.dim())] = -1
        return x * self.keep.view(shape)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, on={int(self.keep.sum())}/{self.keep.numel()}"


class ChannelAffine(nn.Module):
    """``y = x * scale + shift`` per channel: a BatchNorm or a mask that had nowhere to fold.

    `dim` is the channel axis; None follows `channel_dim` (as `Linearized` does).
    """

    def __init__(self, scale: Tensor, shift: Tensor, dim: int | None = None) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().flatten().clone())
        self.register_buffer("shift", shift.detach().flatten().clone())
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        shape = [1] * x.dim()
        shape[channel_dim(x.dim()) if self.dim is None else self.dim] = -1
        return x * self.scale.view(shape) + self.shift.view(shape)


def kind_of(module: nn.Module) -> str:
    """The rectifier's short name: "relu", "relu6" or "gelu"."""
    if isinstance(module, Linearized):
        return module.kind
    if isinstance(module, nn.ReLU6):
        return "relu6"
    return "gelu" if isinstance(module, nn.GELU) else "relu"


def rectifier_names(model: nn.Module, *, linearized: bool = False) -> list[str]:
    """Qualified names of the rectifier modules of `model`, in definition order.

    With `linearized`, the already removed ones (`Linearized`) are included too.
    """
    kinds = RECTIFIERS + ((Linearized,) if linearized else ())
    return [name for name, m in model.named_modules() if name and isinstance(m, kinds)]


def linearized_names(model: nn.Module) -> list[str]:
    """Qualified names of the rectifiers a pruner has removed."""
    return [name for name, m in model.named_modules() if isinstance(m, Linearized)]


def replace_module(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put `new` at qualified `name` inside `model` and return the module it replaced."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old


def linearize(model: nn.Module, name: str, keep: Tensor) -> Linearized:
    """Replace rectifier `name` of `model` by a `Linearized` with the given 0/1 `keep` vector."""
    module = model.get_submodule(name)
    device = next((p.device for p in model.parameters()), keep.device)
    new = Linearized(keep.to(device), kind_of(module))
    replace_module(model, name, new)
    return new
