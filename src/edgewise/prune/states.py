"""Neuron states: how often each rectifier channel is ON, the layer entropy, and BN-derived states.

A channel is ON when its pre-activation is > 0 (exactly 0 counts as OFF);
GELU is read by the sign of its input too. For channel c of a rectifier,
p_c = P(z_c > 0) over the data (batch and spatial positions), and its entropy
in bits is h(p_c) = -p log2 p - (1 - p) log2 (1 - p). A layer whose channels
all have p_c in {0, 1} has zero entropy: every channel is the identity or
dead, so the rectifier can be removed.

The layer entropy follows the EGP code (Liao et al., 2023, arXiv:2308.06619):
per batch, the mean of h(p_c) over the channels that are not degenerate in that
batch (0 when all are), averaged over batches.

TLC (Liao et al., 2025, arXiv:2412.15077) reads the states off BatchNorm
instead: the pre-activation of channel c is taken as N(beta_c, gamma_c^2), so
P(OFF) = Phi(-beta_c / |gamma_c|), and 1[beta_c <= 0] when gamma_c = 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from edgewise.prune.linearize import channel_dim, rectifier_names


def binary_entropy(p: Tensor) -> Tensor:
    """h(p) in bits, elementwise, exactly 0 at p = 0 and p = 1."""
    p = p.to(torch.float64)
    q = 1.0 - p
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(q, q)) / torch.log(
        torch.tensor(2.0, dtype=torch.float64)
    )


def layer_entropy(p_on: Tensor) -> float:
    """Mean h(p_c) over the non-degenerate channels (p_c not in {0, 1}); 0 when all are degenerate."""
    live = (p_on > 0) & (p_on < 1)
    return float(binary_entropy(p_on[live]).mean()) if bool(live.any()) else 0.0


@dataclass(frozen=True)
class NeuronStates:
    """States of every recorded rectifier, keyed by qualified module name.

    ``p_on[name]`` is the float64 per-channel probability of being ON pooled
    over all samples and positions; ``entropy[name]`` the layer entropy in bits
    (EGP's per-batch average, see the module docstring); ``samples`` the number
    of inputs seen.
    """

    p_on: dict[str, Tensor]
    entropy: dict[str, float]
    samples: int

    def is_linear(self, name: str) -> bool:
        """Every channel of rectifier `name` was always ON or always OFF on the recorded data."""
        p = self.p_on[name]
        return bool(((p == 0) | (p == 1)).all())

    def keep(self, name: str) -> Tensor:
        """The 0/1 vector of channels ON at least half the time (all ON/OFF for a linear layer)."""
        return (self.p_on[name] >= 0.5).to(torch.float32)


class StateRecorder:
    """Context manager that records the input sign of rectifiers during forward passes.

    >>> with StateRecorder(model) as rec:
    ...     model(images)
    >>> rec.states().entropy
    """

    def __init__(self, model: nn.Module, names: Iterable[str] | None = None) -> None:
        self.model = model
        self.names = list(names) if names is not None else rectifier_names(model)
        self._on: dict[str, Tensor] = {}
        self._count: dict[str, int] = {}
        self._entropy_sum: dict[str, float] = {}
        self._batches: dict[str, int] = {}
        self._samples = 0
        self._handles: list = []

    def _hook(self, name: str):
        def record(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            z = inputs[0].detach()
            dim = channel_dim(z.dim())
            on = (z > 0).movedim(dim, -1).reshape(-1, z.shape[dim])
            counts = on.sum(0, dtype=torch.float64).cpu()
            self._on[name] = self._on.get(name, 0) + counts
            self._count[name] = self._count.get(name, 0) + on.shape[0]
            self._entropy_sum[name] = self._entropy_sum.get(name, 0.0) + layer_entropy(
                counts / on.shape[0]
            )
            self._batches[name] = self._batches.get(name, 0) + 1

        return record

    def __enter__(self) -> StateRecorder:
        for name in self.names:
            module = self.model.get_submodule(name)
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))
        self._handles.append(
            self.model.register_forward_pre_hook(self._count_samples)
        )
        return self

    def _count_samples(self, module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        self._samples += inputs[0].shape[0]

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def states(self) -> NeuronStates:
        """What was recorded so far; rectifiers never reached are left out."""
        return NeuronStates(
            p_on={n: self._on[n] / self._count[n] for n in self._on},
            entropy={n: self._entropy_sum[n] / self._batches[n] for n in self._on},
            samples=self._samples,
        )


def images_of(dataset: Dataset, start: int, stop: int) -> Tensor:
    """The inputs ``dataset[start:stop]`` stacked into one tensor (sliced from a `TensorDataset`)."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0][start:stop]
    return torch.stack([dataset[i][0] for i in range(start, stop)])


@torch.no_grad()
def record_states(
    model: nn.Module,
    dataset: Dataset,
    *,
    names: Iterable[str] | None = None,
    batch_size: int = 256,
    max_samples: int | None = None,
) -> NeuronStates:
    """Run `model` in eval mode over `dataset` (its first `max_samples` inputs) and record states."""
    was_training = model.training
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    n = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    try:
        with StateRecorder(model, names) as recorder:
            for start in range(0, n, batch_size):
                model(images_of(dataset, start, min(n, start + batch_size)).to(device))
    finally:
        model.train(was_training)
    return recorder.states()


def bn_off_probability(bn: nn.Module) -> Tensor:
    """TLC's P(OFF) per channel of a BatchNorm: Phi(-beta / |gamma|), 1[beta <= 0] where gamma = 0."""
    gamma = bn.weight.detach().to(torch.float64)
    beta = bn.bias.detach().to(torch.float64)
    safe = torch.where(gamma == 0, torch.ones_like(gamma), gamma.abs())
    return torch.where(gamma == 0, (beta <= 0).to(torch.float64), torch.special.ndtr(-beta / safe))
