"""Training memory as measured: the bytes autograd saves for backward, gradients, optimizer state.

`SavedTensorCounter` hooks `torch.autograd.graph.saved_tensors_hooks`: every
tensor autograd packs is recorded by its untyped storage (data pointer ->
bytes), so a storage saved by several operations (a ReLU's output that the
next convolution also saves) counts once, and a view counts its whole storage.
Parameters and buffers are left out: they are in memory anyway.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgewise.cost.tracking import kept_state, module_hooks, submodule_names

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class SavedBytes:
    """Bytes saved for backward: ``total``, and ``per_module`` by qualified name (submodules included)."""

    total: int
    per_module: dict[str, int]


class SavedTensorCounter:
    """Context manager counting the bytes autograd saves for backward while it is open.

    Each saved storage counts once, for the modules running when it was first
    saved (the innermost module and its parents). Storages saved outside any
    submodule of `model` (the model's own functional ops, a loss) count in
    ``bytes`` only. Pointers identify storages while the graph holds them: keep
    the outputs alive until the counter closes. Usage::

        with SavedTensorCounter(model) as counter:
            loss = F.cross_entropy(model(x), y)
        counter.bytes, counter.per_module["layer1"]
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.bytes = 0
        self.per_module: dict[str, int] = {}
        self._seen: set[int] = set()
        self._running: list[str] = []
        self._hooks: ExitStack | None = None

    def __enter__(self) -> SavedTensorCounter:
        self.bytes = 0
        self.per_module = dict.fromkeys(submodule_names(self.model), 0)
        owned = [*self.model.parameters(), *self.model.buffers()]
        self._seen = {t.untyped_storage().data_ptr() for t in owned}
        self._running = []
        self._hooks = ExitStack()
        self._hooks.enter_context(
            module_hooks(self.model, self._running.append, lambda _: self._running.pop())
        )
        self._hooks.enter_context(torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t))
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.close()

    def _pack(self, tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in self._seen:
            self._seen.add(pointer)
            self.bytes += storage.nbytes()
            for name in self._running:
                self.per_module[name] += storage.nbytes()
        return tensor


def saved_activation_bytes(
    model: nn.Module, inputs: Tensor, targets: Tensor | None = None, loss_fn: LossFn | None = None
) -> SavedBytes:
    """Bytes autograd saves for one forward pass (and the loss, when `targets` are given).

    `loss_fn(outputs, targets)` defaults to cross-entropy. The model runs in its
    current mode; its buffers are restored afterwards. Frozen parameters
    (``requires_grad=False``) save less, as they would in training.
    """
    with kept_state(model), torch.enable_grad(), SavedTensorCounter(model) as counter:
        outputs = model(inputs)
        if targets is not None:
            outputs = (loss_fn or F.cross_entropy)(outputs, targets)
    del outputs
    return SavedBytes(total=counter.bytes, per_module=counter.per_module)


@dataclass(frozen=True)
class MemoryReport:
    """Bytes one training step holds: weights (parameters and buffers), saved activations,
    weight gradients and optimizer state."""

    weights: int
    activations: int
    gradients: int
    optimizer_state: int

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.gradients + self.optimizer_state


def tensor_bytes(tensors: Iterable[Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors`."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def training_memory(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: LossFn | None = None,
) -> MemoryReport:
    """Measure one training step (forward, loss, backward, optimizer step) on a copy of the model.

    Gradients are those backward actually produced (frozen parameters have
    none); optimizer state is what `optimizer` holds after the step (SGD's
    momentum buffers, Adam's two moments and step counts); no optimizer holds
    nothing. The model and the optimizer given are left untouched.
    """
    model, optimizer = copy.deepcopy((model, optimizer))
    for parameter in model.parameters():
        parameter.grad = None
    with torch.enable_grad(), SavedTensorCounter(model) as counter:
        loss = (loss_fn or F.cross_entropy)(model(inputs), targets)
    loss.backward()
    if optimizer is not None:
        optimizer.step()
    state = optimizer.state.values() if optimizer is not None else []
    return MemoryReport(
        weights=tensor_bytes([*model.parameters(), *model.buffers()]),
        activations=counter.bytes,
        gradients=tensor_bytes([p.grad for p in model.parameters() if p.grad is not None]),
        optimizer_state=tensor_bytes(
            [t for entry in state for t in entry.values() if isinstance(t, Tensor)]
        ),
    )
