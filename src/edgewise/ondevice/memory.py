"""Memory of one training step, measured and by formula, and a budget that a step must not exceed.

What a step holds, in bytes (method notes §9.2):

- ``activations``: what autograd saves for backward, measured with
  ``saved_tensors_hooks`` and deduplicated by storage (`edgewise.cost`);
- ``gradients``: the weight gradients backward produced;
- ``optimizer_state`` and ``weights`` (parameters and buffers, resident anyway);
- ``analytic_activations``: the same saved bytes by formula, as the papers
  count them: the trained layers' inputs (the selected channels only, for a
  channel-sparse layer; the Tucker core and factors, prod K + sum D K, for a
  compressed one), one bit per element for the lean rectifiers, and
  `edgewise.cost`'s per-layer rule for stock layers on the backward path.

A `Budget` bounds ``activations + gradients`` (the quantity the 256 kB
papers bound; optimizer state is zero with SGD without momentum) at the batch
size used. `StepMonitor` measures every training step inside `engine.fit` and
raises `BudgetError` on the first step over budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgewise.cost import SavedTensorCounter, training_memory
from edgewise.cost.analytic import rule_for
from edgewise.cost.memory import tensor_bytes
from edgewise.errors import BudgetError, check_param
from edgewise.ondevice.compress.base import Compressed
from edgewise.ondevice.compress.tensor_ops import tucker_numel
from edgewise.ondevice.ops import Rectifier, SparseConv2d, SparseLayer

__all__ = ["KB", "Budget", "StepMemory", "StepMonitor", "analytic_activation_bytes", "step_memory"]

KB = 1000  # bytes in a kB; the stricter reading of "256 kB" (a KiB is 1024)


@dataclass(frozen=True)
class StepMemory:
    """Bytes of one training step; ``budgeted`` = activations + gradients, what a `Budget` bounds."""

    activations: int
    gradients: int
    optimizer_state: int
    weights: int
    analytic_activations: int

    @property
    def budgeted(self) -> int:
        return self.activations + self.gradients

    @property
    def total(self) -> int:
        return self.activations + self.gradients + self.optimizer_state + self.weights


@dataclass(frozen=True)
class Budget:
    """A limit of `kb` kilobytes (1 kB = 1000 bytes) on a step's saved activations plus weight gradients."""

    kb: float

    def __post_init__(self) -> None:
        check_param("Budget", "kb", self.kb, isinstance(self.kb, (int, float)) and self.kb > 0, "> 0")

    @property
    def bytes(self) -> int:
        return int(self.kb * KB)

    def check(self, used: int, what: str = "a training step") -> None:
        """Raise `BudgetError` when `used` bytes exceed the budget."""
        if used > self.bytes:
            raise BudgetError(
                f"{what} holds {used / KB:.1f} kB of saved activations and weight gradients, "
                f"over the budget of {self.kb:g} kB."
            )


def _lean_rule(module: nn.Module, x: Tensor, whole: set[int]) -> int:
    """What a lean module saves for backward, by formula (the ops' docstrings). An input
    saved whole counts once however many layers save it (`whole`: storages seen)."""
    if isinstance(module, Rectifier):
        return math.ceil(x.numel() / 8) if x.requires_grad else 0
    sliced = module.weight_slice.requires_grad and (module.axis == 1 or module.depthwise)
    if sliced:
        channel_dim = 1 if isinstance(module, SparseConv2d) else x.dim() - 1
        return x.nbytes // x.shape[channel_dim] * module.index.numel()
    if module.weight.requires_grad or module.weight_slice.requires_grad:
        pointer = x.untyped_storage().data_ptr()
        if pointer not in whole:
            whole.add(pointer)
            return x.untyped_storage().nbytes()
    return 0


