"""Light, seeded augmentation of image batches on tensors: random crop with padding and flip."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgewise.errors import DataError


def crop_flip(images: torch.Tensor, generator: torch.Generator, hflip: bool = True) -> torch.Tensor:
    """Each image of ``(N, C, H, W)`` shifted by a random crop of its zero-padded copy
    (padding H // 8: 4 pixels for 32, 3 for 28, 1 for 8), then, when `hflip`, mirrored
    left-right with probability 1/2. The random numbers come from `generator` (CPU)."""
    if images.dim() != 4:
        raise DataError(
            f"augment=True needs image batches (N, C, H, W); got shape {tuple(images.shape)}."
        )
    n, c, h, w = images.shape
    pad = max(1, h // 8)
    padded = F.pad(images, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), generator=generator).to(images.device)
    rows = (dy + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    out = padded[batch, channel, rows, cols]
    if hflip:
        flip = (torch.rand(n, generator=generator) < 0.5).to(images.device)[:, None, None, None]
        out = torch.where(flip, out.flip(-1), out)
    return out
