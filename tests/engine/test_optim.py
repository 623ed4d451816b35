"""Learning-rate schedules are functions of the step alone; optimizers come from their names."""

import math

import pytest
import torch

from edgewise.engine import TrainConfig
from edgewise.engine.optim import build_optimizer, lr_factor, set_lr


def factors(config: TrainConfig, steps: int) -> list[float]:
    return [lr_factor(config, i, steps) for i in range(config.epochs * steps)]


def test_warmup_is_linear_then_the_schedule_starts_at_the_peak():
    f = factors(TrainConfig(epochs=5, warmup_epochs=2, schedule="cosine"), steps=4)
    assert f[:8] == pytest.approx([(i + 1) / 8 for i in range(8)])
    assert f[8] == 1.0
    assert all(a > b for a, b in zip(f[8:], f[9:], strict=False))  # then strictly decreasing
    assert f[-1] < 0.02


def test_step_schedule_divides_by_ten_at_half_and_three_quarters():
    f = factors(TrainConfig(epochs=4, schedule="step"), steps=10)
    assert f[0] == f[19] == 1.0
    assert f[20] == f[29] == pytest.approx(0.1)
    assert f[30] == f[39] == pytest.approx(0.01)


def test_none_is_constant():
    assert set(factors(TrainConfig(epochs=3, schedule="none"), steps=5)) == {1.0}


def test_onecycle_matches_torch():
    config = TrainConfig(epochs=3, lr=0.1, schedule="onecycle")
    steps = 7
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.1, total_steps=config.epochs * steps, cycle_momentum=False
    )
    expected = []
    for _ in range(config.epochs * steps):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert [0.1 * f for f in factors(config, steps)] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("name", "cls"),
    [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)],
)
def test_optimizers_by_name_and_set_lr(name, cls):
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = build_optimizer(params, TrainConfig(optimizer=name, lr=0.2, weight_decay=1e-3))
    assert isinstance(optimizer, cls)
    group = optimizer.param_groups[0]
    assert group["weight_decay"] == 1e-3 and group["initial_lr"] == 0.2
    set_lr(optimizer, 0.25)
    assert math.isclose(group["lr"], 0.05)


def test_sgd_is_nesterov_by_default():
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], TrainConfig())
    assert optimizer.param_groups[0]["nesterov"] and optimizer.param_groups[0]["momentum"] == 0.9
