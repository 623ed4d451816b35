"""Shared maths of the exit strategies: schedules, distillation, EWC, confidence gates.

Plain functions of tensors, no state; each strategy file composes them. Equation
references are to /work/shared/methods/early-exit.md (sections 1.1, 1.2, 2.2).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

# -- schedules -------------------------------------------------------------------------


def sdn_ramp(max_weights: Sequence[float], epoch: int, epochs: int) -> list[float]:
    """SDN's internal-classifier weights at 0-based ``epoch`` of ``epochs``.

    ``tau_i(t) = min(C_i, 0.01 + t * C_i / T)`` with the 1-based epoch ``t = epoch + 1``
    (Kaya et al.'s code counts epochs from 1), so the weights reach ``C_i`` at the
    last epoch.
    """
    t = epoch + 1
    return [min(c, 0.01 + t * c / epochs) for c in max_weights]


def sdn_max_weights(n_internal: int) -> list[float]:
    """SDN's final weights ``C_i``: 0.15, 0.30, ..., 0.90 for six internal exits.

    For another count, the same line ``C_i = 0.9 (i + 1) / n`` (SDN places its six
    exits at 15 %, 30 %, ... 90 % of the backbone's cost; C_i equals that fraction).
    """
    return [0.9 * (i + 1) / n_internal for i in range(n_internal)]


def linear_anneal(start: Sequence[float], end: Sequence[float], epoch: int,
                  epochs: int) -> list[float]:
    """CGT's exit weights: ``start + a (end - start)`` with ``a = epoch / max(1, epochs - 1)``.

    ``epoch`` is 0-based, so the first epoch uses ``start`` and the last ``end``.
    """
    a = epoch / max(1, epochs - 1)
    return [s + a * (e - s) for s, e in zip(start, end, strict=True)]


def resample_profile(profile: Sequence[float], n: int) -> list[float]:
    """A shallow-to-deep weight profile stretched to ``n`` exits by linear interpolation."""
    if len(profile) == n:
        return [float(v) for v in profile]
    xp = np.linspace(0.0, 1.0, len(profile))
    return [float(v) for v in np.interp(np.linspace(0.0, 1.0, n), xp, profile)]


# -- distillation ----------------------------------------------------------------------


def kl_with_temperature(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, averaged over the batch.

    The ``T^2`` keeps gradient magnitudes comparable across temperatures (Hinton et
    al. 2015). The teacher is detached here: no gradient flows into it.
    """
    t = temperature
    log_p_student = F.log_softmax(student / t, dim=1)
    log_p_teacher = F.log_softmax(teacher.detach() / t, dim=1)
    return (t * t) * F.kl_div(log_p_student, log_p_teacher, reduction="batchmean",
                              log_target=True)


# -- elastic weight consolidation --------------------------------------------------------


class _Prefix(nn.Module):
    """Stages ``0..exit`` and head ``exit`` of an early-exit network, as one module."""

    def __init__(self, net: nn.Module, exit_index: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList(net.stages[i] for i in range(exit_index + 1))
        self.head = net.heads[exit_index]

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


def fisher_diagonal(net: nn.Module, exit_index: int, names: Iterable[str], data: Iterable,
                    max_samples: int) -> dict[str, Tensor]:
    """Empirical Fisher diagonal of exit ``exit_index``'s log-likelihood, per parameter name.

    ``F_i = E_x[(d/d theta_i log p_e(y | x))^2]`` over at most ``max_samples`` training
    samples, with per-sample gradients (``torch.func.vmap``) and the network in eval
    mode (BatchNorm uses its running statistics, nothing is updated). ``names`` are
    names in ``net.named_parameters()``; those outside the exit's prefix get zeros.
    """
    wanted = set(names)
    by_id = {id(p): n for n, p in net.named_parameters() if n in wanted}
    prefix = _Prefix(net, exit_index)
    local = {ln: p for ln, p in prefix.named_parameters() if id(p) in by_id}
    params = {ln: p.detach() for ln, p in local.items()}
    total = {ln: torch.zeros_like(p) for ln, p in params.items()}

    def log_likelihood(ps: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        logits = functional_call(prefix, ps, (x.unsqueeze(0),))
        return -F.cross_entropy(logits, y.unsqueeze(0))  # log p(y | x), one sample

    per_sample = vmap(grad(log_likelihood), in_dims=(None, 0, 0))
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    seen = 0
    try:
        for x, y in data:
            take = min(len(y), max_samples - seen)
            if take <= 0:
                break
            x, y = x[:take].to(device), y[:take].to(device)
            with torch.no_grad():  # torch.func.grad still differentiates inside
                grads = per_sample(params, x, y)
            for ln, g in grads.items():
                total[ln] += g.pow(2).sum(0)
            seen += take
    finally:
        net.train(was_training)
    out = {n: torch.zeros_like(p, memory_format=torch.contiguous_format).detach()
           for n, p in net.named_parameters() if n in wanted}
    for ln, p in local.items():
        out[by_id[id(p)]] = total[ln] / max(seen, 1)
    return out


def fisher_quantile(fisher: dict[str, Tensor], q: float) -> float:
    """The ``q`` quantile (lower, by rank) of all entries of ``fisher``; 1.0 when it is 0."""
    flat = torch.cat([f.detach().flatten().float().cpu() for f in fisher.values()])
    k = min(max(1, math.ceil(q * flat.numel())), flat.numel())
    value = float(flat.kthvalue(k).values)
    return value if value > 0 else 1.0


def ewc_penalty(params: dict[str, Tensor], fisher: dict[str, Tensor],
                anchor: dict[str, Tensor], ewc_lambda: float) -> Tensor:
    """``(lambda / 2) * sum_i F_i (theta_i - theta*_i)^2`` (Kirkpatrick et al. 2017, eq. 3).

    ``params`` maps names to the current parameters; only names present in
    ``fisher`` count.
    """
    total = None
    for name, f in fisher.items():
        p = params[name]
        term = (f.to(p.device) * (p - anchor[name].to(p.device)).pow(2)).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return 0.5 * ewc_lambda * total


# -- confidence-gated training --------------------------------------------------------


@torch.no_grad()
def hard_gates(outputs: Sequence[Tensor], target: Tensor, tau: float) -> Tensor:
    """HardCGT eligibility ``g_e(i) = prod_{k<e} (1 - m_k(i))``, shape ``(N, E)``.

    ``m_k(i) = 1[max_c p_k(x_i)_c >= tau and argmax p_k(x_i) = y_i]``: exit ``k``
    succeeded (confident and right). ``g_0 = 1``; a deeper exit is eligible only if
    every earlier exit failed.
    """
    gates = [torch.ones_like(target, dtype=outputs[0].dtype)]
    for z in outputs[:-1]:
        conf, pred = F.softmax(z.detach(), dim=1).max(dim=1)
        success = ((conf >= tau) & (pred == target)).to(z.dtype)
        gates.append(gates[-1] * (1.0 - success))
    return torch.stack(gates, dim=1)


@torch.no_grad()
def soft_gates(outputs: Sequence[Tensor], target: Tensor, tau: float, kappa: float) -> Tensor:
    """SoftCGT eligibility ``g_e(i) = prod_{k<e} r_k(i)``, shape ``(N, E)``.

    ``r_k(i) = 1 - sigmoid(kappa (p_k(x_i)[y_i] - tau))``: the residual left by exit
    ``k`` from its true-class probability.
    """
    gates = [torch.ones_like(target, dtype=outputs[0].dtype)]
    for z in outputs[:-1]:
        p_true = F.softmax(z.detach(), dim=1).gather(1, target[:, None]).squeeze(1)
        residual = 1.0 - torch.sigmoid(kappa * (p_true - tau))
        gates.append(gates[-1] * residual)
    return torch.stack(gates, dim=1)


def gated_weights(gates: Tensor, lambdas: Sequence[float], eps: float,
                  normalize: bool) -> Tensor:
    """``w_e(i) = lambda_e g_e(i) + eps``, optionally normalised so ``sum_e w_e(i) = 1``."""
    w = gates * torch.tensor(lambdas, dtype=gates.dtype, device=gates.device) + eps
    if normalize:
        w = w / (w.sum(dim=1, keepdim=True) + 1e-12)
    return w


def gated_loss(outputs: Sequence[Tensor], target: Tensor, weights: Tensor,
               label_smoothing: float = 0.0) -> Tensor:
    """``sum_e mean_i(w_e(i) CE_e(i))`` (CGT's per-sample weighted objective)."""
    total = outputs[0].new_zeros(())
    for e, z in enumerate(outputs):
        ce = F.cross_entropy(z, target, reduction="none", label_smoothing=label_smoothing)
        total = total + (weights[:, e] * ce).mean()
    return total
