"""Wall clock of real dynamic inference against the static network, measured here, as ratios.

The static baseline is the network without exits (every stage, then the final head) at
its best in plain PyTorch: eval and inference mode, and channels-last memory where that
is faster on this machine. The dynamic network gets the same treatment. The two are timed
in alternation (static, dynamic, static, ...) so that a change in the machine's load hits
both alike. Batched: the median over rounds of a pass over the same batches, and the
speed-up as the median of the rounds' ratios. Batch 1: the median over inputs of each
input's median time (an input that leaves early counts as fast), and the speed-up as the
ratio of those medians. The speed-up the cost model predicts comes from the exit
distribution and each stage's and head's latency profiled on the inputs that reach it
(see `predict_speedup`).
"""

from __future__ import annotations

import copy
import functools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from edgewise.cost import time_interleaved
from edgewise.exits.network import EarlyExitNetwork, take_rows
from edgewise.exits.policies import Policy

BATCH1_INPUTS = 30  # inputs profiled per exit for the batch-1 prediction
BATCH1_CALLS = 15  # calls per input, as the benchmark's `compare`
NEVER = 1e30  # a threshold no exit score reaches: the head runs, the input stays
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


def fastest_format(module: nn.Module, run: Callable[[nn.Module, Tensor], object], x: Tensor,
                   repeats: int = 15) -> str:
    """"channels_last" or "contiguous", whichever runs ``run(module, x)`` faster here.

    The two are timed in alternation, so that a change in the machine's load hits both alike.
    """
    candidates = {}
    for name, memory_format in FORMATS.items():
        candidate = copy.deepcopy(module).to(memory_format=memory_format).eval()
        xs = x.contiguous(memory_format=memory_format) if x.dim() == 4 else x
        candidates[name] = functools.partial(run, candidate, xs)
    timings = time_interleaved(list(candidates.values()), warmup=2, repeats=repeats, inference=True)
    return min(zip(candidates, timings, strict=True), key=lambda pair: pair[1].median_s)[0]


