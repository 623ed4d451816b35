"""Data-parallel training as torchrun starts it (env RANK, WORLD_SIZE, MASTER_ADDR/PORT): two CPU
processes (gloo) end with identical weights, equal to one process with batches twice as large."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.engine.train_worker import train

WORKER = Path(__file__).with_name("train_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_with_twice_the_batch(tmp_path):
    base = os.environ | {
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    args = ["--plain", "--epochs", "3", "--batch-size", "16", "--run-dir", str(tmp_path / "run")]
    ranks = [
        subprocess.Popen(
            [sys.executable, str(WORKER), *args, "--out", str(tmp_path / "two")],
            env=base | {"RANK": str(r), "LOCAL_RANK": str(r)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    expected_rows, expected_weights = train(epochs=3, batch_size=32, plain=True)  # meanwhile
    for rank in ranks:
        _, err = rank.communicate(timeout=240)
        assert rank.returncode == 0, err[-3000:]

    rank0, rank1 = (load_file(tmp_path / "two" / f"rank{r}.safetensors") for r in (0, 1))
    for name, want in expected_weights.items():
        assert torch.equal(rank0[name], rank1[name])
        torch.testing.assert_close(rank0[name], want, rtol=1e-5, atol=1e-6)

    rows = json.loads((tmp_path / "two" / "rank0.json").read_text())
    assert json.loads((tmp_path / "two" / "rank1.json").read_text()) == rows  # averaged over ranks
    for got, want in zip(rows, expected_rows, strict=True):
        assert got == pytest.approx(want, rel=1e-5)
    assert (
        json.loads((tmp_path / "run" / "config.json").read_text())["world_size"] == 2
    )  # rank 0 wrote it
    assert len(json.loads((tmp_path / "run" / "metrics.json").read_text())) == 3
