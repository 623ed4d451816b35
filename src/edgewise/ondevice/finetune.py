"""The fine-tuning runner: a pretrained model, a method and a budget in; measured memory,
step time and accuracy out.

A method is one of three kinds, found by one combined look-up (`method_kind`):

- ``vanilla``: stock PyTorch, every weight trains (BatchNorm folded, as
  frozen statistics are in every other method): the reference;
- an update-selection method (`edgewise.ondevice.selection.SELECTORS`): the
  model is prepared with the lean operations (`ops.prepare`), and at the start
  of every epoch the selector chooses what trains, within the budget;
- an activation compressor (`edgewise.ondevice.compress.COMPRESSORS`): its
  wrappers replace the last `layers` conv/linear layers, which train; every
  other layer is frozen and lean. A compressor that plans under a budget (asi,
  wasi) gets the budget less its layers' weight gradients; svd and hosvd pick
  their ranks by explained variance batch by batch, so for them the budget is
  only the per-step limit below (`budget_note` says so).

The new head (the classifier's linear layer, re-initialised for the target
classes) always trains. Training is `engine.fit` with SGD without momentum
(no optimizer state, as the papers; a budget could not hold momentum buffers)
and a cosine schedule. Every step is measured by a `StepMonitor`; with a
`Budget`, the first step over it raises `BudgetError`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from edgewise.cost import time_it
from edgewise.engine import (
    TrainConfig,
    evaluate,
    fit,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
)
from edgewise.engine.optim import clip_gradients
from edgewise.errors import UserError, check_param
from edgewise.models import build, from_spec, spec_of
from edgewise.ondevice.compress import COMPRESSORS, prepare_compression
from edgewise.ondevice.compress.base import Compressed, select_layers
from edgewise.ondevice.memory import Budget, StepMonitor, step_memory
from edgewise.ondevice.ops import fold_batchnorm, prepare, sparse_layers
from edgewise.ondevice.selection import (
    SELECTORS,
    MemoryPlan,
    Selection,
    Selector,
    Statistics,
    apply_selection,
    get_selector,
)
from edgewise.ondevice.selection.plan import check_head_fits
from edgewise.registry import lookup

__all__ = [
    "VANILLA",
    "FinetuneConfig",
    "budget_note",
    "check_budget",
    "check_layers",
    "FinetuneResult",
    "finetune",
    "load_source",
    "method_kind",
    "method_names",
    "new_head",
    "pretrain",
    "save_source",
]

VANILLA = "vanilla"


def method_names() -> list[str]:
    """Every value `--method` takes: vanilla, the selection methods and the compressors."""
    return sorted([VANILLA, *SELECTORS, *COMPRESSORS])


def method_kind(name: str) -> str:
    """``"vanilla"``, ``"selection"`` or ``"compression"``; an unknown name lists all valid ones."""
    kinds = {VANILLA: "vanilla"} | dict.fromkeys(SELECTORS, "selection")
    kinds |= dict.fromkeys(COMPRESSORS, "compression")
    return lookup(dict(sorted(kinds.items())), name, "fine-tuning method")


@dataclass
class FinetuneConfig:
    """How to fine-tune. `budget_kb`: the limit on saved activations + weight gradients of a
    step at `batch_size` (None: no limit). `params`: the method's own parameters (for a
    compressor that takes a budget, asi or wasi, ``budget_bytes`` is the bytes its layers may
    save; by default the budget less their weight gradients; svd and hosvd take none, and the
    budget is then only checked at every step). `probe_size`: validation images whose layer outputs NEq compares;
    `ranking_batches`: training batches of the offline ranking pass (TraDy, MeDyate);
    `layers`: the layers a compressor wraps: how many of the last conv/linear layers, or their
    qualified names (e.g. only a transformer's MLP layers, as WASI's paper trains).
    `grad_clip`: the total gradient norm each step is clipped to; 2.0, the AMC / ASI recipe's
    (None: no clipping)."""

    method: str = "full"
    budget_kb: float | None = None
    batch_size: int = 8
    epochs: int = 5
    lr: float = 0.05
    schedule: str = "cosine"
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    probe_size: int = 20
    ranking_batches: int = 8
    layers: int | tuple[str, ...] = 4
    timing_repeats: int = 20
    grad_clip: float | None = 2.0
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        method_kind(self.method)
        owner = "finetune"
        if self.budget_kb is not None:
            Budget(self.budget_kb)
        for name in ("batch_size", "epochs", "probe_size", "ranking_batches", "timing_repeats"):
            value = getattr(self, name)
            check_param(owner, name, value, isinstance(value, int) and value >= 1, "an int >= 1")
        check_param(owner, "lr", self.lr, self.lr > 0, "> 0")
        check_param(owner, "grad_clip", self.grad_clip, self.grad_clip is None or self.grad_clip > 0,
                    "None or > 0")
        layers = self.layers
        check_param(owner, "layers", layers,
                    (isinstance(layers, int) and not isinstance(layers, bool) and layers >= 1)
                    or (isinstance(layers, tuple) and len(layers) > 0
                        and all(isinstance(n, str) for n in layers)),
                    "an int >= 1 or a non-empty tuple of qualified layer names")


@dataclass(frozen=True)
class FinetuneResult:
    """What one fine-tuning run measured. Bytes are peaks over all training steps
    (``activations``: saved for backward, measured; ``gradients``: weight gradients);
    ``weights`` and ``optimizer_state`` are measured at the last step; ``analytic_activations``
    is the formula's count at the last epoch's selection. Accuracies are fractions in [0, 1]."""

    method: str
    kind: str
    batch_size: int
    budget_bytes: int | None
    activations: int
    gradients: int
    weights: int
    optimizer_state: int
    analytic_activations: int
    step_time_s: float
    accuracy: float
    val_accuracy: float
    history: list[dict[str, float]]

    @property
    def budgeted(self) -> int:
        """Saved activations + weight gradients: what a budget bounds."""
        return self.activations + self.gradients

    @property
    def total(self) -> int:
        """All training memory: weights, saved activations, weight gradients, optimizer state."""
        return self.activations + self.gradients + self.weights + self.optimizer_state

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"budgeted": self.budgeted, "total": self.total}


def new_head(model: nn.Module, num_classes: int, seed: int = 0) -> str:
    """Replace the model's last ``nn.Linear`` (a zoo model's ``classifier.fc``) by a freshly
    initialised one with `num_classes` outputs, in place; return its qualified name."""
    linears = [name for name, m in model.named_modules() if type(m) is nn.Linear]
    if not linears:
        raise UserError(f"This {type(model).__name__} has no nn.Linear head to re-initialise.")
    old = model.get_submodule(linears[-1])
    torch.manual_seed(seed)
    model.set_submodule(linears[-1], nn.Linear(old.in_features, num_classes).to(old.weight.device))
    return linears[-1]


def pretrain(
    model_name: str,
    splits,
    *,
    width: float = 1.0,
    config: TrainConfig | None = None,
    progress: bool = False,
    **model_options: Any,
) -> nn.Module:
    """A zoo model trained on `splits` (the source task) with `config` (default: 3 epochs
    of SGD with momentum, batch 128, lr 0.05, cosine)."""
    model = build(model_name, splits.num_classes, splits.input_shape, width, **model_options)
    fit(model, splits, config or TrainConfig(epochs=3), progress=progress)
    return model.eval()


def save_source(path: str | Path, model: nn.Module) -> Path:
    """Save a zoo model as safetensors + JSON (its spec in the metadata)."""
    return save_checkpoint(path, model.state_dict(), {"spec": spec_of(model)})


def load_source(path: str | Path) -> nn.Module:
    """Load a model saved by `save_source` (rebuilt from its spec; nothing is unpickled)."""
    tensors, meta = load_checkpoint(path)
    if "spec" not in meta:
        raise UserError(f"{path} is not a source model written by edgewise (no 'spec' in its metadata).")
    model = from_spec(meta["spec"])
    model.load_state_dict(tensors)
    return model.eval()


def budget_note(config: FinetuneConfig) -> str | None:
    """A one-line note when `config` has a budget that its method cannot plan for (svd, hosvd:
    ranks by explained variance, batch by batch), else None. The budget is still checked at
    every step: the first step over it raises `BudgetError`."""
    if config.budget_kb is None or method_kind(config.method) != "compression":
        return None
    if COMPRESSORS[config.method].takes_budget:
        return None
    return (f"{config.method} picks its ranks by explained variance (epsilon), not by the budget: "
            f"the {config.budget_kb:g} kB budget is only checked at every step, and the run stops "
            f"at the first step over it (use asi or wasi to plan ranks under a budget).")


def _first_batch(target, batch_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The first training batch, copied: a view would keep (and count) the whole training set,
    while the training loop's batches are gathered copies."""
    return tuple(t[:batch_size].clone().to(device) for t in target.train.tensors)


