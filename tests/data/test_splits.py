"""Stratified, seeded splits; train-split normalisation; class selection and relabelling."""

import numpy as np
import pytest
import torch

from edgewise.data.splits import Raw, make_splits, select_classes, stratified_split
from edgewise.errors import DataError, ParameterError


def two_class_raw(n_per_class=4):
    """1x1 grey images: class 0 is all 0, class 1 all 4; test holds the values 2 and 6."""
    labels = np.repeat([0, 1], n_per_class)
    images = (4 * labels).astype(np.uint8).reshape(-1, 1, 1, 1)
    test_images = np.array([2, 6], dtype=np.uint8).reshape(-1, 1, 1, 1)
    return Raw(images, labels, test_images, np.array([0, 1]), class_names=("zero", "four"))


def five_class_splits(seed=0):
    labels = np.arange(50) % 5
    images = np.arange(50, dtype=np.float32).reshape(-1, 1, 1, 1)
    raw = Raw(images, labels, images[:10], labels[:10], tuple(f"c{k}" for k in range(5)))
    return make_splits("toy", raw, val_fraction=0.2, seed=seed, limit=None)


def test_stratified_split_hand_counts():
    labels = np.array([0] * 10 + [1] * 5)
    kept, taken = stratified_split(labels, 0.2, seed=0)
    assert np.bincount(labels[taken]).tolist() == [2, 1]
    assert sorted(np.concatenate([kept, taken]).tolist()) == list(range(15))
    assert kept.tolist() == sorted(kept.tolist()) and taken.tolist() == sorted(taken.tolist())


def test_stratified_split_gives_leftovers_to_largest_remainders():
    labels = np.array([0] * 3 + [1] * 3 + [2] * 4)
    _, taken = stratified_split(labels, 0.5, seed=0)
    # quotas 1.5, 1.5, 2.0 -> floors 1, 1, 2; the one leftover goes to the first .5
    assert np.bincount(labels[taken]).tolist() == [2, 1, 2]


def test_stratified_split_is_deterministic_from_the_seed():
    labels = np.arange(200) % 4
    same = [stratified_split(labels, 0.25, seed=3)[1] for _ in range(2)]
    other = stratified_split(labels, 0.25, seed=4)[1]
    assert np.array_equal(*same)
    assert not np.array_equal(same[0], other)


def test_normalised_with_the_train_split_statistics():
    splits = make_splits("toy", two_class_raw(), val_fraction=0.25, seed=0, limit=None)
    # train: three 0s and three 4s -> mean 2, population std 2
    assert sorted(splits.train.tensors[0].flatten().tolist()) == [-1, -1, -1, 1, 1, 1]
    assert sorted(splits.val.tensors[0].flatten().tolist()) == [-1, 1]
    assert splits.test.tensors[0].flatten().tolist() == [0.0, 2.0]
    assert splits.train.tensors[0].dtype == torch.float32
    assert splits.train.tensors[1].dtype == torch.int64
    assert splits.input_shape == (1, 1, 1) and splits.num_classes == 2


def test_constant_channel_is_not_divided_by_zero():
    raw = two_class_raw()
    raw = Raw(
        np.zeros_like(raw.train_images),
        raw.train_labels,
        raw.test_images,
        raw.test_labels,
        raw.class_names,
    )
    splits = make_splits("toy", raw, val_fraction=0.25, seed=0, limit=None)
    assert splits.train.tensors[0].abs().sum() == 0
    assert splits.test.tensors[0].flatten().tolist() == [2.0, 6.0]


def test_limit_caps_every_split_stratified():
    labels = np.arange(100) % 2
    images = np.zeros((100, 1, 2, 2), dtype=np.uint8)
    raw = Raw(images, labels, images[:40], labels[:40], ("a", "b"))
    splits = make_splits("toy", raw, val_fraction=0.3, seed=0, limit=20)
    assert [len(splits.train), len(splits.val), len(splits.test)] == [20, 20, 20]
    assert torch.bincount(splits.train.tensors[1]).tolist() == [10, 10]


def test_empty_validation_split_is_refused():
    with pytest.raises(ParameterError, match="empty train or validation"):
        make_splits("toy", two_class_raw(2), val_fraction=0.1, seed=0, limit=None)


def test_label_outside_the_classes_is_a_data_error():
    raw = two_class_raw()
    bad = Raw(
        raw.train_images, raw.train_labels + 1, raw.test_images, raw.test_labels, raw.class_names
    )
    with pytest.raises(DataError, match=r"label 2 outside \[0, 2\)"):
        make_splits("toy", bad, val_fraction=0.25, seed=0, limit=None)


def test_select_classes_keeps_and_relabels_in_the_given_order():
    splits = five_class_splits()
    picked = select_classes(splits, [3, 1])
    assert picked.num_classes == 2 and picked.class_names == ("c3", "c1")
    for before, after in [(splits.train, picked.train), (splits.test, picked.test)]:
        images, labels = before.tensors
        keep = (labels == 3) | (labels == 1)
        assert torch.equal(after.tensors[0], images[keep])
        assert torch.equal(after.tensors[1], (labels[keep] == 1).long())  # 3 -> 0, 1 -> 1
    assert len(picked.train) == 16 and len(picked.val) == 4 and len(picked.test) == 4


@pytest.mark.parametrize("classes", [[], [1, 1], [5], [-1]])
def test_select_classes_rejects_bad_indices(classes):
    with pytest.raises(ParameterError) as info:
        select_classes(five_class_splits(), classes)
    assert str(info.value) == (
        "The 'classes' parameter of select_classes must be distinct class indices in [0, 5). "
        f"Got {classes!r}."
    )
