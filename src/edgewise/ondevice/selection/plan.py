"""What each channel costs in a training step, and the filler that stops at the budget.

At the batch size used, training the weights of input channel c of layer L
costs (TraDy's Θ_space, method notes §6.1, in bytes):

- its weight gradient: C'·kh·kw values (kh·kw for a depthwise conv);
- its saved activation plane: B·H·W values (the copied slice the op keeps);

an output channel (a NEq neuron) costs its weight-gradient row C·kh·kw, and its
layer's whole input once. Besides, once backward must reach L, everything
between L and the loss saves what its own backward needs (one-bit rectifier
masks, the loss): `MemoryPlan` *measures* that "path" once per layer (the
saved bytes of a forward with only L's bias trainable). A selection's cost is the deepest path plus the sum
of its channels; `fill` adds candidates in the given order while the cost
stays within the limit, then measures the result and drops the last ones
if the measurement says the estimate was low.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from edgewise.cost import saved_activation_bytes, training_memory
from edgewise.errors import BudgetError
from edgewise.ondevice.memory import KB
from edgewise.ondevice.ops import IN, SparseConv2d, SparseLayer, sparse_layers
from edgewise.ondevice.selection.base import Selection, apply_selection

__all__ = ["BIAS", "LayerCost", "MemoryPlan", "check_head_fits"]

BIAS = -1  # the channel index that stands for a layer's bias in `MemoryPlan.fill`


@dataclass(frozen=True)
class LayerCost:
    """Bytes one layer's parts cost in a training step at the plan's batch size.

    ``weight[axis]`` and ``activation[axis]``: per channel along `axis`
    (``activation[OUT]`` is 0: an output channel needs the whole input,
    ``input_bytes``, once per layer). ``path``: saved bytes of the whole step
    once backward reaches this layer, this layer's own saves left out.
    """

    channels: tuple[int, int]  # (output, input)
    weight: tuple[int, int]
    activation: tuple[int, int]
    input_bytes: int
    bias: int
    path: int

    def channel(self, axis: int) -> int:
        """What one channel along `axis` costs, the layer's fixed costs left out."""
        return self.weight[axis] + self.activation[axis]

    def opening(self, axis: int) -> int:
        """What the first channel along `axis` costs on top: the whole input, when it needs it."""
        return self.input_bytes if self.activation[axis] == 0 else 0


def _shapes(model: nn.Module, images: Tensor) -> dict[str, torch.Size]:
    """The input shape of every sparse layer for a batch of `images`."""
    shapes: dict[str, torch.Size] = {}

    def record(module: nn.Module, args: tuple) -> None:
        shapes[names[id(module)]] = args[0].shape

    names = {id(layer): name for name, layer in sparse_layers(model).items()}
    handles = [layer.register_forward_pre_hook(record) for layer in sparse_layers(model).values()]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def _layer_cost(layer: SparseLayer, shape: torch.Size, itemsize: int) -> LayerCost:
    """The layer's costs from shapes; ``path`` is measured later."""
    out_channels, in_channels = layer.shape
    per_input_channel = shape.numel() // in_channels * itemsize  # B*H*W (B*tokens for linear)
    if isinstance(layer, SparseConv2d):
        shape_of_weight = layer.weight.shape
        row = shape_of_weight[2] * shape_of_weight[3] * itemsize  # one kh x kw kernel
        if layer.depthwise:
            weight = (row, row)
            activation = (per_input_channel, per_input_channel)
        else:
            weight = (in_channels * row, out_channels * row)
            activation = (0, per_input_channel)
    else:
        weight = (in_channels * itemsize, out_channels * itemsize)
        activation = (0, per_input_channel)
    bias = out_channels * itemsize if layer.bias is not None else 0
    return LayerCost(
        (out_channels, in_channels), weight, activation, shape.numel() * itemsize, bias, 0
    )


