"""Pillar 1: early-exit networks.

``EarlyExitNetwork.from_model(model, exits=...)`` cuts any model into stages with an exit
head after each; `train` (strategies by name) trains it; `calibrate` picks per-exit
thresholds for a budget of MACs or measured latency; `evaluate` reports per-exit accuracy,
budgets, the frontier and the oracle; ``net.infer`` runs real dynamic inference; `save`
and `load` keep the whole network in safetensors plus JSON.
"""

from edgewise.exits.calibrate import calibrate
from edgewise.exits.evaluate import ExitEvaluation, evaluate
from edgewise.exits.heads import HEADS
from edgewise.exits.io import load, save
from edgewise.exits.network import EarlyExitNetwork, ExitCosts
from edgewise.exits.outputs import ExitOutputs, collect
from edgewise.exits.policies import RULES, Policy
from edgewise.exits.train import TrainResult, train

__all__ = [
    "HEADS",
    "RULES",
    "EarlyExitNetwork",
    "ExitCosts",
    "ExitEvaluation",
    "ExitOutputs",
    "Policy",
    "TrainResult",
    "calibrate",
    "collect",
    "evaluate",
    "load",
    "save",
    "train",
]
