"""Physical depth reduction: turn a model with `Linearized` rectifiers into a shallower plain one.

``fold(model, example)`` traces the model, folds BatchNorm and the masks of
removed rectifiers into their convolutions, removes constant channels (carrying
their value into the next bias), collapses an affine tail (all that follows the last nonlinearity) into one
Linear layer (`fold.tail`), then merges chains of linear layers, Conv∘Conv
(kernel k1 + k2 - 1, strides and depthwise handled, a residual identity entering
as a Dirac kernel) and Linear∘Linear, each only where the merged layer measures
faster than the layers it replaces, and each checked in float64. The result is a
`torch.fx.GraphModule` of standard layers (see `edgewise.prune.io` to save it).

Zero padding between two convs blocks an exact merge; `plan_padding` decides,
before a pruner's last fine-tune, which merges are worth making and
`move_padding` moves those paddings onto the first conv of each run, so that
the fine-tuned network merges exactly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from edgewise.prune.fold.graph import FoldError, Graph, from_module
from edgewise.prune.fold.passes import (
    fold_affines,
    fold_constants,
    remove_constant_channels,
    shapes_of,
)
from edgewise.prune.fold.plan import ChainPlan, Timer, apply_plan, plan_chains
from edgewise.prune.fold.tail import TailPlan, collapse_tail

__all__ = ["FoldError", "FoldResult", "Graph", "Timer", "fold", "fold_batchnorm", "move_padding",
           "plan_padding"]

LAYER_OPS = ("conv", "linear", "act", "affine", "add")


@dataclass
class FoldResult:
    """The folded network and what the folder did.

    `max_abs_error` compares the folded network with the unfolded one in float64
    on the example inputs; ``counts["layers_before"]`` and `layers_after` count
    conv, linear, activation, affine and addition operations. The network is
    folded for inputs of the example's shape (constants have that spatial size).
    """

    module: fx.GraphModule
    graph: Graph
    tail: TailPlan | None
    plans: list[ChainPlan]
    counts: dict[str, int]  # affines_folded, nodes_made_constant, channels_removed, layers_before
    layers_after: int
    max_abs_error: float

    def summary(self) -> dict:
        """A JSON-ready account: counts, the error, and every merge decision with its timings."""
        return {
            **self.counts,
            "layers_after": self.layers_after,
            "tail": None if self.tail is None else self.tail.to_dict(),
            "merges_applied": sum(p.applied for p in self.plans),
            "max_abs_error": self.max_abs_error,
            "decisions": [p.to_dict() for p in self.plans],
        }


def _count(graph: Graph) -> int:
    return sum(node.op in LAYER_OPS for node in graph.nodes)


def _prepared(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[Graph, dict, dict]:
    """The float64 graph with affines and constants folded and constant channels removed,
    its shapes, and the counts of what went."""
    graph = from_module(model).to(torch.float64)
    counts = {"layers_before": _count(graph)}
    counts["affines_folded"] = fold_affines(graph, shapes_of(graph, input_shape))
    counts["nodes_made_constant"] = fold_constants(graph, input_shape)
    counts["channels_removed"] = remove_constant_channels(graph)
    return graph, shapes_of(graph, input_shape), counts


@torch.no_grad()
def fold(model: nn.Module, example: Tensor, *, timer: Timer | None = None,
         tail: bool = True) -> FoldResult:
    """Fold and merge `model` (evaluated as in eval mode) for inputs like `example` (N, ...).

    `timer` measures candidate merges (default: ``Timer()``, batch 1 on one
    thread); pass ``timer=False`` to merge everything that merges exactly.
    `tail`: also consider collapsing the affine tail into one Linear layer.
    """
    timer = Timer() if timer is None else (timer or None)
    dtype = next(model.parameters()).dtype
    graph, shapes, counts = _prepared(model, tuple(example.shape[1:]))
    tail_plan = collapse_tail(graph, shapes, timer) if tail else None
    plans = plan_chains(graph, shapes, timer)
    for plan in plans:
        apply_plan(graph, plan, shapes)
    reference = copy.deepcopy(model).to(torch.float64).eval()
    x = example.to(torch.float64)
    error = float((graph.to_module()(x) - reference(x)).abs().max())
    return FoldResult(graph.to(dtype).to_module(), graph.to(dtype), tail_plan, plans, counts,
                      _count(graph), error)


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: Tensor) -> fx.GraphModule:
    """Only fold BatchNorm (and other affine maps) into the neighbouring layers: nothing merged."""
    dtype = next(model.parameters()).dtype
    graph = from_module(model).to(torch.float64)
    fold_affines(graph, shapes_of(graph, tuple(example.shape[1:])))
    return graph.to(dtype).to_module()


def plan_padding(model: nn.Module, input_shape: tuple[int, ...],
                 timer: Timer | None = None) -> list[ChainPlan]:
    """The merges worth making if paddings were moved (see `fold`'s `timer`), outside the affine
    tail that `fold` would collapse; nothing changes."""
    timer = Timer() if timer is None else (timer or None)
    graph, shapes, *_ = _prepared(model, tuple(input_shape))
    collapse_tail(graph, shapes, timer)
    return [plan for plan in plan_chains(graph, shapes, timer, movable=True) if plan.pieces]


def move_padding(model: nn.Module, plans: list[ChainPlan]) -> list[str]:
    """Move the padding inside each planned piece onto its first conv; return the convs changed.

    This changes what the network computes at the borders, so fine-tune afterwards.
    """
    changed = []
    for plan in plans:
        position = {name: k for k, name in enumerate(plan.chain.nodes)}
        for piece in plan.pieces:
            modules = [plan.modules[position[name]] for name in piece]
            for first_name, second_name in reversed(list(zip(modules[:-1], modules[1:], strict=True))):
                first, second = model.get_submodule(first_name), model.get_submodule(second_name)
                if not isinstance(first, nn.Conv2d) or not any(second.padding):
                    continue
                first.padding = tuple(p + s * q for p, s, q in
                                      zip(first.padding, first.stride, second.padding, strict=True))
                second.padding = (0, 0)
                changed += [first_name, second_name]
    return changed
