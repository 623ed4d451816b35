"""Transfer tasks: a source split to pretrain on and a target split to fine-tune on.

- ``fashion-mnist`` (and any other dataset with a few classes: ``mnist``,
  ``cifar10``, ``synthetic``): pretrain on the first half of the classes
  (Fashion-MNIST 0-4), fine-tune on the second half (5-9), as in the papers'
  "setup B" (method notes §3.4);
- ``digits``: pretrain on Fashion-MNIST 0-4, fine-tune on scikit-learn's
  digits resized to 28x28 (a change of domain, the papers' "setup A" in small).

`limit` caps the target's training and validation splits at that many images
(a seeded random subset: on-device fine-tuning sets are small), `source_limit`
the source's; test splits are never capped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from edgewise.data import Splits, load, select_classes
from edgewise.errors import check_param

__all__ = ["TransferTask", "transfer_task"]

DIGITS_SOURCE = "fashion-mnist"


@dataclass(frozen=True)
class TransferTask:
    """The data of one transfer: ``source`` to pretrain on, ``target`` to fine-tune and test on."""

    name: str
    source: Splits
    target: Splits


def _halves(splits: Splits) -> tuple[Splits, Splits]:
    half = splits.num_classes // 2
    return (
        select_classes(splits, range(half)),
        select_classes(splits, range(half, splits.num_classes)),
    )


def transfer_task(
    data: str,
    root: str | Path | None = None,
    *,
    limit: int | None = None,
    source_limit: int | None = None,
    seed: int = 0,
    **options: Any,
) -> TransferTask:
    """The transfer task for target data `data` (see the module docstring).

    `root` is where the data files are (default: the system's); `options` go to
    `edgewise.data.load` (e.g. synthetic's ``n`` and ``shape``).
    """
    for name, value in (("limit", limit), ("source_limit", source_limit)):
        check_param("transfer_task", name, value,
                    value is None or (isinstance(value, int) and value >= 1), "None or an int >= 1")
    if data == "digits":
        source, _ = _halves(load(DIGITS_SOURCE, root, seed=seed))
        target = load("digits", seed=seed, size=source.input_shape[-1], **options)
    else:
        splits = load(data, root, seed=seed, **options)
        check_param("transfer_task", "data", data, splits.num_classes >= 4,
                    "a dataset with at least 4 classes to split into source and target")
        source, target = _halves(splits)
    return TransferTask(data, _capped(source, source_limit, seed), _capped(target, limit, seed))


def _capped(splits: Splits, limit: int | None, seed: int) -> Splits:
    """`splits` with at most `limit` training and validation images each (seeded subsets)."""

    def cap(dataset: TensorDataset) -> TensorDataset:
        n = len(dataset)
        if limit is None or n <= limit:
            return dataset
        keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]
        return TensorDataset(*(t[keep] for t in dataset.tensors))

    return Splits(splits.name, cap(splits.train), cap(splits.val), splits.test,
                  splits.num_classes, splits.input_shape, splits.class_names)
