"""A tiny Vision Transformer (Dosovitskiy et al., 2021, arXiv:2010.11929) for small images.

Non-overlapping patches embedded by a strided conv, learned position
embeddings, pre-norm blocks (LayerNorm, multi-head self-attention with explicit
matmuls, LayerNorm, Linear-GELU-Linear MLP), then LayerNorm, mean pooling over
tokens (or the cls token) and a linear head. The width multiplier scales `dim`,
rounded to a multiple of `heads`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from edgewise.errors import check_param

POOLS = ("cls", "mean")


class PatchEmbed(nn.Module):
    """(N, C, H, W) -> (N, L, dim) tokens: ``proj`` (patch x patch conv, stride patch) + positions.

    L = (H / patch) * (W / patch), plus one when a cls token is prepended.
    """

    def __init__(self, channels: int, dim: int, patch_size: int, patches: int, cls_token: bool) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + int(cls_token), dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embed


class Attention(nn.Module):
    """Multi-head self-attention, (N, L, dim) -> (N, L, dim): ``qkv``, ``softmax``, ``proj``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.softmax = nn.Softmax(dim=-1)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = self.softmax((q * self.scale) @ k.transpose(-2, -1))  # (N, heads, L, L)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, length, dim))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); (N, L, dim)."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            OrderedDict(fc1=nn.Linear(dim, hidden), act=nn.GELU(), fc2=nn.Linear(hidden, dim))
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TokenPool(nn.Module):
    """(N, L, dim) -> (N, dim): the mean over tokens, or the first (cls) token."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        return x[:, 0] if self.mode == "cls" else x.mean(dim=1)


def init_weights(model: nn.Module) -> nn.Module:
    """Truncated normal (std 0.02) for linear weights, zero biases; LayerNorm as identity."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def build(
    num_classes: int,
    input_shape: tuple[int, int, int],
    width: float = 1.0,
    *,
    depth: int = 6,
    dim: int = 128,
    heads: int = 4,
    patch_size: int = 4,
    mlp_ratio: float = 2.0,
    pool: str = "mean",
) -> nn.Sequential:
    """Tiny ViT: patch 4, 6 pre-norm blocks of dim 128 (times width), 4 heads, mean pooling."""
    channels, height, width_px = input_shape
    check_param("vit", "depth", depth, isinstance(depth, int) and depth >= 1, "an int >= 1")
    check_param("vit", "heads", heads, isinstance(heads, int) and heads >= 1, "an int >= 1")
    check_param("vit", "dim", dim, isinstance(dim, int) and dim >= heads, f"an int >= heads ({heads})")
    check_param("vit", "patch_size", patch_size,
                isinstance(patch_size, int) and patch_size >= 1
                and height % patch_size == 0 and width_px % patch_size == 0,
                f"a divisor of the input size {height}x{width_px}")
    check_param("vit", "mlp_ratio", mlp_ratio,
                isinstance(mlp_ratio, (int, float)) and mlp_ratio > 0, "a number > 0")
    check_param("vit", "pool", pool, pool in POOLS, f"one of {', '.join(POOLS)}")
    dim = heads * max(1, round(dim * width / heads))
    patches = (height // patch_size) * (width_px // patch_size)
    layers = OrderedDict(patch_embed=PatchEmbed(channels, dim, patch_size, patches, pool == "cls"))
    for i in range(depth):
        layers[f"block{i + 1}"] = Block(dim, heads, max(1, round(dim * mlp_ratio)))
    layers["classifier"] = nn.Sequential(
        OrderedDict(norm=nn.LayerNorm(dim), pool=TokenPool(pool), fc=nn.Linear(dim, num_classes))
    )
    return init_weights(nn.Sequential(layers))
