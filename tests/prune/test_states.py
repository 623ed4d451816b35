"""Neuron states: recorded ON probabilities, entropies in closed form, TLC's BatchNorm formula."""

import math

import pytest
import torch
from torch import nn

from edgewise.prune.states import (
    StateRecorder,
    binary_entropy,
    bn_off_probability,
    layer_entropy,
    record_states,
)


def h(p: float) -> float:
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def test_binary_entropy_closed_form():
    p = torch.tensor([0.0, 0.25, 0.5, 0.9, 1.0])
    expected = torch.tensor([0.0, h(0.25), 1.0, h(0.9), 0.0], dtype=torch.float64)
    assert torch.allclose(binary_entropy(p), expected, atol=1e-12)


def test_layer_entropy_leaves_out_degenerate_channels():
    # always OFF, always ON, ON a quarter of the time, ON half the time
    p = torch.tensor([0.0, 1.0, 0.25, 0.5], dtype=torch.float64)
    assert layer_entropy(p) == pytest.approx((h(0.25) + 1.0) / 2, abs=1e-12)
    assert layer_entropy(torch.tensor([0.0, 1.0, 1.0])) == 0.0


def known_batch() -> torch.Tensor:
    """(8, 4, 1, 2) pre-activations: channel 0 ON 1/4, 1 always ON, 2 never (zeros count OFF), 3 half."""
    z = -torch.ones(8, 4, 1, 2)
    z[:4, 0, 0, 0] = 1.0  # 4 of 16 positions
    z[:, 1] = 2.0
    z[:, 2] = 0.0
    z[:, 3, 0, 1] = 3.0  # 8 of 16 positions
    return z


def test_recorder_counts_states_of_a_known_distribution():
    model = nn.Sequential(nn.Identity(), nn.ReLU())
    with StateRecorder(model) as recorder:
        model(known_batch())
        model(known_batch())
    states = recorder.states()
    assert list(states.p_on) == ["1"]
    assert torch.equal(states.p_on["1"], torch.tensor([0.25, 1.0, 0.0, 0.5], dtype=torch.float64))
    assert states.entropy["1"] == pytest.approx((h(0.25) + 1.0) / 2, abs=1e-12)
    assert states.samples == 16
    assert not states.is_linear("1")
    assert torch.equal(states.keep("1"), torch.tensor([0.0, 1.0, 0.0, 1.0]))


def test_entropy_is_the_mean_of_per_batch_entropies():
    # batch 1: channel ON in 1 of 2 samples (h = 1); batch 2: always ON (degenerate, 0)
    model = nn.Sequential(nn.ReLU())
    with StateRecorder(model) as recorder:
        model(torch.tensor([[1.0], [-1.0]]))
        model(torch.tensor([[1.0], [1.0]]))
    states = recorder.states()
    assert states.entropy["0"] == pytest.approx(0.5)
    assert states.p_on["0"].item() == pytest.approx(0.75)


def test_token_tensors_have_channels_last_and_gelu_is_read_by_sign():
    model = nn.Sequential(nn.GELU())
    z = torch.tensor([[[1.0, -1.0], [1.0, -2.0], [-1.0, -3.0]]])  # (N=1, T=3, C=2)
    states = record_states(model, torch.utils.data.TensorDataset(z, torch.zeros(1)))
    assert torch.allclose(states.p_on["0"], torch.tensor([2 / 3, 0.0], dtype=torch.float64))


def test_tlc_state_formula():
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, -2.0, 0.0, 0.0]))
        bn.bias.copy_(torch.tensor([1.0, 1.0, -1.0, 0.5]))
    off = bn_off_probability(bn)
    phi = 0.5 * (1 + math.erf(-0.5 / math.sqrt(2)))  # Phi(-beta/|gamma|) = Phi(-0.5)
    assert torch.allclose(off, torch.tensor([phi, phi, 1.0, 0.0], dtype=torch.float64), atol=1e-12)


def test_tlc_formula_matches_the_empirical_rate_for_gaussian_inputs():
    bn = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 0.5, 3.0]))
        bn.bias.copy_(torch.tensor([0.3, -0.4, 1.0]))
    x = torch.randn(4000, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    empirical = (bn(x) <= 0).double().mean((0, 2, 3))
    assert torch.allclose(bn_off_probability(bn), empirical, atol=0.01)
