"""Result files: a versioned envelope around a payload that is made strict JSON."""

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from edgewise.errors import DataError
from edgewise.report import SCHEMA_VERSION, read_result, write_result


def test_round_trip_and_schema_keys(tmp_path):
    payload = {
        "accuracy": np.float32(0.5),
        "curve": torch.tensor([1.0, 2.0]),
        "counts": np.arange(3),
        "nested": {"missing": float("nan"), "path": Path("runs/x"), "pair": (1, 2)},
    }
    path = write_result(tmp_path / "sub" / "r.json", payload, kind="baseline")
    document = json.loads(path.read_text())  # plain json reads it: no NaN tokens
    assert list(document) == ["schema_version", "kind", "created", "environment", "payload"]
    assert document["schema_version"] == SCHEMA_VERSION and document["kind"] == "baseline"
    assert datetime.fromisoformat(document["created"]).utcoffset().total_seconds() == 0
    assert set(document["environment"]) == {"python", "torch", "platform", "threads", "device"}
    assert document["environment"]["torch"] == torch.__version__
    assert document["payload"] == {
        "accuracy": 0.5,
        "curve": [1.0, 2.0],
        "counts": [0, 1, 2],
        "nested": {"missing": None, "path": "runs/x", "pair": [1, 2]},
    }
    assert read_result(path, kind="baseline") == document
    assert "NaN" not in path.read_text()


def test_read_result_checks_the_envelope(tmp_path):
    path = write_result(tmp_path / "r.json", {"a": 1}, kind="exits")
    with pytest.raises(DataError, match="holds a 'exits' result; expected 'prune'"):
        read_result(path, kind="prune")
    (tmp_path / "other.json").write_text('{"kind": "x"}')
    with pytest.raises(DataError, match="lacks schema_version, created, environment, payload"):
        read_result(tmp_path / "other.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not a readable result file"):
        read_result(tmp_path / "bad.json")