def check_layers(model: nn.Module, config: FinetuneConfig) -> None:
    """Fail early (`UnknownNameError`) when a compressor's `layers` name a layer that `model`
    lacks or that the compressor cannot wrap."""
    if method_kind(config.method) == "compression" and isinstance(config.layers, tuple):
        select_layers(model, config.layers, COMPRESSORS[config.method].layer_types, config.method)


def check_budget(model: nn.Module, target, config: FinetuneConfig) -> None:
    """Fail early (`BudgetError`) when the budget cannot hold a step that trains only the new head
    of `model` on `target` (measured on a copy; the weights' values do not matter)."""
    if config.budget_kb is None:
        return
    twin = copy.deepcopy(model)
    head = new_head(twin, target.num_classes)
    images, labels = _first_batch(target, config.batch_size, torch.device("cpu"))
    prepare(twin, images)
    apply_selection(twin, Selection(), head)
    used = step_memory(twin, images, labels)
    check_head_fits(Budget(config.budget_kb).bytes, used.budgeted, head, config.batch_size)


class _Reselect:
    """Engine callback: the selector chooses what trains at the start of every epoch."""

    def __init__(self, selector: Selector, plan: MemoryPlan, stats: Statistics) -> None:
        self.selector, self.plan, self.stats = selector, plan, stats
        self.selection = Selection()

    def on_epoch_start(self, state) -> None:
        self.stats.start_epoch(state.epoch)
        self.selection = self.selector.select(state.model, self.plan, self.stats)
        apply_selection(state.model, self.selection, self.plan.head)

    def on_epoch_end(self, state) -> dict[str, float]:
        return {
            "trained_layers": float(len(self.selection.layers())),
            "trained_channels": float(self.selection.weight_count()),
        }


