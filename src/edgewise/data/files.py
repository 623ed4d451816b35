"""Where dataset files are looked for, and how their bytes are read (gzipped or not).

A dataset is looked for in ``root`` (and ``root/<subdir>``) when one is given;
otherwise in ``$EDGEWISE_DATA/<subdir>``, ``$EDGEWISE_DATA``, then the system
directories of the dataset (e.g. Debian's ``/usr/share/datasets/fashion-mnist``).
An explicit root never falls back elsewhere, so a wrong path is reported, not hidden.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

from edgewise.errors import DataError

ENV_VAR = "EDGEWISE_DATA"
GZIP_MAGIC = b"\x1f\x8b"


def candidate_dirs(
    root: str | Path | None, subdirs: Sequence[str], system_dirs: Sequence[str | Path] = ()
) -> list[Path]:
    """The directories to look in, in order (see the module docstring)."""
    if root is not None:
        bases = [Path(root).expanduser()]
        return bases + [bases[0] / sub for sub in subdirs]
    env = os.environ.get(ENV_VAR, "")
    dirs = []
    if env:
        base = Path(env).expanduser()
        dirs = [base / sub for sub in subdirs] + [base]
    return dirs + [Path(d) for d in system_dirs]


def first_dir_with(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
    """The first of `dirs` that holds any file called one of `names`, else None."""
    for directory in dirs:
        if any((directory / name).is_file() for name in names):
            return directory
    return None


def require_dir(dataset: str, dirs: Sequence[Path], names: Sequence[str], hint: str) -> Path:
    """Like `first_dir_with`, but a miss raises a DataError that says where it looked."""
    found = first_dir_with(dirs, names)
    if found is None:
        where = (
            f"looked for {names[0]} in {', '.join(str(d) for d in dirs)}"
            if dirs
            else (f"no root was given and ${ENV_VAR} is not set")
        )
        raise DataError(f"{dataset} not found: {where}. {hint}")
    return found


def find_file(directory: Path, names: Sequence[str]) -> Path:
    """The first of `names` present in `directory`; a DataError names the file that is missing."""
    for name in names:
        if (directory / name).is_file():
            return directory / name
    others = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
    raise DataError(f"missing file {directory / names[0]}{others}.")


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic 0x1f8b."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}.") from exc
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is a corrupt or truncated gzip file ({exc}).") from exc
