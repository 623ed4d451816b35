"""SVD: the input of each trained layer kept as a truncated SVD of its batch unfolding.

Paper: L.-T. Nguyen, A. Quélennec, E. Tartaglione, S. Tardieu, V.-T. Nguyen,
"Activation Map Compression through Tensor Decomposition for Deep Learning",
NeurIPS 2024, arXiv:2411.06346 (the SVD baseline beside HOSVD).

Idea: unfold the input activation A on its batch mode, A_(1) (B x rest), keep
the fewest leading singular vectors U_K whose explained variance reaches
`epsilon`, and save U_K (B x K) and U_K^T A_(1) (K x rest, i.e. Σ_K V_K^T):
K (B + rest) elements. This is a Tucker form in which only the batch mode is
compressed, so the weight gradient comes from the same contractions as HOSVD.

Unverified: epsilon = 0.9, as for HOSVD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from edgewise.ondevice.compress.base import Codec
from edgewise.ondevice.compress.hosvd import HOSVD, VarianceCodec


@dataclass
class SVD(HOSVD):
    """Truncated SVD of the batch unfolding, rank by explained variance `epsilon` in (0, 1] per batch."""

    name: ClassVar[str] = "svd"

    def codec(self) -> Codec:
        return VarianceCodec(self.epsilon, modes=(0,))
