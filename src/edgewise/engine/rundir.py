"""The run folder ``runs/<name>/``: config.json, metrics.csv, metrics.json and checkpoints/.

Every file is written atomically, so a crash at any moment leaves the previous
version readable.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from edgewise.engine.checkpoint import atomic_write


def write_json(path: Path, value: object) -> None:
    atomic_write(path, json.dumps(value, indent=2) + "\n")


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    """``metrics.json`` (a list of per-epoch dicts) and ``metrics.csv`` (one row per epoch)."""
    write_json(run_dir / "metrics.json", rows)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(run_dir / "metrics.csv", text.getvalue())
