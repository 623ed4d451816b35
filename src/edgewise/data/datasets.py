"""The dataset registry and `load`, the one way in: a name to normalised `Splits`."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Protocol

from edgewise.data import cifar, digits, idx, synthetic
from edgewise.data.splits import Raw, Splits, make_splits
from edgewise.errors import check_param
from edgewise.registry import lookup


class Reader(Protocol):
    """What a dataset entry offers: a description, where it is, and its arrays."""

    description: str

    def locate(self, root: str | Path | None = None) -> str | None: ...

    def read(self, root: str | Path | None, seed: int, **options: Any) -> Raw: ...


DATASETS: dict[str, Reader] = {
    "cifar10": cifar.Cifar10(),
    "digits": digits.Digits(),
    "fashion-mnist": idx.FASHION_MNIST,
    "mnist": idx.MNIST,
    "synthetic": synthetic.Synthetic(),
}


def list_datasets() -> list[str]:
    """The names `load` accepts, sorted."""
    return sorted(DATASETS)


def reader_options(name: str) -> list[str]:
    """The options dataset `name` takes besides `limit` (e.g. ``size`` for digits)."""
    parameters = inspect.signature(lookup(DATASETS, name, "dataset").read).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


def load(
    name: str,
    root: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    limit: int | None = None,
    **options: Any,
) -> Splits:
    """Load dataset `name` as train / val / test splits; nothing is downloaded.

    Images are float32 (N, C, H, W), normalised with the train split's per-channel
    mean and std; labels are int64 (N,). The validation split is `val_fraction` of
    the training data, stratified and fixed by `seed`. `limit` caps every split at
    that many images (a stratified, seeded subset) for quick runs. `options` go to
    the reader (digits: ``size``, ``test_fraction``; synthetic: ``n``, ``shape``,
    ``num_classes``, ``noise``). Files are looked for in `root`, else in
    ``$EDGEWISE_DATA``, else in the system directories (see `edgewise.data.files`).
    """
    reader = lookup(DATASETS, name, "dataset")
    check_param("load", "val_fraction", val_fraction, 0 < val_fraction < 1, "in (0, 1)")
    check_param("load", "seed", seed, isinstance(seed, int) and seed >= 0, "an integer >= 0")
    check_param(
        "load",
        "limit",
        limit,
        limit is None or (isinstance(limit, int) and limit >= 1),
        "None or an integer >= 1",
    )
    valid = {option: option for option in ["limit", *reader_options(name)]}
    for option in options:
        lookup(valid, option, f"{name} option")
    raw = reader.read(root, seed, **options)
    return make_splits(name, raw, val_fraction, seed, limit)
