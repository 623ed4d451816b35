"""A small dataflow graph of inference-time layers: what the folder rewrites and what it saves.

`from_module` traces any `nn.Module` with `torch.fx` into a list of `Node`s
(topologically ordered) whose ops are those below; eval-mode BatchNorm and
`Linearized` marks become per-channel affine maps, identities and dropout
disappear. `Graph.to_module` turns the nodes back into a plain
`torch.fx.GraphModule` of standard torch layers, so a folded network runs
(and loads) without the class it came from.

ops and their attrs / tensors:

- ``input``; ``output`` (one input); ``const``: / value (1, ...), added to a batch by broadcasting
- ``conv``: stride, padding, dilation, groups / weight (O, I/groups, kh, kw), bias (O)
- ``linear``: / weight (O, I), bias (O)
- ``affine``: dim (the channel axis; None: 1, or the last axis of (N, T, C) tokens) /
  scale (C), shift (C): ``y = x * scale + shift``
- ``act``: kind ("relu", "relu6", "gelu", "gelu_tanh")
- ``add`` (two or more inputs); ``flatten``: start_dim, end_dim; ``mean``: dims, keepdim
- ``maxpool``: kernel_size, stride, padding, dilation, ceil_mode
- ``avgpool``: kernel_size, stride, padding, ceil_mode, count_include_pad
- ``adaptive_avgpool``: output_size

Every node also records ``source``: the qualified module names it was made of.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from edgewise.errors import UserError
from edgewise.prune.fold.bn import bn_scale_shift
from edgewise.prune.linearize import ChannelAffine, Linearized
from edgewise.prune.structure import trace

SUPPORTED = (
    "Conv2d, Linear, BatchNorm1d/2d (eval), ReLU, ReLU6, GELU, Identity, Dropout, Flatten, "
    "max/avg/adaptive-avg pooling, mean and additions"
)


class FoldError(UserError):
    """A model with a layer or operation the folder does not handle."""


@dataclass(eq=False)
class Node:
    """One layer or operation; `inputs` are names of earlier nodes."""

    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    source: list[str] = field(default_factory=list)

    def copy(self) -> Node:
        """A copy whose containers are new (the tensors are shared; passes never edit them in place)."""
        return Node(self.name, self.op, list(self.inputs), dict(self.attrs), dict(self.tensors),
                    list(self.source))


class Graph:
    """Nodes in topological order: the first is ``input``, the last ``output``."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = list(nodes)

    def __getitem__(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def __contains__(self, name: str) -> bool:
        return any(node.name == name for node in self.nodes)

    def consumers(self, name: str) -> list[Node]:
        """Nodes that read `name` (once each, in order)."""
        return [node for node in self.nodes if name in node.inputs]

    def copy(self) -> Graph:
        return Graph([node.copy() for node in self.nodes])

    def subgraph(self, start: str, names: list[str]) -> Graph:
        """The nodes `names` (in order) as a graph of their own, reading `start` as its input and
        returning the last of them."""
        return Graph([Node(start, "input", [])] + [self[n].copy() for n in names]
                     + [Node("output", "output", [names[-1]])])

    def to(self, dtype: torch.dtype) -> Graph:
        """A copy with every tensor cast to `dtype`."""
        out = self.copy()
        for node in out.nodes:
            node.tensors = {k: v.to(dtype) for k, v in node.tensors.items()}
        return out

    def rewire(self, old: str, new: str) -> None:
        """Make every reader of `old` read `new` instead."""
        for node in self.nodes:
            node.inputs = [new if i == old else i for i in node.inputs]

    def remove(self, name: str) -> None:
        self.nodes = [node for node in self.nodes if node.name != name]

    def replace(self, names: list[str], new: Node) -> None:
        """Put `new` where the last of `names` was, drop the others, and rewire its readers."""
        last = max(self.nodes.index(self[n]) for n in names)
        self.nodes[last] = new
        for name in names:
            if name != new.name:
                self.rewire(name, new.name)
        self.nodes = [n for n in self.nodes if n.name not in names or n is new]

    def to_module(self) -> fx.GraphModule:
        """A `torch.fx.GraphModule` of standard layers computing this graph."""
        root = nn.Module()
        graph = fx.Graph()
        env: dict[str, fx.Node] = {}
        for node in self.nodes:
            args = tuple(env[i] for i in node.inputs)
            if node.op == "input":
                env[node.name] = graph.placeholder(node.name)
            elif node.op == "const":
                root.register_buffer(node.name, node.tensors["value"].clone())
                env[node.name] = graph.get_attr(node.name)
            elif node.op == "output":
                graph.output(args[0])
            elif node.op == "add":
                out = args[0]
                for arg in args[1:]:
                    out = graph.call_function(operator.add, (out, arg))
                env[node.name] = out
            elif node.op == "flatten":
                env[node.name] = graph.call_function(
                    torch.flatten, args, {"start_dim": node.attrs["start_dim"],
                                          "end_dim": node.attrs["end_dim"]})
            elif node.op == "mean":
                env[node.name] = graph.call_function(
                    torch.mean, args, {"dim": tuple(node.attrs["dims"]),
                                       "keepdim": node.attrs["keepdim"]})
            else:
                root.add_module(node.name, _build_layer(node))
                env[node.name] = graph.call_module(node.name, args)
        return fx.GraphModule(root, graph, class_name="FoldedNet")


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _build_layer(node: Node) -> nn.Module:
    """The torch layer of a layer node, holding the node's tensors."""
    a, t = node.attrs, node.tensors
    if node.op == "conv":
        out_c, in_per_group, kh, kw = t["weight"].shape
        layer = nn.Conv2d(in_per_group * a["groups"], out_c, (kh, kw), a["stride"], a["padding"],
                          a["dilation"], a["groups"], dtype=t["weight"].dtype)
    elif node.op == "linear":
        layer = nn.Linear(t["weight"].shape[1], t["weight"].shape[0], dtype=t["weight"].dtype)
    elif node.op == "affine":
        return ChannelAffine(t["scale"], t["shift"], a["dim"])
    elif node.op == "act":
        return {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "gelu": nn.GELU(),
                "gelu_tanh": nn.GELU(approximate="tanh")}[a["kind"]]
    elif node.op == "maxpool":
        return nn.MaxPool2d(a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                            ceil_mode=a["ceil_mode"])
    elif node.op == "avgpool":
        return nn.AvgPool2d(a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                            a["count_include_pad"])
    elif node.op == "adaptive_avgpool":
        return nn.AdaptiveAvgPool2d(tuple(a["output_size"]))
    else:
        raise ValueError(f"unknown op {node.op!r}")
    with torch.no_grad():
        layer.weight.copy_(t["weight"])
        layer.bias.copy_(t["bias"])
    return layer


# ---- tracing an nn.Module into a Graph --------------------------------------------------


def _conv_node(name: str, m: nn.Conv2d) -> Node:
    if m.padding_mode != "zeros":
        raise FoldError(f"Cannot fold conv {name!r}: padding_mode {m.padding_mode!r} (only 'zeros').")
    padding = m.padding
    if isinstance(padding, str):  # 'valid' or 'same' (odd effective kernels only)
        spans = [d * (k - 1) for k, d in zip(m.kernel_size, m.dilation, strict=True)]
        if padding == "same" and any(s % 2 for s in spans):
            raise FoldError(f"Cannot fold conv {name!r}: padding='same' with an even kernel.")
        padding = tuple(s // 2 for s in spans) if padding == "same" else (0, 0)
    bias = m.bias if m.bias is not None else torch.zeros(m.out_channels, dtype=m.weight.dtype)
    return Node(name, "conv", [], {"stride": list(m.stride), "padding": list(padding),
                                   "dilation": list(m.dilation), "groups": m.groups},
                {"weight": m.weight.detach().clone(), "bias": bias.detach().clone()})


def _linear_node(name: str, m: nn.Linear) -> Node:
    bias = m.bias if m.bias is not None else torch.zeros(m.out_features, dtype=m.weight.dtype)
    return Node(name, "linear", [], {}, {"weight": m.weight.detach().clone(),
                                         "bias": bias.detach().clone()})


def _bn_node(name: str, m: nn.modules.batchnorm._BatchNorm) -> Node:
    if m.running_mean is None:
        raise FoldError(f"Cannot fold BatchNorm {name!r}: it keeps no running statistics.")
    weight, bias = (None if p is None else p.detach() for p in (m.weight, m.bias))
    scale, shift = bn_scale_shift(m.running_mean.detach(), m.running_var.detach(), m.eps,
                                  weight, bias)
    return Node(name, "affine", [], {"dim": 1}, {"scale": scale, "shift": shift})


def _module_node(name: str, m: nn.Module) -> Node | None:
    """The node of leaf module `m`, or None for a module that passes its input through."""
    if isinstance(m, (nn.Identity, nn.Dropout, nn.Dropout2d)):
        return None
    if isinstance(m, nn.Conv2d):
        return _conv_node(name, m)
    if isinstance(m, nn.Linear):
        return _linear_node(name, m)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _bn_node(name, m)
    if isinstance(m, Linearized):
        return Node(name, "affine", [], {"dim": None},
                    {"scale": m.keep.detach().clone(), "shift": torch.zeros_like(m.keep)})
    if isinstance(m, ChannelAffine):
        return Node(name, "affine", [], {"dim": m.dim},
                    {"scale": m.scale.detach().clone(), "shift": m.shift.detach().clone()})
    if isinstance(m, nn.ReLU6):
        return Node(name, "act", [], {"kind": "relu6"})
    if isinstance(m, nn.ReLU):
        return Node(name, "act", [], {"kind": "relu"})
    if isinstance(m, nn.GELU):
        return Node(name, "act", [], {"kind": "gelu" if m.approximate == "none" else "gelu_tanh"})
    if isinstance(m, nn.Flatten):
        return Node(name, "flatten", [], {"start_dim": m.start_dim, "end_dim": m.end_dim})
    if isinstance(m, nn.MaxPool2d):
        return Node(name, "maxpool", [], {
            "kernel_size": list(_pair(m.kernel_size)), "stride": list(_pair(m.stride)),
            "padding": list(_pair(m.padding)), "dilation": list(_pair(m.dilation)),
            "ceil_mode": m.ceil_mode})
    if isinstance(m, nn.AvgPool2d):
        return Node(name, "avgpool", [], {
            "kernel_size": list(_pair(m.kernel_size)), "stride": list(_pair(m.stride)),
            "padding": list(_pair(m.padding)), "ceil_mode": m.ceil_mode,
            "count_include_pad": m.count_include_pad})
    if isinstance(m, nn.AdaptiveAvgPool2d) and None not in _pair(m.output_size):
        return Node(name, "adaptive_avgpool", [], {"output_size": list(_pair(m.output_size))})
    raise FoldError(f"Cannot fold {name!r} ({type(m).__name__}); the folder handles {SUPPORTED}.")


_ACT_FUNCTIONS = {torch.relu: "relu", F.relu: "relu", F.relu6: "relu6"}
_ADDS = (operator.add, operator.iadd, torch.add)


def _function_node(node: fx.Node) -> Node | None:
    """The node of a call_function / call_method, or None for an unsupported one."""
    target, args, kwargs = node.target, node.args, node.kwargs
    tensors = [a for a in args if isinstance(a, fx.Node)]
    if target in _ADDS or target == "add":
        if len(tensors) == 2 == len(args) and not kwargs:
            return Node(node.name, "add", [])
    elif target in _ACT_FUNCTIONS or target == "relu":
        return Node(node.name, "act", [], {"kind": _ACT_FUNCTIONS.get(target, "relu")})
    elif target is F.gelu:
        tanh = kwargs.get("approximate", "none") == "tanh"
        return Node(node.name, "act", [], {"kind": "gelu_tanh" if tanh else "gelu"})
    elif target in (torch.flatten, "flatten"):
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
        return Node(node.name, "flatten", [], {"start_dim": start, "end_dim": end})
    elif target in (torch.mean, "mean"):
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        if dims is not None:
            dims = [dims] if isinstance(dims, int) else list(dims)
            return Node(node.name, "mean", [], {"dims": dims, "keepdim": kwargs.get("keepdim", False)})
    elif target is F.adaptive_avg_pool2d:
        size = args[1] if len(args) > 1 else kwargs["output_size"]
        return Node(node.name, "adaptive_avgpool", [], {"output_size": list(_pair(size))})
    return None


def _attribute(gm: fx.GraphModule, target: str) -> object:
    owner, _, attr = target.rpartition(".")
    return getattr(gm.get_submodule(owner) if owner else gm, attr)


def from_module(model: nn.Module) -> Graph:
    """Trace `model` (in eval semantics) into a `Graph`; an unsupported layer raises `FoldError`."""
    gm = trace(model)
    nodes: list[Node] = []
    alias: dict[str, str] = {}  # fx node name -> graph node name it equals
    for fx_node in gm.graph.nodes:
        inputs = [alias[a.name] for a in fx_node.all_input_nodes]
        if fx_node.op == "placeholder":
            if nodes:
                raise FoldError("Cannot fold a model with more than one input.")
            new = Node(fx_node.name, "input", [])
        elif fx_node.op == "output":
            if not isinstance(fx_node.args[0], fx.Node):
                raise FoldError("Cannot fold a model whose output is not a single tensor.")
            new = Node("output", "output", inputs)
        elif fx_node.op == "call_module":
            new = _module_node(fx_node.target, gm.get_submodule(fx_node.target))
            if new is not None:
                new.name, new.source = fx_node.name, [fx_node.target]
                new.attrs["module"] = fx_node.target
        elif fx_node.op in ("call_function", "call_method"):
            new = _function_node(fx_node)
            if new is None:
                what = getattr(fx_node.target, "__name__", str(fx_node.target))
                raise FoldError(
                    f"Cannot fold the operation {what!r} ({fx_node.format_node()}); "
                    f"the folder handles {SUPPORTED}."
                )
        elif fx_node.op == "get_attr" and isinstance(value := _attribute(gm, fx_node.target), Tensor):
            new = Node(fx_node.name, "const", [], {}, {"value": value.detach().clone()})
        else:
            raise FoldError(f"Cannot fold {fx_node.format_node()}.")
        if new is None:
            alias[fx_node.name] = inputs[0]
            continue
        new.inputs = inputs
        alias[fx_node.name] = new.name
        nodes.append(new)
    return Graph(nodes)
