"""From the arrays a reader returns to normalised train / val / test tensors.

`Raw` is what every reader returns; `make_splits` carves the validation split from
train (stratified, deterministic from the seed), caps split sizes, and normalises
every split with the train split's per-channel mean and (population) standard
deviation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from edgewise.errors import DataError, ParameterError, check_param


@dataclass(frozen=True)
class Raw:
    """Arrays as a reader found them: images (N, C, H, W) of any real dtype, labels (N,) ints."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class Splits:
    """A dataset ready to train on: float32 images (N, C, H, W), int64 labels (N,)."""

    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, taken), taking `fraction` of every class; both sorted.

    The taken count is ``round(fraction * N)`` exactly; per class it is the
    proportional share, with leftovers going to the largest remainders.
    """
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = fraction * counts
    take = np.floor(quota).astype(np.int64)
    leftover = int(round(fraction * len(labels))) - int(take.sum())
    take[np.argsort(-(quota - take), kind="stable")[:leftover]] += 1
    mask = np.zeros(len(labels), dtype=bool)
    for cls, k in zip(classes, take, strict=True):
        mask[rng.permutation(np.flatnonzero(labels == cls))[:k]] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def make_splits(name: str, raw: Raw, val_fraction: float, seed: int, limit: int | None) -> Splits:
    """Carve val from train, cap each split at `limit` images (stratified), normalise."""
    num_classes = len(raw.class_names)
    for labels in (raw.train_labels, raw.test_labels):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if len(bad):
            raise DataError(
                f"{name} has label {int(bad[0])} outside [0, {num_classes}): "
                "are the label files from another dataset?"
            )
    train_idx, val_idx = stratified_split(raw.train_labels, val_fraction, seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ParameterError(
            f"val_fraction={val_fraction} leaves an empty train or validation split of "
            f"{len(raw.train_labels)} {name} training images: pick a val_fraction nearer 0.5."
        )
    parts = {
        "train": (raw.train_images, raw.train_labels, train_idx),
        "val": (raw.train_images, raw.train_labels, val_idx),
        "test": (raw.test_images, raw.test_labels, np.arange(len(raw.test_labels))),
    }
    tensors = {}
    for split, (images, labels, idx) in parts.items():
        if limit is not None and len(idx) > limit:
            idx = idx[stratified_split(labels[idx], limit / len(idx), seed)[1]]
        tensors[split] = (
            torch.from_numpy(np.ascontiguousarray(images[idx])).to(torch.float32),
            torch.from_numpy(labels[idx].astype(np.int64)),
        )
    std, mean = torch.std_mean(tensors["train"][0], dim=(0, 2, 3), correction=0, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant channel stays at 0
    for images, _ in tensors.values():
        images.sub_(mean).div_(std)
    return Splits(
        name=name,
        train=TensorDataset(*tensors["train"]),
        val=TensorDataset(*tensors["val"]),
        test=TensorDataset(*tensors["test"]),
        num_classes=num_classes,
        input_shape=tuple(raw.train_images.shape[1:]),
        class_names=raw.class_names,
    )


def select_classes(splits: Splits, classes: Sequence[int]) -> Splits:
    """Keep only `classes` and relabel them 0..k-1 in the given order.

    For transfer tasks, e.g. pretrain on classes 0-4 and fine-tune on 5-9. The
    images keep the normalisation of the full train split.
    """
    classes = [int(c) for c in classes]
    check_param(
        "select_classes",
        "classes",
        classes,
        len(classes) > 0
        and len(set(classes)) == len(classes)
        and all(0 <= c < splits.num_classes for c in classes),
        f"distinct class indices in [0, {splits.num_classes})",
    )
    relabel = torch.full((splits.num_classes,), -1, dtype=torch.int64)
    relabel[classes] = torch.arange(len(classes))

    def keep(dataset: TensorDataset) -> TensorDataset:
        images, labels = dataset.tensors
        new = relabel[labels]
        mask = new >= 0
        return TensorDataset(images[mask], new[mask])

    return Splits(
        name=splits.name,
        train=keep(splits.train),
        val=keep(splits.val),
        test=keep(splits.test),
        num_classes=len(classes),
        input_shape=splits.input_shape,
        class_names=tuple(splits.class_names[c] for c in classes),
    )
