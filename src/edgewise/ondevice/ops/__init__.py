"""Channel-sparse training operations: save for backward only what the trained channels need."""

from edgewise.ondevice.ops.fold import fold_batchnorm
from edgewise.ondevice.ops.functional import bitmask_clamp, sparse_conv2d, sparse_linear
from edgewise.ondevice.ops.modules import (
    IN,
    OUT,
    GlobalMean,
    Rectifier,
    SparseConv2d,
    SparseLayer,
    SparseLinear,
    prepare,
    sparse_layers,
)

__all__ = [
    "IN",
    "OUT",
    "GlobalMean",
    "Rectifier",
    "SparseConv2d",
    "SparseLayer",
    "SparseLinear",
    "bitmask_clamp",
    "fold_batchnorm",
    "prepare",
    "sparse_conv2d",
    "sparse_layers",
    "sparse_linear",
]
