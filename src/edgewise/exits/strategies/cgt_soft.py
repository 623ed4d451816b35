"""Confidence-gated training, soft variant (SoftCGT).

As `cgt-hard`, but the gate is graded by the earlier exits' true-class
probabilities instead of a hard success test: residual
``r_k(i) = 1 - sigmoid(kappa (p_k(x_i)[y_i] - tau))``, eligibility
``g_e(i) = prod_{k<e} r_k(i)``; weights ``w_e(i) = lambda_e(t) g_e(i) + eps`` with the
same annealed exit weights, leak and optional normalisation. Mokssit, Karrakchou,
Mousist, Ghogho 2025, "Confidence-Gated Training for Efficient Early-Exit Neural
Networks", arXiv 2509.17885.

Unverified (public CIFAR-100 code gunki-geek/CG-Training, not the PDF):
- kappa = 1 (its "sigmoid_scale"). With tau = 0.9 the residual then only spans
  about 0.71 (p = 0) to 0.48 (p = 1), a weak gate; kappa near 20 spans about
  1.0 to 0.12. Exposed so that both can be tried.
- tau = 0.9, eps = 1e-3, normalisation on, the lambda profiles of `cgt-hard`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from edgewise.errors import check_param
from edgewise.exits.strategies.cgt_hard import CGTHard, CGTHardParams
from edgewise.exits.strategies.maths import soft_gates


@dataclass
class CGTSoftParams(CGTHardParams):
    """kappa: slope > 0 of the sigmoid in the residual (plus `cgt-hard`'s parameters)."""

    kappa: float = 1.0

    def check(self, owner: str) -> None:
        super().check(owner)
        check_param(owner, "kappa", self.kappa, self.kappa > 0, "> 0")


class CGTSoft(CGTHard):
    """`cgt-hard` with residual (soft) gates."""

    name = "cgt-soft"
    Params = CGTSoftParams

    def gates(self, outputs: Sequence[Tensor], target: Tensor) -> Tensor:
        return soft_gates(outputs, target, self.params.tau, self.params.kappa)
