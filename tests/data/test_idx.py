"""IDX readers (MNIST, Fashion-MNIST) on small files the tests write, gzipped and plain."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from edgewise.data import load
from edgewise.data.idx import FASHION_MNIST, IMAGES_MAGIC, LABELS_MAGIC, MNIST, read_idx
from edgewise.errors import DataError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path: Path, payload: bytes, gz: bool) -> Path:
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_idx_set(directory: Path, n_train=20, n_test=10, gz=False) -> Path:
    """Four IDX files of 4x5 images; image i of a split is filled with i, label i % 10."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in [("train", n_train), ("t10k", n_test)]:
        images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, 4, 5))
        labels = np.arange(n) % 10
        write(directory / f"{split}-images-idx3-ubyte", idx_bytes(images, IMAGES_MAGIC), gz)
        write(directory / f"{split}-labels-idx1-ubyte", idx_bytes(labels, LABELS_MAGIC), gz)
    return directory


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_returns_the_written_array(tmp_path, gz):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write(tmp_path / "x-idx3-ubyte", idx_bytes(array, IMAGES_MAGIC), gz)
    got = read_idx(path, IMAGES_MAGIC)
    assert got.dtype == np.uint8 and np.array_equal(got, array)


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_root(tmp_path, gz):
    root = write_idx_set(tmp_path / "mnist", gz=gz)
    splits = load("mnist", root=root, val_fraction=0.1)
    assert [len(splits.train), len(splits.val), len(splits.test)] == [18, 2, 10]
    assert splits.input_shape == (1, 4, 5) and splits.num_classes == 10
    assert splits.class_names == tuple("0123456789")
    labels = np.concatenate([splits.train.tensors[1].numpy(), splits.val.tensors[1].numpy()])
    assert np.bincount(labels).tolist() == [2] * 10
    # test image i is filled with i: after normalisation its pixels are still ordered by i
    test_pixels = splits.test.tensors[0][:, 0, 0, 0]
    assert test_pixels.argsort().tolist() == list(range(10))


def test_dotted_file_names_are_found(tmp_path):
    root = write_idx_set(tmp_path)
    for path in list(root.iterdir()):
        path.rename(path.with_name(path.name.replace("-idx", ".idx")))
    assert len(load("mnist", root=root).test) == 10


def test_truncated_file_names_the_file(tmp_path):
    root = write_idx_set(tmp_path)
    path = root / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is truncated .* found 393"):
        load("mnist", root=root)


def test_truncated_gzip_names_the_file(tmp_path):
    root = write_idx_set(tmp_path, gz=True)
    path = root / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz is a corrupt or truncated"):
        load("mnist", root=root)


def test_wrong_magic_says_what_the_file_looks_like(tmp_path):
    root = write_idx_set(tmp_path)
    labels = root / "train-labels-idx1-ubyte"
    (root / "train-images-idx3-ubyte").write_bytes(labels.read_bytes())
    with pytest.raises(DataError) as info:
        load("mnist", root=root)
    message = str(info.value)
    assert "train-images-idx3-ubyte: expected an IDX file (magic 2051)" in message
    assert "got 0x00000801: is it a label file?" in message


def test_twice_gzipped_file_shows_the_gzip_magic(tmp_path):
    array = np.zeros(3, dtype=np.uint8)
    path = write(tmp_path / "labels", gzip.compress(idx_bytes(array, LABELS_MAGIC)), gz=True)
    with pytest.raises(DataError, match="got 0x1f8b"):
        read_idx(path, LABELS_MAGIC)


def test_label_count_must_match_image_count(tmp_path):
    root = write_idx_set(tmp_path)
    labels = np.zeros(19, dtype=np.uint8)
    (root / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels, LABELS_MAGIC))
    with pytest.raises(DataError, match="has 19 labels but .*train-images-idx3-ubyte has 20"):
        load("mnist", root=root)


def test_missing_file_is_named(tmp_path):
    root = write_idx_set(tmp_path)
    (root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing file .*t10k-labels-idx1-ubyte"):
        load("mnist", root=root)


def test_missing_directory_says_where_it_looked_and_what_to_do(tmp_path):
    with pytest.raises(DataError) as info:
        load("fashion-mnist", root=tmp_path / "nope")
    message = str(info.value)
    assert str(tmp_path / "nope") in message and "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data digits" in message


def test_environment_variable_is_searched(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "fashion-mnist")
    monkeypatch.setenv("EDGEWISE_DATA", str(tmp_path))
    assert FASHION_MNIST.locate() == str(tmp_path / "fashion-mnist")
    assert MNIST.locate() is None
    splits = load("fashion-mnist")
    assert splits.class_names[0] == "T-shirt/top" and splits.class_names[9] == "Ankle boot"
    assert len(splits.test) == 10


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_installed_fashion_mnist(monkeypatch):
    monkeypatch.delenv("EDGEWISE_DATA", raising=False)
    splits = load("fashion-mnist", limit=100)
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert [len(splits.train), len(splits.val), len(splits.test)] == [100, 100, 100]
