"""`TrainConfig`: every hyperparameter of `fit`, validated when it is made."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgewise.engine.optim import OPTIMIZERS, SCHEDULES
from edgewise.errors import check_param
from edgewise.registry import lookup

OWNER = "TrainConfig"


@dataclass
class TrainConfig:
    """Hyperparameters of one training run; a bad value raises the standard `ParameterError`.

    `batch_size` is per process (each data-parallel rank takes that many images per
    step). `lr` is the peak learning rate; the schedule (stepped every iteration)
    scales it, after an optional linear warm-up of `warmup_epochs`. `label_smoothing`
    applies to the default cross-entropy only, not to a custom `loss_fn`. `augment`
    takes a random crop (zero padding of H // 8 pixels) and, when `hflip`, a random
    horizontal flip of each training image. `save_best` also keeps
    `checkpoints/best.safetensors`, the weights with the best validation accuracy.
    `grad_clip` rescales the optimised parameters' gradients to that total L2 norm when
    theirs is larger, before each step (None: no clipping).
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: str = "cosine"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"
    augment: bool = False
    hflip: bool = True
    eval_batch_size: int = 512
    threads: int | None = None
    save_best: bool = False
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        check_param(OWNER, "epochs", self.epochs, self.epochs >= 1, ">= 1")
        check_param(OWNER, "batch_size", self.batch_size, self.batch_size >= 1, ">= 1")
        check_param(OWNER, "lr", self.lr, self.lr > 0, "> 0")
        lookup(OPTIMIZERS, self.optimizer, "optimizer")
        lookup(SCHEDULES, self.schedule, "schedule")
        check_param(OWNER, "momentum", self.momentum, 0 <= self.momentum < 1, "in [0, 1)")
        check_param(OWNER, "weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0")
        if self.optimizer == "sgd" and self.nesterov:
            check_param(OWNER, "momentum", self.momentum, self.momentum > 0, "> 0 with nesterov")
        check_param(
            OWNER,
            "warmup_epochs",
            self.warmup_epochs,
            0 <= self.warmup_epochs < self.epochs,
            f"in [0, epochs={self.epochs})",
        )
        check_param(
            OWNER,
            "label_smoothing",
            self.label_smoothing,
            0 <= self.label_smoothing < 1,
            "in [0, 1)",
        )
        check_param(OWNER, "seed", self.seed, self.seed >= 0, ">= 0")
        device_ok = self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        check_param(OWNER, "device", self.device, device_ok, "'auto', 'cpu' or 'cuda'")
        check_param(
            OWNER, "eval_batch_size", self.eval_batch_size, self.eval_batch_size >= 1, ">= 1"
        )
        check_param(
            OWNER,
            "threads",
            self.threads,
            self.threads is None or self.threads >= 1,
            "None or >= 1",
        )
        check_param(
            OWNER,
            "grad_clip",
            self.grad_clip,
            self.grad_clip is None or self.grad_clip > 0,
            "None or > 0",
        )

    def to_dict(self) -> dict:
        """The fields as a plain JSON-ready dict."""
        return asdict(self)
