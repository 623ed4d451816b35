"""CIFAR-10 "python version" batches (data_batch_1..5, test_batch, batches.meta).

The batches are pickles, so they are read with `SafeUnpickler`, which admits
only the globals a numpy array needs and refuses everything else: a file that
names ``os.system`` raises a DataError and runs nothing.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from edgewise.data.files import candidate_dirs, find_file, first_dir_with, read_bytes, require_dir
from edgewise.data.splits import Raw
from edgewise.errors import DataError

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's array rebuilder, any version
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy < 2 (the official files)
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy >= 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # bytes under protocol 2 from Python 3
}
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
HINT = (
    "Point root (--root) or $EDGEWISE_DATA at the extracted cifar-10-batches-py folder "
    "(nothing is downloaded), or use the bundled 'digits' (--data digits)."
)


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, dicts, lists and scalars, and nothing else."""

    def __init__(self, file: io.BufferedIOBase, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.path}: refused to unpickle {module}.{name}; a CIFAR batch holds only "
                "numpy arrays and lists: is it the python version of CIFAR-10?"
            ) from None


def load_pickle(path: Path) -> Any:
    """Unpickle the file at `path` (gzipped or not) with `SafeUnpickler`."""
    try:
        return SafeUnpickler(io.BytesIO(read_bytes(path)), path).load()
    except DataError:
        raise
    except Exception as exc:  # a corrupt pickle raises almost anything
        raise DataError(
            f"{path} is not a readable CIFAR batch: {type(exc).__name__}: {exc}."
        ) from exc


def _text(key: Any) -> Any:
    return key.decode("latin1") if isinstance(key, bytes) else key


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from one CIFAR-10 batch file."""
    batch = load_pickle(path)
    if not isinstance(batch, dict):
        raise DataError(
            f"{path}: expected a dict with 'data' and 'labels', got {type(batch).__name__}."
        )
    batch = {_text(k): v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape[1:] == (3072,)):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: expected 'data' as an (N, 3072) uint8 array, got {got}.")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: 'labels' is not a list of integers ({exc}).") from exc
    if len(labels) != len(data):
        raise DataError(f"{path} has {len(labels)} labels but {len(data)} images.")
    return data.reshape(-1, 3, 32, 32), labels


class Cifar10:
    """CIFAR-10 from a user path: 32x32 colour images, 10 classes, 50k train / 10k test."""

    description = "CIFAR-10: 32x32 colour, 10 classes, 50k train / 10k test, python batches"

    def _dirs(self, root: str | Path | None) -> list[Path]:
        return candidate_dirs(root, ("cifar10", "cifar-10-batches-py"))

    def locate(self, root: str | Path | None = None) -> str | None:
        """The directory the batches are found in, or None."""
        found = first_dir_with(self._dirs(root), TRAIN_FILES[:1])
        return None if found is None else str(found)

    def read(self, root: str | Path | None, seed: int) -> Raw:
        """Read the five train batches, the test batch and the class names."""
        directory = require_dir("cifar10", self._dirs(root), TRAIN_FILES[:1], HINT)
        train = [read_batch(find_file(directory, (name,))) for name in TRAIN_FILES]
        test_images, test_labels = read_batch(find_file(directory, ("test_batch",)))
        class_names = CLASS_NAMES
        if (directory / "batches.meta").is_file():
            meta = load_pickle(directory / "batches.meta")
            meta = {_text(k): v for k, v in meta.items()} if isinstance(meta, dict) else {}
            names = meta.get("label_names")
            if not isinstance(names, list) or len(names) != len(CLASS_NAMES):
                raise DataError(f"{directory / 'batches.meta'}: expected 10 'label_names'.")
            class_names = tuple(str(_text(n)) for n in names)
        return Raw(
            train_images=np.concatenate([images for images, _ in train]),
            train_labels=np.concatenate([labels for _, labels in train]),
            test_images=test_images,
            test_labels=test_labels,
            class_names=class_names,
        )
