import pytest
import torch
from torch.nn import grad as nn_grad

from edgewise.ondevice.compress.tensor_ops import (
    Tucker,
    compact,
    conv2d_weight_grad,
    explained_variance_rank,
    leading_subspace,
    linear_weight_grad,
    mode_cross,
    mode_product,
    mode_spectrum,
    subspace_iteration,
    truncated_svd,
    tucker_compress,
    tucker_numel,
)


def orthonormal(rows, cols, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(rows, cols, generator=generator, dtype=torch.float64)).Q


def known_matrix(singular_values, cols=12, seed=0):
    s = torch.tensor(singular_values, dtype=torch.float64)
    return orthonormal(len(s), len(s), seed) @ torch.diag(s) @ orthonormal(cols, len(s), seed + 1).T


def unfold(x, mode):
    return x.movedim(mode, 0).reshape(x.shape[mode], -1)


def test_explained_variance_rank_on_known_singular_values():
    # energies 16, 4, 1, 1 of 22: cumulative 0.727, 0.909, 0.955, 1
    energies, _ = mode_spectrum(known_matrix([4.0, 2.0, 1.0, 1.0]), 0)
    assert torch.allclose(energies, torch.tensor([16.0, 4.0, 1.0, 1.0], dtype=torch.float64))
    ranks = [explained_variance_rank(energies, eps) for eps in (0.5, 0.72, 0.73, 0.9, 0.95, 0.96, 1.0)]
    assert ranks == [1, 1, 2, 2, 3, 4, 4]


