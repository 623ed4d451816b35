"""A run killed with SIGKILL mid-epoch and resumed ends exactly where an uninterrupted run ends."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.engine.train_worker import train

WORKER = Path(__file__).with_name("train_worker.py")


def run_worker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(WORKER), *args], capture_output=True, text=True, timeout=240
    )


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    killed = run_worker(
        "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--kill-at-epoch", "2"
    )
    assert killed.returncode == -signal.SIGKILL
    last = json.loads((tmp_path / "run" / "checkpoints" / "last.json").read_text())
    assert last["epoch"] == 2  # epochs 1 and 2 were saved; the third died mid-way
    assert not (tmp_path / "out").exists()

    resumed = run_worker(
        "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--resume"
    )
    assert resumed.returncode == 0, resumed.stderr
    rows = json.loads((tmp_path / "out" / "rank0.json").read_text())
    weights = load_file(tmp_path / "out" / "rank0.safetensors")

    expected_rows, expected_weights = train(tmp_path / "whole")  # the same run, never interrupted
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows == expected_rows  # bitwise
    assert all(torch.equal(weights[k], expected_weights[k]) for k in expected_weights)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics] == [1, 2, 3, 4]