def use_fastest_format(net: EarlyExitNetwork, example: Tensor) -> str:
    """Put `net` in the memory format in which its static network runs `example` fastest here,
    and return that format's name. Call it before calibrating on measured latency: the
    stages' relative costs, hence the thresholds, depend on the format."""
    name = fastest_format(static_network(net).eval(), lambda m, x: m(x), example)
    net.set_memory_format(FORMATS[name])
    return name


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
    size times passes over ``images`` split into batches. Both sides end with the predicted
    classes (the static network's argmax) and run in `net`'s memory format, so that the
    only difference is the exits: put `net` in its static network's fastest format first
    (`use_fastest_format`), before calibrating. `net` is left as it was.
    """
    net = copy.deepcopy(net).cpu().eval()
    static_net = static_network(net)
    memory_format = next(name for name, f in FORMATS.items() if f == net.memory_format)

    def static(x: Tensor) -> Tensor:  # predictions, as infer returns
        return static_net(x).argmax(dim=1)

    xs = [b.contiguous(memory_format=net.memory_format) for b in images.split(batch_size)]
    with torch.inference_mode():
        exits = torch.cat([net.infer(b, policy)[1] for b in xs])
        if batch_size == 1:
            static_s, dynamic_s = _alternate_each(static, lambda x: net.infer(x, policy), xs, repeats)
            speedup = static_s / dynamic_s
        else:
            static_s, dynamic_s, speedup = _alternate(static, lambda x: net.infer(x, policy),
                                                      xs, repeats)
    distribution = (torch.bincount(exits, minlength=net.num_exits) / len(exits)).tolist()
    example = xs[0] if batch_size > 1 else torch.cat(xs[:BATCH1_INPUTS])
    predicted = predict_speedup(net, policy, distribution, example, batch_size)
    return Speed(batch_size, static_s, dynamic_s, speedup, predicted, distribution,
                 torch.get_num_threads(), memory_format, memory_format)


def predict_speedup(net: EarlyExitNetwork, policy: Policy, distribution: Sequence[float],
                    example: Tensor, batch_size: int) -> float:
    """The speed-up the latency cost model predicts from the exit distribution.

    Batched, each stage and each evaluated exit (its head, the policy's score of its
    logits, and the gather of the inputs that stay) is timed on the number of inputs that
    reach it in a batch of `batch_size` (``batch_size`` times the fraction that has not left
    yet), because on a CPU the time per input depends on the batch size (caches); the
    prediction is the ratio of a batch's time, the static network's stages timed on the
    whole batch. At batch size 1 the cost of leaving at each exit is profiled whole (see
    `exit_latencies`, on each input of `example` timed alone), Python dispatch included, and
    the prediction is the ratio of the median over inputs, static and of the mix of inputs
    leaving at each exit (weighted by the distribution), the statistic `compare` measures
    there: with about half of the inputs leaving at one exit, that median falls in the tail
    of the next exit's latencies. Every part is timed in alternation with the others
    (`_interleaved`), so that a change in the machine's load falls on the static and the
    dynamic side alike. `example` is one batch of inputs, in `net`'s memory
    format.
    """
    static = static_network(net)
    if batch_size == 1:
        inputs = list(example.split(1))
        static_each, *leaving = exit_latencies(net, policy, inputs, static)
        # the median over inputs of the mix: each profiled input of exit e weighs share_e / n
        values = [t for each in leaving for t in each]
        weights = [share / len(each) for each, share in zip(leaving, distribution, strict=True)
                   for _ in each]
        return statistics.median(static_each) / _weighted_median(values, weights)
    evaluated, rule = policy.evaluated(net.num_exits), policy.scorer
    reach = [1.0 - sum(distribution[:e]) for e in range(len(distribution))]
    sizes = [max(1, round(batch_size * r)) if r > 1e-9 else 0 for r in reach]
    last = net.num_exits - 1
    static_runs: list[tuple[Callable[[Tensor], object], Tensor]] = []
    dynamic_runs: list[tuple[Callable[[Tensor], object], Tensor]] = []
    x = example[:batch_size]
    with torch.inference_mode():
        for e, (stage, head) in enumerate(zip(net.stages, net.heads, strict=True)):
            static_runs.append((stage, x))
            if sizes[e]:
                dynamic_runs.append((stage, x[: sizes[e]]))
            x = stage(x)
            if not sizes[e] or (e < last and not evaluated[e]):
                continue
            if e == last:
                dynamic_runs.append((head, x[: sizes[e]]))
                continue
            dynamic_runs.append((lambda z, head=head: rule.score(head(z), None)[0].max().item(),
                                 x[: sizes[e]]))
            if 0 < sizes[e + 1] < sizes[e]:  # the remaining inputs' activations are gathered
                rows = torch.arange(sizes[e + 1])
                dynamic_runs.append((lambda z, rows=rows: take_rows(z, rows), x[: sizes[e]]))
        static_runs.append((lambda z: net.heads[-1](z).argmax(dim=1), x))
        seconds = _interleaved(static_runs + dynamic_runs)
    return sum(seconds[: len(static_runs)]) / sum(seconds[len(static_runs):])


def exit_latencies(net: EarlyExitNetwork, policy: Policy, inputs: Sequence[Tensor],
                   static: nn.Module) -> list[list[float]]:
    """Each input's median seconds in ``static(x).argmax`` and in ``net.infer(x, ...)`` made to
    leave at each exit in turn: a list for the static network, then one per exit, an entry
    per input.

    On the way to exit ``e`` the heads that `policy` evaluates run and score without
    letting the input leave (a threshold no score reaches), then exit ``e`` takes it. As in
    `compare`, each dynamic call follows the static call on the same input (the caches it
    finds are those the static network left: timed back to back, the second exit measured 10 % faster
    here than it does in `compare`), and every pair is called once per pass over all of them,
    so that an input's median spans the whole profile. An input's static time is the median
    of its calls' medians beside each exit.
    """
    forced = [leave_at(policy, e, net.num_exits) for e in range(net.num_exits)]
    runs: list[tuple[Callable[[Tensor], object], Tensor]] = []
    for p in forced:
        for x in inputs:
            runs += [(lambda z: static(z).argmax(dim=1), x), (lambda z, p=p: net.infer(z, p), x)]
    with torch.inference_mode():
        medians = _interleaved(runs, repeats=BATCH1_CALLS)
    n = len(inputs)
    static_s, dynamic_s = medians[0::2], medians[1::2]
    static_each = [statistics.median(static_s[i::n]) for i in range(n)]
    return [static_each] + [dynamic_s[i:i + n] for i in range(0, len(dynamic_s), n)]


def leave_at(policy: Policy, exit_index: int, num_exits: int) -> Policy:
    """`policy`'s rule with thresholds that send every input out at `exit_index`, the heads
    that `policy` evaluates before it running without letting anyone leave."""
    evaluated = policy.evaluated(num_exits)
    waits = [NEVER if runs else math.inf for runs in evaluated[:-1]]
    if exit_index < len(waits):
        waits[exit_index] = -math.inf
    return Policy(policy.rule, waits)


def _interleaved(runs: Sequence[tuple[Callable[[Tensor], object], Tensor]],
                 repeats: int | None = None) -> list[float]:
    """Median seconds of each ``run(x)`` of `runs`, timed in alternation
    (`edgewise.cost.time_interleaved`); by default small inputs get more rounds (their times
    are noisier): 1000 // the largest batch, at least 15."""
    repeats = repeats or max(15, 1000 // max(len(x) for _, x in runs))
    timings = time_interleaved([functools.partial(run, x) for run, x in runs], repeats=repeats)
    return [t.median_s for t in timings]


def _weighted_median(values: Sequence[float], weights: Sequence[float]) -> float:
    """The value at which the weights, taken in order of value, first reach half their sum."""
    total, half = 0.0, sum(weights) / 2
    for value, weight in sorted(zip(values, weights, strict=True)):
        total += weight
        if total >= half:
            return value
    return max(values)


def _alternate(static: Callable[[Tensor], object], dynamic: Callable[[Tensor], object],
               inputs: list[Tensor], repeats: int) -> tuple[float, float, float]:
    """Seconds of a pass over `inputs` for each (medians over `repeats` rounds), and the median
    of the rounds' ratios. Each batch goes through both in turn, static first, so that a change
    in the machine's load falls on both alike."""
    for x in inputs[:2]:  # warm-up
        static(x), dynamic(x)
    rounds = []
    for _ in range(repeats):
        static_s = dynamic_s = 0.0
        for x in inputs:
            start = time.perf_counter()
            static(x)
            middle = time.perf_counter()
            dynamic(x)
            static_s += middle - start
            dynamic_s += time.perf_counter() - middle
        rounds.append((static_s, dynamic_s))
    return (statistics.median(s for s, _ in rounds), statistics.median(d for _, d in rounds),
            statistics.median(s / d for s, d in rounds))


def _alternate_each(static: Callable[[Tensor], object], dynamic: Callable[[Tensor], object],
                    inputs: list[Tensor], repeats: int) -> tuple[float, float]:
    """Median over inputs of each input's median time, static and dynamic timed in turn."""
    calls = [functools.partial(side, x) for x in inputs for side in (static, dynamic)]
    medians = [t.median_s for t in time_interleaved(calls, warmup=1, repeats=repeats)]
    return statistics.median(medians[0::2]), statistics.median(medians[1::2])
