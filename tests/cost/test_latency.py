"""Timing: counts of calls, quartile order, thread count fixed and restored, inference mode."""

import time

import pytest
import torch
from torch import nn

from edgewise import cost
from edgewise.errors import ParameterError


def test_time_it_calls_warmup_plus_repeats_and_orders_quartiles():
    calls = []

    def nap():
        calls.append(1)
        time.sleep(0.002)

    timing = cost.time_it(nap, warmup=2, repeats=7)
    assert len(calls) == 9 and timing.repeats == 7
    assert 0.002 <= timing.p25_s <= timing.median_s <= timing.p75_s < 1.0


def test_time_interleaved_alternates_the_calls_and_times_each_apart():
    order = []

    def nap(name, seconds):
        return lambda: (order.append(name), time.sleep(seconds))

    short, long_ = cost.time_interleaved([nap("a", 0.001), nap("b", 0.004)], warmup=1, repeats=3)
    assert order == ["a", "b"] * 4
    assert 0.001 <= short.median_s < 0.004 <= long_.median_s and short.repeats == 3


def test_thread_count_is_fixed_then_restored_even_on_error():
    before = torch.get_num_threads()
    seen = []
    timing = cost.time_it(lambda: seen.append(torch.get_num_threads()), warmup=1, repeats=2, threads=1)
    assert seen == [1, 1, 1] and timing.threads == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ZeroDivisionError):
        cost.time_it(lambda: 1 / 0, threads=1)
    assert torch.get_num_threads() == before
    assert cost.time_it(lambda: None, repeats=1).threads == before


def test_inference_mode_only_when_asked():
    seen = []
    cost.time_it(lambda: seen.append(torch.is_inference_mode_enabled()), warmup=0, repeats=1)
    cost.time_it(lambda: seen.append(torch.is_inference_mode_enabled()), warmup=0, repeats=1,
                 inference=True)
    assert seen == [False, True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"repeats": 0}, "The 'repeats' parameter of time_it must be an int >= 1. Got 0."),
     ({"warmup": -1}, "The 'warmup' parameter of time_it must be an int >= 0. Got -1."),
     ({"threads": 0}, "The 'threads' parameter of time_it must be None or an int >= 1. Got 0.")],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ParameterError) as info:
        cost.time_it(lambda: None, **kwargs)
    assert str(info.value) == message


def test_time_model_runs_eval_batches_and_restores_the_mode():
    model = nn.Sequential(nn.Linear(4, 2), nn.Dropout())
    seen = []
    model.register_forward_hook(
        lambda m, args, out: seen.append((m.training, m[1].training, tuple(args[0].shape),
                                          torch.is_inference_mode_enabled())))
    timing = cost.time_model(model, (4,), batch_size=3, warmup=1, repeats=2)
    assert seen == [(False, False, (3, 4), True)] * 3 and timing.repeats == 2
    assert model.training and model[1].training
