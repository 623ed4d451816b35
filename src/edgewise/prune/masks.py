"""Pruning masks that stay put while the engine fine-tunes.

A mask is a 0/1 tensor per parameter (by qualified name). Applying it zeroes
the pruned entries; while `enforced`, gradient hooks zero their gradients, so a
fresh optimizer (SGD with momentum and weight decay, Adam, AdamW) never moves
them: their gradient, momentum and decay terms are all zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class Masks:
    """Parameter name -> 0/1 mask of the same shape (1 keeps the entry)."""

    def __init__(self) -> None:
        self.masks: dict[str, Tensor] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.masks

    def get(self, model: nn.Module, name: str) -> Tensor:
        """The mask of parameter `name` (all ones when nothing of it is pruned)."""
        if name not in self.masks:
            return torch.ones_like(model.get_parameter(name), dtype=torch.bool)
        return self.masks[name]

    def prune(self, model: nn.Module, name: str, remove: Tensor) -> None:
        """Add the entries where `remove` is true to the mask of `name`, and zero them."""
        self.masks[name] = self.get(model, name) & ~remove.to(torch.bool)
        with torch.no_grad():
            model.get_parameter(name).mul_(self.masks[name])

    @contextmanager
    def enforced(self, model: nn.Module) -> Iterator[None]:
        """Zero the gradients of pruned entries for the duration of the block."""
        handles = [
            model.get_parameter(name).register_hook(lambda g, m=mask: g * m.to(g.dtype))
            for name, mask in self.masks.items()
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def pruned(self) -> int:
        """How many entries are pruned, over all masks."""
        return sum(int((~mask).sum()) for mask in self.masks.values())

    def state_dict(self) -> dict[str, Tensor]:
        return {name: mask.clone() for name, mask in self.masks.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.masks = {name: mask.to(torch.bool).clone() for name, mask in state.items()}
