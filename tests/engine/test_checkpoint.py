"""Checkpoints: safetensors + JSON, atomic, no pickle; training state survives a round trip."""

import json
import os
import pickle
import random
import struct

import numpy as np
import pytest
import torch
from torch import nn

from edgewise.engine import checkpoint as ckpt
from edgewise.engine import load_checkpoint, save_checkpoint
from edgewise.errors import DataError, UserError


def no_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)


def test_round_trip_is_safetensors_plus_json(tmp_path, monkeypatch):
    tensors = {"a": torch.arange(6.0).reshape(2, 3).t(), "b": torch.tensor(3, dtype=torch.int64)}
    path = save_checkpoint(tmp_path / "ck", tensors, {"epoch": 2, "note": "x"})
    assert path == tmp_path / "ck.safetensors"
    assert json.loads((tmp_path / "ck.json").read_text()) == {"epoch": 2, "note": "x"}
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]  # the safetensors layout
    assert "edgewise" in json.loads(path.read_bytes()[8 : 8 + header_len])["__metadata__"]
    no_pickle(monkeypatch)
    loaded, meta = load_checkpoint(tmp_path / "ck.safetensors")
    assert meta == {"epoch": 2, "note": "x"}
    assert loaded.keys() == tensors.keys() and all(
        torch.equal(loaded[k], tensors[k]) for k in tensors
    )


def test_tied_weights_are_saved(tmp_path):
    weight = torch.randn(4, 4)
    save_checkpoint(tmp_path / "tied.safetensors", {"x": weight, "y": weight}, {})
    loaded, _ = load_checkpoint(tmp_path / "tied.safetensors")
    assert torch.equal(loaded["x"], loaded["y"])


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimizer_state_round_trip_without_pickle(name, monkeypatch, tmp_path):
    def setup():
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        if name == "sgd":
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.95))
        return model, opt

    def train(model, opt, steps):
        for i in range(steps):
            x = torch.full((4, 3), float(i + 1))
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()

    model, opt = setup()
    train(model, opt, 3)
    opt_tensors, opt_meta = ckpt.optimizer_to_flat(opt)
    weights = {f"model/{k}": v for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path / "c", weights | opt_tensors, {"optimizer": opt_meta})
    train(model, opt, 2)

    no_pickle(monkeypatch)
    tensors, meta = load_checkpoint(tmp_path / "c")
    model2, opt2 = setup()
    model2.load_state_dict(
        {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    )
    ckpt.optimizer_from_flat(opt2, tensors, meta["optimizer"])
    if name == "adam":
        assert opt2.param_groups[0]["betas"] == (0.8, 0.95)
    train(model2, opt2, 2)
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_optimizer_with_other_groups_is_refused():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    _, meta = ckpt.optimizer_to_flat(torch.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1))
    with pytest.raises(UserError, match="2 parameter groups; this one has 1"):
        ckpt.optimizer_from_flat(torch.optim.SGD([a, b], lr=0.1), {}, meta)


def test_random_states_round_trip():
    tensors, meta = ckpt.rng_to_flat()
    first = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.rng_from_flat(tensors, json.loads(json.dumps(meta)))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert (
        torch.equal(first[0], again[0])
        and np.array_equal(first[1], again[1])
        and first[2] == again[2]
    )


def test_a_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "c", {"w": torch.ones(2)}, {"epoch": 1})
    before = (tmp_path / "c.safetensors").read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "c", {"w": torch.zeros(2)}, {"epoch": 2})
    assert (tmp_path / "c.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "c.json",
        "c.safetensors",
    ]  # no temp files left


def test_missing_and_corrupt_files_are_one_line_data_errors(tmp_path):
    with pytest.raises(DataError, match="No checkpoint at"):
        load_checkpoint(tmp_path / "none.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(DataError, match="not a readable safetensors checkpoint") as info:
        load_checkpoint(tmp_path / "bad.safetensors")
    assert "\n" not in str(info.value)
