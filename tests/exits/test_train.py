"""train(): one fit per stage, frozen parts kept as they were, per-stage per-exit accuracy."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from edgewise.engine import TrainConfig, load_checkpoint
from edgewise.errors import ParameterError
from edgewise.exits.network import EarlyExitNetwork
from edgewise.exits.strategies import STRATEGIES, Stage, get
from edgewise.exits.train import TrainResult, train


def _block(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


def _exit_net() -> EarlyExitNetwork:
    """Three conv+BN blocks on 1x8x8 images and a classifier, with exits after blocks 0, 1."""
    model = nn.Sequential(_block(1, 4), _block(4, 4), _block(4, 4),
                          nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)))
    return EarlyExitNetwork.from_model(model, exits=["0", "1"], input_shape=(1, 8, 8))


def _splits(n=144, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.5
    x += (y.float() - 1.0)[:, None, None, None] * 1.5  # learnable: the class sets the brightness
    def part(a, b):
        return TensorDataset(x[a:b], y[a:b])
    return SimpleNamespace(train=part(0, 96), val=part(96, 120), test=part(120, n))


CONFIG = TrainConfig(epochs=1, batch_size=32, lr=0.05, device="cpu", schedule="none")


@pytest.fixture
def net():
    torch.manual_seed(0)
    return _exit_net()


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_trains_and_reports_per_stage_accuracy(name, net):
    result = train(net, _splits(), name, CONFIG, eval_splits=("test",))
    assert isinstance(result, TrainResult) and result.net is net
    n_stages = len(get(name).stages(net))
    assert len(result.histories) == n_stages == len(result.accuracy["val"])
    assert len(result.accuracy["test"]) == n_stages
    for row in result.accuracy["val"]:
        assert len(row) == 3 and all(0.0 <= a <= 1.0 for a in row)
    assert len(result.forgetting()) == 3
    assert all(p.requires_grad for p in net.parameters())  # flags restored
    summary = result.to_dict()
    assert summary["name"] == name and len(summary["stages"]) == n_stages


def test_training_learns_the_task(net):
    config = TrainConfig(epochs=5, batch_size=32, lr=0.1, device="cpu", schedule="none")
    result = train(net, _splits(), "joint", config)
    assert result.final()[-1] > 0.6  # chance is 1/3


def test_heads_only_leaves_the_backbone_and_its_statistics_alone(net):
    before = copy.deepcopy(net.state_dict())
    train(net, _splits(), "heads-only", CONFIG)
    after = net.state_dict()
    for key in before:
        same = torch.equal(before[key], after[key])
        if key.startswith("heads.0.") or key.startswith("heads.1."):
            assert not same or "num_batches" in key, key
        else:  # stages (weights and BatchNorm running stats) and the final head
            assert same, key


def test_sequential_freezes_earlier_heads_and_later_stages_wait(net):
    splits = _splits()
    strategy = get("sequential")
    snapshots = []

    class Recorder:
        def before_stage(self, net_, stage, data):
            snapshots.append(copy.deepcopy(net_.state_dict()))

    # a sequential strategy that records the weights before each stage
    class Recording(type(strategy)):
        def before_stage(self, net_, stage, data):
            Recorder().before_stage(net_, stage, data)

    train(net, splits, Recording(), CONFIG)
    final = net.state_dict()
    # head 0 never changes after stage 0, head 1 never after stage 1
    for key in final:
        if key.startswith("heads.0."):
            assert torch.equal(snapshots[1][key], final[key]), key
        if key.startswith("heads.1."):
            assert torch.equal(snapshots[2][key], final[key]), key
    # stage 2 of the backbone is untouched before its own stage
    for key in final:
        if key.startswith("stages.2.") and "num_batches" not in key:
            assert torch.equal(snapshots[0][key], snapshots[2][key]), key


def test_forgetting_is_own_stage_minus_final():
    stages = [Stage(1, (0,), (0,), (0,), "exit-0"), Stage(2, (0, 1), (1,), (1,), "exit-1"),
              Stage(3, (0, 1, 2), (2,), (2,), "exit-2")]
    acc = {"val": [[0.8, 0.1, 0.1], [0.7, 0.85, 0.1], [0.6, 0.8, 0.9]]}
    result = TrainResult(nn.Linear(1, 1), get("sequential"), stages, acc)
    assert result.reference() == [0.8, 0.85, 0.9]
    assert result.final() == [0.6, 0.8, 0.9]
    assert result.forgetting() == pytest.approx([0.2, 0.05, 0.0])
    assert result.own_stage() == [0, 1, 2]


def test_stage_epochs_and_run_dir(net, tmp_path):
    result = train(net, _splits(), "sequential-ewc", CONFIG, stage_epochs=[1, 2, 1],
                   run_dir=tmp_path, fisher_samples=64, ewc_lambda=1.0)
    assert [len(h.rows) for h in result.histories] == [1, 2, 1]
    assert (tmp_path / "stage-1-exit-1" / "metrics.json").is_file()
    tensors, meta = load_checkpoint(tmp_path / "strategy.safetensors")
    assert meta["name"] == "sequential-ewc" and "forgetting" in meta
    fresh = get("sequential-ewc")
    fresh.load_state_dict(tensors)
    assert fresh.fisher_count_ == 2 and set(fresh.fisher_) == set(result.strategy.fisher_)


def test_bad_arguments_are_rejected(net):
    with pytest.raises(ParameterError, match="'stage_epochs' parameter of train must be 3"):
        train(net, _splits(), "sequential", CONFIG, stage_epochs=[1, 1])
    with pytest.raises(ParameterError, match="'eval_splits' parameter of train"):
        train(net, _splits(), "joint", CONFIG, eval_splits=("dev",))
    with pytest.raises(ParameterError, match="when building it"):
        train(net, _splits(), get("joint"), CONFIG, schedule="ramp")
    with pytest.raises(ParameterError, match="ewc_lambda"):
        train(net, _splits(), "sequential-ewc", CONFIG, ewc_lambda=-1.0)
