"""Multiply-accumulates and parameters, counted by torch's own operator counter.

`torch.utils.flop_counter.FlopCounterMode` sees every matmul-like operator
(convolutions, linear layers, matmul, bmm, attention) whatever module or
function issued it; one multiply-add is two of its flops. Element-wise work
(BatchNorm, activations, pooling, additions) is not counted, as is usual for MACs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from edgewise.cost.tracking import kept_state, module_hooks, submodule_names


@dataclass(frozen=True)
class MacCount:
    """MACs of one forward pass over the given inputs, and parameter counts.

    ``per_module`` and ``params_per_module`` are keyed by qualified module name
    and include the module's submodules (``"layer1"`` covers ``"layer1.0.conv1"``).
    """

    total: int
    per_module: dict[str, int]
    params_total: int
    params_per_module: dict[str, int]


def count_params(module: nn.Module) -> int:
    """Number of distinct parameters (shared ones counted once)."""
    return sum(p.numel() for p in module.parameters())


def count_macs(model: nn.Module, inputs: Tensor) -> MacCount:
    """Count the MACs of ``model(inputs)`` for the whole batch (pass one image for MACs per image).

    Runs one forward pass without gradients in the model's current mode; the
    model's mode, parameters and buffers are left as they were.
    """
    per_module = dict.fromkeys(submodule_names(model), 0)
    started: dict[str, list[int]] = defaultdict(list)
    counter = FlopCounterMode(display=False)

    def enter(name: str) -> None:
        started[name].append(counter.get_total_flops())

    def leave(name: str) -> None:
        per_module[name] += (counter.get_total_flops() - started[name].pop()) // 2

    with kept_state(model), torch.no_grad(), module_hooks(model, enter, leave), counter:
        model(inputs)
    return MacCount(
        total=counter.get_total_flops() // 2,
        per_module=per_module,
        params_total=count_params(model),
        params_per_module={name: count_params(m) for name, m in model.named_modules() if name},
    )
