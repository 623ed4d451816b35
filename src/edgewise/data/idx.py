"""MNIST-format IDX files: Fashion-MNIST (Debian's package or a user path) and MNIST.

An IDX file is a big-endian header (magic ``0x0000TTDD``: type TT=0x08 for
unsigned bytes, DD dimensions), DD uint32 sizes, then the raw bytes. Images have
magic 2051 (N, H, W), labels magic 2049 (N,). Files may be gzipped or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewise.data.files import candidate_dirs, find_file, first_dir_with, read_bytes, require_dir
from edgewise.data.splits import Raw
from edgewise.errors import DataError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_WHAT = {IMAGES_MAGIC: "an image file", LABELS_MAGIC: "a label file"}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array stored in the IDX file at `path` (gzipped or not), checked against `magic`."""
    data = read_bytes(path)
    got = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if got != magic:
        found = f"0x{data[:4].hex()}" if data else "an empty file"
        hint = (
            f"is it {_WHAT[got]}?" if got in _WHAT else "is it an IDX file, gzipped at most once?"
        )
        raise DataError(f"{path}: expected an IDX file (magic {magic}), got {found}: {hint}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path} is truncated: {len(data)} bytes, shorter than its {header}-byte header."
        )
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise DataError(
            f"{path} is truncated or corrupt: its header promises {expected} data bytes "
            f"for shape {dims}, found {len(data) - header}."
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _names(stem: str) -> tuple[str, ...]:
    """The spellings a file goes by: `stem`, gzipped, and with a dot before 'idx'."""
    dotted = stem.replace("-idx", ".idx")
    return (stem, f"{stem}.gz", dotted, f"{dotted}.gz")


@dataclass(frozen=True)
class IdxDataset:
    """A dataset stored as four IDX files (train/t10k images and labels)."""

    name: str
    description: str
    class_names: tuple[str, ...]
    hint: str
    system_dirs: tuple[str, ...] = ()

    def _dirs(self, root: str | Path | None) -> list[Path]:
        return candidate_dirs(root, (self.name,), self.system_dirs)

    def locate(self, root: str | Path | None = None) -> str | None:
        """The directory the files are found in, or None."""
        found = first_dir_with(self._dirs(root), _names("train-images-idx3-ubyte"))
        return None if found is None else str(found)

    def read(self, root: str | Path | None, seed: int) -> Raw:
        """Read train and test images (N, 1, 28, 28) uint8 and labels (N,)."""
        directory = require_dir(
            self.name, self._dirs(root), _names("train-images-idx3-ubyte"), self.hint
        )
        arrays = []
        for split in ("train", "t10k"):
            images_path = find_file(directory, _names(f"{split}-images-idx3-ubyte"))
            labels_path = find_file(directory, _names(f"{split}-labels-idx1-ubyte"))
            images = read_idx(images_path, IMAGES_MAGIC)
            labels = read_idx(labels_path, LABELS_MAGIC)
            if len(labels) != len(images):
                raise DataError(
                    f"{labels_path} has {len(labels)} labels but {images_path} has "
                    f"{len(images)} images: are they from the same download?"
                )
            arrays += [images[:, None], labels]
        if arrays[0].shape[1:] != arrays[2].shape[1:]:
            raise DataError(
                f"{self.name} train images are {arrays[0].shape[2:]} but test images are "
                f"{arrays[2].shape[2:]} in {directory}."
            )
        return Raw(*arrays, class_names=self.class_names)


FASHION_MNIST = IdxDataset(
    name="fashion-mnist",
    description="Zalando's Fashion-MNIST: 28x28 grey clothes, 10 classes, 60k train / 10k test",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    hint=(
        "Install it with 'apt-get install dataset-fashion-mnist', point root (--root) or "
        "$EDGEWISE_DATA at its IDX files, or use the bundled 'digits' (--data digits)."
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
)

MNIST = IdxDataset(
    name="mnist",
    description="MNIST handwritten digits: 28x28 grey, 10 classes, IDX files from a user path",
    class_names=tuple(str(d) for d in range(10)),
    hint=(
        "Point root (--root) or $EDGEWISE_DATA at the MNIST IDX files "
        "(train-images-idx3-ubyte[.gz] and the three others), or use the bundled 'digits' "
        "(--data digits)."
    ),
)
