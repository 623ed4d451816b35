"""cgt-hard and cgt-soft: gates, annealed exit weights, the loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from edgewise.errors import ParameterError
from edgewise.exits.strategies import Run, get


def _probs(rows):
    return torch.tensor(rows).log()


def _run(net, stage, epoch=0, epochs=1):
    return Run(net=net, stage=stage, stage_index=0, inputs=torch.zeros(1), epoch=epoch,
               epochs=epochs)


def test_hard_weights_mask_the_samples_the_rule_names(tiny_net):
    strategy = get("cgt-hard", tau=0.8, eps=0.0, normalize=False,
                   lambda_start=(1.0, 1.0, 1.0), lambda_end=(1.0, 1.0, 1.0))
    (stage,) = strategy.stages(tiny_net)
    y = torch.tensor([1, 1, 0])
    outputs = [
        _probs([[0.1, 0.9], [0.3, 0.7], [0.85, 0.15]]),  # ok / unsure / ok
        _probs([[0.5, 0.5], [0.1, 0.9], [0.1, 0.9]]),  # - / ok / wrong
        _probs([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]),
    ]
    w = strategy.weights(outputs, y, _run(tiny_net, stage))
    assert torch.equal(w, torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))


def test_hard_loss_counts_deeper_exits_only_on_gated_samples(tiny_net):
    strategy = get("cgt-hard", tau=0.8, eps=1e-3, normalize=False,
                   lambda_start=(1.0, 0.5, 0.2), lambda_end=(0.2, 0.5, 1.0))
    (stage,) = strategy.stages(tiny_net)
    y = torch.tensor([1, 1])
    outputs = [_probs([[0.1, 0.9], [0.6, 0.4]]), _probs([[0.4, 0.6], [0.3, 0.7]]),
               _probs([[0.2, 0.8], [0.2, 0.8]])]
    # last epoch of 3: lambdas (0.2, 0.5, 1.0)
    loss = strategy.loss(outputs, y, _run(tiny_net, stage, epoch=2, epochs=3))
    ce = [F.cross_entropy(z, y, reduction="none") for z in outputs]
    w = torch.tensor([[0.2, 0.0, 0.0], [0.2, 0.5, 1.0]]) + 1e-3
    hand = sum((w[:, e] * ce[e]).mean() for e in range(3))
    assert loss.item() == pytest.approx(hand.item(), rel=1e-6)


def test_gates_carry_no_gradient(tiny_net):
    strategy = get("cgt-soft", kappa=20.0)
    (stage,) = strategy.stages(tiny_net)
    y = torch.tensor([0, 1])
    z0 = torch.randn(2, 2, requires_grad=True)
    z1 = torch.randn(2, 2, requires_grad=True)
    z2 = torch.randn(2, 2, requires_grad=True)
    loss = strategy.loss([z0, z1, z2], y, _run(tiny_net, stage))
    # d loss / d z0 comes from exit 0's own CE only: as if the gates were constants
    w = strategy.weights([z0, z1, z2], y, _run(tiny_net, stage))
    (g,) = torch.autograd.grad(loss, z0)
    z0c = z0.detach().requires_grad_()
    own = (w[:, 0] * F.cross_entropy(z0c, y, reduction="none")).mean()
    (g_own,) = torch.autograd.grad(own, z0c)
    assert torch.allclose(g, g_own, atol=1e-7)


def test_default_lambdas_follow_the_cgt_code(tiny_net):
    strategy = get("cgt-hard")
    assert strategy.exit_weights(4, 0, 10) == pytest.approx([1.0, 0.7, 0.4, 0.1])
    assert strategy.exit_weights(4, 9, 10) == pytest.approx([0.2, 0.5, 0.8, 1.0])
    assert strategy.exit_weights(3, 0, 10) == pytest.approx([1.0, 0.55, 0.1])
    with pytest.raises(ParameterError, match="'lambda_end' parameter of cgt-hard must be one "
                       "value per exit"):
        get("cgt-hard", lambda_end=(1.0, 1.0)).stages(tiny_net)


def test_soft_weights_use_true_class_residuals(tiny_net):
    strategy = get("cgt-soft", tau=0.5, kappa=4.0, eps=0.0, normalize=True,
                   lambda_start=(1.0, 1.0, 1.0), lambda_end=(1.0, 1.0, 1.0))
    (stage,) = strategy.stages(tiny_net)
    y = torch.tensor([0])
    outputs = [_probs([[0.8, 0.2]]), _probs([[0.4, 0.6]]), _probs([[0.5, 0.5]])]
    r0 = 1 - 1 / (1 + math.exp(-4.0 * (0.8 - 0.5)))
    r1 = 1 - 1 / (1 + math.exp(-4.0 * (0.4 - 0.5)))
    raw = torch.tensor([1.0, r0, r0 * r1])
    w = strategy.weights(outputs, y, _run(tiny_net, stage))
    assert torch.allclose(w[0], raw / raw.sum(), atol=1e-6)


def test_a_sharper_kappa_gates_harder(tiny_net):
    y = torch.tensor([0])
    outputs = [_probs([[0.99, 0.01]]), _probs([[0.5, 0.5]])]
    weak, strong = get("cgt-soft", kappa=1.0), get("cgt-soft", kappa=20.0)
    (stage,) = weak.stages(tiny_net)
    w_weak = weak.gates(outputs, y)[0, 1]
    w_strong = strong.gates(outputs, y)[0, 1]
    assert w_strong < 0.2 < 0.4 < w_weak
