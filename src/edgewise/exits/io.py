"""Save and load a whole early-exit network: safetensors for the weights, JSON for the rest.

The JSON (inside the safetensors header and beside it as ``<name>.json``) holds how the
network was built (the zoo model's spec, the exit points, the head kind and its
parameters), the input shape and the policy's thresholds. Loading rebuilds the network
with `EarlyExitNetwork.from_model` and then loads the weights, so a network cut from a zoo
model needs no user code; one cut from the user's own model needs a fresh instance of it.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from edgewise import models
from edgewise.engine import load_checkpoint, save_checkpoint
from edgewise.errors import DataError, UserError
from edgewise.exits.network import EarlyExitNetwork
from edgewise.exits.policies import Policy

FORMAT = "edgewise.exits.network/1"


def save(net: EarlyExitNetwork, path: str | Path) -> Path:
    """Write `net` (weights, exit points, heads, thresholds) to ``path`` (.safetensors + .json)."""
    if not net.origin:
        raise UserError("Only a network built with EarlyExitNetwork.from_model can be saved.")
    meta = {
        "format": FORMAT,
        "origin": net.origin,
        "input_shape": list(net.input_shape),
        "exit_names": list(net.exit_names),
        "policy": net.policy.to_dict() if net.policy else None,
    }
    return save_checkpoint(path, net.state_dict(), meta)


def load(path: str | Path, model: nn.Module | None = None) -> EarlyExitNetwork:
    """Read a network written by `save`, on the CPU, in eval mode.

    `model` is a fresh instance of the backbone's class, needed only when the network was
    not cut from a zoo model; its weights are replaced by the saved ones.
    """
    tensors, meta = load_checkpoint(path)
    if meta.get("format") != FORMAT:
        raise DataError(f"{path} is not an early-exit network checkpoint "
                        f"(format {meta.get('format')!r}, expected {FORMAT!r}).")
    origin = meta["origin"]
    if model is None:
        if origin["model_spec"] is None:
            raise UserError(f"{path} holds a network cut from a model outside the zoo: "
                            "pass model=, a fresh instance of that model's class.")
        model = models.from_spec(origin["model_spec"])
    net = EarlyExitNetwork.from_model(model, origin["exits"], head=origin["head"],
                                      head_params=origin["head_params"],
                                      input_shape=meta["input_shape"])
    try:
        missing, unexpected = net.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # shapes that differ
        raise DataError(f"{path} does not fit the network it describes: {exc}") from None
    if missing or unexpected:
        raise DataError(f"{path} does not match the network it describes: missing "
                        f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}. "
                        "Was model= the same architecture?")
    net.policy = Policy.from_dict(meta["policy"]) if meta["policy"] else None
    return net.eval()
