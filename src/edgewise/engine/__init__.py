"""The training engine every pillar shares: one loop, checkpoints, seeding, devices.

``fit(model, splits, config)`` trains in place and returns the per-epoch `History`;
``evaluate(model, dataset)`` gives ``{"loss", "accuracy"}``. See docs/architecture.md.
"""

from edgewise.engine.checkpoint import load_checkpoint, save_checkpoint
from edgewise.engine.config import TrainConfig
from edgewise.engine.loop import TrainingDiverged, evaluate, fit
from edgewise.engine.recipes import recipe
from edgewise.engine.runtime import resolve_device, seed_everything
from edgewise.engine.state import History, TrainState

__all__ = [
    "History",
    "TrainConfig",
    "TrainState",
    "TrainingDiverged",
    "evaluate",
    "fit",
    "load_checkpoint",
    "recipe",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
]
