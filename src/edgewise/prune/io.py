"""Saving and loading pruned and folded networks: safetensors plus JSON, never pickle.

- A *folded* network is stored as its graph (`fold.graph`): the JSON lists the
  nodes (name, op, inputs, attributes) and the safetensors hold their tensors
  as ``<node>/<key>``. `load_folded` rebuilds a `torch.fx.GraphModule` of
  standard torch layers: the model's own class is not needed.
- A *pruned* zoo model (rectifiers marked, paddings possibly moved, not yet
  folded) is stored as its `models.spec_of`, the marked rectifiers, every conv's
  padding and its state dict; `load_pruned` rebuilds it from the zoo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from edgewise.engine import load_checkpoint, save_checkpoint
from edgewise.errors import DataError
from edgewise.models import from_spec, spec_of
from edgewise.prune.fold.graph import Graph, Node, from_module
from edgewise.prune.linearize import Linearized, kind_of, linearize

FOLDED = "edgewise.folded"
PRUNED = "edgewise.pruned"
OPS = ("input", "output", "const", "conv", "linear", "affine", "act", "add", "flatten", "mean",
       "maxpool", "avgpool", "adaptive_avgpool")


def save_folded(path: str | Path, module: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Write a folded network (any module the folder can trace) to ``<path>.safetensors/.json``."""
    graph = from_module(module)
    nodes = [{"name": n.name, "op": n.op, "inputs": n.inputs,
              "attrs": {k: v for k, v in n.attrs.items() if k != "module"}, "source": n.source}
             for n in graph.nodes]
    tensors = {f"{n.name}/{key}": t for n in graph.nodes for key, t in n.tensors.items()}
    return save_checkpoint(path, tensors, {"format": FOLDED, "nodes": nodes, **(meta or {})})


def _expect(meta: dict[str, Any], kind: str, path: str | Path) -> None:
    if meta.get("format") != kind:
        raise DataError(
            f"{path} is not a {kind} checkpoint (its format is {meta.get('format')!r}); "
            f"expected one written by edgewise.prune.io."
        )


def load_folded(path: str | Path) -> tuple[fx.GraphModule, dict[str, Any]]:
    """Read `save_folded`'s files: (the network in eval mode, the meta)."""
    tensors, meta = load_checkpoint(path)
    _expect(meta, FOLDED, path)
    nodes = []
    for spec in meta["nodes"]:
        if spec.get("op") not in OPS:
            raise DataError(f"{path}: node {spec.get('name')!r} has unknown op {spec.get('op')!r}.")
        prefix = f"{spec['name']}/"
        own = {k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)}
        nodes.append(Node(spec["name"], spec["op"], list(spec["inputs"]), dict(spec["attrs"]),
                          own, list(spec.get("source", []))))
    try:
        module = Graph(nodes).to_module()
    except (KeyError, RuntimeError, TypeError) as exc:
        raise DataError(f"{path}: the architecture does not match its tensors ({exc}).") from exc
    return module.eval(), meta


def save_pruned(path: str | Path, model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Write a pruned zoo model: spec, marked rectifiers, conv paddings and weights."""
    marks = {name: kind_of(m) for name, m in model.named_modules() if isinstance(m, Linearized)}
    paddings = {name: list(m.padding) for name, m in model.named_modules()
                if isinstance(m, nn.Conv2d)}
    return save_checkpoint(path, model.state_dict(), {
        "format": PRUNED, "spec": spec_of(model), "linearized": marks, "padding": paddings,
        **(meta or {}),
    })


def load_pruned(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Read `save_pruned`'s files: (the pruned model in eval mode, the meta)."""
    tensors, meta = load_checkpoint(path)
    _expect(meta, PRUNED, path)
    return _rebuild(path, tensors, meta), meta


def _rebuild(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> nn.Module:
    """The zoo model of ``meta["spec"]``, marked and padded as the meta says, with `tensors`."""
    model = from_spec(meta["spec"])
    try:
        for name in meta.get("linearized", {}):
            linearize(model, name, torch.zeros_like(tensors[f"{name}.keep"]))
        for name, padding in meta.get("padding", {}).items():
            model.get_submodule(name).padding = tuple(padding)
        model.load_state_dict(tensors)
    except (KeyError, AttributeError, RuntimeError) as exc:
        raise DataError(f"{path}: the weights do not match the model ({exc}).") from exc
    return model.eval()


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A pruned checkpoint (`save_pruned`) or a trained zoo model (``edgewise train``'s
    ``model.safetensors``, whose meta holds its ``spec``): (the model in eval mode, the meta)."""
    tensors, meta = load_checkpoint(path)
    if "spec" not in meta:
        raise DataError(
            f"{path} holds no model spec; expected a checkpoint written by 'edgewise train' "
            "(model.safetensors) or by 'edgewise prune'."
        )
    return _rebuild(path, tensors, meta), meta
