"""What a selector may observe: each statistic is computed on demand, at most once per epoch.

- `Statistics.outputs`: every candidate layer's output on a small probe set of
  images (NEq's validation probe), without gradients;
- `Statistics.gradient_norms`: the norm of each input channel's weight
  gradient, ‖∂L/∂W[:, c]‖₂, from a dense backward on a copy of the model over a
  few labelled batches. This is the *offline* pass of TraDy and MeDyate
  (ranking layers before fine-tuning): it needs more memory than the budget;
- `Statistics.observed`: the mean squared norm of each input channel's weight
  gradient over the previous epoch's steps that updated that channel, gathered
  by `Statistics.observe` after each training step (what a device sees for free).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgewise.ondevice.ops import IN, sparse_layers

__all__ = ["Statistics", "input_channel_norms"]


def input_channel_norms(grad: Tensor, dim: int) -> Tensor:
    """Squared norms of `grad` summed over every dimension but `dim`: one value per channel."""
    dims = [d for d in range(grad.dim()) if d != dim]
    return grad.pow(2).sum(dims)


class Statistics:
    """Observations of a prepared `model` for the selectors.

    `layers`: the candidate layers (the head left out). `probe`: images whose
    layer outputs `outputs` returns. `batches`: labelled batches for
    `gradient_norms`. `seed` seeds each epoch's `generator`. Call `start_epoch`
    at every epoch, and `observe` after every training step.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: list[str],
        probe: Tensor,
        batches: list[tuple[Tensor, Tensor]],
        seed: int = 0,
    ) -> None:
        self.model, self.layers, self.probe, self.batches, self.seed = model, layers, probe, batches, seed
        self.epoch = 0
        self.generator = torch.Generator().manual_seed(seed)
        self._cache: dict[str, dict[str, Tensor]] = {}
        modules = sparse_layers(model)
        self._sums = {n: torch.zeros(modules[n].channels(IN), dtype=torch.float64) for n in layers}
        self._counts = {n: torch.zeros_like(s) for n, s in self._sums.items()}
        self._last = {n: torch.full_like(s, torch.nan) for n, s in self._sums.items()}

    def start_epoch(self, epoch: int) -> None:
        """Forget the cached statistics, close the gradient means of the epoch that ended,
        and reseed `generator` from (seed, epoch)."""
        self.epoch = epoch
        self.generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        self._cache.clear()
        for name in self.layers:
            self._last[name] = self._sums[name] / self._counts[name]
            self._sums[name].zero_()
            self._counts[name].zero_()

    def observe(self) -> None:
        """Add the weight gradients the model holds now (after a training step's backward)."""
        modules = sparse_layers(self.model)
        for name in self.layers:
            layer = modules[name]
            if layer.weight.grad is not None:
                grad, dim, where = layer.weight.grad, (0 if layer.depthwise else 1), None
            elif layer.weight_slice.grad is not None and (layer.axis == IN or layer.depthwise):
                grad, dim, where = layer.weight_slice.grad, layer.slice_dim, layer.index.cpu()
            else:
                continue  # frozen, or rows of output channels: nothing per input channel
            norms = input_channel_norms(grad.detach(), dim).double().cpu()
            where = torch.arange(norms.numel()) if where is None else where
            self._sums[name].index_add_(0, where, norms)
            self._counts[name].index_add_(0, where, torch.ones_like(norms))

    def observed(self) -> dict[str, Tensor]:
        """Mean squared weight-gradient norm per input channel over the previous epoch's steps
        that updated it (NaN for a channel not updated), by layer."""
        return dict(self._last)

    def outputs(self) -> dict[str, Tensor]:
        """Each candidate layer's output on the probe images, (N, C', ...), by layer."""
        if "outputs" not in self._cache:
            found: dict[str, Tensor] = {}
            modules = sparse_layers(self.model)
            names = {id(modules[n]): n for n in self.layers}

            def record(module: nn.Module, args: tuple, output: Tensor) -> None:
                found[names[id(module)]] = output.detach().clone()

            handles = [modules[n].register_forward_hook(record) for n in self.layers]
            try:
                with torch.no_grad():
                    self.model(self.probe)
            finally:
                for handle in handles:
                    handle.remove()
            self._cache["outputs"] = found
        return self._cache["outputs"]

    def gradient_norms(self) -> dict[str, Tensor]:
        """‖∂L/∂W[:, c]‖₂ per input channel c of every candidate layer, the mean over `batches`."""
        if "gradients" not in self._cache:
            twin = copy.deepcopy(self.model)
            modules = sparse_layers(twin)
            for name in self.layers:
                modules[name].select(torch.arange(modules[name].channels(IN)))
            norms = {n: torch.zeros(modules[n].channels(IN), dtype=torch.float64) for n in self.layers}
            for images, labels in self.batches:
                twin.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    F.cross_entropy(twin(images), labels).backward()
                for n in self.layers:
                    layer = modules[n]
                    dim = 0 if layer.depthwise else 1
                    norms[n] += input_channel_norms(layer.weight.grad, dim).sqrt().double().cpu()
            self._cache["gradients"] = {n: v / len(self.batches) for n, v in norms.items()}
        return self._cache["gradients"]
