"""The face of an update-selection method, and what it returns.

A selector is given, once per epoch, the model (prepared with
`edgewise.ondevice.ops.prepare`), the budget (a `MemoryPlan`: what each channel
costs, and a filler that stops at the limit) and the statistics it may observe
(`Statistics`), and returns a `Selection`: which layers and channels get weight
gradients this epoch. The runner applies it; the head (the new classifier)
always trains and is not part of it.

Selectors are dataclasses: fields are parameters, checked in ``__post_init__``
with the standard message; learned state lives in fields ending in ``_`` (not
constructor arguments) and is what `state_dict` saves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from edgewise.errors import ParameterError
from edgewise.ondevice.ops import IN, OUT, sparse_layers

if TYPE_CHECKING:
    from edgewise.ondevice.selection.plan import MemoryPlan
    from edgewise.ondevice.selection.statistics import Statistics

__all__ = ["IN", "OUT", "Selection", "Selector", "apply_selection", "require_budget"]


@dataclass(frozen=True)
class Selection:
    """What trains for one epoch.

    ``channels[layer]``: the indices (int64) of the channels of `layer` whose
    weights train, along ``axis`` (`IN`: input channels, `OUT`: output
    channels, i.e. neurons); all of a layer's channels mean its whole weight.
    ``biases``: the layers whose bias trains. A layer in neither is frozen.
    """

    channels: Mapping[str, Tensor] = field(default_factory=dict)
    axis: int = IN
    biases: frozenset[str] = frozenset()

    def weight_count(self) -> int:
        """How many channels train, over all layers."""
        return sum(int(index.numel()) for index in self.channels.values())

    def layers(self) -> set[str]:
        """The layers with anything to train."""
        return {name for name, index in self.channels.items() if index.numel()} | set(self.biases)


def apply_selection(model: nn.Module, selection: Selection, head: str | None = None) -> None:
    """Make exactly `selection` trainable in the prepared `model` (plus all of `head`, when given)."""
    for name, layer in sparse_layers(model).items():
        if name == head:
            layer.select(torch.arange(layer.channels(IN)), IN, bias=layer.bias is not None)
        else:
            bias = name in selection.biases and layer.bias is not None
            layer.select(selection.channels.get(name), selection.axis, bias)


def require_budget(owner: str, budget: MemoryPlan | None) -> MemoryPlan:
    """`budget`, or a clear error for a method that fills a budget."""
    if budget is None or budget.limit is None:
        raise ParameterError(
            f"{owner} selects channels until a memory budget is full: give it a budget "
            "(budget_kb, --budget-kb)."
        )
    return budget


@dataclass
class Selector(ABC):
    """An update-selection method: `select` is called at the start of every epoch."""

    name: ClassVar[str]

    @abstractmethod
    def select(
        self, model: nn.Module, budget: MemoryPlan | None, stats: Statistics
    ) -> Selection:
        """Which layers and channels of `model` get weight gradients this epoch."""

    def state_dict(self) -> dict[str, Tensor]:
        """The learned state (fields ending in ``_``): tensors, or dicts of tensors by layer."""
        state: dict[str, Tensor] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_") and isinstance(value, Tensor):
                state[f.name] = value
            elif f.name.endswith("_") and isinstance(value, dict):
                state.update({f"{f.name}.{layer}": t for layer, t in value.items()})
        return state

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Restore what `state_dict` returned."""
        learned = {f.name: getattr(self, f.name) for f in fields(self) if f.name.endswith("_")}
        for key, value in state.items():
            name, _, layer = key.partition(".")
            if name not in learned:
                raise ParameterError(f"{self.name} has no learned state {name!r}.")
            if layer:
                learned[name][layer] = value
            else:
                setattr(self, name, value)
