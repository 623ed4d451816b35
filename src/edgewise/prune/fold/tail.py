"""Collapsing an affine tail: everything after the last nonlinearity becomes one Linear layer.

When a pruner has removed every rectifier of a network's last stages, what runs
from the last remaining nonlinearity (or the input) to the logits is an affine
map of a fixed-size input: convolutions (any stride, padding or groups),
additions, constants, average pooling, flatten and linear layers. Such a map is
``y = W x + b`` whatever its layers, so it is computed exactly as one Linear
layer on the flattened input: ``b`` is the tail's output for x = 0 and the
columns of ``W`` its responses to the unit inputs, evaluated in float64. This
is the Linear∘Linear merge taken to its end (a pairwise Conv∘Conv merge cannot
cross the pooling), and it pays when ``in_features * out_features`` is small
next to the tail's MACs, as when the last stage runs on a few pixels.

Like every merge it is applied only when it measures faster than the layers it
replaces (both timings and the MACs go into the decision) and is checked in
float64. Only a tail that ends in (batch, features) and has a single entry is
collapsed; `MAX_WEIGHTS` bounds the dense matrix (a default of ours: 4 M
entries, 16 MB in float32).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from edgewise.cost import count_macs
from edgewise.prune.fold.graph import Graph, Node
from edgewise.prune.fold.plan import CHECK_TOLERANCE, Timer, relative_error

AFFINE_OPS = ("conv", "linear", "affine", "add", "const", "flatten", "mean", "avgpool",
              "adaptive_avgpool")
LAYER_OPS = ("conv", "linear")
MAX_WEIGHTS = 1 << 22
PROBE_CHUNK = 1024  # unit inputs evaluated at once


@dataclass
class Tail:
    """The affine nodes (in graph order) computing the output from the node ``start``."""

    start: str
    nodes: list[str]
    in_features: int
    out_features: int


@dataclass
class TailPlan:
    """What was decided for the tail, with the timings (seconds per call at the timer's batch)
    and MACs (per input) of its layers as they are and as one Linear layer."""

    tail: Tail
    latency_unmerged_s: float | None
    latency_merged_s: float | None
    macs_unmerged: int
    macs_merged: int
    applied: bool = False
    max_error: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready: the tail's fields, then the decision's."""
        fields = asdict(self)
        return fields.pop("tail") | fields


def find_tail(graph: Graph, shapes: dict[str, tuple[int, ...]]) -> Tail | None:
    """The affine tail before the output, if it has one entry, ends in (batch, features), holds
    two or more conv/linear layers and its matrix has at most `MAX_WEIGHTS` entries."""
    last = graph.nodes[-1].inputs[0]
    region: set[str] = set()
    entries: set[str] = set()
    stack = [last]
    while stack:
        name = stack.pop()
        if name in region or name in entries:
            continue
        node = graph[name]
        if node.op in AFFINE_OPS:
            region.add(name)
            stack.extend(node.inputs)
        else:
            entries.add(name)
    if len(entries) != 1 or len(shapes[last]) != 2:
        return None
    start = entries.pop()
    nodes = [n.name for n in graph.nodes if n.name in region]
    closed = all(r.name in region or r.op == "output" for n in nodes for r in graph.consumers(n))
    if not closed or sum(graph[n].op in LAYER_OPS for n in nodes) < 2:
        return None
    tail = Tail(start, nodes, math.prod(shapes[start][1:]), shapes[last][1])
    return tail if tail.in_features * tail.out_features <= MAX_WEIGHTS else None


def _collapsed(tail: Tail, weight: Tensor, bias: Tensor, flat_shape: bool) -> Graph:
    """The tail as one Linear layer (after a flatten unless its input is already flat)."""
    name = f"{tail.nodes[-1]}_collapsed"
    nodes = [Node(tail.start, "input", [])]
    if not flat_shape:
        nodes.append(Node(f"{name}_flat", "flatten", [tail.start], {"start_dim": 1, "end_dim": -1}))
    nodes.append(Node(name, "linear", [nodes[-1].name], {}, {"weight": weight, "bias": bias}))
    return Graph(nodes + [Node("output", "output", [name])])


@torch.no_grad()
def affine_map(module: nn.Module, in_shape: tuple[int, ...],
               dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """(W, b) with ``module(x) = W x.flatten() + b`` for an affine `module` of inputs `in_shape`
    (batch first): b from the zero input, W's columns from the unit inputs."""
    features = math.prod(in_shape[1:])
    bias = module(torch.zeros(1, *in_shape[1:], dtype=dtype))[0]
    columns = []
    for first in range(0, features, PROBE_CHUNK):
        count = min(PROBE_CHUNK, features - first)
        units = torch.zeros(count, features, dtype=dtype)
        units[torch.arange(count), torch.arange(first, first + count)] = 1
        columns.append(module(units.reshape(count, *in_shape[1:])) - bias)
    return torch.cat(columns).T.contiguous(), bias


def collapse_tail(graph: Graph, shapes: dict[str, tuple[int, ...]],
                  timer: Timer | None) -> TailPlan | None:
    """Replace the affine tail of float64 `graph` by one Linear layer where that measures faster
    (`timer` None: whenever there is a tail); None when there is no tail."""
    tail = find_tail(graph, shapes)
    if tail is None:
        return None
    in_shape = shapes[tail.start]
    old = graph.subgraph(tail.start, tail.nodes).to(torch.float64)
    reference = old.to_module()
    weight, bias = affine_map(reference, in_shape)
    new = _collapsed(tail, weight, bias, len(in_shape) == 2)
    macs = count_macs(reference, torch.zeros(1, *in_shape[1:], dtype=torch.float64)).total
    plan = TailPlan(tail, None, None, macs, tail.in_features * tail.out_features)
    if timer is not None:
        plan.latency_unmerged_s = timer.module(old.to(torch.float32).to_module(), in_shape)
        plan.latency_merged_s = timer.module(new.to(torch.float32).to_module(), in_shape)
        if plan.latency_merged_s >= plan.latency_unmerged_s:
            plan.notes.append("kept: one Linear layer does not measure faster")
            return plan
    plan.max_error = relative_error(reference, new.to_module(), in_shape)
    if plan.max_error > CHECK_TOLERANCE:
        plan.notes.append(f"not collapsed: float64 check failed ({plan.max_error:.2e})")
        return plan
    added = new.nodes[1:-1]
    for node in added:
        node.source = [s for n in tail.nodes for s in graph[n].source]
        shapes[node.name] = (1, tail.in_features) if node.op == "flatten" else shapes[tail.nodes[-1]]
    graph.replace(tail.nodes, added[-1])
    if len(added) == 2:
        graph.nodes.insert(graph.nodes.index(added[-1]), added[0])
    plan.applied = True
    return plan