class MemoryPlan:
    """The memory model of a prepared model for one batch shape, with an optional limit.

    `images`, `labels`: one training batch (its size is the one the budget is
    for). `head`: the layer that always trains. `limit`: the budget in bytes
    (None: costs only, no filling). Building it runs one measured step per layer.
    """

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        head: str,
        limit: int | None = None,
    ) -> None:
        self.model, self.images, self.labels = model, images, labels
        self.head, self.limit = head, limit
        layers = {name: layer for name, layer in sparse_layers(model).items() if name != head}
        shapes = _shapes(model, images)
        itemsize = images.element_size()
        self.base = self.measure(Selection())  # the head alone: its saves and its gradients
        head_gradients = self.base - self._saved(Selection())
        self.costs: dict[str, LayerCost] = {}
        for name, layer in layers.items():
            cost = _layer_cost(layer, shapes[name], itemsize)
            # the cheapest part that opens the path: the bias (saves nothing), else one input channel
            if layer.bias is not None:
                path = self._saved(Selection(biases=frozenset({name})))
            else:
                one = Selection({name: torch.zeros(1, dtype=torch.long)}, IN)
                path = self._saved(one) - cost.activation[IN]
            self.costs[name] = replace(cost, path=path + head_gradients)
        apply_selection(model, Selection(), head)
        check_head_fits(limit, self.base, head, images.shape[0])

    @property
    def layers(self) -> list[str]:
        """The layers a selection may choose from (the head left out), in model order."""
        return list(self.costs)

    def _saved(self, selection: Selection) -> int:
        """Measured saved activations of one forward and loss with `selection` (and the head)."""
        apply_selection(self.model, selection, self.head)
        return saved_activation_bytes(self.model, self.images, self.labels).total

    def measure(self, selection: Selection) -> int:
        """Measured saved activations + weight gradients of one step with `selection` (and the head)."""
        apply_selection(self.model, selection, self.head)
        used = training_memory(self.model, self.images, self.labels)
        return used.activations + used.gradients

    def cost(self, selection: Selection) -> int:
        """The estimated bytes of `selection` (with the head): the deepest path plus every part."""
        total, path = 0, self.base
        for name in selection.layers():
            c = self.costs[name]
            index = selection.channels.get(name)
            count = 0 if index is None else int(index.numel())
            total += count * c.channel(selection.axis) + (c.bias if name in selection.biases else 0)
            total += c.opening(selection.axis) if count else 0
            path = max(path, c.path)
        return total + path

    def fill(self, candidates: Iterable[tuple[str, int]], axis: int = IN) -> Selection:
        """Add ``(layer, channel)`` candidates in order while the budget holds; `BIAS` as the
        channel stands for the layer's bias. A candidate that does not fit is skipped, and
        later, smaller ones may still fit. The result is measured and trimmed to the limit."""
        if self.limit is None:
            raise BudgetError("This memory plan has no limit to fill up to.")
        chosen: list[tuple[str, int]] = []
        used, path, opened = self.base, self.base, set()
        for name, channel in candidates:
            c = self.costs[name]
            if channel == BIAS:
                part = c.bias
            else:
                part = c.channel(axis) + (c.opening(axis) if name not in opened else 0)
            extra = part + max(0, c.path - path)
            if used + extra <= self.limit:
                chosen.append((name, channel))
                used, path = used + extra, max(path, c.path)
                opened |= {name} if channel != BIAS else set()
        selection = _selection(chosen, axis)
        while chosen and self.measure(selection) > self.limit:
            del chosen[-max(1, len(chosen) // 20):]  # the estimate was low: drop the last 5 %
            selection = _selection(chosen, axis)
        apply_selection(self.model, Selection(), self.head)
        return selection


def check_head_fits(limit: int | None, head_bytes: int, head: str, batch_size: int) -> None:
    """A `BudgetError` when a budget of `limit` bytes is below what training the head alone takes."""
    if limit is not None and head_bytes > limit:
        raise BudgetError(
            f"A budget of {limit / KB:g} kB cannot hold even the head: training {head!r} alone "
            f"takes {head_bytes / KB:.1f} kB at batch size {batch_size}."
        )


def _selection(chosen: list[tuple[str, int]], axis: int) -> Selection:
    channels: dict[str, list[int]] = {}
    biases = set()
    for name, channel in chosen:
        if channel == BIAS:
            biases.add(name)
        else:
            channels.setdefault(name, []).append(channel)
    return Selection(
        {name: torch.tensor(sorted(index), dtype=torch.long) for name, index in channels.items()},
        axis,
        frozenset(biases),
    )
