"""Fold frozen BatchNorm into the convolution before it, exactly.

The papers fine-tune with BatchNorm in eval mode (frozen statistics); then
``bn(conv(x))`` is ``conv'(x)`` with ``W' = W * s`` and ``b' = (b - mean) * s + beta``,
``s = gamma / sqrt(var + eps)``. Folding removes BatchNorm's own saved input and
leaves one affine layer whose bias is what "bias-only" training updates.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["fold_batchnorm"]


def _pairs(model: nn.Module, example: Tensor) -> list[tuple[nn.Conv2d, str]]:
    """(conv, bn name) pairs where the BatchNorm's input is exactly the conv's output,
    found by running `example` through the model with hooks."""
    outputs: dict[int, nn.Conv2d] = {}
    pairs: list[tuple[nn.Conv2d, str]] = []
    names = {id(m): n for n, m in model.named_modules()}

    def after_conv(module, args, output):
        outputs[id(output)] = module

    def before_bn(module, args):
        conv = outputs.get(id(args[0]))
        if conv is not None and conv.out_channels == module.num_features:
            pairs.append((conv, names[id(module)]))

    hooks = [
        m.register_forward_hook(after_conv) if isinstance(m, nn.Conv2d)
        else m.register_forward_pre_hook(before_bn)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return pairs


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: Tensor) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d into it, in place; return how many.

    Each folded BatchNorm becomes ``nn.Identity``; the conv gains a bias. The
    model computes what it computed in eval mode. `example` is any input batch.
    """
    pairs = _pairs(model, example)
    for conv, bn_name in pairs:
        bn = model.get_submodule(bn_name)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else (
            1 / torch.sqrt(bn.running_var + bn.eps)
        )
        shift = bn.bias if bn.affine else torch.zeros_like(scale)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
        conv.weight.mul_(scale.view(-1, *[1] * (conv.weight.dim() - 1)))
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)
        parent, _, leaf = bn_name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, nn.Identity())
    return len(pairs)
