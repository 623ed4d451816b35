"""Wall-clock comparison of dynamic inference against the static network (behaviour, not speed)."""

from __future__ import annotations

import pytest
import torch

from edgewise.exits.policies import Policy
from edgewise.exits.speed import compare, fastest_format, static_network

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def test_static_network_is_the_final_exit_without_heads(trained):
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(static_network(trained)(x), trained(x)[-1])


def test_fastest_format_names_a_format(trained):
    assert fastest_format(trained, lambda m, x: m(x), torch.randn(8, 1, 16, 16)) in (
        "channels_last", "contiguous")


@pytest.mark.parametrize("batch_size", [1, 16])
def test_compare_reports_the_policy_it_ran(trained, splits, batch_size):
    images = splits.test.tensors[0][:32]
    policy = Policy("max-prob", (0.6, 0.9))
    speed = compare(trained, policy, images, batch_size, repeats=2)
    _, exits = trained.infer(images, policy)
    expected = (torch.bincount(exits, minlength=3) / len(exits)).tolist()
    assert speed.exit_distribution == pytest.approx(expected)
    assert speed.static_s > 0 and speed.dynamic_s > 0 and speed.predicted_speedup > 0
    assert speed.speedup > 0  # batched: the median of per-round ratios
    assert not trained.training  # the network given is left as it was
