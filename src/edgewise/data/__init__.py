"""Datasets as normalised train / val / test tensors: ``load(name) -> Splits``.

Readers: IDX files (Fashion-MNIST, MNIST), CIFAR-10 python batches (read with a
restricted unpickler), scikit-learn's bundled digits, and a seeded synthetic set.
Nothing is ever downloaded.
"""

from edgewise.data.datasets import DATASETS, list_datasets, load
from edgewise.data.splits import Raw, Splits, select_classes

__all__ = ["DATASETS", "Raw", "Splits", "list_datasets", "load", "select_classes"]
