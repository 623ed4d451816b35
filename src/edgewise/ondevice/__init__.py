"""On-device fine-tuning within a memory budget (pillar 3).

- `memory`: what one training step holds, measured and by formula; `Budget`;
- `ops`: channel-sparse conv/linear and one-bit rectifiers that save for
  backward only what the trained channels need;
- `selection`: which layers and channels train each epoch (full, last-k,
  bias-only, random, neq, neq-budget, scotti, trady, medyate);
- `compress`: activation compression for backward (svd, hosvd, asi, wasi);
- `finetune`: the runner, `tasks`: the transfer tasks.
"""

from edgewise.ondevice.finetune import (
    FinetuneConfig,
    FinetuneResult,
    finetune,
    method_kind,
    method_names,
    pretrain,
)
from edgewise.ondevice.memory import Budget, StepMemory, StepMonitor, step_memory
from edgewise.ondevice.tasks import TransferTask, transfer_task

__all__ = [
    "Budget",
    "FinetuneConfig",
    "FinetuneResult",
    "StepMemory",
    "StepMonitor",
    "TransferTask",
    "finetune",
    "method_kind",
    "method_names",
    "pretrain",
    "step_memory",
    "transfer_task",
]
