"""The channel-sparse autograd functions: gradients equal stock autograd's, and they save
exactly what their docstrings say (counted with the saved-tensor hooks, by hand)."""

import math

import pytest
import torch
import torch.nn.functional as F

from edgewise.cost import SavedTensorCounter
from edgewise.ondevice.ops import IN, OUT, bitmask_clamp, sparse_conv2d, sparse_linear
from edgewise.ondevice.ops.functional import pack_bits, unpack_bits

TOL = dict(rtol=1e-5, atol=1e-5)
CONVS = {  # name: (in, out, kernel, stride, padding, dilation, groups)
    "3x3": (6, 5, 3, 1, 1, 1, 1),
    "strided": (6, 5, 3, 2, 1, 1, 1),
    "dilated-1x1": (6, 5, 1, 1, 0, 1, 1),
    "dilated": (6, 5, 3, 1, 2, 2, 1),
    "depthwise": (6, 6, 3, 2, 1, 1, 6),
}


def dense_conv(x, weight, bias, spec):
    _, _, _, stride, padding, dilation, groups = spec
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def sparse_call(x, weight, bias, index, axis, spec, train_bias=True):
    """Run the sparse conv training the slice at `index`; return (y, weight_slice, bias)."""
    _, _, _, stride, padding, dilation, groups = spec
    dim = 0 if groups > 1 else axis
    w_slice = weight.detach().index_select(dim, index).requires_grad_(True)
    b = bias.detach().clone().requires_grad_(train_bias)
    y = sparse_conv2d(x, weight.detach(), w_slice, b, index, axis, (stride,) * 2, (padding,) * 2,
                      (dilation,) * 2, groups)
    return y, w_slice, b


@pytest.mark.parametrize("name", sorted(CONVS))
@pytest.mark.parametrize("axis", [IN, OUT])
def test_conv_slice_gradients_equal_dense(name, axis):
    spec = CONVS[name]
    cin, cout, k, *_, groups = spec
    torch.manual_seed(0)
    x = torch.randn(3, cin, 9, 9, requires_grad=True)
    weight = torch.randn(cout, cin // groups, k, k, requires_grad=True)
    bias = torch.randn(cout, requires_grad=True)
    y = dense_conv(x, weight, bias, spec)
    upstream = torch.randn_like(y)
    y.backward(upstream)

    index = torch.tensor([0, 2, 3])
    x2 = x.detach().clone().requires_grad_(True)
    y2, w_slice, b = sparse_call(x2, weight, bias, index, axis, spec)
    y2.backward(upstream)
    dim = 0 if groups > 1 else axis
    torch.testing.assert_close(y2, y, **TOL)
    torch.testing.assert_close(x2.grad, x.grad, **TOL)
    torch.testing.assert_close(w_slice.grad, weight.grad.index_select(dim, index), **TOL)
    torch.testing.assert_close(b.grad, bias.grad, **TOL)


@pytest.mark.parametrize("name", sorted(CONVS))
def test_conv_full_weight_gradient_equals_dense(name):
    spec = CONVS[name]
    cin, cout, k, *_, groups = spec
    torch.manual_seed(1)
    x = torch.randn(2, cin, 8, 8)
    weight = torch.randn(cout, cin // groups, k, k, requires_grad=True)
    y = dense_conv(x, weight, None, spec)
    upstream = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, weight, upstream)
    w2 = weight.detach().clone().requires_grad_(True)
    _, _, _, stride, padding, dilation, groups = spec
    y2 = sparse_conv2d(x, w2, None, None, None, IN, (stride,) * 2, (padding,) * 2, (dilation,) * 2, groups)
    (got,) = torch.autograd.grad(y2, w2, upstream)
    torch.testing.assert_close(got, expected, **TOL)


@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 7)])
@pytest.mark.parametrize("axis", [IN, OUT])
def test_linear_slice_gradients_equal_dense(shape, axis):
    torch.manual_seed(2)
    x = torch.randn(*shape, requires_grad=True)
    weight = torch.randn(5, 7, requires_grad=True)
    bias = torch.randn(5, requires_grad=True)
    y = F.linear(x, weight, bias)
    upstream = torch.randn_like(y)
    y.backward(upstream)
    index = torch.tensor([1, 4])
    x2 = x.detach().clone().requires_grad_(True)
    w_slice = weight.detach().index_select(axis, index).requires_grad_(True)
    b = bias.detach().clone().requires_grad_(True)
    y2 = sparse_linear(x2, weight.detach(), w_slice, b, index, axis)
    y2.backward(upstream)
    torch.testing.assert_close(x2.grad, x.grad, **TOL)
    torch.testing.assert_close(w_slice.grad, weight.grad.index_select(axis, index), **TOL)
    torch.testing.assert_close(b.grad, bias.grad, **TOL)


