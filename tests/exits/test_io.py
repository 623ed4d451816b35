"""Saving a whole early-exit network and loading it back, with or without the user's class."""

from __future__ import annotations

import json

import pytest
import torch

from edgewise import models
from edgewise.errors import DataError, UserError
from edgewise.exits.io import load, save
from edgewise.exits.network import EarlyExitNetwork
from edgewise.exits.policies import Policy


def test_zoo_network_loads_back_without_user_code(tmp_path):
    model = models.build("resnet", 10, (1, 16, 16), width=0.25)
    net = EarlyExitNetwork.from_model(model, ["layer1", "layer2"], head="conv-pool-linear",
                                      head_params={"channels": 8}).eval()
    net.policy = Policy("entropy", (-0.2, float("inf")), {"budget": 0.5})
    path = save(net, tmp_path / "net")
    assert path.suffix == ".safetensors" and (tmp_path / "net.json").is_file()
    assert json.loads((tmp_path / "net.json").read_text())["policy"]["thresholds"] == [-0.2, "inf"]
    back = load(path)
    x = torch.randn(5, 1, 16, 16)
    for a, b in zip(net(x), back(x), strict=True):
        torch.testing.assert_close(a, b)
    assert back.policy == net.policy and back.policy.info == {"budget": 0.5}
    assert back.exit_names == net.exit_names


def test_user_model_needs_its_class_to_load(tmp_path, residual_model):
    net = EarlyExitNetwork.from_model(residual_model, ["block1"], input_shape=(1, 16, 16)).eval()
    path = save(net, tmp_path / "user")
    with pytest.raises(UserError, match="pass model="):
        load(path)
    fresh = type(residual_model)()
    back = load(path, model=fresh)
    x = torch.randn(3, 1, 16, 16)
    torch.testing.assert_close(back(x)[0], net(x)[0])
    torch.testing.assert_close(back(x)[1], net(x)[1])


def test_corrupt_or_foreign_files_are_clear_errors(tmp_path, residual_model):
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a readable safetensors"):
        load(tmp_path / "bad.safetensors")
    from edgewise.engine import save_checkpoint

    save_checkpoint(tmp_path / "other", {"w": torch.zeros(1)}, {"format": "something else"})
    with pytest.raises(DataError, match="not an early-exit network"):
        load(tmp_path / "other")
    net = EarlyExitNetwork.from_model(residual_model, ["block1"], input_shape=(1, 16, 16))
    path = save(net, tmp_path / "user")
    wrong = type(residual_model)(channels=4)
    with pytest.raises(DataError, match="does not fit"):
        load(path, model=wrong)
