"""What a model costs: MACs and parameters, activation and training memory, latency.

Counted, not guessed: MACs from torch's operator counter, memory as the bytes
autograd actually saves (deduplicated by storage) beside a per-layer analytic
count, latency as the median of timed runs with the thread count fixed.
"""

from edgewise.cost.analytic import analytic_activation_bytes
from edgewise.cost.latency import Timing, time_interleaved, time_it, time_model
from edgewise.cost.macs import MacCount, count_macs, count_params
from edgewise.cost.memory import (
    MemoryReport,
    SavedBytes,
    SavedTensorCounter,
    saved_activation_bytes,
    training_memory,
)

__all__ = [
    "MacCount",
    "MemoryReport",
    "SavedBytes",
    "SavedTensorCounter",
    "Timing",
    "analytic_activation_bytes",
    "count_macs",
    "count_params",
    "saved_activation_bytes",
    "time_interleaved",
    "time_it",
    "time_model",
    "training_memory",
]
