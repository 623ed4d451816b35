"""Depth reduction: remove rectifiers (EGP, NEPENTHE, TLC), then fold and merge what is left.

``pruner(name, **params).prune(model, splits, train)`` returns a copy of a
trained model with some rectifiers replaced by `Linearized` marks;
``fold(model, example)`` turns that into a shallower plain module whose
outputs are the same; `save_folded` / `load_folded` store it as safetensors
plus an architecture JSON that needs no model class to load.
"""

from edgewise.prune.base import DepthPruner, NoPrunableLayerError
from edgewise.prune.egp import Egp
from edgewise.prune.fold import FoldError, FoldResult, Timer, fold
from edgewise.prune.linearize import Linearized, linearize, linearized_names, rectifier_names
from edgewise.prune.nepenthe import Nepenthe
from edgewise.prune.states import NeuronStates, bn_off_probability, record_states
from edgewise.prune.tlc import Tlc
from edgewise.registry import lookup

PRUNERS: dict[str, type[DepthPruner]] = {
    "egp": Egp,
    "nepenthe": Nepenthe,
    "tlc": Tlc,
}


def pruner(name: str, **params) -> DepthPruner:
    """The depth pruner `name` ("egp", "nepenthe", "tlc") with `params` validated."""
    return lookup(PRUNERS, name, "depth pruner")(**params)


__all__ = [
    "PRUNERS",
    "DepthPruner",
    "FoldError",
    "FoldResult",
    "Linearized",
    "NeuronStates",
    "NoPrunableLayerError",
    "Timer",
    "bn_off_probability",
    "fold",
    "linearize",
    "linearized_names",
    "pruner",
    "record_states",
    "rectifier_names",
]
