"""Wall clock of real dynamic inference against the static network, measured here, as ratios.

The static baseline is the network without exits (every stage, then the final head) at
its best in plain PyTorch: eval and inference mode, and channels-last memory where that
is faster on this machine. The dynamic network gets the same treatment. The two are timed
in alternation (static, dynamic, static, ...) so that a change in the machine's load hits
both alike. Batched: the median over rounds of a pass over the same batches, and the
speed-up as the median of the rounds' ratios. Batch 1: the median over inputs of each
input's median time (an input that leaves early counts as fast), and the speed-up as the
ratio of those medians. The speed-up the cost model predicts is
``1 / expected latency fraction``, from the exit distribution and the stage and head
latencies profiled at the batch size in use.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from edgewise.cost import time_it
from edgewise.exits.network import EarlyExitNetwork
from edgewise.exits.policies import Policy

FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


@dataclass(frozen=True)
class Speed:
    """Seconds (median) of the static and the dynamic network on the same inputs, and ratios."""

    batch_size: int
    static_s: float
    dynamic_s: float
    speedup: float
    predicted_speedup: float
    exit_distribution: list[float]
    threads: int
    static_format: str
    dynamic_format: str

    def to_dict(self) -> dict:
        return asdict(self)


def static_network(net: EarlyExitNetwork) -> nn.Sequential:
    """The network without exits: every stage, then the final head (modules shared with `net`)."""
    return nn.Sequential(*net.stages, net.heads[-1])


def fastest_format(module: nn.Module, run: Callable[[nn.Module, Tensor], object], x: Tensor) -> str:
    """"channels_last" or "contiguous", whichever runs ``run(module, x)`` faster here."""
    times = {}
    for name, memory_format in FORMATS.items():
        candidate = copy.deepcopy(module).to(memory_format=memory_format).eval()
        xs = x.contiguous(memory_format=memory_format) if x.dim() == 4 else x
        times[name] = time_it(lambda c=candidate, xs=xs: run(c, xs), warmup=2, repeats=7,
                              inference=True).median_s
    return min(times, key=times.get)


def compare(
    net: EarlyExitNetwork,
    policy: Policy,
    images: Tensor,
    batch_size: int,
    *,
    repeats: int = 7,
) -> Speed:
    """Time `net.infer` with `policy` against the static network on `images` (N, C, H, W).

    Batch size 1 times each of the N inputs alone (N small, e.g. 200); a larger batch
    size times passes over ``images`` split into batches. `net` is left as it was.
    """
    net = copy.deepcopy(net).cpu().eval()
    static = static_network(net)
    batches = list(images.split(batch_size))
    static_format = fastest_format(static, lambda m, x: m(x), batches[0])
    dynamic_format = fastest_format(net, lambda m, x: m.infer(x, policy), batches[0])
    static = static.to(memory_format=FORMATS[static_format])
    fast = copy.deepcopy(net).set_memory_format(FORMATS[dynamic_format])
    sx = [b.contiguous(memory_format=FORMATS[static_format]) for b in batches]
    with torch.inference_mode():
        exits = torch.cat([fast.infer(b, policy)[1] for b in batches])
        if batch_size == 1:
            static_s, dynamic_s = _alternate_each(lambda x: static(x),
                                                  lambda x: fast.infer(x, policy),
                                                  list(zip(sx, batches, strict=True)), repeats)
            speedup = static_s / dynamic_s
        else:
            static_s, dynamic_s, speedup = _alternate(lambda: [static(x) for x in sx],
                                                      lambda: [fast.infer(x, policy) for x in batches],
                                                      repeats)
    distribution = (torch.bincount(exits, minlength=net.num_exits) / len(exits)).tolist()
    reach = fast.costs("latency", batch_size).fractions(policy.evaluated(net.num_exits))
    expected = float((torch.tensor(distribution, dtype=torch.float64) * reach).sum())
    return Speed(batch_size, static_s, dynamic_s, speedup, 1 / expected,
                 distribution, torch.get_num_threads(), static_format, dynamic_format)


def _alternate(static: Callable[[], object], dynamic: Callable[[], object],
               repeats: int) -> tuple[float, float, float]:
    """Median seconds of each, and the median of their per-round ratios, timed in turn."""
    static(), dynamic()  # warm-up
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        static()
        middle = time.perf_counter()
        dynamic()
        rounds.append((middle - start, time.perf_counter() - middle))
    return (statistics.median(s for s, _ in rounds), statistics.median(d for _, d in rounds),
            statistics.median(s / d for s, d in rounds))


def _alternate_each(static: Callable[[Tensor], object], dynamic: Callable[[Tensor], object],
                    inputs: list[tuple[Tensor, Tensor]], repeats: int) -> tuple[float, float]:
    """Median over inputs of each input's median time, static and dynamic timed in turn."""
    times = [([], []) for _ in inputs]
    for s, d in inputs[:5]:  # warm-up
        static(s), dynamic(d)
    for _ in range(repeats):
        for (s, d), (static_times, dynamic_times) in zip(inputs, times, strict=True):
            start = time.perf_counter()
            static(s)
            middle = time.perf_counter()
            dynamic(d)
            static_times.append(middle - start)
            dynamic_times.append(time.perf_counter() - middle)
    return (statistics.median(statistics.median(s) for s, _ in times),
            statistics.median(statistics.median(d) for _, d in times))
