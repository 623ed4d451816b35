"""Activation compression for backward: drop-in Conv2d / Linear wrappers that save less.

``prepare_compression(model, "asi", budget_bytes=..., calibration_batch=batch)``
swaps the chosen layers of `model` for wrappers that compute the same forward,
save their input for backward only as a compact Tucker form (core and factors,
through ``ctx.save_for_backward``, so that measured memory is real), and compute
the weight gradient from the factors. Methods (`COMPRESSORS`):

- ``svd``: truncated SVD of the batch unfolding, rank by explained variance, per batch;
- ``hosvd``: Tucker form of every mode, ranks by explained variance, per batch;
- ``asi``: Tucker ranks fixed offline under a byte budget, one subspace-iteration step per step;
- ``wasi``: linear weights factored as L R (fewer weights, gradients, optimizer
  state and multiply-adds) plus ASI on the inputs.

The layers before the first compressed one should be frozen by the caller: a
frozen prefix saves nothing for backward, which is where most of the saving of
"fine-tune the last layers" comes from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from torch import nn

from edgewise.errors import check_param
from edgewise.ondevice.compress.asi import ASI
from edgewise.ondevice.compress.base import CalibrationBatch, Compressor, select_layers
from edgewise.ondevice.compress.hosvd import HOSVD
from edgewise.ondevice.compress.svd import SVD
from edgewise.ondevice.compress.wasi import WASI
from edgewise.registry import lookup

__all__ = ["COMPRESSORS", "Compressor", "make_compressor", "prepare_compression"]

COMPRESSORS: dict[str, type[Compressor]] = {
    "asi": ASI,
    "hosvd": HOSVD,
    "svd": SVD,
    "wasi": WASI,
}


def make_compressor(name: str, **params: Any) -> Compressor:
    """The compressor `name` with `params` validated (unknown names get close matches)."""
    cls = lookup(COMPRESSORS, name, "activation compressor")
    accepted = {f.name: f for f in fields(cls) if f.init}
    for key in params:
        lookup(accepted, key, f"{name} parameter")
    return cls(**params)


def prepare_compression(
    model: nn.Module,
    name: str,
    *,
    layers: int | str | Sequence[str] | None = None,
    budget_bytes: int | None = None,
    calibration_batch: CalibrationBatch | None = None,
    **params: Any,
) -> nn.Module:
    """Swap layers of `model` for compressed wrappers of method `name`, in place; return `model`.

    `layers`: qualified names, an int n (the last n trainable conv/linear
    layers), or None (the last 4). `budget_bytes`: bytes that the compressed
    layers may save for backward in all, at the calibration batch size (asi,
    wasi; a `BudgetError` when even rank 1 everywhere does not fit).
    `calibration_batch`: inputs, or (inputs, targets), used by asi and wasi to
    fix their ranks offline. `params`: the method's own (e.g. ``epsilon``).
    """
    method = make_compressor(name, **params)
    check_param(name, "budget_bytes", budget_bytes,
                budget_bytes is None or (isinstance(budget_bytes, int) and budget_bytes > 0),
                "an int > 0 or None")
    targets = select_layers(model, layers, method.layer_types, name)
    wrappers = method.wrap(model, targets, budget_bytes=budget_bytes, calibration_batch=calibration_batch)
    for qualified, wrapper in wrappers.items():
        model.set_submodule(qualified, wrapper)
    return model
