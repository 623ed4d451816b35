"""Update selection: which layers and channels get weight gradients each epoch.

One method per file, all with the face of `base.Selector`; `SELECTORS` maps
each CLI name to its class, and `get_selector(name, **params)` builds one.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from edgewise.ondevice.selection.base import IN, OUT, Selection, Selector, apply_selection
from edgewise.ondevice.selection.bias_only import BiasOnly
from edgewise.ondevice.selection.full import Full
from edgewise.ondevice.selection.last_k import LastK
from edgewise.ondevice.selection.medyate import MeDyate
from edgewise.ondevice.selection.neq import NEq
from edgewise.ondevice.selection.neq_budget import NEqBudget
from edgewise.ondevice.selection.plan import BIAS, LayerCost, MemoryPlan
from edgewise.ondevice.selection.random import Random
from edgewise.ondevice.selection.scotti import SCoTTi
from edgewise.ondevice.selection.statistics import Statistics
from edgewise.ondevice.selection.trady import TraDy
from edgewise.registry import lookup

SELECTORS: dict[str, type[Selector]] = {
    "bias-only": BiasOnly,
    "full": Full,
    "last-k": LastK,
    "medyate": MeDyate,
    "neq": NEq,
    "neq-budget": NEqBudget,
    "random": Random,
    "scotti": SCoTTi,
    "trady": TraDy,
}


def get_selector(name: str, **params: Any) -> Selector:
    """The selection method `name` with `params` (names and values checked)."""
    cls = lookup(SELECTORS, name, "update-selection method")
    accepted = {f.name: f for f in fields(cls) if f.init}
    for key in params:
        lookup(accepted, key, f"{name} parameter")
    return cls(**params)


__all__ = [
    "BIAS",
    "IN",
    "OUT",
    "SELECTORS",
    "LayerCost",
    "MemoryPlan",
    "Selection",
    "Selector",
    "Statistics",
    "apply_selection",
    "get_selector",
]
