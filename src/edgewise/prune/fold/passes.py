"""Graph passes that need no timing: constants, affine maps, constant channels.

0. `fold_constants`: layers that no longer depend on the input become constants.
1. `fold_affines`: every BatchNorm, `Linearized` mask or affine map goes into the
   conv or linear layer before it (or, unpadded, after it); all-ones maps vanish.
2. `remove_constant_channels`: an output channel with an all-zero kernel is the
   constant ``bias`` (an OFF channel is 0); it is removed and its value, after
   the rectifier in between if any, is carried into the next layer's bias. A
   nonzero constant is carried only into unpadded convs and linear layers,
   where that is exact.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from edgewise.prune.fold.bn import fold_into_input, fold_into_output
from edgewise.prune.fold.graph import Graph, Node
from edgewise.prune.linearize import channel_dim

_ACTS = {
    "relu": torch.relu,
    "relu6": F.relu6,
    "gelu": F.gelu,
    "gelu_tanh": functools.partial(F.gelu, approximate="tanh"),
}


def node_values(graph: Graph, input_shape: tuple[int, ...]) -> dict[str, Tensor]:
    """Every node's output for one all-zero input of shape (1, *input_shape)."""
    dtype = next((t.dtype for n in graph.nodes for t in n.tensors.values()), torch.float32)
    module = graph.to_module()
    env: dict[str, Tensor] = {}
    with torch.no_grad():
        for node in graph.nodes:
            args = [env[i] for i in node.inputs]
            if node.op == "input":
                env[node.name] = torch.zeros(1, *input_shape, dtype=dtype)
            elif node.op == "const":
                env[node.name] = node.tensors["value"]
            elif node.op == "add":
                env[node.name] = functools.reduce(torch.add, args)
            elif node.op == "flatten":
                env[node.name] = torch.flatten(args[0], node.attrs["start_dim"],
                                               node.attrs["end_dim"])
            elif node.op == "mean":
                env[node.name] = args[0].mean(tuple(node.attrs["dims"]), node.attrs["keepdim"])
            elif node.op != "output":
                env[node.name] = getattr(module, node.name)(args[0])
    return env


