"""scikit-learn's bundled 8x8 handwritten digits: the data that is always there.

1,797 grey images with values 0..16, 10 classes. There is no official test
split, so one is drawn, stratified, from the seed. ``size=28`` resizes
(bilinear) so the set can stand in for 28x28 data such as Fashion-MNIST.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgewise.data.splits import Raw, stratified_split
from edgewise.errors import check_param


class Digits:
    """The scikit-learn digits; `root` is ignored (the data ships with scikit-learn)."""

    description = "scikit-learn's bundled 8x8 digits (1,797 images, 10 classes); size=28 resizes"

    def locate(self, root: str | Path | None = None) -> str | None:
        """Always found: it is bundled with scikit-learn."""
        return "bundled with scikit-learn"

    def read(
        self, root: str | Path | None, seed: int, *, size: int = 8, test_fraction: float = 0.2
    ) -> Raw:
        """Images (N, 1, size, size) float32 in 0..16, labels (N,); test drawn from `seed`."""
        check_param("digits", "size", size, isinstance(size, int) and size >= 1, "an integer >= 1")
        check_param("digits", "test_fraction", test_fraction, 0 < test_fraction < 1, "in (0, 1)")
        from sklearn.datasets import load_digits  # ~1 s to import: only when digits is read

        bunch = load_digits()
        images = bunch.images.astype(np.float32)[:, None]
        if size != images.shape[-1]:
            images = F.interpolate(
                torch.from_numpy(images), size=(size, size), mode="bilinear", align_corners=False
            ).numpy()
        labels = bunch.target.astype(np.int64)
        train, test = stratified_split(labels, test_fraction, seed)
        return Raw(
            train_images=images[train],
            train_labels=labels[train],
            test_images=images[test],
            test_labels=labels[test],
            class_names=tuple(str(name) for name in bunch.target_names),
        )