def _prepare_selection(model, head, config, target, images, labels, budget, device):
    """Lean operations, the memory plan, the statistics and the re-selection callback."""
    prepare(model, images)
    plan = MemoryPlan(model, images, labels, head, budget.bytes if budget else None)
    probe = target.val.tensors[0][: config.probe_size].to(device)
    n = config.batch_size * config.ranking_batches
    train_images, train_labels = (t[:n].to(device) for t in target.train.tensors)
    batches = list(zip(train_images.split(config.batch_size), train_labels.split(config.batch_size),
                       strict=True))
    stats = Statistics(model, plan.layers, probe, batches, config.seed)
    selector = get_selector(config.method, **config.params)
    parameters = [
        p for layer in sparse_layers(model).values()
        for p in (layer.weight, layer.weight_slice, layer.bias) if p is not None
    ]
    return parameters, [_Reselect(selector, plan, stats)], [stats.observe]


def _prepare_compression(model, head, config, images, labels, budget):
    """Compressed wrappers on the last `layers` layers, every other layer frozen and lean;
    the head trains whole when it is not one of them."""
    fold_batchnorm(model, images)
    params = dict(config.params)
    takes_budget = COMPRESSORS[config.method].takes_budget
    if "budget_bytes" not in params and budget is not None and takes_budget:
        targets = select_layers(model, config.layers, COMPRESSORS[config.method].layer_types,
                                config.method)
        gradients = sum(p.nbytes for m in targets.values() for p in m.parameters())
        params["budget_bytes"] = max(1, budget.bytes - gradients)
    prepare_compression(model, config.method, layers=config.layers,
                        calibration_batch=(images, labels), **params)
    prepare(model, images)
    for module in model.modules():
        if isinstance(module, Compressed):
            module.requires_grad_(True)
    if head in sparse_layers(model):
        apply_selection(model, Selection(), head)
    return [p for p in model.parameters() if p.requires_grad]


def _time_step(model: nn.Module, images: Tensor, labels: Tensor, config: FinetuneConfig) -> float:
    """Median seconds of one training step (forward, loss, backward, gradient clipping as
    configured, SGD step with lr 0)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.0)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        clip_gradients(optimizer, config.grad_clip)  # as the training loop's step does
        optimizer.step()

    model.train()
    return time_it(step, warmup=3, repeats=config.timing_repeats, threads=config.threads).median_s


def finetune(
    source: nn.Module,
    target,
    config: FinetuneConfig,
    *,
    run_dir: str | Path | None = None,
    progress: bool = False,
) -> FinetuneResult:
    """Fine-tune a copy of `source` on `target` (`Splits`) with `config`; measure it.

    Raises `BudgetError` when the budget cannot hold even the head, or when a
    step goes over it (a method that ignores budgets, e.g. ``full``, ``svd``, ``hosvd``).
    """
    kind = method_kind(config.method)
    device = resolve_device(config.device)
    model = copy.deepcopy(source)
    head = new_head(model, target.num_classes, config.seed)
    model.to(device).eval()
    images, labels = _first_batch(target, config.batch_size, device)
    budget = Budget(config.budget_kb) if config.budget_kb is not None else None
    callbacks, observers = [], []
    if kind == "selection":
        parameters, callbacks, observers = _prepare_selection(
            model, head, config, target, images, labels, budget, device)
    elif kind == "compression":
        parameters = _prepare_compression(model, head, config, images, labels, budget)
    else:
        fold_batchnorm(model, images)
        parameters = list(model.parameters())
    monitor = StepMonitor(budget, observers)
    train = TrainConfig(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, momentum=0.0,
        weight_decay=0.0, nesterov=False, schedule=config.schedule, seed=config.seed,
        device=config.device, threads=config.threads, eval_batch_size=256, grad_clip=config.grad_clip,
    )
    history = fit(model, target, train, run_dir=run_dir, loss_fn=monitor.loss_fn,
                  callbacks=[*callbacks, monitor], parameters=parameters, progress=progress)
    test = evaluate(model, target.test, batch_size=256)
    last = step_memory(model, images, labels)
    step_time = _time_step(model, images, labels, config)
    return FinetuneResult(
        method=config.method, kind=kind, batch_size=config.batch_size,
        budget_bytes=budget.bytes if budget else None,
        activations=monitor.peak_activations, gradients=monitor.peak_gradients,
        weights=last.weights, optimizer_state=last.optimizer_state,
        analytic_activations=last.analytic_activations, step_time_s=step_time,
        accuracy=test["accuracy"], val_accuracy=history.last.get("val_accuracy", float("nan")),
        history=history.rows,
    )
