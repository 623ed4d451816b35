"""Every exit's logits on a dataset, computed once, so that policies are simulated on tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset


@dataclass(frozen=True)
class ExitOutputs:
    """Logits (E, N, num_classes) of every exit on N inputs, and their labels (N,)."""

    logits: Tensor
    labels: Tensor

    @property
    def correct(self) -> Tensor:
        """Whether exit e classifies input n correctly: (E, N) bool."""
        return self.logits.argmax(dim=2) == self.labels

    def accuracy(self) -> Tensor:
        """Accuracy of every exit on every input: (E,) float."""
        return self.correct.float().mean(dim=1)


def collect(net: torch.nn.Module, dataset: Dataset, batch_size: int = 512) -> ExitOutputs:
    """Run `net` once over `dataset` in eval mode (mode restored after): logits on the CPU."""
    training = net.training
    device = next(net.parameters()).device
    if isinstance(dataset, TensorDataset):
        images, labels = dataset.tensors[:2]
        batches = ((images[i : i + batch_size], labels[i : i + batch_size])
                   for i in range(0, len(images), batch_size))
    else:
        batches = DataLoader(dataset, batch_size=batch_size)
    chunks, targets = [], []
    net.eval()
    try:
        with torch.inference_mode():
            for x, y in batches:
                chunks.append(torch.stack(net(x.to(device))).cpu())
                targets.append(y)
    finally:
        net.train(training)
    return ExitOutputs(torch.cat(chunks, dim=1), torch.cat(targets).long())
