"""Checkpoints as safetensors plus JSON, written atomically; nothing is ever pickled.

``save_checkpoint("ckpt.safetensors", tensors, meta)`` writes the tensors, with the
meta embedded in the safetensors header (so the pair can never be torn apart by a
crash), and the same meta as a readable ``ckpt.json`` beside it. Each file goes to a
temporary name first and is moved into place with `os.replace`.

The training state (model, optimizer, RNG streams) is flattened into tensors named
``model/<param>``, ``optimizer/<index>/<key>``, ``rng/<stream>`` and a JSON dict.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from edgewise.errors import DataError, UserError

META_KEY = "edgewise"


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path` through a synced temporary file and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o644)
            file.write(data.encode() if isinstance(data, str) else data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def tensors_path(path: str | Path) -> Path:
    """`path` with the ``.safetensors`` suffix (added when missing)."""
    path = Path(path)
    return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write `tensors` to ``<path>.safetensors`` and `meta` to ``<path>.json``, atomically.

    Returns the safetensors path. Tensors are copied to contiguous CPU memory, so
    views and tied weights are fine.
    """
    target = tensors_path(path)
    text = json.dumps(meta, indent=1)
    plain = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}
    atomic_write(target, save(plain, metadata={META_KEY: text}))
    atomic_write(target.with_suffix(".json"), text + "\n")
    return target


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by `save_checkpoint`: ``(tensors, meta)`` on the CPU.

    A missing or corrupt file raises a one-line `DataError`. The meta comes from the
    safetensors header; the ``.json`` beside it is read only for files without one.
    """
    target = tensors_path(path)
    if not target.is_file():
        raise DataError(f"No checkpoint at {target}.")
    try:
        with safe_open(target, framework="pt") as file:
            header = (file.metadata() or {}).get(META_KEY)
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except (SafetensorError, OSError) as exc:
        raise DataError(f"{target} is not a readable safetensors checkpoint ({exc}).") from None
    sidecar = target.with_suffix(".json")
    if header is None and not sidecar.is_file():
        raise DataError(f"{target} has no metadata and no {sidecar.name} beside it.")
    try:
        meta = json.loads(header if header is not None else sidecar.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"The metadata of {target} is not valid JSON ({exc}).") from None
    return tensors, meta


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors ``optimizer/<index>/<key>`` and a JSON dict."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_flat(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    """Load into `optimizer` what `optimizer_to_flat` split (JSON lists become tuples again
    where the live optimizer holds tuples, e.g. Adam's betas)."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer/"):
            _, index, key = name.split("/", 2)
            state.setdefault(int(index), {})[key] = value
    for index, entries in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    if len(meta["param_groups"]) != len(optimizer.param_groups):
        raise UserError(
            f"The checkpoint's optimizer has {len(meta['param_groups'])} parameter groups; "
            f"this one has {len(optimizer.param_groups)}."
        )
    groups = [
        {k: tuple(v) if isinstance(live.get(k), tuple) else v for k, v in saved.items()}
        for saved, live in zip(meta["param_groups"], optimizer.param_groups, strict=True)
    ]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_to_flat() -> tuple[dict[str, torch.Tensor], dict]:
    """The torch (CPU and CUDA), NumPy and Python random states as tensors and JSON."""
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = cuda_state
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    tensors["rng/numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, py_gauss = random.getstate()
    meta = {
        "numpy": [kind, int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), py_gauss],
    }
    return tensors, meta


def rng_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Restore the random states saved by `rng_to_flat`."""
    torch.set_rng_state(tensors["rng/torch"])
    for i in range(torch.cuda.device_count()):
        if f"rng/cuda/{i}" in tensors:
            torch.cuda.set_rng_state(tensors[f"rng/cuda/{i}"], i)
    kind, pos, has_gauss, gauss = meta["numpy"]
    keys = tensors["rng/numpy"].numpy().astype(np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, gauss))
    version, internal, py_gauss = meta["python"]
    random.setstate((version, tuple(internal), py_gauss))
