"""Seeds, devices and data-parallel processes."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from edgewise.errors import ParameterError, UserError


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` is CUDA where present, else the CPU; asking for CUDA without it is a `UserError`."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(
                f"Device {name!r} was asked for, but no CUDA GPU is available; use 'cpu' or 'auto'."
            )
        return torch.device(name)
    raise ParameterError(f"Unknown device {name!r}; expected 'auto', 'cpu' or 'cuda'.")


def generator(*key: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of non-negative ints, e.g. ``(seed, epoch)``."""
    state = np.random.SeedSequence(list(key)).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass(frozen=True)
class Processes:
    """Where this process stands among the data-parallel ones (one process: rank 0 of 1)."""

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool  # this process started the process group, so it ends it too

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over all processes (in place, and returned)."""
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()


def start_processes(device: str) -> Processes:
    """Join the data-parallel group: one already initialised, or the one torchrun describes
    (``WORLD_SIZE`` > 1: gloo on the CPU, nccl on GPUs, each rank on GPU ``LOCAL_RANK``)."""
    resolved = resolve_device(device)
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes(0, 1, resolved, owns_group=False)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(resolved)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), resolved, owns)
