"""HOSVD: the input of each trained layer kept as a Tucker form truncated by explained variance.

Paper: L.-T. Nguyen, A. Quélennec, E. Tartaglione, S. Tardieu, V.-T. Nguyen,
"Activation Map Compression through Tensor Decomposition for Deep Learning",
NeurIPS 2024, arXiv:2411.06346.

Idea: in the forward pass, unfold the input activation A (B, C, H, W for a
conv; B, I or B, N, I for a linear layer) along every mode, keep for each mode
the fewest leading singular vectors U_m whose explained variance reaches
`epsilon`, and save only the core S = A ×_m U_m^T and the factors:
prod K_m + sum D_m K_m elements instead of prod D_m. The weight gradient is
computed from the factors by a chain of small contractions (§3.2 of the
method notes); the input gradient needs only the weight. The ranks are chosen
batch by batch, so the memory varies from batch to batch and no budget can be
promised (use `asi` for that). Each mode's factor comes from the original A
(not deflated), as in the paper's code; it is computed as the eigenvectors of
the small Gram matrix A_(m) A_(m)^T rather than an SVD of the wide unfolding.

Unverified: epsilon = 0.9 (the paper uses 0.8 and 0.9); a mode whose rank
reaches its full size is left uncompressed (no factor), which the paper does
not say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from edgewise.errors import check_param
from edgewise.ondevice.compress.base import (
    CalibrationBatch,
    Codec,
    Compressor,
    compressed,
    is_fraction,
)
from edgewise.ondevice.compress.tensor_ops import (
    Tucker,
    explained_variance_rank,
    mode_spectrum,
    tucker_compress,
)


@dataclass
class VarianceCodec:
    """Per batch, the leading singular vectors of each mode in `modes` (all when None) up to `epsilon`."""

    epsilon: float
    modes: tuple[int, ...] | None = None

    def compress(self, x: Tensor) -> Tucker:
        factors = []
        for mode, size in enumerate(x.shape):
            if self.modes is not None and mode not in self.modes:
                factors.append(None)
                continue
            energies, vectors = mode_spectrum(x, mode)
            rank = explained_variance_rank(energies, self.epsilon)
            factors.append(None if rank == size else vectors[:, :rank])
        return tucker_compress(x, factors)


@dataclass
class HOSVD(Compressor):
    """Tucker compression of every mode, ranks by explained variance `epsilon` in (0, 1] per batch."""

    name: ClassVar[str] = "hosvd"
    epsilon: float = 0.9

    def __post_init__(self) -> None:
        check_param(self.name, "epsilon", self.epsilon, is_fraction(self.epsilon), "in (0, 1]")

    def codec(self) -> Codec:
        """A fresh codec for one layer."""
        return VarianceCodec(self.epsilon)

    def wrap(
        self,
        model: nn.Module,
        targets: dict[str, nn.Module],
        *,
        budget_bytes: int | None,
        calibration_batch: CalibrationBatch | None,
    ) -> dict[str, nn.Module]:
        """Wrap every target; `calibration_batch` is not needed, and a budget cannot be promised."""
        check_param(self.name, "budget_bytes", budget_bytes, budget_bytes is None,
                    "None: its ranks follow epsilon batch by batch (use asi for a memory budget)")
        return {name: compressed(layer, self.codec()) for name, layer in targets.items()}
