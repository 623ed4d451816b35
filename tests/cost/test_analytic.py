"""Each stock layer's analytic count equals what autograd saves for it; dedup shows on a chain."""

import pytest
import torch
from torch import nn

from edgewise import cost

IMAGE = (2, 4, 6, 6)
LAYERS = [
    (nn.Conv2d(4, 3, 3), IMAGE), (nn.Conv1d(4, 3, 3), (2, 4, 9)), (nn.Linear(6, 5), (3, 6)),
    (nn.Linear(6, 5), (2, 3, 6)), (nn.BatchNorm2d(4), IMAGE), (nn.BatchNorm2d(4).eval(), IMAGE),
    (nn.BatchNorm1d(4), (5, 4)), (nn.LayerNorm(6), (2, 3, 6)), (nn.GroupNorm(2, 4), IMAGE),
    (nn.ReLU(), IMAGE), (nn.ReLU6(), IMAGE), (nn.GELU(), IMAGE), (nn.SiLU(), IMAGE),
    (nn.Sigmoid(), IMAGE), (nn.Tanh(), IMAGE), (nn.Softmax(dim=-1), IMAGE), (nn.LeakyReLU(), IMAGE),
    (nn.Hardswish(), IMAGE), (nn.ELU(), IMAGE), (nn.MaxPool2d(2), IMAGE), (nn.AvgPool2d(2), IMAGE),
    (nn.AdaptiveAvgPool2d(1), IMAGE), (nn.AdaptiveAvgPool2d(2), IMAGE), (nn.Flatten(), IMAGE),
    (nn.Identity(), IMAGE),
]


@pytest.mark.parametrize(("layer", "shape"), LAYERS, ids=lambda v: repr(v) if isinstance(v, nn.Module) else "")
def test_each_rule_matches_what_autograd_saves(layer, shape):
    model = nn.Sequential(layer)
    x = torch.randn(*shape, requires_grad=True)
    analytic = cost.analytic_activation_bytes(model, x)
    assert analytic == {"0": cost.saved_activation_bytes(model, x).total}


def test_closed_forms_of_the_rules():
    x = torch.randn(*IMAGE)
    assert cost.analytic_activation_bytes(nn.Sequential(nn.BatchNorm2d(4)), x) == {"0": x.nbytes + 2 * 4 * 4}
    assert cost.analytic_activation_bytes(nn.Sequential(nn.MaxPool2d(2)), x) == {"0": x.nbytes + 2 * 4 * 9 * 8}
    tokens = torch.randn(2, 3, 6)
    assert cost.analytic_activation_bytes(nn.Sequential(nn.LayerNorm(6)), tokens) == {"0": tokens.nbytes + 2 * 6 * 4}


def test_a_chain_counts_shared_tensors_per_layer():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                          nn.Flatten(), nn.Linear(256, 3))
    x = torch.randn(2, 1, 8, 8)
    feature = 2 * 4 * 64 * 4
    analytic = cost.analytic_activation_bytes(model, x)
    assert analytic == {"0": x.nbytes, "1": feature, "2": feature, "3": 0, "4": feature}
    # the ReLU output that conv2 also saves is one storage: measured is one feature map less
    assert cost.saved_activation_bytes(model, x).total == sum(analytic.values()) - feature


class Custom(nn.Module):
    def forward(self, x):
        return x * 2


def test_types_without_a_rule_and_containers_are_left_out():
    model = nn.Sequential(nn.Sequential(nn.Linear(3, 3)), Custom())
    assert cost.analytic_activation_bytes(model, torch.randn(2, 3)) == {"0.0": 2 * 3 * 4}


def test_counting_leaves_batchnorm_statistics_alone():
    model = nn.Sequential(nn.BatchNorm2d(4))
    cost.analytic_activation_bytes(model, torch.randn(*IMAGE) + 3)
    torch.testing.assert_close(model[0].running_mean, torch.zeros(4))
