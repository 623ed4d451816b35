"""Latency as the median of repeated timed runs after a warm-up, with the thread count fixed.

On shared machines absolute times are noise; compare a method against its
baseline timed in the same run, as a ratio.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgewise.errors import check_param


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median and quartiles over `repeats` calls on `threads` threads."""

    median_s: float
    p25_s: float
    p75_s: float
    repeats: int
    threads: int


def time_it(
    fn: Callable[[], object],
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = None,
    inference: bool = False,
) -> Timing:
    """Call `fn` `warmup` times untimed, then `repeats` times, each timed with `time.perf_counter`.

    `threads` fixes ``torch.set_num_threads`` for the runs (default: the current
    count) and the previous count is restored afterwards; `inference` runs
    every call under ``torch.inference_mode``.
    """
    check_param("time_it", "warmup", warmup, isinstance(warmup, int) and warmup >= 0, "an int >= 0")
    check_param("time_it", "repeats", repeats, isinstance(repeats, int) and repeats >= 1, "an int >= 1")
    check_param("time_it", "threads", threads,
                threads is None or (isinstance(threads, int) and threads >= 1), "None or an int >= 1")
    previous = torch.get_num_threads()
    threads = threads or previous
    times = []
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode() if inference else nullcontext():
            for _ in range(warmup):
                fn()
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    p25, median, p75 = np.percentile(times, [25, 50, 75])
    return Timing(float(median), float(p25), float(p75), repeats, threads)


def time_model(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    batch_size: int = 1,
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = None,
) -> Timing:
    """Time ``model(x)`` in eval mode under inference mode on a random batch (batch_size, *input_shape).

    The batch lives on the model's device; the model's mode is restored afterwards.
    """
    check_param("time_model", "batch_size", batch_size,
                isinstance(batch_size, int) and batch_size >= 1, "an int >= 1")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        return time_it(lambda: model(x), warmup, repeats, threads, inference=True)
    finally:
        for module, training in modes.items():
            module.training = training
