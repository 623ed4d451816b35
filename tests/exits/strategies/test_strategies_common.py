"""Checks every registered strategy passes: build, one step, state round trip, bad parameter."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import edgewise.exits.strategies as strategies_pkg
from edgewise.errors import ParameterError, UnknownNameError
from edgewise.exits.strategies import STRATEGIES, Run, get
from edgewise.exits.strategies.base import exit_outputs

# One bad value per strategy, with the standard message it must raise.
BAD = {
    "cgt-hard": ("tau", 1.5, "The 'tau' parameter of cgt-hard must be in (0, 1]. Got 1.5."),
    "cgt-soft": ("kappa", 0.0, "The 'kappa' parameter of cgt-soft must be > 0. Got 0.0."),
    "distill": ("temperature", -1.0,
                "The 'temperature' parameter of distill must be > 0. Got -1.0."),
    "heads-only": ("weights", (1.0, -2.0), "The 'weights' parameter of heads-only must be a "
                   "non-empty sequence of numbers >= 0 (or None). Got (1.0, -2.0)."),
    "joint": ("schedule", "cosine",
              "The 'schedule' parameter of joint must be one of fixed, ramp. Got 'cosine'."),
    "sequential": ("freeze", "all", "The 'freeze' parameter of sequential must be one of "
                   "heads, prefix. Got 'all'."),
    "sequential-ewc": ("ewc_lambda", -1,
                       "The 'ewc_lambda' parameter of sequential-ewc must be >= 0. Got -1."),
    "sequential-lwf": ("lwf_lambda", -0.5,
                       "The 'lwf_lambda' parameter of sequential-lwf must be >= 0. Got -0.5."),
    "two-stage": ("weights", "abc", "The 'weights' parameter of two-stage must be a "
                  "non-empty sequence of numbers >= 0 (or None). Got 'abc'."),
}


def test_registry_is_sorted_and_matches_the_files():
    assert list(STRATEGIES) == sorted(STRATEGIES)
    folder = Path(strategies_pkg.__file__).parent
    stems = {p.stem.replace("_", "-") for p in folder.glob("*.py")}
    assert stems - {"--init--", "base", "maths"} == set(STRATEGIES)
    for name, cls in STRATEGIES.items():
        assert cls.name == name
    assert set(BAD) == set(STRATEGIES)


def test_unknown_name_suggests_a_close_match():
    with pytest.raises(UnknownNameError, match="Did you mean 'sequential-ewc'"):
        get("sequential-ecw")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_rejects_a_bad_parameter_with_the_standard_message(name):
    param, value, message = BAD[name]
    with pytest.raises(ParameterError) as info:
        get(name, **{param: value})
    assert str(info.value) == message


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_rejects_an_unknown_parameter(name):
    with pytest.raises(ParameterError, match=f"{name} has no parameter 'not_a_param'"):
        get(name, not_a_param=1)


def _one_step_per_stage(strategy, net, batch):
    """Run every stage for one SGD step, as train() would; return the losses."""
    x, y = batch
    losses = []
    for index, stage in enumerate(strategy.stages(net)):
        strategy.before_stage(net, stage, [batch])
        params = stage.parameters(net)
        before = [p.detach().clone() for p in params]
        opt = torch.optim.SGD(params, lr=0.1)
        net.train()
        outputs = exit_outputs(net, x, stage.depth)
        run = Run(net=net, stage=stage, stage_index=index, inputs=x, epoch=0, epochs=2)
        loss = strategy.loss(outputs, y, run)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert loss.ndim == 0 and torch.isfinite(loss)
        assert any(not torch.equal(b, p) for b, p in zip(before, params, strict=True))
        strategy.after_stage(net, stage, [batch])
        losses.append(loss.detach().item())
    return losses


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_builds_with_defaults_and_takes_one_step(name, tiny_net, batch):
    strategy = get(name)
    stages = strategy.stages(tiny_net)
    assert stages
    # every exit is trained by some stage
    assert sorted({e for s in stages for e in s.new_exits}) == [0, 1, 2] or name == "heads-only"
    losses = _one_step_per_stage(strategy, tiny_net, batch)
    assert len(losses) == len(stages)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_state_dict_round_trips(name, tiny_net, batch):
    strategy = get(name)
    _one_step_per_stage(strategy, tiny_net, batch)
    state = strategy.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    fresh = get(name)
    fresh.load_state_dict(copy.deepcopy(state))
    again = fresh.state_dict()
    assert again.keys() == state.keys()
    for k in state:
        assert torch.equal(again[k], state[k])
    # the restored strategy scores a batch exactly as the original does
    x, y = batch
    stage = strategy.stages(tiny_net)[-1]
    tiny_net.eval()
    with torch.no_grad():
        outputs = exit_outputs(tiny_net, x, stage.depth)
        run = Run(net=tiny_net, stage=stage, stage_index=0, inputs=x, epoch=1, epochs=2)
        assert torch.allclose(strategy.loss(outputs, y, run), fresh.loss(outputs, y, run))


@pytest.mark.parametrize("name", ["sequential-ewc", "sequential-lwf"])
def test_state_dict_rejects_foreign_keys(name):
    with pytest.raises(ParameterError, match="cannot load state key 'weights.x'"):
        get(name).load_state_dict({"weights.x": torch.zeros(1)})


def test_stateless_strategies_reject_state():
    with pytest.raises(ParameterError, match="joint keeps no learned state"):
        get("joint").load_state_dict({"a": torch.zeros(1)})
