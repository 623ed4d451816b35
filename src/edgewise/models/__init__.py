"""The model zoo: ``build(name, num_classes, input_shape)`` gives a plain chain of named stages.

Every zoo model is an ``nn.Sequential`` whose top-level children run in order
(``model(x)`` equals applying them one after another) and whose last child is
``classifier``, so it can be cut into stages. Every rectifier is its own module.
The builder stores its arguments on the model (``edgewise_spec``) so that a
checkpoint can rebuild it with `from_spec`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from edgewise.errors import ParameterError, UserError, check_param
from edgewise.models import convnet, mobilenetv2, resnet, vit
from edgewise.registry import lookup

__all__ = ["build", "describe", "from_spec", "list_models", "model_defaults", "spec_of"]

SPEC_ATTRIBUTE = "edgewise_spec"

_FAMILIES: dict[str, Callable[..., nn.Sequential]] = {
    "convnet": convnet.build,
    "mobilenetv2": mobilenetv2.build,
    "resnet": resnet.build,
    "vit": vit.build,
}


def list_models() -> list[str]:
    """The zoo's model names, sorted."""
    return sorted(_FAMILIES)


def model_defaults(name: str) -> dict[str, Any]:
    """The family-specific keyword arguments of model `name` with their defaults."""
    signature = inspect.signature(lookup(_FAMILIES, name, "model"))
    return {
        p.name: p.default for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY
    }


def describe(name: str) -> str:
    """One line that says what model `name` is."""
    return inspect.getdoc(lookup(_FAMILIES, name, "model")).splitlines()[0]


def build(
    name: str,
    num_classes: int,
    input_shape: Sequence[int],
    width: float = 1.0,
    **kwargs: Any,
) -> nn.Sequential:
    """Build zoo model `name` for images of `input_shape` (C, H, W) and `num_classes` classes.

    `width` multiplies every channel count (the embedding size for `vit`);
    `kwargs` are the family's own (see `model_defaults`). Returns a model in
    training mode whose ``forward`` maps (N, C, H, W) to logits (N, num_classes).
    """
    builder = lookup(_FAMILIES, name, "model")
    defaults = model_defaults(name)
    for key in sorted(kwargs):
        if not defaults:
            raise ParameterError(f"{name} takes no parameter {key!r}; it has only width.")
        lookup(defaults, key, f"{name} parameter")
    shape = tuple(input_shape)
    check_param(name, "num_classes", num_classes,
                isinstance(num_classes, int) and num_classes >= 1, "an int >= 1")
    check_param(name, "input_shape", input_shape,
                len(shape) == 3 and all(isinstance(s, int) and s >= 1 for s in shape),
                "(channels, height, width), three ints >= 1")
    check_param(name, "width", width, isinstance(width, (int, float)) and width > 0, "> 0")
    model = builder(num_classes, shape, float(width), **kwargs)
    setattr(model, SPEC_ATTRIBUTE, {
        "name": name, "num_classes": num_classes, "input_shape": shape, "width": float(width),
        **defaults, **kwargs,
    })
    return model


def spec_of(model: nn.Module) -> dict[str, Any]:
    """What `build` was called with, defaults filled in: {"name", "num_classes", "input_shape", "width", ...}."""
    spec = getattr(model, SPEC_ATTRIBUTE, None)
    if spec is None:
        raise UserError(
            f"This {type(model).__name__} was not built by edgewise.models.build, so it has no spec."
        )
    return dict(spec)


def from_spec(spec: dict[str, Any]) -> nn.Sequential:
    """Rebuild a freshly initialised model from `spec_of`'s dict (also after a JSON round trip)."""
    return build(**spec)
