"""Merging chains of linear layers where the merged layer measures faster.

A *chain* is a run of convs (or linear layers) with nothing in between, each
read only by the next, optionally ending in a residual addition of the chain's
input (or of a conv of it). For each chain a dynamic programme over its
contiguous pieces (as in LayerMerge) picks the partition with the lowest
measured latency, the residual being absorbed when the whole chain is one
piece. A chain is merged only when its plan measures faster than the unmerged
layers; both timings and the MACs go into the decision. Each applied merge is
checked in float64 against the layers it replaces.

With ``movable=True`` the planner also links convs whose second one pads,
as if its padding had been moved onto the first (`merge.move_padding`); this
is how a pruner decides, before its last fine-tune, which paddings to move.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from edgewise.cost import time_it
from edgewise.prune.fold import merge
from edgewise.prune.fold.graph import Graph, Node

CHECK_TOLERANCE = 1e-9  # float64 merges agree to rounding; relative to the output's scale
MAX_PIECE = 4  # longest run of layers merged into one (kernels grow with each)


@dataclass
class Chain:
    """Layers ``nodes`` applied in turn to the input ``start``; optionally ``add`` sums the last
    with ``skip`` (None: the input itself; else a conv of the input)."""

    nodes: list[str]
    start: str
    add: str | None = None
    skip: str | None = None


@dataclass
class ChainPlan:
    """What the planner decided for one chain, with the timings (seconds, at the planning batch)
    and MACs (per input) of the layers as they are and as planned."""

    chain: Chain
    modules: list[str]
    pieces: list[list[str]]  # runs of chain nodes merged into one layer
    absorbs_residual: bool
    latency_unmerged_s: float | None
    latency_merged_s: float | None
    macs_unmerged: int
    macs_merged: int
    applied: bool = False
    max_error: float | None = None  # of the float64 check, relative to the output's scale
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "nodes": self.chain.nodes + [n for n in (self.chain.skip, self.chain.add) if n],
            "modules": self.modules,
            "pieces": self.pieces,
            "residual": None if self.chain.add is None else
            ("identity" if self.chain.skip is None else "projection"),
            "absorbs_residual": self.absorbs_residual,
            "latency_unmerged_s": self.latency_unmerged_s,
            "latency_merged_s": self.latency_merged_s,
            "macs_unmerged": self.macs_unmerged,
            "macs_merged": self.macs_merged,
            "applied": self.applied,
            "max_error": self.max_error,
            "notes": self.notes,
        }


def _conv(node: Node) -> merge.Conv:
    a = node.attrs
    return merge.Conv(node.tensors["weight"], node.tensors["bias"], tuple(a["stride"]),
                      tuple(a["padding"]), a["groups"])


def _mergeable(node: Node) -> bool:
    return node.op == "linear" or (node.op == "conv" and tuple(node.attrs["dilation"]) == (1, 1))


def _linked(graph: Graph, a: Node, b: Node, movable: bool) -> bool:
    """Whether `b` directly follows `a` and the two merge exactly (or would, padding moved)."""
    return (
        a.op == b.op and _mergeable(a) and _mergeable(b) and b.inputs == [a.name]
        and graph.consumers(a.name) == [b]
        and (a.op == "linear" or movable or not any(b.attrs["padding"]))
    )


def find_chains(graph: Graph, movable: bool = False) -> list[Chain]:
    """Maximal chains of two or more layers, or of one conv ending in a residual addition."""
    chains = []
    taken: set[str] = set()
    for node in graph.nodes:
        if node.name in taken or not _mergeable(node):
            continue
        names = [node.name]
        while True:
            readers = graph.consumers(names[-1])
            if len(readers) == 1 and _linked(graph, graph[names[-1]], readers[0], movable):
                names.append(readers[0].name)
            else:
                break
        taken.update(names)
        chain = Chain(names, node.inputs[0])
        _attach_residual(graph, chain)
        if chain.add in taken or chain.skip in taken:  # another chain's layer or residual
            chain.add = chain.skip = None
        taken.update(n for n in (chain.add, chain.skip) if n)
        if len(names) > 1 or chain.add is not None:
            chains.append(chain)
    return chains


def _attach_residual(graph: Graph, chain: Chain) -> None:
    last = graph[chain.nodes[-1]]
    readers = graph.consumers(last.name)
    if last.op != "conv" or len(readers) != 1 or readers[0].op != "add":
        return
    add = readers[0]
    if len(add.inputs) != 2 or add.inputs[0] == add.inputs[1]:
        return
    other = add.inputs[1] if add.inputs[0] == last.name else add.inputs[0]
    if other == chain.start:
        chain.add = add.name
    elif (graph[other].op == "conv" and graph[other].inputs == [chain.start]
          and graph.consumers(other) == [add] and _mergeable(graph[other])):
        chain.add, chain.skip = add.name, other


Layer = merge.Conv | tuple[Tensor, Tensor]  # a conv, or a linear layer's (weight, bias)
LayerShape = merge.Shape | tuple[int, int]  # a conv's geometry, or a linear layer's (out, in)


def _residual_conv(graph: Graph, chain: Chain, like: merge.Conv) -> merge.Conv:
    if chain.skip is None:
        ident = merge.identity(like.weight.shape[0], like.weight.dtype)
        return replace(ident, weight=ident.weight.to(like.weight.device))
    return _conv(graph[chain.skip])


def merged_layer(graph: Graph, chain: Chain, piece: list[str], absorb: bool) -> Layer:
    """The merged layer of `piece` (and of the residual when `absorb`), with its numbers."""
    nodes = [graph[n] for n in piece]
    if nodes[0].op == "linear":
        pairs = [(n.tensors["weight"], n.tensors["bias"]) for n in nodes]
        return functools.reduce(lambda ab, cd: merge.compose_linear(*ab, *cd), pairs)
    conv = functools.reduce(merge.compose, [_conv(n) for n in nodes])
    return merge.add(conv, _residual_conv(graph, chain, conv)) if absorb else conv


def merged_shape(graph: Graph, chain: Chain, piece: list[str], absorb: bool,
                 movable: bool) -> LayerShape | None:
    """The shape `merged_layer` would have, paddings moved first when `movable`; None when the
    residual cannot be absorbed."""
    nodes = [graph[n] for n in piece]
    if nodes[0].op == "linear":
        return nodes[-1].tensors["weight"].shape[0], nodes[0].tensors["weight"].shape[1]
    shapes = [_conv(n).shape for n in nodes]
    if movable:
        for k in range(len(shapes) - 1, 0, -1):
            shapes[k - 1], shapes[k] = merge.moved(shapes[k - 1], shapes[k])
    shape = functools.reduce(merge.composed, shapes)
    if not absorb:
        return shape
    other = (merge.Shape(shape.out_channels, shape.out_channels, (1, 1), groups=shape.out_channels)
             if chain.skip is None else _conv(graph[chain.skip]).shape)
    return merge.summed(shape, other)


def _macs(shape: LayerShape, out_shape: tuple[int, ...]) -> int:
    """MACs per input of a layer whose output has shape `out_shape` (batch 1)."""
    if isinstance(shape, merge.Shape):
        kh, kw = shape.kernel
        return (shape.out_channels * shape.in_channels // shape.groups * kh * kw
                * out_shape[-1] * out_shape[-2])
    tokens = 1
    for size in out_shape[1:-1]:
        tokens *= size
    return shape[0] * shape[1] * tokens


@dataclass
class Timer:
    """Measures candidate layers on random inputs: `batch` copies of the planning shape, under
    inference mode, channels-last when asked, on `threads` threads; equal layers are timed once,
    and a layer's time is the lower quartile of `repeats` calls."""

    batch: int = 1
    threads: int | None = 1
    warmup: int = 5
    repeats: int = 30
    channels_last: bool = False
    _cache: dict = field(default_factory=dict)

    def _input(self, shape: tuple[int, ...]) -> Tensor:
        x = torch.randn(self.batch, *shape[1:])
        return x.to(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def _module(self, shape: LayerShape) -> nn.Module:
        if isinstance(shape, merge.Shape):
            module = nn.Conv2d(shape.in_channels, shape.out_channels, shape.kernel, shape.stride,
                               shape.padding, groups=shape.groups)
            return module.to(memory_format=torch.channels_last) if self.channels_last else module
        return nn.Linear(shape[1], shape[0])

    def layer(self, shape: LayerShape, in_shape: tuple[int, ...]) -> float:
        """Seconds per call of one conv or linear layer (random numbers)."""
        key = ("layer", shape, in_shape)
        if key not in self._cache:
            module, x = self._module(shape).eval(), self._input(in_shape)
            self._cache[key] = self._time(lambda: module(x))
        return self._cache[key]

    def residual(self, skip: merge.Shape | None, in_shape: tuple[int, ...],
                 out_shape: tuple[int, ...]) -> float:
        """Seconds per call of the residual addition (and of its conv, if any)."""
        key = ("residual", skip, in_shape, out_shape)
        if key not in self._cache:
            x, y = self._input(in_shape), self._input(out_shape)
            if skip is None:
                self._cache[key] = self._time(lambda: x + y)
            else:
                module = self._module(skip).eval()
                self._cache[key] = self._time(lambda: module(x) + y)
        return self._cache[key]

    def module(self, module: nn.Module, in_shape: tuple[int, ...]) -> float:
        """Seconds per call of a whole float32 module, such as a subgraph (not cached)."""
        module = module.eval()
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        x = self._input(in_shape)
        return self._time(lambda: module(x))

    def _time(self, fn) -> float:
        # The lower quartile: on a busy machine the slow calls are the ones another process
        # interrupted, which says nothing about the layer.
        return time_it(fn, self.warmup, self.repeats, self.threads, inference=True).p25_s


def plan_chain(graph: Graph, chain: Chain, shapes: dict[str, tuple[int, ...]],
               timer: Timer | None, movable: bool = False) -> ChainPlan:
    """Pick the fastest partition of `chain` into merged pieces (all merged when `timer` is None)."""
    n = len(chain.nodes)
    in_shapes = [shapes[chain.start]] + [shapes[name] for name in chain.nodes[:-1]]
    layers = {(i, j): merged_shape(graph, chain, chain.nodes[i:j + 1], False, movable)
              for i in range(n) for j in range(i, min(n, i + MAX_PIECE))}
    macs = {key: _macs(layer, shapes[chain.nodes[key[1]]]) for key, layer in layers.items()}
    whole = (merged_shape(graph, chain, chain.nodes, True, movable)
             if chain.add is not None and n <= MAX_PIECE else None)
    skip = None if chain.skip is None else _conv(graph[chain.skip]).shape
    skip_macs = 0 if skip is None else _macs(skip, shapes[chain.skip])
    macs_unmerged = sum(macs[(k, k)] for k in range(n)) + skip_macs
    modules = [graph[name].attrs.get("module") or name for name in chain.nodes]
    if timer is None:  # merge everything that merges
        pieces = [(0, n - 1)] if n <= MAX_PIECE else [(k, k) for k in range(n)]
        return ChainPlan(chain, modules, [chain.nodes[i:j + 1] for i, j in pieces
                                          if j > i or whole is not None],
                         whole is not None, None, None, macs_unmerged,
                         sum(macs[p] for p in pieces) + (0 if whole is not None else skip_macs))
    cost = {key: timer.layer(layer, in_shapes[key[0]]) for key, layer in layers.items()}
    best: list[tuple[float, list[tuple[int, int]]]] = [(0.0, [])]  # for the first j layers
    for j in range(n):
        best.append(min(
            ((best[i][0] + cost[(i, j)], best[i][1] + [(i, j)]) for i in range(j + 1)
             if (i, j) in cost), key=lambda item: item[0]))
    tail = 0.0 if chain.add is None else timer.residual(skip, in_shapes[0], shapes[chain.nodes[-1]])
    unmerged = sum(cost[(k, k)] for k in range(n)) + tail
    planned, pieces, absorbs = best[n][0] + tail, best[n][1], False
    if whole is not None and (seconds := timer.layer(whole, in_shapes[0])) < planned:
        planned, pieces, absorbs = seconds, [(0, n - 1)], True
    plan = ChainPlan(
        chain, modules, [chain.nodes[i:j + 1] for i, j in pieces if j > i or absorbs], absorbs,
        unmerged, planned, macs_unmerged,
        sum(macs[p] for p in pieces) + (0 if absorbs else skip_macs),
    )
    if not plan.pieces:
        plan.notes.append("kept: merging does not measure faster")
    return plan


def plan_chains(graph: Graph, shapes: dict[str, tuple[int, ...]], timer: Timer | None,
                movable: bool = False) -> list[ChainPlan]:
    """A `ChainPlan` for every chain of `graph`."""
    return [plan_chain(graph, chain, shapes, timer, movable) for chain in find_chains(graph, movable)]


def relative_error(reference: nn.Module, candidate: nn.Module, in_shape: tuple[int, ...]) -> float:
    """Max |reference - candidate| / max(1, max|reference|) on two random float64 inputs of
    `in_shape` (batch first): how every merge is checked."""
    x = torch.randn(2, *in_shape[1:], dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = reference(x)
        return float((ref - candidate(x)).abs().max() / max(1.0, float(ref.abs().max())))


def _check(graph: Graph, names: list[str], start: str, new: Node,
           shapes: dict[str, tuple[int, ...]]) -> float:
    """`relative_error` of the replaced layers against the merged one, in float64."""
    ref_net = graph.subgraph(start, names).to(torch.float64).to_module()
    new_net = Graph([Node(start, "input", []), replace(new.copy(), inputs=[start]),
                     Node("output", "output", [new.name])]).to(torch.float64).to_module()
    return relative_error(ref_net, new_net, shapes[start])


def apply_plan(graph: Graph, plan: ChainPlan, shapes: dict[str, tuple[int, ...]]) -> None:
    """Replace each planned piece by its merged layer, checked in float64 (a failed check keeps
    the piece as it was and is noted)."""
    chain, errors, merged = plan.chain, [], 0
    for piece in plan.pieces:
        absorb = plan.absorbs_residual and piece == chain.nodes
        layer = merged_layer(graph, chain, piece, absorb)
        first = graph[piece[0]]
        names = piece + ([n for n in (chain.skip, chain.add) if n] if absorb else [])
        if isinstance(layer, merge.Conv):
            new = Node(f"{first.name}_merged", "conv", list(first.inputs),
                       {"stride": list(layer.stride), "padding": list(layer.padding),
                        "dilation": [1, 1], "groups": layer.groups},
                       {"weight": layer.weight, "bias": layer.bias})
        else:
            new = Node(f"{first.name}_merged", "linear", list(first.inputs), {},
                       {"weight": layer[0], "bias": layer[1]})
        new.source = [s for n in names for s in graph[n].source]
        order = sorted(names, key=[n.name for n in graph.nodes].index)
        error = _check(graph, order, first.inputs[0], new, shapes)
        errors.append(error)
        if error > CHECK_TOLERANCE:
            plan.notes.append(f"not merged {piece}: float64 check failed ({error:.2e})")
            continue
        shapes[new.name] = shapes[names[-1] if not absorb else chain.add]
        graph.replace(order, new)
        merged += 1
    plan.applied = merged > 0
    plan.max_error = max(errors, default=None)