def test_truncated_svd_keeps_the_rank_of_epsilon_as_compact_copies():
    matrix = known_matrix([4.0, 2.0, 1.0, 1.0])
    u, s, vh = truncated_svd(matrix, 0.9)
    assert u.shape == (4, 2) and vh.shape == (2, 12)
    assert torch.allclose(s, torch.tensor([4.0, 2.0], dtype=torch.float64))
    assert u.untyped_storage().nbytes() == u.numel() * 8
    residual = matrix - u @ torch.diag(s) @ vh
    assert torch.allclose(torch.linalg.matrix_norm(residual, ord=2), torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_mode_spectrum_matches_the_svd_of_the_unfolding(mode):
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    energies, vectors = mode_spectrum(x, mode)
    u, s, _ = torch.linalg.svd(unfold(x, mode), full_matrices=False)
    assert torch.allclose(energies, s.square())
    assert torch.allclose((vectors.T @ u).abs(), torch.eye(x.shape[mode], dtype=torch.float64), atol=1e-8)


@pytest.mark.parametrize("shape", [(3, 4, 5), (40, 2, 3, 2)])
def test_mode_product_is_a_product_of_the_unfolding(shape):
    x = torch.randn(*shape, dtype=torch.float64)
    for mode, size in enumerate(shape):
        matrix = torch.randn(7, size, dtype=torch.float64)
        got = mode_product(x, matrix, mode)
        assert got.shape == (*shape[:mode], 7, *shape[mode + 1 :]) and got.is_contiguous()
        torch.testing.assert_close(unfold(got, mode), matrix @ unfold(x, mode))


def test_tucker_reconstruction_at_full_rank():
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    full = [leading_subspace(x, m, x.shape[m]) for m in range(3)]
    assert torch.allclose(tucker_compress(x, full).reconstruct(), x)


def test_subspace_iteration_converges_to_the_top_singular_subspace():
    matrix = known_matrix([10.0, 8.0, 3.0, 1.0, 0.5, 0.1], cols=20)
    top = torch.linalg.svd(matrix).U[:, :2]
    basis = orthonormal(6, 2, seed=5)
    distances = []
    for _ in range(12):
        basis = subspace_iteration(matrix, 0, basis)
        distances.append(torch.linalg.matrix_norm(top - basis @ (basis.T @ top)).item())
    # the error shrinks by about (sigma_3 / sigma_2)^2 = 0.14 per step
    assert all(b < a for a, b in zip(distances, distances[1:], strict=False))
    assert distances[-1] < 1e-9


def test_subspace_iteration_on_a_middle_mode_of_a_tensor():
    x = torch.randn(4, 6, 5, dtype=torch.float64)
    x[:, 3:] *= 1e-3  # mode 1 has a clear top-3 subspace: channels 0..2
    basis = subspace_iteration(x, 1, orthonormal(6, 3, seed=2), steps=20)
    exact = leading_subspace(x, 1, 3)
    assert torch.allclose(basis @ basis.T, exact @ exact.T, atol=1e-9)


def test_tucker_numel_is_the_hand_count():
    # core 2*3*4*11, factors 5*2 + 8*3 + 9*4; the last mode is kept whole (no factor)
    assert tucker_numel((5, 8, 9, 11), (2, 3, 4, 11)) == 264 + 10 + 24 + 36
    assert tucker_numel((5, 8), (9, 9)) == 40


def test_compact_copies_views_only():
    big = torch.randn(10, 10)
    view = big[:, :2]
    copy = compact(view)
    assert copy.untyped_storage().nbytes() == 20 * 4 and torch.equal(copy, view)
    owned = torch.randn(3, 3)
    assert compact(owned) is owned


CONV_CASES = [
    dict(stride=1, padding=1, dilation=1, groups=1),
    dict(stride=2, padding=1, dilation=1, groups=1),
    dict(stride=2, padding=0, dilation=1, groups=1),
    dict(stride=1, padding=2, dilation=2, groups=1),
    dict(stride=1, padding=1, dilation=1, groups=4),
]


def dense_conv_weight_grad(x, weight_shape, grad, case):
    return nn_grad.conv2d_weight(x, weight_shape, grad, case["stride"], case["padding"],
                                 case["dilation"], case["groups"])


def factored_conv_weight_grad(tucker, weight_shape, grad, case):
    pair = lambda v: (v, v)  # noqa: E731
    return conv2d_weight_grad(tucker, grad, weight_shape, pair(case["stride"]), pair(case["padding"]),
                              pair(case["dilation"]), case["groups"])


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("ranks", [(5, 8, 9, 11), (2, 3, 4, 5), (5, 2, 9, 3)])
def test_conv_weight_grad_from_factors_equals_the_grad_of_the_reconstruction(case, ranks):
    x = torch.randn(5, 8, 9, 11, dtype=torch.float64)
    weight = torch.randn(12, 8 // case["groups"], 3, 3, dtype=torch.float64)
    out = torch.nn.functional.conv2d(x, weight, None, **case)
    grad = torch.randn_like(out)
    tucker = tucker_compress(x, [leading_subspace(x, m, r) for m, r in enumerate(ranks)])
    expected = dense_conv_weight_grad(tucker.reconstruct(), weight.shape, grad, case)
    got = factored_conv_weight_grad(tucker, weight.shape, grad, case)
    torch.testing.assert_close(got, expected)
    if ranks == x.shape:  # full rank, every factor present: the dense gradient itself
        torch.testing.assert_close(got, dense_conv_weight_grad(x, weight.shape, grad, case))


@pytest.mark.parametrize("shape", [(6, 10), (4, 6, 10)])
def test_linear_weight_grad_from_factors(shape):
    x = torch.randn(*shape, dtype=torch.float64)
    grad = torch.randn(*shape[:-1], 7, dtype=torch.float64)
    dense = torch.einsum("...o,...i->oi", grad, x)
    full = tucker_compress(x, [leading_subspace(x, m, d) for m, d in enumerate(shape)])
    torch.testing.assert_close(linear_weight_grad(full, grad), dense)
    low = tucker_compress(x, [leading_subspace(x, m, max(1, d // 2)) for m, d in enumerate(shape)])
    torch.testing.assert_close(linear_weight_grad(low, grad), torch.einsum("...o,...i->oi", grad, low.reconstruct()))
    no_factors = Tucker(x, (None,) * len(shape))
    torch.testing.assert_close(linear_weight_grad(no_factors, grad), dense)


@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (2, 8, 3), (7, 2), (40, 2, 3, 2)])
def test_mode_cross_is_the_product_of_the_unfoldings(shape):
    x = torch.randn(*shape, dtype=torch.float64)
    for mode in range(len(shape)):
        z = torch.randn(*shape[:mode], 5, *shape[mode + 1 :], dtype=torch.float64)
        torch.testing.assert_close(mode_cross(x, z, mode), unfold(x, mode) @ unfold(z, mode).T)


@pytest.mark.parametrize("failing", [(torch.float32,), (torch.float32, torch.float64)],
                         ids=["float32-eigh-fails", "every-eigh-fails"])
def test_mode_spectrum_survives_an_eigh_that_fails_to_converge(monkeypatch, failing):
    # float32 eigh fails on near-degenerate Grams; float64 eigh too, single-threaded, on a collapsed
    # layer's rank-3 Gram: then float64, then the Gram's SVD, must give the same spectrum
    x = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(0))
    expected_energies, expected_vectors = mode_spectrum(x, 1)
    solver = torch.linalg.eigh

    def fails(matrix):
        if matrix.dtype in failing:
            raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")
        return solver(matrix)

    monkeypatch.setattr(torch.linalg, "eigh", fails)
    energies, vectors = mode_spectrum(x, 1)
    assert energies.dtype == vectors.dtype == torch.float32
    torch.testing.assert_close(energies, expected_energies, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(vectors.abs(), expected_vectors.abs(), rtol=1e-4, atol=1e-4)
