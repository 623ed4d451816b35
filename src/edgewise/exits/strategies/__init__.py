"""Exit training strategies, one file each, chosen by name (the file stem with dashes).

Every strategy has the face of `edgewise.exits.strategies.base.ExitStrategy`;
`edgewise.exits.train.train` runs any of them. Look-ups go through
`edgewise.registry.lookup` (see `get`).
"""

from __future__ import annotations

from typing import Any

from edgewise.exits.strategies.base import ExitStrategy, Run, Stage
from edgewise.exits.strategies.cgt_hard import CGTHard
from edgewise.exits.strategies.cgt_soft import CGTSoft
from edgewise.exits.strategies.distill import Distill
from edgewise.exits.strategies.heads_only import HeadsOnly
from edgewise.exits.strategies.joint import Joint
from edgewise.exits.strategies.sequential import Sequential
from edgewise.exits.strategies.sequential_ewc import SequentialEWC
from edgewise.exits.strategies.sequential_lwf import SequentialLwF
from edgewise.exits.strategies.two_stage import TwoStage
from edgewise.registry import lookup

STRATEGIES: dict[str, type[ExitStrategy]] = {
    "cgt-hard": CGTHard,
    "cgt-soft": CGTSoft,
    "distill": Distill,
    "heads-only": HeadsOnly,
    "joint": Joint,
    "sequential": Sequential,
    "sequential-ewc": SequentialEWC,
    "sequential-lwf": SequentialLwF,
    "two-stage": TwoStage,
}


def get(name: str, **params: Any) -> ExitStrategy:
    """The strategy called ``name``, built with ``params`` (validated)."""
    return lookup(STRATEGIES, name, "exit strategy")(**params)


__all__ = ["STRATEGIES", "ExitStrategy", "Run", "Stage", "get"]
