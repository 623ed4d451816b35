"""Latency as the median of repeated timed runs after a warm-up, with the thread count fixed.

On shared machines absolute times are noise; compare a method against its
baseline timed in the same run, as a ratio.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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
    return _timed("time_it", [fn], warmup, repeats, threads, inference)[0]


def time_interleaved(
    fns: Sequence[Callable[[], object]],
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = None,
    inference: bool = False,
) -> list[Timing]:
    """`time_it` for several calls at once, in alternation: each round calls every one of
    `fns` in turn, so that a change in the machine's load falls on all of them alike, and
    their ratios hold even when their absolute times drift."""
    return _timed("time_interleaved", list(fns), warmup, repeats, threads, inference)


def _timed(owner: str, fns: list[Callable[[], object]], warmup: int, repeats: int,
           threads: int | None, inference: bool) -> list[Timing]:
    check_param(owner, "warmup", warmup, isinstance(warmup, int) and warmup >= 0, "an int >= 0")
    check_param(owner, "repeats", repeats, isinstance(repeats, int) and repeats >= 1, "an int >= 1")
    check_param(owner, "threads", threads,
                threads is None or (isinstance(threads, int) and threads >= 1), "None or an int >= 1")
    previous = torch.get_num_threads()
    threads = threads or previous
    times: list[list[float]] = [[] for _ in fns]
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode() if inference else nullcontext():
            for _ in range(warmup):
                for fn in fns:
                    fn()
            for _ in range(repeats):
                for fn, spent in zip(fns, times, strict=True):
                    start = time.perf_counter()
                    fn()
                    spent.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    timings = []
    for spent in times:
        p25, median, p75 = np.percentile(spent, [25, 50, 75])
        timings.append(Timing(float(median), float(p25), float(p75), repeats, threads))
    return timings


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
