"""Schedules, distillation, EWC and CGT gates against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from edgewise.exits.strategies import maths


def test_sdn_ramp_matches_hand_values():
    c = [0.15, 0.30, 0.45, 0.60, 0.75, 0.90]
    # epoch 0 of 10 is SDN's t = 1: 0.01 + C_i / 10
    assert maths.sdn_ramp(c, 0, 10) == pytest.approx([0.025, 0.04, 0.055, 0.07, 0.085, 0.10])
    # epoch 4 (t = 5): 0.01 + C_i / 2
    assert maths.sdn_ramp(c, 4, 10) == pytest.approx([0.085, 0.16, 0.235, 0.31, 0.385, 0.46])
    # the last epoch reaches C_i exactly (min caps 0.01 + C_i)
    assert maths.sdn_ramp(c, 9, 10) == pytest.approx(c)


def test_sdn_max_weights_are_sdns_for_six_exits():
    assert maths.sdn_max_weights(6) == pytest.approx([0.15, 0.30, 0.45, 0.60, 0.75, 0.90])
    assert maths.sdn_max_weights(2) == pytest.approx([0.45, 0.90])


def test_linear_anneal_runs_from_start_to_end():
    start, end = [1.0, 0.7, 0.4, 0.1], [0.2, 0.5, 0.8, 1.0]
    assert maths.linear_anneal(start, end, 0, 5) == pytest.approx(start)
    assert maths.linear_anneal(start, end, 4, 5) == pytest.approx(end)
    assert maths.linear_anneal(start, end, 2, 5) == pytest.approx([0.6, 0.6, 0.6, 0.55])
    assert maths.linear_anneal(start, end, 0, 1) == pytest.approx(start)  # one epoch


def test_resample_profile():
    assert maths.resample_profile([1.0, 0.7, 0.4, 0.1], 4) == [1.0, 0.7, 0.4, 0.1]
    assert maths.resample_profile([1.0, 0.7, 0.4, 0.1], 3) == pytest.approx([1.0, 0.55, 0.1])
    assert maths.resample_profile([0.2, 0.5, 0.8, 1.0], 3) == pytest.approx([0.2, 0.65, 1.0])


def test_kl_with_temperature():
    z = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    assert maths.kl_with_temperature(z, z, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    other = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    t = 2.0
    p_t, p_s = F.softmax(z / t, 1), F.softmax(other / t, 1)
    hand = t * t * (p_t * (p_t.log() - p_s.log())).sum(1).mean()
    got = maths.kl_with_temperature(other, z, t)
    assert got.item() == pytest.approx(hand.item(), rel=1e-5)
    # the teacher gets no gradient
    teacher = z.clone().requires_grad_()
    student = other.clone().requires_grad_()
    maths.kl_with_temperature(student, teacher, t).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0


def test_ewc_penalty_hand_value():
    params = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([[3.0]])}
    anchor = {"a": torch.tensor([0.0, 2.0]), "b": torch.tensor([[1.0]])}
    fisher = {"a": torch.tensor([0.5, 10.0]), "b": torch.tensor([[0.25]])}
    # (lambda / 2) * (0.5 * 1^2 + 10 * 0^2 + 0.25 * 2^2) = 2 * 1.5
    assert maths.ewc_penalty(params, fisher, anchor, 4.0).item() == pytest.approx(3.0)


def test_fisher_diagonal_equals_a_per_sample_loop(tiny_net, batch):
    x, y = batch
    tiny_net.eval()
    names = [n for n, _ in tiny_net.named_parameters() if n.startswith(("stages.0", "stages.1"))]
    fisher = maths.fisher_diagonal(tiny_net, 1, names, [(x[:10], y[:10]), (x[10:], y[10:])],
                                   max_samples=12)
    assert set(fisher) == set(names)
    params = dict(tiny_net.named_parameters())
    hand = {n: torch.zeros_like(params[n]) for n in names}
    for i in range(12):
        tiny_net.zero_grad()
        logits = tiny_net.heads[1](tiny_net.stages[1](tiny_net.stages[0](x[i:i + 1])))
        F.log_softmax(logits, 1)[0, y[i]].backward()
        for n in names:
            hand[n] += params[n].grad ** 2 / 12
    for n in names:
        assert torch.allclose(fisher[n], hand[n], atol=1e-7, rtol=1e-4), n
    assert not any(f.requires_grad for f in fisher.values())


def test_fisher_leaves_the_network_as_it_was(tiny_net, batch):
    tiny_net.train()
    stats = tiny_net.stages[0][1].running_mean.clone()
    maths.fisher_diagonal(tiny_net, 0, ["stages.0.0.weight"], [batch], 8)
    assert tiny_net.training
    assert torch.equal(stats, tiny_net.stages[0][1].running_mean)


def _logits_with(probs_rows):
    """Logits whose softmax is exactly the given probability rows."""
    return torch.tensor(probs_rows).log()


def test_hard_gates_mask_exactly_the_named_samples():
    y = torch.tensor([0, 0, 0, 0])
    # exit 0: sample 0 right and confident (0.95), sample 1 right but unsure (0.6),
    # sample 2 confident but wrong, sample 3 right at exactly tau (counts as confident)
    z0 = _logits_with([[0.95, 0.05], [0.6, 0.4], [0.05, 0.95], [0.9, 0.1]])
    # exit 1: succeeds on sample 1 only
    z1 = _logits_with([[0.5, 0.5], [0.99, 0.01], [0.3, 0.7], [0.2, 0.8]])
    z2 = _logits_with([[0.5, 0.5]] * 4)
    g = maths.hard_gates([z0, z1, z2], y, tau=0.9)
    expected = torch.tensor([
        [1.0, 0.0, 0.0],  # exit 0 succeeded: nothing deeper learns from it
        [1.0, 1.0, 0.0],  # exit 0 unsure, exit 1 succeeded
        [1.0, 1.0, 1.0],  # every earlier exit failed
        [1.0, 0.0, 0.0],  # confidence == tau is a success (>=)
    ])
    assert torch.equal(g, expected)


def test_soft_gates_hand_values():
    y = torch.tensor([1])
    z0 = _logits_with([[0.5, 0.5]])
    z1 = _logits_with([[0.2, 0.8]])
    z2 = _logits_with([[0.5, 0.5]])
    tau, kappa = 0.9, 20.0
    r0 = 1 - 1 / (1 + math.exp(-kappa * (0.5 - tau)))
    r1 = 1 - 1 / (1 + math.exp(-kappa * (0.8 - tau)))
    g = maths.soft_gates([z0, z1, z2], y, tau, kappa)
    assert g[0].tolist() == pytest.approx([1.0, r0, r0 * r1], rel=1e-5)


def test_soft_gate_range_for_kappa_1_and_20():
    """The notes' observation: kappa = 1 spans ~0.71..0.48, kappa = 20 ~1.0..0.12."""
    y = torch.tensor([0, 0])
    z0 = _logits_with([[1e-9, 1 - 1e-9], [1 - 1e-9, 1e-9]])  # p_true = 0 and 1
    z1 = torch.zeros(2, 2)
    weak = maths.soft_gates([z0, z1], y, 0.9, 1.0)[:, 1]
    strong = maths.soft_gates([z0, z1], y, 0.9, 20.0)[:, 1]
    assert weak.tolist() == pytest.approx([0.711, 0.475], abs=2e-3)
    assert strong.tolist() == pytest.approx([1.0, 0.119], abs=2e-3)


def test_gated_weights_leak_and_normalisation():
    gates = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    w = maths.gated_weights(gates, [1.0, 0.5, 0.25], eps=1e-3, normalize=False)
    assert torch.allclose(w, torch.tensor([[1.001, 0.001, 0.001], [1.001, 0.501, 0.251]]))
    wn = maths.gated_weights(gates, [1.0, 0.5, 0.25], eps=1e-3, normalize=True)
    assert wn.sum(1).tolist() == pytest.approx([1.0, 1.0])
    assert wn[0, 1].item() == pytest.approx(0.001 / 1.003)


def test_gated_loss_is_the_weighted_per_sample_ce():
    torch.manual_seed(0)
    outs = [torch.randn(5, 3) for _ in range(2)]
    y = torch.tensor([0, 1, 2, 0, 1])
    w = torch.rand(5, 2)
    hand = sum((w[:, e] * F.cross_entropy(outs[e], y, reduction="none")).mean()
               for e in range(2))
    assert maths.gated_loss(outs, y, w).item() == pytest.approx(hand.item())
