"""Seeding, device names, and the per-epoch generators."""

import random

import numpy as np
import pytest
import torch

from edgewise.engine import resolve_device, seed_everything
from edgewise.engine.runtime import generator, start_processes
from edgewise.errors import ParameterError, UserError


def test_seed_everything_repeats_every_stream():
    def draw():
        return torch.rand(2).tolist(), np.random.rand(2).tolist(), random.random()

    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first


def test_generators_depend_on_every_key():
    draws = {
        tuple(torch.rand(4, generator=generator(*key)).tolist())
        for key in [(0, 0), (0, 1), (1, 0), (0, 0, 1)]
    }
    assert len(draws) == 4
    assert torch.equal(
        torch.rand(4, generator=generator(0, 3)), torch.rand(4, generator=generator(0, 3))
    )


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ParameterError, match="Unknown device 'tpu'"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line():
    with pytest.raises(UserError, match="no CUDA GPU is available") as info:
        resolve_device("cuda")
    assert "\n" not in str(info.value)


def test_a_plain_process_is_rank_0_of_1(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    procs = start_processes("cpu")
    assert (procs.rank, procs.world_size, procs.owns_group) == (0, 1, False)
    assert torch.equal(procs.sum(torch.ones(2)), torch.ones(2))
