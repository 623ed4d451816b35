"""The maths shared by the activation compressors: mode products, spectra, Tucker factors.

Conventions (method notes §3): a tensor ``x`` of shape (D_0, ..., D_{d-1}); its
mode-m unfolding ``x_(m)`` is the D_m x (prod of the others) matrix; the mode-m
product ``x ×_m M`` replaces axis m of size D_m by ``M @ x_(m)`` (M is K x D_m).
A Tucker form is a core S and one factor U_m (D_m x K_m, orthonormal columns)
per mode, with ``x ≈ S ×_0 U_0 ×_1 U_1 ...``; a mode left whole has no factor
(``None``), which is exact and costs nothing.

The weight gradients of a convolution and of a linear layer are linear in the
layer input, so they can be computed from the factors without rebuilding the
input: the chains below contract the output gradient with the batch (and token)
factors first, then run the small remaining product (§3.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import grad as nn_grad

Factors = tuple[Tensor | None, ...]


class Tucker(NamedTuple):
    """A tensor in Tucker form: ``core`` (K_0, ..., K_{d-1}) and one factor (D_m, K_m) or None per mode."""

    core: Tensor
    factors: Factors

    def reconstruct(self) -> Tensor:
        """The full tensor S ×_0 U_0 ×_1 U_1 ... (D_0, ..., D_{d-1})."""
        out = self.core
        for mode, factor in enumerate(self.factors):
            if factor is not None:
                out = mode_product(out, factor, mode)
        return out

    @property
    def numel(self) -> int:
        """Elements stored: the core plus every factor."""
        return self.core.numel() + sum(f.numel() for f in self.factors if f is not None)


def _split(shape: Sequence[int], mode: int) -> tuple[int, int, int]:
    """(P, D, Q): the sizes before `mode`, of `mode`, and after it; x viewed as (P, D, Q) is free."""
    return math.prod(shape[:mode]), shape[mode], math.prod(shape[mode + 1 :])


def _batched(before: int, size: int, after: int) -> bool:
    """Whether a middle mode is worth P batched (D, Q) products rather than one permuted copy:
    when the batch is no longer than each matrix (many tiny products are slow)."""
    return before <= size * after


def mode_product(x: Tensor, matrix: Tensor, mode: int) -> Tensor:
    """``x ×_mode matrix``: axis `mode` (size D) becomes size K, for `matrix` of shape (K, D).

    Works on the free (P, D, Q) view of x where it can, so x is seldom permuted;
    the result is contiguous.
    """
    before, size, after = _split(x.shape, mode)
    x = x.contiguous()
    if after == 1:
        out = x.reshape(before, size) @ matrix.T
    elif before == 1 or _batched(before, size, after):
        out = matrix @ x.reshape(before, size, after)
    else:
        return torch.tensordot(matrix, x, dims=([1], [mode])).movedim(0, mode).contiguous()
    return out.reshape(*x.shape[:mode], matrix.shape[0], *x.shape[mode + 1 :])


def mode_cross(x: Tensor, z: Tensor, mode: int) -> Tensor:
    """``x_(m) z_(m)^T`` (D x K) for tensors x and z that differ only in the size of axis `mode`."""
    before, size, after = _split(x.shape, mode)
    rank = z.shape[mode]
    x, z = x.contiguous(), z.contiguous()
    if after == 1:
        return x.reshape(before, size).T @ z.reshape(before, rank)
    if before == 1:
        return x.reshape(size, after) @ z.reshape(rank, after).T
    if rank <= after and _batched(before, size, after):  # the (P, D, K) partial sums fit in x's size
        return (x.reshape(before, size, after) @ z.reshape(before, rank, after).mT).sum(0)
    others = [axis for axis in range(x.dim()) if axis != mode]
    return torch.tensordot(x, z, dims=(others, others))


def gram(x: Tensor, mode: int) -> Tensor:
    """``x_(m) x_(m)^T``, the (D_m, D_m) Gram matrix of the mode-`mode` unfolding."""
    return mode_cross(x, x, mode)


def mode_spectrum(x: Tensor, mode: int) -> tuple[Tensor, Tensor]:
    """Squared singular values (descending) and left singular vectors of ``x_(m)``.

    Computed as the eigen-decomposition of the small Gram matrix (D_m x D_m)
    rather than an SVD of the wide unfolding. Returns ``(energies (D_m,),
    vectors (D_m, D_m))``, column j of `vectors` belonging to ``energies[j]``.
    Where float32's eigen-solver fails to converge (a collapsed layer's nearly
    constant activations give many repeated eigenvalues), it is solved in float64.
    """
    matrix = gram(x, mode)
    try:
        energies, vectors = torch.linalg.eigh(matrix)
    except torch.linalg.LinAlgError:  # float32 eigh can fail on near-degenerate Grams
        energies, vectors = (t.to(matrix.dtype) for t in _spectrum_float64(matrix.double()))
    return energies.flip(0).clamp_min(0), vectors.flip(1)


def _spectrum_float64(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """Ascending eigenvalues and eigenvectors of a Gram matrix, in float64. Where LAPACK's
    eigen-solver fails even there (seen single-threaded on a rank-3 448 x 448 Gram of a
    collapsed layer), they come from its SVD: for a symmetric positive semi-definite matrix
    the singular values and vectors are the eigenvalues and eigenvectors."""
    try:
        return torch.linalg.eigh(matrix)
    except torch.linalg.LinAlgError:
        vectors, values, _ = torch.linalg.svd(matrix)
        return values.flip(0), vectors.flip(1)


def explained_variance_rank(energies: Tensor, epsilon: float) -> int:
    """The smallest k with ``sum(energies[:k]) >= epsilon * sum(energies)`` (energies descending).

    ``epsilon >= 1`` keeps everything; an all-zero spectrum keeps one direction.
    """
    if epsilon >= 1:
        return energies.numel()
    cumulative = torch.cumsum(energies.double(), 0)
    total = cumulative[-1]
    if total <= 0:
        return 1
    return min(int(torch.searchsorted(cumulative, epsilon * total).item()) + 1, energies.numel())


def truncated_svd(matrix: Tensor, epsilon: float) -> tuple[Tensor, Tensor, Tensor]:
    """``U_K, s_K, Vh_K`` of `matrix`, K chosen by `explained_variance_rank` on s² (compact copies)."""
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    rank = explained_variance_rank(s.square(), epsilon)
    return u[:, :rank].clone(), s[:rank].clone(), vh[:rank].clone()


def compact(t: Tensor) -> Tensor:
    """`t` itself when it owns exactly its storage, else a copy: a saved view would keep it all alive."""
    owns = t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * t.element_size()
    return t if owns else t.clone(memory_format=torch.contiguous_format)


def leading_subspace(x: Tensor, mode: int, rank: int) -> Tensor:
    """The exact top-`rank` left singular vectors of ``x_(m)``, (D_m, rank) (a view: compact it to keep it)."""
    return mode_spectrum(x, mode)[1][:, :rank]


def subspace_iteration(x: Tensor, mode: int, basis: Tensor, steps: int = 1) -> Tensor:
    """`steps` warm-started subspace-iteration steps: ``U <- orth(x_(m) x_(m)^T U)`` (§4.1).

    `basis` is (D_m, K); the result spans the dominant K-dimensional subspace of
    ``x_(m)`` better with every step, at cost 2 * x.numel() * K per step.
    """
    for _ in range(steps):
        basis = torch.linalg.qr(mode_cross(x, mode_product(x, basis.T, mode), mode)).Q
    return basis


def tucker_compress(x: Tensor, factors: Sequence[Tensor | None]) -> Tucker:
    """The core ``x ×_m U_m^T`` for the given factors (modes without a factor are kept whole).

    The modes that shrink most go first, so the intermediate tensors stay small.
    Core and factors come back as compact tensors, safe to save for backward.
    """
    factors = [None if f is None else compact(f) for f in factors]
    core = x
    order = sorted(
        (m for m, f in enumerate(factors) if f is not None),
        key=lambda m: factors[m].shape[1] / factors[m].shape[0],
    )
    for mode in order:
        core = mode_product(core, factors[mode].T, mode)
    return Tucker(compact(core), tuple(factors))


def tucker_numel(shape: Sequence[int], ranks: Sequence[int]) -> int:
    """Elements of a Tucker form of `shape` with `ranks`: prod K + sum D*K over the modes with K < D."""
    kept = [min(k, d) for d, k in zip(shape, ranks, strict=True)]
    return math.prod(kept) + sum(d * k for d, k in zip(shape, kept, strict=True) if k < d)


def conv2d_weight_grad(
    tucker: Tucker,
    grad_output: Tensor,
    weight_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> Tensor:
    """dL/dW of ``conv2d(x, W)`` from the Tucker form of x (B, C, H, W) and dL/dy (B, C', H', W').

    The chain of §3.2: contract dy with U_b over the batch (K_b pseudo-samples),
    rebuild only the spatial modes of the core (K_b, K_c, H, W), run the usual
    weight-gradient correlation with K_c pseudo-channels (padding, stride and
    dilation as in the forward), then expand the channels with U_c, a 1x1
    contraction. A grouped convolution rebuilds the channels before the
    correlation instead, since its groups do not commute with U_c.
    """
    u_batch, u_channel, u_height, u_width = tucker.factors
    grad = grad_output if u_batch is None else mode_product(grad_output, u_batch.T, 0)
    inputs = tucker.core
    if u_height is not None:
        inputs = mode_product(inputs, u_height, 2)
    if u_width is not None:
        inputs = mode_product(inputs, u_width, 3)
    if groups != 1 and u_channel is not None:
        inputs, u_channel = mode_product(inputs, u_channel, 1), None
    shape = (weight_shape[0], weight_shape[1] if u_channel is None else u_channel.shape[1],
             *weight_shape[2:])
    weight_grad = nn_grad.conv2d_weight(inputs, shape, grad, stride, padding, dilation, groups)
    return weight_grad if u_channel is None else mode_product(weight_grad, u_channel, 1)


def linear_grad_factor(tucker: Tucker, grad_output: Tensor) -> Tensor:
    """T (O, K_f) with dL/dW = T U_f^T for ``y = x W^T``, x (..., I) in Tucker form, dy (..., O).

    dW[o, i] = sum over the leading modes of dy[..., o] x[..., i]: contract dy
    with the leading factors, then with the core over the same modes. The
    feature factor U_f (I, K_f) is left out so that a factored weight (WASI)
    can use T directly; without a feature factor T is dL/dW itself.
    """
    grad = grad_output
    for mode, factor in enumerate(tucker.factors[:-1]):
        if factor is not None:
            grad = mode_product(grad, factor.T, mode)
    leading = list(range(grad.dim() - 1))
    return torch.tensordot(grad, tucker.core, dims=(leading, leading))


def linear_weight_grad(tucker: Tucker, grad_output: Tensor) -> Tensor:
    """dL/dW (O, I) of ``y = x W^T`` from the Tucker form of x (..., I) and dy (..., O)."""
    factor = linear_grad_factor(tucker, grad_output)
    feature = tucker.factors[-1]
    return factor if feature is None else factor @ feature.T
