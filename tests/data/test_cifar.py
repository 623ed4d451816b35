"""CIFAR-10 python batches, read with the restricted unpickler, on files the tests write."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from edgewise.data import load
from edgewise.data.cifar import TRAIN_FILES, load_pickle, read_batch
from edgewise.errors import DataError


def batch_bytes(n: int, start: int, legacy: bool = True) -> bytes:
    """A batch like the official ones: bytes keys, (n, 3072) uint8 data, a list of labels.

    Row i is filled with (start + i) % 256 in channel 0, 1 in channel 1, 2 in channel 2.
    `legacy` spells numpy's module as numpy < 2 did, like the files from the website.
    """
    data = np.zeros((n, 3, 1024), dtype=np.uint8)
    data[:, 0] = ((start + np.arange(n)) % 256)[:, None]
    data[:, 1], data[:, 2] = 1, 2
    labels = [(start + i) % 10 for i in range(n)]
    payload = pickle.dumps({b"data": data.reshape(n, 3072), b"labels": labels}, protocol=2)
    return payload.replace(b"numpy._core.", b"numpy.core.") if legacy else payload


def write_cifar(directory: Path, per_batch=4, n_test=6) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(TRAIN_FILES):
        (directory / name).write_bytes(batch_bytes(per_batch, k * per_batch, legacy=k % 2 == 0))
    (directory / "test_batch").write_bytes(batch_bytes(n_test, 100))
    meta = {b"label_names": [f"thing{k}".encode() for k in range(10)], b"num_vis": 3072}
    (directory / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return directory


class RunsACommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_read_batch_lays_out_channels_first(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(batch_bytes(3, 7))
    assert b"numpy.core.multiarray\n_reconstruct" in path.read_bytes()
    images, labels = read_batch(path)
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.uint8
    assert images[:, 0, 5, 9].tolist() == [7, 8, 9]
    assert images[:, 1].max() == 1 and images[:, 2].min() == 2
    assert labels.tolist() == [7, 8, 9]


def test_load_cifar_from_root(tmp_path):
    root = write_cifar(tmp_path / "cifar-10-batches-py")
    splits = load("cifar10", root=tmp_path, val_fraction=0.2)
    assert [len(splits.train), len(splits.val), len(splits.test)] == [16, 4, 6]
    assert splits.input_shape == (3, 32, 32)
    assert splits.class_names == tuple(f"thing{k}" for k in range(10))
    labels = np.concatenate([splits.train.tensors[1].numpy(), splits.val.tensors[1].numpy()])
    assert np.bincount(labels, minlength=10).tolist() == [2] * 10
    assert root.is_dir()


def test_forbidden_global_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    write_cifar(tmp_path)
    evil = {b"data": RunsACommand(f"touch {marker}"), b"labels": []}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DataError) as info:
        load("cifar10", root=tmp_path)
    assert "data_batch_3: refused to unpickle" in str(info.value)
    assert "system" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["builtins eval", "subprocess Popen", "numpy load"])
def test_other_globals_are_refused(tmp_path, name):
    module, attribute = name.split()
    path = tmp_path / "batch"
    path.write_bytes(f"c{module}\n{attribute}\n.".encode())  # protocol 0 GLOBAL, then STOP
    with pytest.raises(DataError, match=f"refused to unpickle {module}.{attribute}"):
        load_pickle(path)


def test_truncated_batch_names_the_file(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "test_batch"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="test_batch is not a readable CIFAR batch"):
        load("cifar10", root=tmp_path)


def test_label_count_must_match_image_count(tmp_path):
    write_cifar(tmp_path)
    data = np.zeros((4, 3072), dtype=np.uint8)
    payload = pickle.dumps({b"data": data, b"labels": [0, 1, 2]}, protocol=2)
    (tmp_path / "data_batch_2").write_bytes(payload)
    with pytest.raises(DataError, match="data_batch_2 has 3 labels but 4 images"):
        load("cifar10", root=tmp_path)


def test_wrong_shape_and_missing_file_are_named(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_5").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="data_batch_5: expected a dict"):
        load("cifar10", root=tmp_path)
    (tmp_path / "data_batch_5").unlink()
    with pytest.raises(DataError, match="missing file .*data_batch_5"):
        load("cifar10", root=tmp_path)
