"""Saving and loading: folded networks load without their class; pruned ones from the zoo."""

import json

import pytest
import torch
from torch import nn

from edgewise.engine import save_checkpoint
from edgewise.errors import DataError
from edgewise.models import build, spec_of
from edgewise.prune import fold, linearize
from edgewise.prune.fold import move_padding, plan_padding
from edgewise.prune.io import load_folded, load_model, load_pruned, save_folded, save_pruned
from edgewise.prune.linearize import ChannelAffine


def pruned_resnet() -> nn.Module:
    torch.manual_seed(0)
    model = build("resnet", 4, (1, 12, 12), width=0.25).eval()
    linearize(model, "layer1.0.relu1", torch.arange(4) % 2)
    linearize(model, "layer2.0.relu2", torch.ones(8))
    move_padding(model, plan_padding(model, (1, 12, 12), timer=False))
    return model


def test_folded_network_round_trips_without_its_class(tmp_path):
    model = pruned_resnet()
    x = torch.randn(3, 1, 12, 12)
    result = fold(model, x, timer=False)
    path = save_folded(tmp_path / "folded", result.module, {"input_shape": [1, 12, 12]})
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["format"] == "edgewise.folded" and meta["input_shape"] == [1, 12, 12]
    loaded, _ = load_folded(path)
    standard = (nn.Conv2d, nn.Linear, nn.ReLU, nn.AdaptiveAvgPool2d, ChannelAffine)
    assert all(isinstance(m, standard) for m in loaded.children())
    with torch.no_grad():
        assert torch.equal(loaded(x), result.module(x))
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_pruned_model_round_trips_with_marks_and_moved_padding(tmp_path):
    model = pruned_resnet()
    assert model.layer1[0].conv1.padding == (2, 2)  # the planned merge moved it
    path = save_pruned(tmp_path / "pruned", model, {"data": "synthetic"})
    loaded, meta = load_pruned(path)
    assert meta["linearized"] == {"layer1.0.relu1": "relu", "layer2.0.relu2": "relu"}
    assert loaded.layer1[0].conv1.padding == (2, 2)
    x = torch.randn(2, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    again, _ = load_model(path)
    assert isinstance(again.layer1[0].relu1, type(model.layer1[0].relu1))


def test_trained_checkpoint_loads_as_a_model(tmp_path):
    model = build("convnet", 3, (1, 8, 8), width=0.5).eval()
    save_checkpoint(tmp_path / "model", model.state_dict(), {"spec": spec_of(model)})
    loaded, _ = load_model(tmp_path / "model.safetensors")
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_wrong_or_corrupt_files_are_clear_data_errors(tmp_path):
    model = build("convnet", 3, (1, 8, 8), width=0.5).eval()
    save_checkpoint(tmp_path / "model", model.state_dict(), {"spec": spec_of(model)})
    with pytest.raises(DataError, match="is not a edgewise.folded checkpoint"):
        load_folded(tmp_path / "model.safetensors")
    save_checkpoint(tmp_path / "other", {}, {"kind": "nothing"})
    with pytest.raises(DataError, match="holds no model spec"):
        load_model(tmp_path / "other.safetensors")
    save_checkpoint(tmp_path / "bad", {}, {"format": "edgewise.folded",
                                           "nodes": [{"name": "x", "op": "spin", "inputs": []}]})
    with pytest.raises(DataError, match="unknown op 'spin'"):
        load_folded(tmp_path / "bad.safetensors")
