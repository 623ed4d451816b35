import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgewise.cost import saved_activation_bytes, training_memory
from edgewise.ondevice.compress import prepare_compression
from edgewise.ondevice.compress.asi import SubspaceCodec
from edgewise.ondevice.compress.tensor_ops import leading_subspace, tucker_compress
from edgewise.ondevice.compress.wasi import FactoredLinear


class FullRankCodec:
    def compress(self, x):
        return tucker_compress(x, [leading_subspace(x, m, d) for m, d in enumerate(x.shape)])


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("codec", [FullRankCodec(), SubspaceCodec((4, 5, 10))])
def test_full_rank_factored_gradients_equal_the_chain_rule_of_w_equals_lr(codec, bias):
    torch.manual_seed(0)
    dense = nn.Linear(10, 7, bias=bias).double()
    layer = FactoredLinear(dense, 1.0, codec)
    x = torch.randn(4, 5, 10, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    torch.testing.assert_close(out, dense(x))  # epsilon 1: L R = W
    grad = torch.randn_like(out)
    params = [p for p in (layer.left, layer.right, layer.bias) if p is not None]
    got = torch.autograd.grad(out, (x, *params), grad)
    left, right = layer.left.detach().requires_grad_(), layer.right.detach().requires_grad_()
    reference = F.linear(F.linear(x, right), left, layer.bias)
    expected = torch.autograd.grad(reference, (x, left, right, *params[2:]), grad)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)


def test_factoring_keeps_the_dominant_subspace_at_epsilon():
    torch.manual_seed(0)
    dense = nn.Linear(12, 8)
    with torch.no_grad():
        dense.weight.copy_(torch.linalg.qr(torch.randn(8, 2)).Q @ torch.randn(2, 12))  # rank 2
    layer = FactoredLinear(dense, 0.99, SubspaceCodec((4, 12)))
    assert layer.rank == 2 and layer.left.shape == (8, 2) and layer.right.shape == (2, 12)
    x = torch.randn(5, 12)
    torch.testing.assert_close(layer(x), dense(x), rtol=1e-5, atol=1e-5)


def test_the_subspace_step_keeps_the_product_and_orthonormalises_left():
    torch.manual_seed(0)
    layer = FactoredLinear(nn.Linear(9, 6).double(), 1.0, SubspaceCodec((3, 9)))
    with torch.no_grad():
        layer.left.add_(0.3 * torch.randn_like(layer.left))
    product = layer.left @ layer.right
    layer.orthonormalize_()
    torch.testing.assert_close(layer.left @ layer.right, product)
    torch.testing.assert_close(layer.left.T @ layer.left, torch.eye(6, dtype=torch.float64))


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(),
        nn.Linear(4 * 36, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 3),
    )


def data(n=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 6, 6, generator=generator)
    return x, (x.flatten(1)[:, :3].argmax(1))


def test_wasi_compresses_linear_layers_only_and_stores_no_dense_weight():
    model = mlp()
    x, y = data()
    prepare_compression(model, "wasi", calibration_batch=(x, y), weight_epsilon=0.5)
    assert isinstance(model[0], nn.Conv2d)
    factored = [model[2], model[4], model[6]]
    assert all(isinstance(m, FactoredLinear) for m in factored)
    assert all(not hasattr(m, "weight") for m in factored)
    for m, (out, inp) in zip(factored, [(32, 144), (32, 32), (3, 32)], strict=True):
        assert m.left.shape == (out, m.rank) and m.right.shape == (m.rank, inp)


def test_wasi_shrinks_weights_gradients_and_optimizer_state():
    dense, model = mlp(), mlp()
    x, y = data()
    prepare_compression(model, "wasi", calibration_batch=(x, y), weight_epsilon=0.3)
    reports = [training_memory(net, x, y, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))
               for net in (dense, model)]
    assert reports[1].weights < reports[0].weights
    assert reports[1].gradients < reports[0].gradients
    assert reports[1].optimizer_state < reports[0].optimizer_state
    saved = saved_activation_bytes(model, x, y).per_module
    assert saved["2"] < 32 * 144 * 4  # the first linear saves its input (32, 144) compressed


def test_wasi_learns():
    model = mlp()
    x, y = data(128)
    prepare_compression(model, "wasi", calibration_batch=(x, y), weight_epsilon=0.9)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    model(x)  # each training forward first re-orthonormalises the left factors
    for layer in (model[2], model[4], model[6]):
        torch.testing.assert_close(layer.left.T @ layer.left, torch.eye(layer.rank), atol=1e-5, rtol=0)
