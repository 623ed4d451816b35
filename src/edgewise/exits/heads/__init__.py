"""Exit heads, one file each; the file stem (with '-') is the name ``from_model(head=...)`` takes."""

from __future__ import annotations

from torch import nn

from edgewise.exits.heads.conv_pool_linear import ConvPoolLinear
from edgewise.exits.heads.grid_linear import GridLinear
from edgewise.exits.heads.pool_linear import PoolLinear
from edgewise.registry import lookup

HEADS: dict[str, type[nn.Module]] = {
    "conv-pool-linear": ConvPoolLinear,
    "grid-linear": GridLinear,
    "pool-linear": PoolLinear,
}


def build_head(name: str, feature_shape: tuple[int, ...], num_classes: int, **params) -> nn.Module:
    """The head `name` for features of `feature_shape` (no batch dimension)."""
    return lookup(HEADS, name, "exit head")(tuple(feature_shape), num_classes, **params)


__all__ = ["HEADS", "build_head"]
