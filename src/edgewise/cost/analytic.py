"""What each stock layer saves for backward, counted from shapes (no dedup across layers).

Per layer, in bytes of its tensors' dtype, as PyTorch's CPU kernels save
them: a convolution or linear layer its input; BatchNorm its input plus the
batch mean and inverse std per channel (training mode); LayerNorm and GroupNorm
their input plus a mean and inverse std per normalised row; ReLU, sigmoid, tanh
and softmax their output; ReLU6, GELU, SiLU and the other activations their
input; max-pooling its input and int64 indices; average pooling its input (none
for a global 1x1 pool, which is a mean). Parameters are not counted.

Summing the layers over-counts what `saved_activation_bytes` measures where two
layers save the same tensor (a ReLU's output is the next convolution's input).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from edgewise.cost.tracking import kept_state

Rule = Callable[[nn.Module, Tensor, Tensor], int]


def stats_itemsize(x: Tensor) -> int:
    """Bytes of one normalisation statistic: float32, or float64 for float64 inputs."""
    return torch.promote_types(x.dtype, torch.float32).itemsize


def saves_input(module: nn.Module, x: Tensor, y: Tensor) -> int:
    return x.nbytes


def saves_output(module: nn.Module, x: Tensor, y: Tensor) -> int:
    return y.nbytes


def saves_nothing(module: nn.Module, x: Tensor, y: Tensor) -> int:
    return 0


def batch_norm(module: nn.modules.batchnorm._BatchNorm, x: Tensor, y: Tensor) -> int:
    batch_stats = module.training or module.running_mean is None
    return x.nbytes + (2 * x.shape[1] * stats_itemsize(x) if batch_stats else 0)


def layer_norm(module: nn.LayerNorm, x: Tensor, y: Tensor) -> int:
    rows = x.numel() // math.prod(module.normalized_shape)
    return x.nbytes + 2 * rows * stats_itemsize(x)


def group_norm(module: nn.GroupNorm, x: Tensor, y: Tensor) -> int:
    return x.nbytes + 2 * x.shape[0] * module.num_groups * stats_itemsize(x)


def max_pool(module: nn.Module, x: Tensor, y: Tensor) -> int:
    return x.nbytes + y.numel() * torch.int64.itemsize


def adaptive_avg_pool(module: nn.Module, x: Tensor, y: Tensor) -> int:
    return 0 if math.prod(y.shape[2:]) == 1 else x.nbytes


# first match wins; a module of no listed type is left out
RULES: tuple[tuple[tuple[type[nn.Module], ...], Rule], ...] = (
    ((nn.modules.conv._ConvNd, nn.Linear), saves_input),
    ((nn.modules.batchnorm._BatchNorm,), batch_norm),
    ((nn.LayerNorm,), layer_norm),
    ((nn.GroupNorm,), group_norm),
    ((nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Softmax), saves_output),
    ((nn.Hardtanh, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Hardswish, nn.ELU), saves_input),
    ((nn.modules.pooling._MaxPoolNd,), max_pool),
    ((nn.modules.pooling._AdaptiveAvgPoolNd,), adaptive_avg_pool),
    ((nn.modules.pooling._AvgPoolNd,), saves_input),
    ((nn.Flatten, nn.Identity), saves_nothing),
)


def rule_for(module: nn.Module) -> Rule | None:
    """The rule for `module`'s type, or None for a type not listed."""
    return next((rule for types, rule in RULES if isinstance(module, types)), None)


def analytic_activation_bytes(model: nn.Module, inputs: Tensor) -> dict[str, int]:
    """Bytes each stock layer of `model` saves for backward on `inputs`, by qualified name.

    Shapes come from one forward pass without gradients in the model's current
    mode (BatchNorm saves its statistics only in training mode); buffers are
    restored afterwards. Assumes every layer's input or weight needs a gradient.
    Layers of types with no rule (and containers) are left out.
    """
    counted = {name: 0 for name, module in model.named_modules() if name and rule_for(module)}

    def record(name: str) -> Callable[[nn.Module, tuple, Tensor], None]:
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            counted[name] += rule_for(module)(module, args[0], output)

        return hook

    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(record(name)) for name in counted]
    try:
        with kept_state(model), torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return counted
