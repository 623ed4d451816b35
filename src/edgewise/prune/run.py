"""The whole depth reduction in one call: prune, fold, and measure against the unpruned model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from edgewise.engine import TrainConfig
from edgewise.prune.base import DepthPruner
from edgewise.prune.fold import FoldResult, Timer, fold
from edgewise.prune.report import summarize
from edgewise.prune.states import images_of


@dataclass
class Outcome:
    """The pruner (with its history), the pruned model, the fold, and `report.summarize`'s dict."""

    pruner: DepthPruner
    pruned: nn.Module
    folded: FoldResult
    summary: dict[str, Any]


def reduce_depth(model: nn.Module, splits: Any, depth_pruner: DepthPruner, finetune: TrainConfig,
                 *, timer: Timer | None = None, repeats: Mapping[int, int] | None = None,
                 threads: int = 1, progress: bool = False) -> Outcome:
    """Prune a trained `model` with `depth_pruner`, fold it on the CPU, and summarize.

    `timer` gates the merges (default: batch 1, one thread); `repeats` maps batch
    sizes to timed calls for the final latency comparison (see `report.summarize`).
    """
    pruned = depth_pruner.prune(model, splits, finetune, timer=timer, progress=progress)
    return measure(model, pruned, splits, depth_pruner, timer=timer, repeats=repeats,
                   threads=threads)


def measure(model: nn.Module, pruned: nn.Module, splits: Any, depth_pruner: DepthPruner, *,
            timer: Timer | None = None, repeats: Mapping[int, int] | None = None,
            threads: int = 1) -> Outcome:
    """Fold `pruned` (what `depth_pruner` made of `model`) on the CPU and summarize; the second
    half of `reduce_depth`, for a pruned model read back from disk."""
    pruned = pruned.cpu().eval()
    result = fold(pruned, images_of(splits.test, 0, min(64, len(splits.test))), timer=timer)
    summary = summarize(model.cpu().eval(), pruned, result.module, splits, repeats, threads)
    summary["removed_fraction"] = summary["rectifiers_removed"] / summary["rectifiers"]
    summary["accuracy_drop"] = summary["accuracy_before"] - summary["accuracy_after"]
    return Outcome(depth_pruner, pruned, result, summary)
