"""`load` and the registry: names, option and parameter checks, the Splits contract."""

import pytest
import torch

from edgewise.data import DATASETS, list_datasets, load
from edgewise.data.datasets import reader_options
from edgewise.errors import ParameterError, UnknownNameError


def test_list_datasets_is_the_sorted_registry():
    assert list_datasets() == ["cifar10", "digits", "fashion-mnist", "mnist", "synthetic"]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_reader_describes_and_locates_itself(name, tmp_path):
    reader = DATASETS[name]
    assert reader.description and "\n" not in reader.description
    found = reader.locate(tmp_path)  # an empty folder holds no files
    assert found is None or name in ("digits", "synthetic")


def test_splits_follow_the_contract():
    splits = load("synthetic", n=200, shape=(2, 6, 6), num_classes=5)
    images, labels = splits.train.tensors
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    assert images.shape == (180, 2, 6, 6) and labels.shape == (180,)
    std, mean = torch.std_mean(images, dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros(2), atol=1e-5)
    assert torch.allclose(std, torch.ones(2), atol=1e-5)
    assert splits.name == "synthetic" and len(splits.class_names) == splits.num_classes == 5


def test_validation_split_is_deterministic_from_the_seed():
    first, again, other = (load("synthetic", n=200, seed=s) for s in (5, 5, 6))
    assert torch.equal(first.val.tensors[0], again.val.tensors[0])
    assert not torch.equal(first.val.tensors[0], other.val.tensors[0])
    assert torch.bincount(first.val.tensors[1]).tolist() == [2] * 10  # stratified


def test_limit_caps_each_split():
    splits = load("digits", limit=30)
    assert [len(splits.train), len(splits.val), len(splits.test)] == [30, 30, 30]
    assert torch.bincount(splits.test.tensors[1]).tolist() == [3] * 10


def test_unknown_name_suggests_close_matches():
    with pytest.raises(
        UnknownNameError, match="Unknown dataset 'fashion'. Did you mean 'fashion-mnist'"
    ):
        load("fashion")


def test_unknown_option_suggests_the_valid_ones():
    assert reader_options("digits") == ["size", "test_fraction"]
    assert reader_options("mnist") == []
    with pytest.raises(
        UnknownNameError, match="Did you mean 'size'.* Valid names: limit, size, test_fraction"
    ):
        load("digits", sise=28)
    with pytest.raises(UnknownNameError, match="Unknown mnist option 'size'"):
        load("mnist", size=28)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 1.5}, "The 'val_fraction' parameter of load must be in (0, 1). Got 1.5."),
        ({"val_fraction": 0}, "The 'val_fraction' parameter of load must be in (0, 1). Got 0."),
        ({"seed": -1}, "The 'seed' parameter of load must be an integer >= 0. Got -1."),
        ({"limit": 0}, "The 'limit' parameter of load must be None or an integer >= 1. Got 0."),
    ],
)
def test_bad_parameters_use_the_standard_message(kwargs, message):
    with pytest.raises(ParameterError) as info:
        load("synthetic", **kwargs)
    assert str(info.value) == message
