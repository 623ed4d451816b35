"""Train an early-exit network with a named strategy: one `edgewise.engine.fit` per stage.

``train(net, splits, strategy="sequential-ewc", config=TrainConfig(...), ewc_lambda=...)``
asks the strategy for its stages, and for each one: calls ``before_stage``; runs `fit`
on the stage's parameters with a loss built from ``strategy.loss`` (only the stage's
modules learn; the frozen ones that still run are kept in eval mode so their
BatchNorm statistics stay put); calls ``after_stage``; and measures every exit's
accuracy on the validation split (and any other split asked for). An exit's accuracy
at the end of the stage that added it, against its accuracy at the end, is its
forgetting (`TrainResult.forgetting`).

The loop owns the state (optimiser, epochs, devices, ``requires_grad`` flags, which
it restores); the strategy only returns losses and keeps its learned state.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, TensorDataset, default_collate

from edgewise.engine import History, TrainConfig, fit, save_checkpoint
from edgewise.errors import ParameterError
from edgewise.exits.strategies import STRATEGIES, ExitStrategy, Run, Stage, get
from edgewise.exits.strategies.base import exit_accuracies, exit_outputs

SPLITS = ("train", "val", "test")


@dataclass
class TrainResult:
    """What `train` returns.

    net: the trained network (the same object that was passed in).
    strategy: the strategy, with its learned state (``strategy.state_dict()``).
    stages: the stages, in the order they ran.
    accuracy: ``accuracy[split][s][e]`` is exit ``e``'s accuracy on ``split`` at the
        end of stage ``s`` (``split`` in ``eval_splits``; always "val").
    histories: the per-epoch `History` of every stage's `fit`.
    seconds: wall time of every stage (fit plus the strategy's hooks).
    """

    net: nn.Module
    strategy: ExitStrategy
    stages: list[Stage]
    accuracy: dict[str, list[list[float]]]
    histories: list[History] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def num_exits(self) -> int:
        return len(self.accuracy["val"][-1])

    def final(self, split: str = "val") -> list[float]:
        """Every exit's accuracy at the end of training."""
        return list(self.accuracy[split][-1])

    def own_stage(self) -> list[int]:
        """For every exit, the first stage that trained it."""
        own = [len(self.stages) - 1] * self.num_exits
        for s in reversed(range(len(self.stages))):
            for e in self.stages[s].new_exits:
                own[e] = s
        return own

    def reference(self, split: str = "val") -> list[float]:
        """Every exit's accuracy at the end of its own stage."""
        return [self.accuracy[split][s][e] for e, s in enumerate(self.own_stage())]

    def forgetting(self, split: str = "val") -> list[float]:
        """Accuracy lost by every exit between the end of its own stage and the end."""
        return [r - f for r, f in zip(self.reference(split), self.final(split), strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no tensors)."""
        return {
            **self.strategy.describe(),
            "stages": [dataclasses.asdict(s) for s in self.stages],
            "accuracy": self.accuracy,
            "final": {k: self.final(k) for k in self.accuracy},
            "forgetting": {k: self.forgetting(k) for k in self.accuracy},
            "seconds": self.seconds,
            "histories": [h.rows for h in self.histories],
        }


def train(
    net: nn.Module,
    splits: Any,
    strategy: str | ExitStrategy = "joint",
    config: TrainConfig | None = None,
    *,
    stage_epochs: Sequence[int] | None = None,
    eval_splits: Sequence[str] = ("val",),
    run_dir: str | Path | None = None,
    progress: bool = False,
    **strategy_params: Any,
) -> TrainResult:
    """Train ``net`` (an early-exit network) with ``strategy``; return a `TrainResult`.

    net: has ``stages`` and ``heads`` (`nn.ModuleList`s), head ``i`` reading stage ``i``.
    splits: has ``train`` and ``val`` datasets of ``(images, labels)`` (and ``test``
        when asked for in ``eval_splits``).
    strategy: a name in `STRATEGIES` (built with ``strategy_params``) or an instance.
    config: the `TrainConfig` of every stage's `fit` (its ``epochs`` unless
        ``stage_epochs`` gives one count per stage); stage ``s`` uses seed ``seed + s``.
    eval_splits: splits on which every exit is measured after every stage.
    run_dir: when given, stage ``s`` writes its run folder to ``run_dir/stage-<s>-<name>``
        and the strategy's learned state goes to ``run_dir/strategy.safetensors``.
    """
    config = config or TrainConfig()
    if isinstance(strategy, ExitStrategy):
        if strategy_params:
            raise ParameterError(
                f"Pass parameters to the {strategy.name} strategy when building it, not to "
                f"train() (got {', '.join(sorted(strategy_params))})."
            )
    else:
        strategy = get(strategy, **strategy_params)
    eval_splits = tuple(dict.fromkeys(("val", *eval_splits)))
    for name in eval_splits:
        if name not in SPLITS or not hasattr(splits, name):
            raise ParameterError(
                f"The 'eval_splits' parameter of train must name splits among "
                f"{', '.join(SPLITS)}. Got {name!r}."
            )
    stages = strategy.stages(net)
    epochs = _stage_epochs(stage_epochs, config, len(stages))

    result = TrainResult(net, strategy, stages, {k: [] for k in eval_splits})
    flags = {p: p.requires_grad for p in net.parameters()}
    try:
        for index, stage in enumerate(stages):
            started = time.perf_counter()
            stage_config = dataclasses.replace(config, epochs=epochs[index],
                                               seed=config.seed + index)
            data = _batches(splits.train, config.batch_size, stage_config.seed)
            strategy.before_stage(net, stage, data)
            trainable = stage.parameters(net)
            learn = {id(p) for p in trainable}
            for p in net.parameters():
                p.requires_grad_(id(p) in learn)
            history = fit(
                net, splits, stage_config,
                run_dir=Path(run_dir) / f"stage-{index}-{stage.name}" if run_dir else None,
                loss_fn=_StageLoss(strategy, stage, index, stage_config),
                parameters=trainable,
                progress=progress,
            )
            for p, flag in flags.items():
                p.requires_grad_(flag)
            strategy.after_stage(net, stage, _batches(splits.train, config.batch_size,
                                                      stage_config.seed))
            for name in eval_splits:
                result.accuracy[name].append(exit_accuracies(
                    net, _batches(getattr(splits, name), config.eval_batch_size, None)))
            result.histories.append(history)
            result.seconds.append(time.perf_counter() - started)
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
    if run_dir is not None:
        save_checkpoint(Path(run_dir) / "strategy", strategy.state_dict(), result.to_dict())
    return result


class _StageLoss:
    """The `fit` loss of one stage: the stage's exits' logits scored by the strategy.

    Returns ``(loss, logits of the deepest exit the stage computes)``; the engine
    reports the latter's accuracy.
    """

    def __init__(self, strategy: ExitStrategy, stage: Stage, index: int,
                 config: TrainConfig) -> None:
        self.strategy, self.stage, self.index, self.config = strategy, stage, index, config
        self._frozen: list[nn.Module] | None = None

    def __call__(self, model: nn.Module, images: Tensor, labels: Tensor,
                 state: Any) -> tuple[Tensor, Tensor]:
        net = model.module if isinstance(model, DistributedDataParallel) else model
        if self._frozen is None:
            self._frozen = self.stage.modules(net)[1]
        if net.training:
            for module in self._frozen:  # modules that run but do not learn keep their stats
                module.eval()
        if isinstance(model, DistributedDataParallel):  # gradients sync only through forward
            outputs = list(model(images))[: self.stage.depth]
        else:
            outputs = exit_outputs(net, images, self.stage.depth)
        run = Run(
            net=net,
            stage=self.stage,
            stage_index=self.index,
            inputs=images,
            epoch=state.epoch if state is not None else self.config.epochs - 1,
            epochs=self.config.epochs,
            label_smoothing=self.config.label_smoothing if torch.is_grad_enabled() else 0.0,
        )
        return self.strategy.loss(outputs, labels, run), outputs[-1]


def _stage_epochs(stage_epochs: Sequence[int] | None, config: TrainConfig, n: int) -> list[int]:
    if stage_epochs is None:
        return [config.epochs] * n
    ok = len(stage_epochs) == n and all(isinstance(e, int) and e >= 1 for e in stage_epochs)
    if not ok:
        raise ParameterError(
            f"The 'stage_epochs' parameter of train must be {n} integers >= 1 (one per "
            f"stage). Got {list(stage_epochs)!r}."
        )
    return list(stage_epochs)


def _batches(dataset: Dataset, batch_size: int,
             seed: int | None) -> Iterator[tuple[Tensor, Tensor]]:
    """``(images, labels)`` batches of ``dataset``: shuffled with ``seed``, in order if None."""
    n = len(dataset)
    if seed is None:
        order = torch.arange(n)
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    for chunk in order.split(batch_size):
        if isinstance(dataset, TensorDataset):
            yield dataset.tensors[0][chunk], dataset.tensors[1][chunk]
        else:
            yield default_collate([dataset[i] for i in chunk.tolist()])[:2]


__all__ = ["STRATEGIES", "TrainResult", "train"]
