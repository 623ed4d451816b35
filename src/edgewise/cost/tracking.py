"""Module-level bookkeeping shared by the counters: which modules are running, and state kept intact."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def module_hooks(
    model: nn.Module, on_enter: Callable[[str], None], on_exit: Callable[[str], None]
) -> Iterator[None]:
    """Call ``on_enter(name)`` / ``on_exit(name)`` around the forward of every submodule of `model`.

    `name` is the qualified name (``"layer1.0.conv1"``); the root itself is not hooked.
    """

    # the hooks return None: a value would replace the module's input or output
    def pre_hook(name: str) -> Callable[..., None]:
        def hook(*_) -> None:
            on_enter(name)

        return hook

    def post_hook(name: str) -> Callable[..., None]:
        def hook(*_) -> None:
            on_exit(name)

        return hook

    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(pre_hook(name)))
            handles.append(module.register_forward_hook(post_hook(name)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def kept_state(model: nn.Module) -> Iterator[None]:
    """Restore every buffer (BatchNorm running statistics, counters) when the block ends.

    A forward pass in training mode updates BatchNorm's running statistics;
    measuring a model must not.
    """
    saved = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def submodule_names(model: nn.Module) -> list[str]:
    """Qualified names of every submodule of `model` (the root left out), in definition order."""
    return [name for name, _ in model.named_modules() if name]