def saved_bytes(fn):
    """Bytes saved for backward while `fn()` runs (its output kept alive until counted); with no
    model to exclude, weights count too."""
    with SavedTensorCounter(torch.nn.Module()) as counter:
        out = fn()
    del out
    return counter.bytes


def test_conv_saves_only_a_copied_slice_of_the_selected_input_channels():
    x = torch.randn(8, 16, 32, 32)  # 524,288 bytes, as in the method notes §9.3
    weight = torch.randn(4, 16, 3, 3)
    bias = torch.zeros(4, requires_grad=True)
    index = torch.tensor([0, 5, 9, 15])
    w_slice = weight.index_select(1, index).requires_grad_(True)
    args = ((1, 1), (1, 1), (1, 1), 1)
    sliced = saved_bytes(lambda: sparse_conv2d(x, weight, w_slice, None, index, IN, *args))
    assert sliced == 8 * 4 * 32 * 32 * 4 + index.nbytes  # the copy (131,072 bytes) and the index
    assert saved_bytes(lambda: sparse_conv2d(x, weight, None, bias, None, IN, *args)) == 0
    # a frozen conv inside the backward path keeps only its weight, which is not an activation
    x_grad = x.clone().requires_grad_(True)
    with SavedTensorCounter(torch.nn.Module()) as counter:
        y = sparse_conv2d(x_grad, weight, None, None, None, IN, *args)
    assert counter.bytes == weight.nbytes
    del y
    # stock PyTorch saves the whole input (and the weight) even when only the bias trains (§9.3)
    stock = saved_bytes(lambda: F.conv2d(x, weight, bias, 1, 1))
    assert stock == x.nbytes + weight.nbytes


def test_output_channel_selection_saves_the_input_itself():
    x = torch.randn(4, 6, 10, 10)
    weight = torch.randn(5, 6, 3, 3)
    index = torch.tensor([1, 2])
    w_slice = weight.index_select(0, index).requires_grad_(True)
    got = saved_bytes(lambda: sparse_conv2d(x, weight, w_slice, None, index, OUT, (1, 1), (1, 1), (1, 1), 1))
    assert got == x.nbytes + index.nbytes


@pytest.mark.parametrize("upper", [math.inf, 6.0])
def test_bitmask_clamp_matches_relu_and_relu6_and_keeps_one_bit(upper):
    torch.manual_seed(3)
    x = (torch.randn(3, 5, 7, 7) * 5).requires_grad_(True)
    stock = torch.relu(x) if upper == math.inf else F.relu6(x)
    upstream = torch.randn_like(stock)
    (expected,) = torch.autograd.grad(stock, x, upstream)
    with SavedTensorCounter(torch.nn.Module()) as counter:
        y = bitmask_clamp(x, 0.0, upper)
    (got,) = torch.autograd.grad(y, x, upstream)
    torch.testing.assert_close(y, stock)
    torch.testing.assert_close(got, expected)
    assert counter.bytes == math.ceil(x.numel() / 8)


def test_bitmask_clamp_saves_nothing_outside_backward():
    assert saved_bytes(lambda: bitmask_clamp(torch.randn(4, 4))) == 0


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1001])
def test_pack_bits_round_trips(n):
    mask = torch.rand(n) > 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(n / 8)
    assert torch.equal(unpack_bits(packed, mask.shape), mask)
