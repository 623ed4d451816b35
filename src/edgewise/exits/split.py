"""Cut a model into its finest chain of pieces, so that exits can go after any piece.

A cut is valid where a single tensor carries everything the rest of the model needs.
Two ways to find cuts, same result (a `Chain`):

- chain: an ``nn.Sequential`` or a zoo model runs its children one after another (the
  zoo's contract), so every child boundary is a cut; nested ``nn.Sequential`` children are
  flattened, which makes ``"layer2.0"`` (after the first block of ``layer2``) a cut too.
- graph: any other module is traced with ``torch.fx.symbolic_trace``; the cut after node
  ``n`` is valid when ``n``'s value is the only one computed so far that a later node reads
  (parameters and buffers aside). Inside a residual block the block's input is still read
  by the final add, so no cut falls there; after the add the cut is valid again.

Each cut is named by the modules that end there, outermost first (``("layer1",
"layer1.1")``). Graph cuts where no module ends are not offered.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from edgewise.cost import count_macs
from edgewise.errors import UserError

# A head that read the input of one of these would see raw, unnormalised activations.
_NOT_BEFORE = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.ReLU, nn.ReLU6,
               nn.GELU, nn.SiLU, nn.Hardswish, nn.LeakyReLU, nn.Sigmoid, nn.Tanh)
_NOT_BEFORE_FN = {torch.relu, torch.nn.functional.relu, torch.nn.functional.gelu,
                  torch.nn.functional.silu, torch.nn.functional.relu6}


@dataclass(frozen=True)
class Cut:
    """The point after one piece: the names that end there, the tensor's shape, the piece's cost.

    `shape` has no batch dimension; `macs` counts the piece that ends here, per input.
    `clean` is False where the next piece starts with a normalisation or an activation.
    """

    names: tuple[str, ...]
    shape: tuple[int, ...]
    macs: int
    clean: bool

    @property
    def name(self) -> str:
        return self.names[0]


@dataclass(frozen=True)
class Chain:
    """A model as pieces run in order; ``cuts[i]`` follows piece ``i`` (the last is the output).

    ``segment(start, stop)`` returns one module that runs pieces ``start .. stop - 1``; it
    shares parameters with the copy of the model that was cut, not with the model given.
    The pieces after ``cuts[final]`` are the model's classifier: for a chain, its last
    child; for a traced model, what follows the last cut where the features still have a
    spatial or token extent (else the last piece).
    """

    cuts: tuple[Cut, ...]
    final: int
    segment: Callable[[int, int], nn.Module]


def chain_of(model: nn.Module, example: Tensor, sequential: bool) -> Chain:
    """Split a copy of `model` at every valid cut; `example` is one batch (N, ...) of inputs.

    `sequential` says that the model's children run in order (zoo models, ``nn.Sequential``);
    otherwise the model is traced with torch.fx.
    """
    model = copy.deepcopy(model).eval()
    if sequential:
        *children, (last_name, last) = model.named_children()
        if not children:
            raise UserError(f"{type(model).__name__} has one child only: nothing to cut.")
        names, pieces, clean = _flatten(children)
        names.append((last_name,))
        pieces.append(last)
        clean.append(True)
        segment = _chain_segment(pieces)
    else:
        names, clean, segment = _trace(model, example)
    pieces = [segment(i, i + 1) for i in range(len(names))]
    macs = count_macs(nn.Sequential(*pieces), example).per_module
    cuts = []
    x = example
    with torch.no_grad():
        for i, (piece, piece_names) in enumerate(zip(pieces, names, strict=True)):
            x = piece(x)
            if not isinstance(x, Tensor):
                raise UserError(
                    f"The model's piece ending at {piece_names[0]!r} returns "
                    f"{type(x).__name__}, not a tensor: a model must map one tensor to one tensor."
                )
            cuts.append(Cut(piece_names, tuple(x.shape[1:]), macs[str(i)], clean[i]))
    if sequential:
        final = len(cuts) - 2
    else:
        extent = [i for i, c in enumerate(cuts[:-1]) if _has_extent(c.shape)]
        final = extent[-1] if extent else len(cuts) - 2
    if final < 0:
        raise UserError(f"{type(model).__name__} has a single piece: nothing to cut.")
    return Chain(tuple(cuts), final, segment)


def _has_extent(shape: tuple[int, ...]) -> bool:
    """Whether features of `shape` (no batch) still have positions: H * W > 1, or T > 1."""
    if len(shape) == 3:
        return shape[1] * shape[2] > 1
    return len(shape) == 2 and shape[0] > 1


def _flatten(children: list[tuple[str, nn.Module]], prefix: str = "") -> tuple[list, list, list]:
    """`children` in run order with nested Sequentials opened: (names, modules, clean)."""
    names: list[tuple[str, ...]] = []
    pieces: list[nn.Module] = []
    for child_name, child in children:
        qualified = prefix + child_name
        if isinstance(child, nn.Sequential) and len(child):
            sub_names, sub_pieces, _ = _flatten(list(child.named_children()), qualified + ".")
            sub_names[-1] = (qualified, *sub_names[-1])
            names += sub_names
            pieces += sub_pieces
        else:
            names.append((qualified,))
            pieces.append(child)
    clean = [not isinstance(nxt, _NOT_BEFORE) for nxt in pieces[1:]] + [True]
    return names, pieces, clean


def _chain_segment(pieces: list[nn.Module]) -> Callable[[int, int], nn.Module]:
    def segment(start: int, stop: int) -> nn.Module:
        if stop - start == 1:
            return pieces[start]
        return nn.Sequential(*pieces[start:stop])

    return segment


def _trace(model: nn.Module, example: Tensor) -> tuple[list, list, Callable]:
    """Trace `model`, find the valid cuts at module ends, and a segment builder over them."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds; all mean "cannot trace"
        raise UserError(
            f"torch.fx cannot trace {type(model).__name__} ({type(exc).__name__}: {exc}). "
            "Give exits a model whose forward has no data-dependent control flow, "
            "or an nn.Sequential of its parts."
        ) from exc
    ShapeProp(gm).propagate(example)
    nodes = [n for n in gm.graph.nodes if n.op != "get_attr"]
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise UserError(f"{type(model).__name__}.forward takes {len(inputs)} inputs; exits need one.")
    output = nodes[-1]
    if not isinstance(output.args[0], fx.Node):
        raise UserError(f"{type(model).__name__} must return one tensor of logits.")
    position = {n: i for i, n in enumerate(nodes)}
    last_use = {n: max((position[u] for u in n.users), default=-1) for n in nodes}
    scopes = {n: list(n.meta.get("nn_module_stack") or ()) for n in nodes}
    module_end = {}
    for n in nodes:
        for scope in scopes[n]:
            module_end[scope] = n

    cut_nodes, names = [], []
    live: set[fx.Node] = set()
    for i, n in enumerate(nodes[:-1]):
        live = {m for m in live if last_use[m] > i}
        if last_use[n] > i:
            live.add(n)
        ending = tuple(s for s in scopes[n] if module_end[s] is n)
        is_tensor = isinstance(n.meta.get("tensor_meta"), TensorMetadata)
        if n is output.args[0] or (live == {n} and ending and is_tensor and n.op != "placeholder"):
            cut_nodes.append(n)
            names.append(ending or (n.name,))
        if n is output.args[0]:
            break
    clean = [not _starts_raw(nodes[position[c] + 1], gm) for c in cut_nodes[:-1]] + [True]

    def segment(start: int, stop: int) -> nn.Module:
        graph = fx.Graph()
        source = inputs[0] if start == 0 else cut_nodes[start - 1]
        env = {source: graph.placeholder("x")}

        def arg(node: fx.Node) -> fx.Node:
            if node not in env:  # a parameter or buffer, re-read in this segment
                env[node] = graph.get_attr(node.target)
            return env[node]

        for node in nodes[position[source] + 1 : position[cut_nodes[stop - 1]] + 1]:
            env[node] = graph.node_copy(node, arg)
        graph.output(env[cut_nodes[stop - 1]])
        return fx.GraphModule(gm, graph, class_name=f"Segment{start}_{stop}")

    return names, clean, segment


def _starts_raw(node: fx.Node, gm: fx.GraphModule) -> bool:
    """Whether `node` normalises or rectifies its input (so a cut just before it is raw)."""
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), _NOT_BEFORE)
    if node.op in ("call_function", "call_method"):
        return node.target in _NOT_BEFORE_FN or node.target in ("relu", "relu_")
    return False
