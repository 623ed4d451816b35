"""Every update-selection method, through the same checks: it builds with its defaults, selects
on a tiny model, keeps a budget it is given, saves and loads its state, and rejects a bad
parameter with the standard message."""

import pytest
import torch
import torch.nn.functional as F

from edgewise.errors import ParameterError, UnknownNameError
from edgewise.ondevice.selection import SELECTORS, Selection, apply_selection, get_selector

UNBUDGETED = {"full", "neq", "scotti"}  # they ignore a budget (the per-step check catches them)
BAD = {
    "last-k": ({"k": 0}, "The 'k' parameter of last-k must be an int >= 1. Got 0."),
    "medyate": ({"exploration": 2}, "The 'exploration' parameter of medyate must be in [0, 1]. Got 2."),
    "neq": ({"eps": -1}, "The 'eps' parameter of neq must be >= 0. Got -1."),
    "neq-budget": ({"mu": 0.9}, "The 'mu' parameter of neq-budget must be in [0, 0.5]. Got 0.9."),
    "scotti": ({"tradeoff": 0}, "The 'tradeoff' parameter of scotti must be > 0. Got 0."),
    "trady": ({"coverage": 0}, "The 'coverage' parameter of trady must be in (0, 1]. Got 0."),
}


def run_epochs(name, setting, epochs=2):
    model, plan, stats = setting
    selector = get_selector(name)
    selections = []
    for epoch in range(epochs):
        stats.start_epoch(epoch)
        selection = selector.select(model, plan, stats)
        apply_selection(model, selection, plan.head)
        F.cross_entropy(model(plan.images), plan.labels).backward()  # one training step's backward
        stats.observe()
        model.zero_grad(set_to_none=True)
        selections.append(selection)
    return selector, selections


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_selects_something_and_keeps_the_budget(name, setting):
    _, plan, _ = setting
    _, selections = run_epochs(name, setting)
    for selection in selections:
        assert isinstance(selection, Selection)
        assert selection.layers(), "nothing but the head would train"
        assert selection.layers() <= set(plan.layers)
        if name not in UNBUDGETED:
            assert plan.measure(selection) <= plan.limit
            assert plan.cost(selection) >= plan.measure(selection)


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_state_round_trips(name, setting):
    selector, _ = run_epochs(name, setting)
    state = selector.state_dict()
    fresh = get_selector(name)
    fresh.load_state_dict(state)
    again = fresh.state_dict()
    assert again.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(again[key], value)


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_parameter_gets_the_standard_message(name):
    params, message = BAD[name]
    with pytest.raises(ParameterError) as error:
        get_selector(name, **params)
    assert str(error.value) == message


def test_unknown_names_and_parameters_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match="Did you mean 'trady'"):
        get_selector("tardy")
    with pytest.raises(UnknownNameError, match="Valid names: coverage"):
        get_selector("trady", budget=3)


@pytest.mark.parametrize("name", sorted(set(SELECTORS) - UNBUDGETED - {"bias-only", "last-k"}))
def test_methods_that_fill_a_budget_ask_for_one(name, setting):
    model, _, stats = setting
    with pytest.raises(ParameterError, match="give it a budget"):
        get_selector(name).select(model, None, stats)
