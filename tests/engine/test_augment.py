"""Random crop with padding and flip: each image is shifted by at most the padding, seeded."""

import pytest
import torch

from edgewise.engine.augment import crop_flip
from edgewise.errors import DataError


def dots(n: int) -> torch.Tensor:
    """Images of zeros with a single 1 at row 10, column 5 (28x28, away from the middle)."""
    images = torch.zeros(n, 1, 28, 28)
    images[:, 0, 10, 5] = 1.0
    return images


def positions(images: torch.Tensor) -> torch.Tensor:
    flat = images.flatten(1).argmax(1)
    return torch.stack([flat // 28, flat % 28], 1)


def test_crop_shifts_by_at_most_the_padding():
    out = crop_flip(dots(300), torch.Generator().manual_seed(0), hflip=False)
    assert out.shape == (300, 1, 28, 28) and torch.all(out.sum((1, 2, 3)) == 1)
    shifts = positions(out) - torch.tensor([10, 5])
    assert shifts.abs().max() == 3  # padding 28 // 8 = 3 on each side
    assert len({tuple(s) for s in shifts.tolist()}) > 30  # many of the 49 offsets occur


def test_flip_mirrors_about_half():
    out = crop_flip(dots(400), torch.Generator().manual_seed(0), hflip=True)
    flipped = positions(out)[:, 1] > 13  # column 5 +- 3 stays left; mirrored it lands right
    assert 150 < flipped.sum() < 250


def test_same_seed_same_batch_and_shape_checked():
    images = torch.randn(8, 3, 32, 32)
    a = crop_flip(images, torch.Generator().manual_seed(3))
    b = crop_flip(images, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        crop_flip(torch.randn(8, 10), torch.Generator())
