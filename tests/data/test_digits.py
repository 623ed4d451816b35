"""scikit-learn's bundled digits: a seeded stratified test split, and resizing to 28x28."""

import numpy as np
import pytest

from edgewise.data import load
from edgewise.data.digits import Digits
from edgewise.errors import ParameterError


def test_default_is_8x8_with_a_stratified_test_split():
    raw = Digits().read(None, seed=0)
    assert raw.train_images.shape[1:] == (1, 8, 8)
    assert len(raw.train_labels) + len(raw.test_labels) == 1797
    assert len(raw.test_labels) == 359  # round(0.2 * 1797)
    share = np.bincount(raw.test_labels) / np.bincount(
        np.concatenate([raw.train_labels, raw.test_labels])
    )
    assert np.all(np.abs(share - 0.2) < 0.01)
    assert raw.class_names == tuple("0123456789")


def test_test_split_follows_the_seed():
    a, b, c = (Digits().read(None, seed=s) for s in (0, 0, 1))
    assert np.array_equal(a.test_images, b.test_images)
    assert not np.array_equal(a.test_images, c.test_images)


def test_size_28_resizes_every_split():
    splits = load("digits", size=28, limit=50)
    assert splits.input_shape == (1, 28, 28)
    for part in (splits.train, splits.val, splits.test):
        assert part.tensors[0].shape == (50, 1, 28, 28)


def test_doubling_the_size_interpolates_bilinearly():
    big = Digits().read(None, seed=0, size=16).train_images[0, 0]
    small = Digits().read(None, seed=0).train_images[0, 0]
    # align_corners=False: output i samples input (i + 0.5) / 2 - 0.5, clamped at 0;
    # output (3, 5) samples input (1.25, 2.25)
    assert big[0, 0] == pytest.approx(small[0, 0])
    assert big[1, 0] == pytest.approx(0.75 * small[0, 0] + 0.25 * small[1, 0])
    assert big[3, 5] == pytest.approx(
        0.75 * (0.75 * small[1, 2] + 0.25 * small[1, 3])
        + 0.25 * (0.75 * small[2, 2] + 0.25 * small[2, 3])
    )


def test_bad_size_uses_the_standard_message():
    with pytest.raises(
        ParameterError, match=r"^The 'size' parameter of digits must be an integer >= 1\. Got 0\.$"
    ):
        load("digits", size=0)
