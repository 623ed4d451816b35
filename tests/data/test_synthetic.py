"""The seeded synthetic set: same seed, same data; and a tiny model can learn it."""

import pytest
import torch

from edgewise.data import load
from edgewise.errors import ParameterError


def test_same_seed_same_data_and_other_seed_other_data():
    a, b, c = (load("synthetic", n=100, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert torch.equal(a.test.tensors[1], b.test.tensors[1])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])


def test_options_set_sizes_shape_and_classes():
    splits = load("synthetic", n=120, shape=(3, 8, 6), num_classes=4)
    assert splits.input_shape == (3, 8, 6) and splits.num_classes == 4
    assert [len(splits.train), len(splits.val), len(splits.test)] == [108, 12, 24]
    assert torch.bincount(splits.train.tensors[1]).tolist() == [27] * 4
    assert splits.class_names == ("class 0", "class 1", "class 2", "class 3")


def test_a_nearest_class_mean_classifier_learns_it():
    splits = load("synthetic", n=500, seed=0)
    images, labels = splits.train.tensors
    means = torch.stack([images[labels == k].mean(0) for k in range(splits.num_classes)])
    test_images, test_labels = splits.test.tensors
    predicted = torch.cdist(test_images.flatten(1), means.flatten(1)).argmin(1)
    assert (predicted == test_labels).float().mean() > 0.9


def test_noise_zero_gives_scaled_copies_of_one_pattern_per_class():
    splits = load("synthetic", n=40, num_classes=2, noise=0.0)
    images, labels = splits.train.tensors
    zero, one = images[labels == 0].flatten(1), images[labels == 1].flatten(1)
    # normalised image = (a * pattern - mean) / std: within a class, differences are parallel
    parallel = torch.nn.functional.cosine_similarity(zero[:1] - zero[1:2], zero[2:3] - zero[3:4])
    across = torch.nn.functional.cosine_similarity(zero[:1] - zero[1:2], one[:1] - one[1:2])
    assert parallel.abs().item() == pytest.approx(1.0, abs=1e-4)
    assert across.abs().item() < 0.9


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("n", 3, "an integer >= num_classes (10)"),
        ("num_classes", 1, "an integer >= 2"),
        ("shape", (16, 16), "three positive integers (C, H, W)"),
        ("noise", -1.0, ">= 0"),
    ],
)
def test_bad_options_use_the_standard_message(option, value, expected):
    with pytest.raises(ParameterError) as info:
        load("synthetic", **{option: value})
    assert (
        str(info.value)
        == f"The '{option}' parameter of synthetic must be {expected}. Got {value!r}."
    )
