"""Memory accounting: the measured saved bytes match a count by hand and the formula, and a
budget fails loudly."""

import math

import pytest
import torch
from torch import nn

from edgewise.cost import saved_activation_bytes
from edgewise.engine import TrainConfig, fit
from edgewise.errors import BudgetError, ParameterError
from edgewise.ondevice.compress import prepare_compression
from edgewise.ondevice.compress.base import Compressed
from edgewise.ondevice.memory import KB, Budget, StepMonitor, analytic_activation_bytes, step_memory
from edgewise.ondevice.ops import IN, fold_batchnorm, prepare, sparse_layers

B, H = 5, 9


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 6, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4),
    ).eval()


def test_saved_bytes_match_a_count_by_hand():
    x = torch.randn(B, 3, H, H)
    model = prepare(small_model(), x)
    layers = sparse_layers(model)
    layers["3"].select(torch.tensor([1, 4, 6]), IN)          # 3 of conv2's 8 input channels
    layers["7"].select(torch.arange(6), IN, bias=True)       # the head, whole
    by_hand = (
        B * 3 * H * H * 4            # conv2: the copied slice of its 3 selected input channels
        + math.ceil(B * 6 * H * H / 8)  # the ReLU after conv2: one bit per element
        + B * 6 * 4                  # the head's input (the pooled features)
    )                                # conv1 and the first ReLU are a frozen prefix: nothing
    assert saved_activation_bytes(model, x).total == by_hand == 5284
    assert analytic_activation_bytes(model, x) == by_hand
    step = step_memory(model, x, torch.arange(B) % 4)
    assert step.gradients == (6 * 3 * 3 * 3 + 4 * 6 + 4) * 4  # conv2's slice, the head
    assert step.optimizer_state == 0
    assert step.activations >= by_hand  # plus what the loss saves


def test_budget_is_validated_and_checked():
    with pytest.raises(ParameterError, match=r"The 'kb' parameter of Budget must be > 0\. Got -3\."):
        Budget(-3)
    budget = Budget(kb=1)
    assert budget.bytes == KB
    budget.check(KB)
    with pytest.raises(BudgetError, match="over the budget of 1 kB"):
        budget.check(KB + 1)


def splits_of(x, y):
    data = torch.utils.data.TensorDataset(x, y)
    return type("Splits", (), {"train": data, "val": data})()


def test_the_monitor_measures_every_step_and_stops_at_the_first_over_budget():
    x, y = torch.randn(16, 3, H, H), torch.arange(16) % 4
    model = prepare(small_model(), x)
    for layer in sparse_layers(model).values():
        layer.select(torch.arange(layer.channels(IN)), IN, bias=True)
    config = TrainConfig(epochs=1, batch_size=4, momentum=0, nesterov=False, weight_decay=0,
                         device="cpu")
    monitor = StepMonitor()
    fit(model, splits_of(x, y), config, loss_fn=monitor.loss_fn, callbacks=[monitor], progress=False)
    assert monitor.steps == 4
    expected = step_memory(model, x[:4].clone(), y[:4].clone())  # a view would count all of x
    assert monitor.peak_budgeted == expected.budgeted
    too_small = StepMonitor(Budget(kb=(expected.budgeted - 1) / KB))
    with pytest.raises(BudgetError, match="Training step 1 holds"):
        fit(model, splits_of(x, y), config, loss_fn=too_small.loss_fn, callbacks=[too_small],
            progress=False)


@pytest.mark.parametrize("method", ["asi", "hosvd", "svd"])
def test_the_formula_counts_compressed_layers_as_they_are_measured(method):
    x, y = torch.randn(B, 3, H, H), torch.arange(B) % 4
    model = small_model()
    fold_batchnorm(model, x)
    prepare_compression(model, method, layers=2, calibration_batch=(x, y))
    prepare(model, x)
    for module in model.modules():
        if isinstance(module, Compressed):
            module.requires_grad_(True)
    measured = saved_activation_bytes(model, x).total
    assert 0 < measured == analytic_activation_bytes(model, x)
