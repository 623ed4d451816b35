"""A seeded synthetic image set for tests and quick runs: class patterns plus noise.

Each class has a smooth random pattern (a 4x4 Gaussian grid upsampled bilinearly
to H x W, unit root mean square). An image is its class pattern scaled by an
amplitude drawn uniformly from [0.25, 1.5], plus Gaussian noise of std `noise`:
low-amplitude images are hard, high-amplitude ones easy, so early exits have
something to separate, and a tiny model fits the set in a few epochs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgewise.data.splits import Raw
from edgewise.errors import check_param


class Synthetic:
    """Balanced classes; `n` train images and ``max(n // 5, num_classes)`` test images."""

    description = (
        "seeded class patterns plus noise, for tests; options n, shape, num_classes, noise"
    )

    def locate(self, root: str | Path | None = None) -> str | None:
        """Always found: it is generated."""
        return "generated from the seed"

    def read(
        self,
        root: str | Path | None,
        seed: int,
        *,
        n: int = 1000,
        shape: Sequence[int] = (1, 16, 16),
        num_classes: int = 10,
        noise: float = 1.0,
    ) -> Raw:
        """Images (N, C, H, W) float32 and labels (N,) int64, the same for the same seed."""
        shape = tuple(shape)
        check_param(
            "synthetic",
            "num_classes",
            num_classes,
            isinstance(num_classes, int) and num_classes >= 2,
            "an integer >= 2",
        )
        check_param(
            "synthetic",
            "n",
            n,
            isinstance(n, int) and n >= num_classes,
            f"an integer >= num_classes ({num_classes})",
        )
        check_param(
            "synthetic",
            "shape",
            shape,
            len(shape) == 3 and all(isinstance(s, int) and s >= 1 for s in shape),
            "three positive integers (C, H, W)",
        )
        check_param("synthetic", "noise", noise, noise >= 0, ">= 0")
        rng = np.random.default_rng(seed)
        channels, height, width = shape
        grid = torch.from_numpy(
            rng.standard_normal((num_classes, channels, 4, 4), dtype=np.float32)
        )
        patterns = F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)
        rms = patterns.square().mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-6)
        patterns = (patterns / rms).numpy()

        def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
            labels = rng.permutation(np.arange(count) % num_classes)
            amplitude = rng.uniform(0.25, 1.5, size=(count, 1, 1, 1)).astype(np.float32)
            images = amplitude * patterns[labels]
            images += noise * rng.standard_normal(images.shape, dtype=np.float32)
            return images, labels.astype(np.int64)

        train_images, train_labels = draw(n)
        test_images, test_labels = draw(max(n // 5, num_classes))
        return Raw(
            train_images,
            train_labels,
            test_images,
            test_labels,
            class_names=tuple(f"class {k}" for k in range(num_classes)),
        )
