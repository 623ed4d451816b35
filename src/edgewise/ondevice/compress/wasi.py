"""WASI: linear weights kept as factors W ≈ L R in a tracked subspace, plus ASI on the inputs.

Paper: L.-T. Nguyen, E. Tartaglione, V.-T. Nguyen, "Efficient
Resource-Constrained Training of (Vision) Transformers via Subspace
Optimization", ICLR 2026, arXiv:2510.09160.

Idea: transformers' linear weights have a dominant subspace that barely moves
while fine-tuning. Factor each weight once, W ≈ L R with L = U_K (O x K,
orthonormal) and R = Σ_K V_K^T (K x I), K chosen by explained variance
`weight_epsilon`, and from then on run the factored layer: y = (x R^T) L^T + b,
K (I + O) multiply-adds per token instead of I O. Its input is saved in
compressed form with ASI's fixed ranks (`asi`), and the gradient of the
factors comes from that Tucker form: with dL/dW = T U_f^T (T of shape O x K_f,
U_f the input's feature factor), dL/dL = T (U_f^T R^T) and
dL/dR = (L^T T) U_f^T; the input gradient is (dy L) R. Nothing of size O x I
is ever stored.

Unlike the paper's code, which keeps the dense W as the trained parameter and
refactors it every step (a "pseudo implementation" whose weight savings are on
paper), only L and R are parameters here; their gradients are the chain rule
of W = L R, so any optimizer works and the weight, gradient and optimizer
memory really shrink to K (I + O). The weight subspace-iteration step of the
paper, R^T <- W^T L, L <- orth(W R^T), applied to W = L R spans the same space
as L: it reduces to re-orthonormalising L by a QR and folding the triangle
into R, which each training forward does first (the product is unchanged).

Unverified: weight_epsilon = 0.9 for the weights (the paper sweeps 0.4..0.9);
the activation ranks are planned as in `asi` (minimum gradient error under a
byte budget, where the paper minimises memory under an error target).
Compresses `nn.Linear` layers only; a layer must not run twice per training
step, since its factors are re-orthonormalised in place at each forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from edgewise.errors import check_param
from edgewise.ondevice.compress.asi import ASI, SubspaceCodec
from edgewise.ondevice.compress.base import (
    Codec,
    Compressed,
    is_fraction,
    load_compressed,
    records_graph,
    save_compressed,
)
from edgewise.ondevice.compress.tensor_ops import linear_grad_factor, truncated_svd


class _FactoredLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, left, right, bias, codec):
        save_compressed(ctx, x, codec, [left, right], ctx.needs_input_grad[1] or ctx.needs_input_grad[2])
        return F.linear(F.linear(x, right), left, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (left, right), tucker = load_compressed(ctx)
        need_x, need_left, need_right, need_b = ctx.needs_input_grad[:4]
        grad_x = (grad @ left) @ right if need_x else None
        grad_left = grad_right = None
        if need_left or need_right:
            factor = linear_grad_factor(tucker, grad)  # dL/dW = factor @ feature^T
            feature = tucker.factors[-1]
            if need_left:
                grad_left = factor @ (right.T if feature is None else feature.T @ right.T)
            if need_right:
                projected = left.T @ factor
                grad_right = projected if feature is None else projected @ feature.T
        grad_b = grad.reshape(-1, grad.shape[-1]).sum(0) if need_b else None
        return grad_x, grad_left, grad_right, grad_b, None


class FactoredLinear(Compressed, nn.Module):
    """A linear layer stored as ``left`` (O, K) and ``right`` (K, I): y = (x right^T) left^T + bias.

    Built from a trained `nn.Linear` by a truncated SVD at explained variance
    `epsilon`; shares its bias Parameter; the input is saved through `codec`.
    """

    def __init__(self, layer: nn.Linear, epsilon: float, codec: Codec) -> None:
        super().__init__()
        u, s, vh = truncated_svd(layer.weight.detach(), epsilon)
        trainable = layer.weight.requires_grad
        self.left = nn.Parameter(u, requires_grad=trainable)
        self.right = nn.Parameter(s[:, None] * vh, requires_grad=trainable)
        self.bias = layer.bias
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.codec = codec

    @property
    def rank(self) -> int:
        """K, the rank of the factored weight."""
        return self.left.shape[1]

    @torch.no_grad()
    def orthonormalize_(self) -> None:
        """One weight subspace-iteration step on W = L R: L, R <- Q, T R with L = Q T (W unchanged)."""
        q, triangle = torch.linalg.qr(self.left)
        self.right.copy_(triangle @ self.right)
        self.left.copy_(q)

    def forward(self, x: Tensor) -> Tensor:
        if not records_graph(x, self.left, self.right, self.bias):
            return F.linear(F.linear(x, self.right), self.left, self.bias)
        if self.training and self.left.requires_grad:
            self.orthonormalize_()
        return _FactoredLinear.apply(x, self.left, self.right, self.bias, self.codec)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"bias={self.bias is not None}, codec={self.codec!r}")


@dataclass
class WASI(ASI):
    """ASI on the inputs (`candidates`, `epsilon`, `steps`, budget), weights factored at `weight_epsilon`."""

    name: ClassVar[str] = "wasi"
    layer_types: ClassVar[tuple[type[nn.Module], ...]] = (nn.Linear,)
    weight_epsilon: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        check_param(self.name, "weight_epsilon", self.weight_epsilon, is_fraction(self.weight_epsilon),
                    "in (0, 1]")

    def replacement(self, layer: nn.Module, codec: SubspaceCodec) -> nn.Module:
        """`layer` with its weight factored at `weight_epsilon`, its input saved through `codec`."""
        return FactoredLinear(layer, self.weight_epsilon, codec)
