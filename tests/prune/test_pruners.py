"""The depth pruners: the shared face over the registry, budgets, masks, rankings, messages."""

import json

import pytest
import torch
from torch import nn

from edgewise import data, engine
from edgewise.errors import ParameterError, UnknownNameError
from edgewise.models import build
from edgewise.prune import PRUNERS, Linearized, NoPrunableLayerError, pruner
from edgewise.prune.budget import egp_allocation, prunable_layers
from edgewise.prune.linearize import rectifier_names
from edgewise.prune.masks import Masks
from edgewise.prune.tlc import collapse

FINETUNE = engine.TrainConfig(epochs=1, lr=0.01, batch_size=64, schedule="none", nesterov=False,
                              momentum=0.9, weight_decay=5e-4)


@pytest.fixture(scope="module")
def splits():
    return data.load("synthetic", n=300, shape=(1, 8, 8), num_classes=3)


@pytest.fixture(scope="module")
def trained(splits):
    engine.seed_everything(0)
    model = build("resnet", 3, (1, 8, 8), width=0.25)  # depth 8: 7 ReLUs
    engine.fit(model, splits, engine.TrainConfig(epochs=1, batch_size=64), progress=False)
    return model.eval()


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_every_pruner_runs_a_round_and_leaves_the_original_alone(name, splits, trained):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    method = pruner(name, rounds=1, samples=200, merge=False)
    pruned = method.prune(trained, splits, FINETUNE)
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in before.items())
    assert len(method.history_) == 1 and "val_accuracy" in method.history_[0]
    assert set(method.entropy_before_) == set(rectifier_names(trained))
    state = json.loads(json.dumps(method.state_dict()))  # learned state is plain JSON
    again = pruner(name)
    again.load_state_dict(state)
    assert again.state_dict() == state and again.params == method.params
    assert isinstance(pruned(torch.zeros(2, 1, 8, 8)), torch.Tensor)


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_bad_parameter_gets_the_standard_message(name):
    with pytest.raises(ParameterError, match=rf"^The 'rounds' parameter of {name} must be >= 1\. Got 0\.$"):
        pruner(name, rounds=0)


def test_unknown_method_suggests_a_close_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'tlc'"):
        pruner("tlcc")


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_model_without_prunable_layer_gets_a_clear_message(name, splits):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(NoPrunableLayerError, match=f"{name} found no prunable layer in Sequential"):
        pruner(name).prune(model, splits, FINETUNE)


def test_tlc_needs_batchnorm_before_a_rectifier(splits):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(NoPrunableLayerError, match="follow a BatchNorm"):
        pruner("tlc").prune(model, splits, FINETUNE)


def test_egp_allocation_sums_to_the_budget_caps_layers_and_favours_low_scores():
    sizes = torch.tensor([100, 1000, 1000, 50])
    scores = torch.tensor([0.1, 1.0, 2.0, 0.05])
    shares = egp_allocation(scores, sizes, 700)
    assert int(shares.sum()) == 700
    assert bool((shares <= sizes).all())
    assert shares[3] == 50 and shares[0] == 100  # the lowest scores are emptied first
    assert shares[1] > shares[2]


def test_each_egp_round_prunes_exactly_its_share_of_the_remaining_weights(splits, trained):
    method = pruner("egp", rounds=2, ratio=0.3, samples=200, merge=False)
    layers = prunable_layers(trained, Masks(), rectifier_names(trained))
    method.prune(trained, splits, FINETUNE)
    first, second = method.history_
    assert first["weights_left"] == sum(layer.size for layer in layers)
    pruned = 0
    for record in (first, second):
        assert record["budget"] == round(0.3 * record["weights_left"])
        assert sum(record["shares"].values()) == record["budget"]
        pruned += record["budget"]
        assert record["pruned_weights"] == pruned


def test_nepenthe_budget_is_exact_and_goes_to_low_entropy_layers(splits, trained):
    method = pruner("nepenthe", rounds=1, ratio=0.4, samples=200, merge=False)
    method.prune(trained, splits, FINETUNE)
    record = method.history_[0]
    assert record["budget"] == round(0.4 * record["weights_left"])
    assert sum(record["shares"].values()) == record["budget"] == record["pruned_weights"]
    entropy = record["entropy"]
    sizes = {x.rectifier: x.size for x in prunable_layers(trained, Masks(), list(entropy))}
    fraction = {n: record["shares"][n] / sizes[n] for n in record["shares"]}
    low, high = min(fraction, key=entropy.get), max(fraction, key=entropy.get)
    assert fraction[low] > fraction[high]


def test_masked_weights_stay_zero_through_fine_tuning(splits, trained):
    model = build("resnet", 3, (1, 8, 8), width=0.25)
    model.load_state_dict(trained.state_dict())
    masks = Masks()
    remove = torch.rand(model.stem.conv.weight.shape) < 0.5
    masks.prune(model, "stem.conv.weight", remove)
    with masks.enforced(model):
        engine.fit(model, splits, FINETUNE, progress=False)
    assert bool((model.stem.conv.weight[remove] == 0).all())
    assert bool((model.stem.conv.weight[~remove] != 0).any())


def test_tlc_collapse_zeroes_off_channels_and_ranks_by_loss_increase(splits, trained):
    model = build("resnet", 3, (1, 8, 8), width=0.25)
    model.load_state_dict(trained.state_dict())
    with torch.no_grad():  # layer1.0.bn1: every channel far ON -> removing relu1 changes nothing
        model.layer1[0].bn1.bias.fill_(50.0)
        model.layer1[0].bn1.bias[0] = -50.0  # ... except channel 0, always OFF
    masks = Masks()
    collapse(model, "layer1.0.relu1", "layer1.0.bn1", masks)
    assert isinstance(model.layer1[0].relu1, Linearized)
    bn = model.layer1[0].bn1
    assert bn.weight[0] == 0 and bn.bias[0] == 0 and bool((bn.bias[1:] == 50).all())
    fresh = build("resnet", 3, (1, 8, 8), width=0.25)
    fresh.load_state_dict(trained.state_dict())
    with torch.no_grad():
        fresh.layer1[0].bn1.bias.fill_(50.0)
    method = pruner("tlc", rounds=1, merge=False)
    record = method.step(fresh, splits, 0)
    gaps = record["loss_increase"]
    assert abs(gaps["layer1.0.relu1"]) < 1e-6  # all its channels ON: linearizing changes nothing
    assert record["linearized"][0] == min(gaps, key=gaps.get)
    assert gaps[record["linearized"][0]] <= 1e-6


def test_tolerance_undoes_harmful_rounds_and_halves_the_next_budget(splits, trained):
    method = pruner("egp", rounds=3, ratio=0.9, tolerance=0.0, samples=200, merge=False)
    pruned = method.prune(trained, splits, FINETUNE)
    rounds = method.history_
    assert rounds[0]["undone"]  # 90% of the weights at once cannot keep the accuracy
    for before, after in zip(rounds, rounds[1:], strict=False):
        assert after["ratio"] == before["ratio"] / (2 if before.get("undone") else 1)
    reference = engine.evaluate(trained, splits.val)["accuracy"]
    assert engine.evaluate(pruned, splits.val)["accuracy"] >= reference
