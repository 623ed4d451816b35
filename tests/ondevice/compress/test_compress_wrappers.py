from dataclasses import dataclass

import pytest
import torch
from torch import nn

from edgewise.cost import SavedTensorCounter
from edgewise.engine import TrainingDiverged
from edgewise.errors import ParameterError
from edgewise.ondevice.compress.asi import SubspaceCodec
from edgewise.ondevice.compress.base import CompressedConv2d, CompressedLinear
from edgewise.ondevice.compress.hosvd import VarianceCodec
from edgewise.ondevice.compress.svd import SVD
from edgewise.ondevice.compress.tensor_ops import leading_subspace, tucker_compress


@dataclass
class FullRankCodec:
    """Every mode gets a square orthonormal factor: exercises the whole contraction chain, exactly."""

    def compress(self, x):
        return tucker_compress(x, [leading_subspace(x, m, d) for m, d in enumerate(x.shape)])


def gradients(module, x, params):
    out = module(x)
    grad = torch.randn_like(out)
    return out, torch.autograd.grad(out, (x, *params), grad)


def compare_to_dense(dense, wrapper, x):
    params = [p for p in (dense.weight, dense.bias) if p is not None]
    torch.manual_seed(1)
    expected_out, expected = gradients(dense, x, params)
    torch.manual_seed(1)
    out, got = gradients(wrapper, x, params)
    torch.testing.assert_close(out, expected_out, rtol=0, atol=1e-5)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)


CONVS = [
    dict(stride=1, padding=1),
    dict(stride=2, padding=1),
    dict(stride=2, padding=0, bias=False),
    dict(stride=1, padding=(2, 1), dilation=2),
]


@pytest.mark.parametrize("codec", [FullRankCodec(), VarianceCodec(1.0), SVD(epsilon=1.0).codec(),
                                   SubspaceCodec((6, 8, 9, 11))])
@pytest.mark.parametrize("options", CONVS)
def test_full_rank_conv_gradients_equal_the_dense_ones(codec, options):
    torch.manual_seed(0)
    dense = nn.Conv2d(8, 12, 3, **options).double()
    x = torch.randn(6, 8, 9, 11, dtype=torch.float64, requires_grad=True)
    compare_to_dense(dense, CompressedConv2d(dense, codec), x)


@pytest.mark.parametrize("codec", [FullRankCodec(), VarianceCodec(1.0), SVD(epsilon=1.0).codec()])
@pytest.mark.parametrize("shape", [(6, 10), (4, 5, 10)])
def test_full_rank_linear_gradients_equal_the_dense_ones(codec, shape):
    torch.manual_seed(0)
    dense = nn.Linear(10, 7).double()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    compare_to_dense(dense, CompressedLinear(dense, codec), x)


def test_grouped_conv_with_compressed_channels():
    torch.manual_seed(0)
    dense = nn.Conv2d(8, 8, 3, padding=1, groups=8).double()
    x = torch.randn(4, 8, 6, 6, dtype=torch.float64, requires_grad=True)
    compare_to_dense(dense, CompressedConv2d(dense, FullRankCodec()), x)


def test_wrapper_shares_parameters_and_state_dict_keys():
    dense = nn.Conv2d(3, 4, 3, padding=1)
    wrapper = CompressedConv2d(dense, VarianceCodec(0.9))
    assert wrapper.weight is dense.weight and wrapper.bias is dense.bias
    assert wrapper.state_dict().keys() == dense.state_dict().keys()
    assert isinstance(wrapper, nn.Conv2d)


def saved_bytes(module, x):
    with SavedTensorCounter(module) as counter:
        out = module(x)
    del out
    return counter.bytes


def test_measured_saved_bytes_of_a_conv_equal_the_hand_count():
    dense = nn.Conv2d(8, 12, 3, padding=1)
    x = torch.randn(5, 8, 9, 11)
    wrapper = CompressedConv2d(dense, SubspaceCodec((2, 3, 4, 11)))
    # core 2*3*4*11 = 264, factors 5*2 + 8*3 + 9*4 = 70 (width kept whole), float32
    assert saved_bytes(wrapper, x) == (264 + 70) * 4
    assert saved_bytes(wrapper, x) == (264 + 70) * 4  # warm-started step: same size
    assert saved_bytes(dense, x) == x.numel() * 4


def test_measured_saved_bytes_of_svd_are_k_times_batch_plus_rest():
    dense = nn.Linear(10, 7)
    x = torch.randn(6, 5, 10)
    x[3:] = x[:3] * 2  # the batch unfolding has rank 3
    wrapper = CompressedLinear(dense, VarianceCodec(0.999, modes=(0,)))
    assert saved_bytes(wrapper, x) == 3 * (6 + 5 * 10) * 4


def test_measured_saved_bytes_of_hosvd_equal_its_factor_sizes():
    dense = nn.Linear(10, 7)
    x = torch.randn(6, 5, 10)
    codec = VarianceCodec(0.8)
    tucker = codec.compress(x)
    assert saved_bytes(CompressedLinear(dense, codec), x) == tucker.numel * 4


def test_frozen_or_gradient_free_layers_save_nothing():
    dense = nn.Conv2d(3, 4, 3, padding=1)
    wrapper = CompressedConv2d(dense, VarianceCodec(0.9))
    x = torch.randn(2, 3, 5, 5)
    dense.weight.requires_grad_(False)
    dense.bias.requires_grad_(False)
    assert saved_bytes(wrapper, x.requires_grad_()) == 0  # input gradient needs the weight only
    with torch.no_grad():
        torch.testing.assert_close(wrapper(x), dense(x))


def test_low_rank_forward_is_exact_and_weight_gradient_approximate():
    torch.manual_seed(0)
    dense = nn.Linear(10, 7).double()
    x = torch.randn(16, 10, dtype=torch.float64)
    wrapper = CompressedLinear(dense, SubspaceCodec((4, 3)))
    out = wrapper(x)
    torch.testing.assert_close(out, dense(x))
    out.sum().backward()
    low_rank = dense.weight.grad.clone()
    dense.weight.grad = None
    dense(x).sum().backward()
    error = (low_rank - dense.weight.grad).norm() / dense.weight.grad.norm()
    assert 0 < error < 1


def test_string_padding_is_rejected():
    with pytest.raises(ParameterError, match="The 'padding' parameter of a compressed conv must be"):
        CompressedConv2d(nn.Conv2d(3, 4, 3, padding="same"), VarianceCodec(0.9))


def test_non_finite_input_is_reported_as_divergence_not_a_linalg_error():
    wrapper = CompressedConv2d(nn.Conv2d(3, 4, 3), VarianceCodec(0.9))
    x = torch.randn(2, 3, 6, 6)
    x[0, 1, 2, 2] = float("nan")
    with pytest.raises(TrainingDiverged, match="NaN or infinite"):
        wrapper(x)
    with pytest.raises(TrainingDiverged, match="could not be decomposed"):
        wrapper(torch.randn(2, 3, 6, 6) * 1e25)  # finite, but the Gram matrix overflows