def shapes_of(graph: Graph, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Output shape of every node for one input of shape (1, *input_shape)."""
    return {name: tuple(value.shape) for name, value in node_values(graph, input_shape).items()}


def fold_constants(graph: Graph, input_shape: tuple[int, ...]) -> int:
    """Replace what does not depend on the input by constants; return how many nodes went.

    A conv or linear layer whose kernel is all zero outputs its bias whatever it
    reads (a layer EGP pruned to nothing, or TLC's all-OFF layer); everything
    computed from such outputs alone is evaluated once, exactly, and becomes a
    ``const`` node (borders included), so a dead residual branch leaves only
    the addition of a constant. A network whose output is constant is left as it
    is, so that it still returns one row per input.
    """
    fixed: set[str] = set()
    for node in graph.nodes:
        zero_kernel = node.op in ("conv", "linear") and not bool(node.tensors["weight"].any())
        if node.op == "const" or zero_kernel or (
            node.inputs and node.op != "output" and all(i in fixed for i in node.inputs)
        ):
            fixed.add(node.name)
    frontier = [n for n in fixed if any(r.name not in fixed for r in graph.consumers(n))]
    if graph.nodes[-1].inputs[0] in fixed:  # a constant network: keep its batch dimension
        return 0
    if not frontier or all(graph[n].op == "const" for n in frontier):
        return 0
    values = node_values(graph, input_shape)
    before = len(graph.nodes)
    for name in frontier:
        node = graph[name]
        node.op, node.inputs, node.attrs = "const", [], {}
        node.tensors = {"value": values[name]}
        node.name = f"{name}_const"
        graph.rewire(name, node.name)
    needed = _ancestors(graph)
    graph.nodes = [n for n in graph.nodes if n.name in needed]
    return before - len(graph.nodes)


def _ancestors(graph: Graph) -> set[str]:
    """Names of the nodes the output depends on (the input always counts)."""
    needed = {graph.nodes[-1].name, graph.nodes[0].name}
    for node in reversed(graph.nodes):
        if node.name in needed:
            needed.update(node.inputs)
    return needed


# ---- affine maps ----------------------------------------------------------------------


def _axis(node: Node, ndim: int) -> int:
    dim = node.attrs["dim"]
    return channel_dim(ndim) if dim is None else dim % ndim


def fold_affines(graph: Graph, shapes: dict[str, tuple[int, ...]]) -> int:
    """Fold every affine node that has a layer to go into; return how many went."""
    folded = 0
    for node in [n for n in graph.nodes if n.op == "affine"]:
        src = graph[node.inputs[0]]
        ndim = len(shapes[node.name])
        readers = graph.consumers(node.name)
        scale, shift = node.tensors["scale"], node.tensors["shift"]
        if src.op in ("conv", "linear") and graph.consumers(src.name) == [node] and (
            _axis(node, ndim) == (1 if src.op == "conv" else ndim - 1)
        ):
            w, b = fold_into_output(src.tensors["weight"], src.tensors["bias"], scale, shift)
            src.tensors = {"weight": w, "bias": b}
            src.source = src.source + node.source
        elif len(readers) == 1 and _input_foldable(readers[0], node, ndim):
            dst = readers[0]
            w, b = fold_into_input(dst.tensors["weight"], dst.tensors["bias"], scale, shift)
            dst.tensors = {"weight": w, "bias": b}
            dst.source = node.source + dst.source
        elif not (bool((scale == 1).all()) and bool((shift == 0).all())):
            continue
        graph.rewire(node.name, node.inputs[0])
        graph.remove(node.name)
        folded += 1
    return folded


def _input_foldable(dst: Node, affine: Node, ndim: int) -> bool:
    if dst.op == "conv":
        return (dst.attrs["groups"] == 1 and not any(dst.attrs["padding"])
                and _axis(affine, ndim) == 1)
    return dst.op == "linear" and _axis(affine, ndim) == ndim - 1


# ---- constant channels ------------------------------------------------------------------


def _readers_through_acts(graph: Graph, name: str) -> tuple[list[Node], list[Node]] | None:
    """(activation nodes, layer nodes) reading `name` directly or through activations;
    None when something else reads it (an addition, pooling, the output ...)."""
    acts: list[Node] = []
    layers: list[Node] = []
    stack = [name]
    while stack:
        for reader in graph.consumers(stack.pop()):
            if reader.op == "act":
                acts.append(reader)
                stack.append(reader.name)
            elif reader.op == graph[name].op and (reader.op == "linear"
                                                  or reader.attrs["groups"] == 1):
                layers.append(reader)
            else:
                return None
    return acts, layers


def _value_at(graph: Graph, value: Tensor, start: str, layer: Node) -> Tensor:
    """A constant leaving node `start`, after the activations on the way to `layer`."""
    kinds, name = [], layer.inputs[0]
    while name != start:
        node = graph[name]
        kinds.append(node.attrs["kind"])
        name = node.inputs[0]
    for kind in reversed(kinds):
        value = _ACTS[kind](value)
    return value


def remove_constant_channels(graph: Graph) -> int:
    """Remove output channels whose kernel is all zero; return how many (see module doc)."""
    removed = 0
    for node in [n for n in graph.nodes if n.op in ("conv", "linear")]:
        if node.op == "conv" and node.attrs["groups"] != 1:
            continue
        weight, bias = node.tensors["weight"], node.tensors["bias"]
        constant = (weight.flatten(1) == 0).all(1)
        found = _readers_through_acts(graph, node.name)
        if not bool(constant.any()) or found is None or not found[1]:
            continue
        _, layers = found
        values = {r.name: _value_at(graph, bias, node.name, r) for r in layers}
        carries = any(bool((values[r.name][constant] != 0).any()) for r in layers)
        if carries and any(r.op == "conv" and any(r.attrs["padding"]) for r in layers):
            constant = constant & torch.stack([values[r.name] == 0 for r in layers]).all(0)
        if int(constant.sum()) == len(constant):  # keep one channel, so shapes stay valid
            constant[0] = False
        if not bool(constant.any()):
            continue
        keep = ~constant
        for reader in layers:
            w = reader.tensors["weight"]
            spatial = w.flatten(2).sum(2) if w.dim() > 2 else w
            carried = spatial[:, constant] @ values[reader.name][constant]
            reader.tensors = {"weight": w[:, keep], "bias": reader.tensors["bias"] + carried}
        node.tensors = {"weight": weight[keep], "bias": bias[keep]}
        removed += int(constant.sum())
    return removed
