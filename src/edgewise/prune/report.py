"""What depth pruning bought: layers, parameters, MACs, latency and accuracy, before and after.

Latency is compared with the unpruned network *at its best* in plain PyTorch:
inference mode, BatchNorm folded into its convolution, and channels-last memory
where that measures faster. BatchNorm is folded two ways, by torch.fx's own
conv-BN fusion and by the folder's graph (`fold.fold_batchnorm`, the same
executor as the folded network), and the faster of the two is the baseline.
The folded network is timed the same way. Models are timed in alternation,
call by call in shuffled order, so that a load change on the machine hits all
of them alike.
"""

from __future__ import annotations

import copy
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from edgewise.cost import count_macs, time_it
from edgewise.engine import evaluate
from edgewise.prune.fold import fold_batchnorm
from edgewise.prune.linearize import rectifier_names
from edgewise.prune.states import images_of
from edgewise.report import line_plot


def fx_fused(model: nn.Module) -> nn.Module:
    """An eval copy of `model` with BatchNorm folded by torch.fx's own fusion pass."""
    with warnings.catch_warnings():  # the module imports deprecated torch.jit helpers
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.fx.experimental.optimization import fuse
    return fuse(copy.deepcopy(model).eval())


def latencies(models: Mapping[str, nn.Module], input_shape: tuple[int, ...], batch: int = 1,
              threads: int = 1, repeats: int = 20) -> dict[str, dict[str, Any]]:
    """Median seconds per batch of each model, in its faster memory format.

    Returns ``{name: {"median_s", "p25_s", "p75_s", "channels_last"}}``. Every
    (model, memory format) is warmed up, then timed one call at a time in
    interleaved, shuffled order, `repeats` calls each, so that the load of a
    busy machine falls on all of them alike.
    """
    x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0))
    runs = {}
    for name, model in models.items():
        runs[(name, False)] = (copy.deepcopy(model).eval(), x)
        if len(input_shape) == 3:
            runs[(name, True)] = (copy.deepcopy(model).eval().to(memory_format=torch.channels_last),
                                  x.to(memory_format=torch.channels_last))
    times: dict[tuple[str, bool], list[float]] = {key: [] for key in runs}
    order = list(runs)
    shuffle = random.Random(0).shuffle
    for _ in range(repeats):
        shuffle(order)
        for key in order:
            model, inputs = runs[key]
            times[key].append(time_it(lambda m=model, i=inputs: m(i), warmup=1, repeats=1,
                                      threads=threads, inference=True).median_s)
    result = {}
    for name in models:
        formats = [key for key in runs if key[0] == name]
        best = min(formats, key=lambda key: median(times[key]))
        p25, p50, p75 = np.percentile(times[best], [25, 50, 75])
        result[name] = {"median_s": float(p50), "p25_s": float(p25), "p75_s": float(p75),
                        "channels_last": best[1]}
    return result


def costs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Parameters, MACs per input and rectifier count of `model`."""
    counted = count_macs(copy.deepcopy(model).eval(), torch.zeros(1, *input_shape))
    return {"params": counted.params_total, "macs": counted.total,
            "rectifiers": len(rectifier_names(model))}


@torch.no_grad()
def max_difference(a: nn.Module, b: nn.Module, dataset: Dataset, batch_size: int = 1000) -> float:
    """Max |a(x) - b(x)| over every input of `dataset` (both in eval mode)."""
    a, b = a.eval(), b.eval()
    worst = 0.0
    for start in range(0, len(dataset), batch_size):
        x = images_of(dataset, start, min(len(dataset), start + batch_size))
        worst = max(worst, float((a(x) - b(x)).abs().max()))
    return worst


def summarize(original: nn.Module, pruned: nn.Module, folded: nn.Module, splits: Any,
              repeats: Mapping[int, int] | None = None, threads: int = 1) -> dict[str, Any]:
    """Accuracy, costs and latency (per batch size: seconds and speed-up) of the three stages,
    and the largest output difference between the folded and the pruned network on the test set.

    `repeats` maps each batch size to time to its timed calls per round (default {1: 20}).
    """
    shape = tuple(splits.input_shape)
    baselines = {"baseline_fx": fx_fused(original),
                 "baseline_graph": fold_batchnorm(original, torch.zeros(1, *shape))}
    timings = {
        str(batch): latencies({**baselines, "folded": folded}, shape, batch, threads, count)
        for batch, count in (repeats or {1: 20}).items()
    }
    for row in timings.values():
        row["baseline"] = min((row[name] for name in baselines), key=lambda t: t["median_s"])
        row["speedup"] = row["baseline"]["median_s"] / row["folded"]["median_s"]
    rectifiers = len(rectifier_names(original))
    return {
        "accuracy_before": evaluate(original, splits.test)["accuracy"],
        "accuracy_pruned": evaluate(pruned, splits.test)["accuracy"],
        "accuracy_after": evaluate(folded, splits.test)["accuracy"],
        "rectifiers_removed": rectifiers - len(rectifier_names(pruned)),
        "rectifiers": rectifiers,
        "before": costs(original, shape),
        "after": costs(folded, shape),
        "latency": timings,
        "threads": threads,
        "max_abs_difference": max_difference(folded, pruned, splits.test),
    }


def entropy_plot(path: str | Path, before: Mapping[str, float],
                 after: Mapping[str, Mapping[str, float]], title: str) -> Path:
    """Entropy (bits) per rectifier layer, in network order: `before` pruning, and after it for
    each entry of `after` (e.g. one per method; removed layers at 0)."""
    names = list(before)
    xs = list(range(1, len(names) + 1))
    series = {"before": (xs, [before[n] for n in names])}
    series |= {label: (xs, [values.get(n, 0.0) for n in names]) for label, values in after.items()}
    return line_plot(path, series, xlabel="rectifier layer (network order)",
                     ylabel="entropy (bits)", title=title)

