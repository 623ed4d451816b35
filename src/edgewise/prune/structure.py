"""Which layers feed which rectifier, read off a `torch.fx` trace of any `nn.Module`.

A rectifier's *feeders* are the convolutions and linear layers whose outputs
reach its input through linear steps only (BatchNorm, residual additions,
identities), stopping at other rectifiers and at the input. In a ResNet
BasicBlock, ``relu1`` is fed by ``conv1`` and ``relu2`` by ``conv2`` (plus the
1x1 shortcut conv in a downsampling block). Its *BatchNorm* is the deepest
BatchNorm among those steps, so ``relu2`` reads ``bn2`` and not the shortcut's.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from edgewise.errors import UserError
from edgewise.prune.linearize import RECTIFIERS, ChannelAffine, Linearized

# Steps a feeder walk passes through: they keep the map linear in the feeder's output.
_PASS_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Identity, nn.Dropout)
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_WEIGHTED = (nn.Conv2d, nn.Linear)


class TraceError(UserError):
    """A model whose forward pass `torch.fx` cannot follow (data-dependent control flow)."""


class _Tracer(fx.Tracer):
    """Keeps torch.nn modules, `Linearized` marks and `ChannelAffine` maps as single calls."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (Linearized, ChannelAffine)) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.GraphModule:
    """A `torch.fx` trace of `model` whose call_module targets are `model`'s qualified names."""
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types for code it cannot follow
        raise TraceError(
            f"Cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: {exc}); "
            "the folder needs a forward pass without data-dependent control flow."
        ) from exc
    return fx.GraphModule(model, graph)


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _is_boundary(gm: fx.GraphModule, node: fx.Node) -> bool:
    return isinstance(_module(gm, node), RECTIFIERS + (Linearized,))


def _walk_back(gm: fx.GraphModule, start: fx.Node) -> list[fx.Node]:
    """Nodes reachable backwards from `start` through linear steps, `start`'s input first."""
    seen: list[fx.Node] = []
    stack = [a for a in start.all_input_nodes]
    while stack:
        node = stack.pop()
        if node in seen or node.op == "placeholder" or _is_boundary(gm, node):
            continue
        seen.append(node)
        module = _module(gm, node)
        if isinstance(module, _PASS_MODULES) or (
            node.op == "call_function" and node.target in _ADD_FUNCTIONS
        ):
            stack.extend(node.all_input_nodes)
    return seen


def _depths(gm: fx.GraphModule) -> dict[fx.Node, int]:
    """Longest path length from the input to each node."""
    depth: dict[fx.Node, int] = {}
    for node in gm.graph.nodes:
        depth[node] = 1 + max((depth[a] for a in node.all_input_nodes), default=-1)
    return depth


def rectifier_nodes(gm: fx.GraphModule) -> dict[str, fx.Node]:
    """Qualified name -> call node of every rectifier (and `Linearized` mark) in the trace."""
    return {n.target: n for n in gm.graph.nodes if _is_boundary(gm, n)}


def feeders(model: nn.Module) -> dict[str, list[str]]:
    """Rectifier name -> qualified names of the conv/linear layers that feed it (see module doc)."""
    gm = trace(model)
    return {
        name: [n.target for n in _walk_back(gm, node) if isinstance(_module(gm, n), _WEIGHTED)]
        for name, node in rectifier_nodes(gm).items()
    }


def batchnorm_of(model: nn.Module) -> dict[str, str]:
    """Rectifier name -> qualified name of its BatchNorm (the deepest one feeding it), if any."""
    gm = trace(model)
    depth = _depths(gm)
    found = {}
    for name, node in rectifier_nodes(gm).items():
        norms = [
            n for n in _walk_back(gm, node)
            if isinstance(_module(gm, n), (nn.BatchNorm1d, nn.BatchNorm2d))
        ]
        if norms:
            found[name] = max(norms, key=depth.__getitem__).target
    return found