def _compressed_rule(module: nn.Module, x: Tensor) -> int:
    """Bytes of the Tucker form a compressed layer saves: from its fixed ranks (asi, wasi), or,
    for ranks that depend on the batch (svd, hosvd), from compressing this input."""
    if not any(p.requires_grad for p in module.parameters()):
        return 0
    ranks = getattr(module.codec, "ranks", None)
    numel = tucker_numel(x.shape, ranks) if ranks is not None else module.codec.compress(x).numel
    return numel * x.element_size()


def analytic_activation_bytes(model: nn.Module, inputs: Tensor) -> int:
    """Bytes that one forward of `inputs` saves for backward, by formula.

    Only modules on the backward path count (their input or a parameter needs a
    gradient). Lean modules count as in `_lean_rule`; other leaf modules by
    `edgewise.cost`'s per-layer rule (which does not deduplicate). The outputs are
    kept until the end, so that storage pointers stay unique.
    """
    total = 0
    whole: set[int] = set()

    def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
        nonlocal total
        x = args[0]
        if isinstance(module, (SparseLayer, Rectifier)):
            total += _lean_rule(module, x, whole)
        elif isinstance(module, Compressed):
            total += _compressed_rule(module, x)
        elif x.requires_grad or any(p.requires_grad for p in module.parameters(recurse=False)):
            rule = rule_for(module)
            total += rule(module, x, output) if rule is not None else 0

    leaves = [
        m for m in model.modules()
        if isinstance(m, Compressed) or not any(True for _ in m.children())
    ]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.enable_grad():
            outputs = model(inputs)
        del outputs
    finally:
        for handle in handles:
            handle.remove()
    return total


def step_memory(
    model: nn.Module, images: Tensor, labels: Tensor, optimizer: torch.optim.Optimizer | None = None
) -> StepMemory:
    """Measure one training step of `model` on a batch (on a copy; the model is left as it is)."""
    report = training_memory(model, images, labels, optimizer)
    return StepMemory(
        activations=report.activations,
        gradients=report.gradients,
        optimizer_state=report.optimizer_state,
        weights=report.weights,
        analytic_activations=analytic_activation_bytes(model, images),
    )


class StepMonitor:
    """Measures every training step of `engine.fit`: use `loss_fn` as its loss and pass the
    monitor as a callback. With a `budget`, the first step over it raises `BudgetError`.

    A step's saved activations are counted while its forward runs; its weight
    gradients when the next step starts (the loop clears them only after the
    forward) or at the end of the epoch, when each of `observers` is also
    called (it may read the gradients). ``peak_budgeted`` is the largest activations +
    gradients of any step; ``peak_activations`` and ``peak_gradients`` are that step's parts.
    """

    def __init__(
        self, budget: Budget | None = None, observers: Sequence[Callable[[], None]] = ()
    ) -> None:
        self.budget = budget
        self.observers = observers
        self.steps = 0
        self.peak_activations = 0
        self.peak_gradients = 0
        self.peak_budgeted = 0
        self._pending: int | None = None  # saved bytes of the step whose gradients are not yet seen

    def loss_fn(self, model: nn.Module, images: Tensor, labels: Tensor, state) -> tuple[Tensor, Tensor]:
        if not torch.is_grad_enabled():
            logits = model(images)
            return F.cross_entropy(logits, labels), logits
        self._close(model)
        with SavedTensorCounter(model) as counter:
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
        self._pending = counter.bytes
        return loss, logits

    def _close(self, model: nn.Module) -> None:
        if self._pending is None:
            return
        gradients = tensor_bytes([p.grad for p in model.parameters() if p.grad is not None])
        for observe in self.observers:
            observe()
        activations, self._pending = self._pending, None
        used = activations + gradients
        self.steps += 1
        if used > self.peak_budgeted:  # the peak step, its two parts kept together
            self.peak_budgeted, self.peak_activations, self.peak_gradients = used, activations, gradients
        if self.budget is not None:
            self.budget.check(used, f"Training step {self.steps}")

    def on_epoch_end(self, state) -> dict[str, float]:
        self._close(state.model)
        return {"peak_budgeted_bytes": float(self.peak_budgeted)}
