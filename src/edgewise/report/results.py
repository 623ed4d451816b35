"""Result files: one JSON envelope (docs/results-schema.md) around each producer's payload.

Every file written by `write_result` is one JSON object::

    {
      "schema_version": 1,
      "kind": "baseline",                      # what produced it; names the payload's layout
      "created": "2025-01-31T12:00:00+00:00",  # UTC, ISO 8601
      "environment": {
        "python": "3.11.9", "torch": "2.13.0+cpu",
        "platform": "Linux-6.1-x86_64-with-glibc2.36",
        "threads": 2,                          # torch.get_num_threads() when written
        "device": "cpu"                        # or "cuda (NVIDIA H100 ...)" when CUDA is present
      },
      "payload": {...}                         # the producer's own results
    }

NumPy and torch scalars and arrays become numbers and lists, paths become strings,
and NaN or infinite floats become ``null``, so the file is strict JSON.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgewise.engine.checkpoint import atomic_write
from edgewise.errors import DataError

SCHEMA_VERSION = 1
ENVELOPE_KEYS = ("schema_version", "kind", "created", "environment", "payload")


def environment() -> dict[str, Any]:
    """Where a result was measured: Python, torch, platform, thread count and device."""
    device = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "device": device,
    }


def write_result(path: str | Path, payload: Mapping[str, Any], kind: str) -> Path:
    """Write `payload` inside the versioned envelope above to `path` (atomically); return the path."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment(),
        "payload": jsonable(dict(payload)),
    }
    path = Path(path)
    atomic_write(path, json.dumps(document, indent=2, allow_nan=False) + "\n")
    return path


def read_result(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read a file written by `write_result`, checking its envelope (and `kind`, when given)."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not a readable result file ({exc}).") from None
    missing = [k for k in ENVELOPE_KEYS if not isinstance(document, dict) or k not in document]
    if missing:
        raise DataError(f"{path} is not an edgewise result: it lacks {', '.join(missing)}.")
    if document["schema_version"] != SCHEMA_VERSION:
        raise DataError(
            f"{path} has schema_version {document['schema_version']}; expected {SCHEMA_VERSION}."
        )
    if kind is not None and document["kind"] != kind:
        raise DataError(f"{path} holds a {document['kind']!r} result; expected {kind!r}.")
    return document


def jsonable(value: Any) -> Any:
    """`value` with arrays, tensors, scalars and paths made plain JSON; NaN and inf become None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value
