"""Each fold and merge is exact in float64: BN folding, Conv∘Conv (stride, padding, groups,
depthwise), residual identity (Dirac) and projection, Linear∘Linear."""

import pytest
import torch
import torch.nn.functional as F

from edgewise.prune.fold import merge
from edgewise.prune.fold.bn import bn_scale_shift, fold_into_input, fold_into_output

D = torch.float64
GEN = torch.Generator().manual_seed(0)


def rand(*shape):
    return torch.randn(*shape, dtype=D, generator=GEN)


def conv(out_c, in_c, k, stride=1, padding=0, groups=1):
    return merge.Conv(rand(out_c, in_c // groups, k, k), rand(out_c), (stride, stride),
                      (padding, padding), groups)


def run(c, x):
    return F.conv2d(x, c.weight, c.bias, c.stride, c.padding, 1, c.groups)


def close(a, b):
    assert a.shape == b.shape
    assert (a - b).abs().max().item() < 1e-10 * max(1.0, b.abs().max().item())


def test_batchnorm_folds_into_the_conv_before_it():
    w, b = rand(5, 3, 3, 3), rand(5)
    mean, var, gamma, beta = rand(5), rand(5).abs() + 0.1, rand(5), rand(5)
    x = rand(2, 3, 7, 7)
    ref = F.batch_norm(F.conv2d(x, w, b, padding=1), mean, var, gamma, beta, False, 0.0, 1e-3)
    scale, shift = bn_scale_shift(mean, var, 1e-3, gamma, beta)
    w2, b2 = fold_into_output(w, b, scale, shift)
    close(F.conv2d(x, w2, b2, padding=1), ref)


def test_affine_folds_into_an_unpadded_conv_and_a_linear_after_it():
    scale, shift = rand(3), rand(3)
    x = rand(2, 3, 6, 6)
    w, b = rand(4, 3, 3, 3), rand(4)
    w2, b2 = fold_into_input(w, b, scale, shift)
    close(F.conv2d(x, w2, b2), F.conv2d(x * scale.view(1, 3, 1, 1) + shift.view(1, 3, 1, 1), w, b))
    wl, bl = rand(4, 3), rand(4)
    wl2, bl2 = fold_into_input(wl, bl, scale, shift)
    v = rand(5, 3)
    close(F.linear(v, wl2, bl2), F.linear(v * scale + shift, wl, bl))


@pytest.mark.parametrize(
    "first, second",
    [
        ((8, 6, 3, 1, 1), (5, 8, 3, 1, 0)),  # 3x3 then 3x3 -> 5x5, input padding kept
        ((8, 6, 3, 2, 1), (5, 8, 3, 1, 0)),  # stride 2 first: second kernel dilated -> 7x7
        ((8, 6, 3, 1, 1), (5, 8, 3, 2, 0)),  # stride 2 second
        ((8, 6, 1, 1, 0), (4, 8, 1, 1, 0)),  # pointwise pair
        ((6, 6, 3, 2, 1, 6), (6, 6, 3, 1, 0, 6)),  # depthwise∘depthwise stays depthwise
        ((12, 6, 1, 1, 1), (12, 12, 3, 2, 0, 12)),  # expand (padding moved) then depthwise
        ((12, 6, 3, 1, 1, 6), (4, 12, 1, 1, 0)),  # depthwise-multiplier then pointwise: dense
        ((12, 6, 3, 2, 1, 3), (9, 12, 3, 2, 0, 3)),  # grouped∘grouped stays grouped
    ],
)
def test_conv_after_conv_is_one_conv(first, second):
    a, b = conv(*first), conv(*second)
    x = rand(2, 6, 11, 13)
    merged = merge.compose(a, b)
    close(run(merged, x), run(b, run(a, x)))
    k = a.stride[0] * (b.shape.kernel[0] - 1) + a.shape.kernel[0]
    assert merged.shape.kernel == (k, k)
    assert merged.groups == (a.groups if a.groups == b.groups else 1)


def test_compose_refuses_a_padded_second_conv():
    with pytest.raises(ValueError, match="unpadded"):
        merge.compose(conv(4, 4, 3, 1, 1), conv(4, 4, 3, 1, 1))


def test_moved_padding_gives_an_exact_residual_block_with_a_dirac_skip():
    a, b = merge.move_padding(conv(6, 6, 3, 1, 1), conv(6, 6, 3, 1, 1))
    assert a.padding == (2, 2) and b.padding == (0, 0)
    x = rand(2, 6, 9, 9)
    block = merge.add(merge.compose(a, b), merge.identity(6, D))
    assert block.shape.kernel == (5, 5) and block.padding == (2, 2)
    close(run(block, x), run(b, run(a, x)) + x)


def test_downsampling_block_with_projection_is_one_strided_conv():
    a, b = merge.move_padding(conv(8, 6, 3, 2, 1), conv(8, 8, 3, 1, 1))
    shortcut = conv(8, 6, 1, 2, 0)
    assert merge.can_add(merge.compose(a, b), shortcut)
    block = merge.add(merge.compose(a, b), shortcut)
    x = rand(2, 6, 12, 12)
    close(run(block, x), run(b, run(a, x)) + run(shortcut, x))
    assert block.shape.kernel == (7, 7) and block.stride == (2, 2)


def test_depthwise_plus_identity_stays_depthwise():
    a = conv(6, 6, 3, 1, 1, groups=6)
    block = merge.add(a, merge.identity(6, D))
    assert block.groups == 6
    x = rand(1, 6, 5, 5)
    close(run(block, x), run(a, x) + x)


def test_misaligned_convs_cannot_be_added():
    assert not merge.can_add(conv(4, 4, 3, 1, 0), merge.identity(4, D))  # output shrinks
    assert not merge.can_add(conv(4, 4, 3, 2, 1), merge.identity(4, D))  # stride differs


def test_linear_after_linear_is_one_linear():
    w1, b1, w2, b2 = rand(7, 5), rand(7), rand(3, 7), rand(3)
    w, b = merge.compose_linear(w1, b1, w2, b2)
    x = rand(4, 5)
    close(F.linear(x, w, b), F.linear(F.linear(x, w1, b1), w2, b2))
