"""Confidence-gated training, hard variant (HardCGT).

A deeper exit's loss counts only for the samples on which every earlier exit
failed, i.e. was not confident enough (max probability < tau) or was wrong:
``m_k(i) = 1[c_k(x_i) >= tau and argmax p_k(x_i) = y_i]``,
``g_e(i) = prod_{k<e} (1 - m_k(i))`` (``g_0 = 1``), computed under no_grad (pure
per-sample loss weights). Weights ``w_e(i) = lambda_e(t) g_e(i) + eps`` (eps a
small leak, so deep exits never starve), optionally normalised so that
``sum_e w_e(i) = 1``; loss ``sum_e mean_i(w_e(i) CE_e(i))``. The exit weights
``lambda_e`` move linearly over the epochs from ``lambda_start`` (shallow exits
first) to ``lambda_end`` (deep exits first). Shallow exits become the primary
decision points and deeper ones specialise on hard inputs. Mokssit, Karrakchou,
Mousist, Ghogho 2025, "Confidence-Gated Training for Efficient Early-Exit Neural
Networks", arXiv 2509.17885.

Unverified (taken from the public CIFAR-100 code gunki-geek/CG-Training, not the
paper's PDF):
- tau = 0.9 (its README runs; its HardCGT config default is 0.5), eps = 1e-3,
  per-sample normalisation on.
- lambda annealed from (1.0, 0.7, 0.4, 0.1) to (0.2, 0.5, 0.8, 1.0) for four exits,
  ``a = epoch / (epochs - 1)``; for another count of exits these profiles are
  resampled linearly (e.g. three exits: (1.0, 0.55, 0.1) -> (0.2, 0.65, 1.0)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from edgewise.errors import check_param
from edgewise.exits.strategies.base import (
    ExitStrategy,
    Run,
    Stage,
    StrategyParams,
    check_length,
    check_weights,
    num_exits,
)
from edgewise.exits.strategies.maths import (
    gated_loss,
    gated_weights,
    hard_gates,
    linear_anneal,
    resample_profile,
)

LAMBDA_START = (1.0, 0.7, 0.4, 0.1)
LAMBDA_END = (0.2, 0.5, 0.8, 1.0)


@dataclass
class CGTHardParams(StrategyParams):
    """tau: confidence threshold in (0, 1] for an exit to count as successful.
    eps: leak >= 0 added to every weight.
    lambda_start, lambda_end: exit weights (one per exit, >= 0) at the first and
        last epoch (default: the CGT code's profiles, resampled to the exit count).
    normalize: normalise each sample's weights to sum to 1.
    """

    tau: float = 0.9
    eps: float = 1e-3
    lambda_start: tuple[float, ...] | None = None
    lambda_end: tuple[float, ...] | None = None
    normalize: bool = True

    def check(self, owner: str) -> None:
        check_param(owner, "tau", self.tau, 0 < self.tau <= 1, "in (0, 1]")
        check_param(owner, "eps", self.eps, self.eps >= 0, ">= 0")
        check_weights(owner, "lambda_start", self.lambda_start)
        check_weights(owner, "lambda_end", self.lambda_end)


class CGTHard(ExitStrategy):
    """One joint stage; each exit's per-sample loss weight is gated by earlier exits."""

    name = "cgt-hard"
    Params = CGTHardParams

    def stages(self, net: nn.Module) -> list[Stage]:
        n = num_exits(net)
        self.exit_weights(n, 0, 1)  # checks lengths before training starts
        return [Stage.whole(n, "cgt")]

    def exit_weights(self, n: int, epoch: int, epochs: int) -> list[float]:
        """``lambda_e(t)`` for ``n`` exits at 0-based ``epoch`` of ``epochs``."""
        p = self.params
        check_length(self.name, "lambda_start", p.lambda_start, n)
        check_length(self.name, "lambda_end", p.lambda_end, n)
        start = p.lambda_start or resample_profile(LAMBDA_START, n)
        end = p.lambda_end or resample_profile(LAMBDA_END, n)
        return linear_anneal(start, end, epoch, epochs)

    def gates(self, outputs: Sequence[Tensor], target: Tensor) -> Tensor:
        """Eligibility ``g_e(i)``, shape ``(N, E)``, no gradient."""
        return hard_gates(outputs, target, self.params.tau)

    def weights(self, outputs: Sequence[Tensor], target: Tensor, run: Run) -> Tensor:
        """Per-sample, per-exit loss weights ``w_e(i)``, shape ``(N, E)``."""
        lambdas = self.exit_weights(len(outputs), run.epoch, run.epochs)
        return gated_weights(self.gates(outputs, target), lambdas, self.params.eps,
                             self.params.normalize)

    def loss(self, outputs: Sequence[Tensor], target: Tensor, run: Run) -> Tensor:
        return gated_loss(outputs, target, self.weights(outputs, target, run),
                          run.label_smoothing)
