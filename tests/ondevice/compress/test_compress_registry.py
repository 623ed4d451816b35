import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgewise.errors import ParameterError, UnknownNameError
from edgewise.ondevice.compress import COMPRESSORS, make_compressor, prepare_compression
from edgewise.ondevice.compress.base import Compressed


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3),
    )


def batch():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 1, 8, 8, generator=generator), torch.randint(0, 3, (8,), generator=generator)


BAD_PARAMS = {
    "asi": ("steps", 0, "an int >= 1"),
    "hosvd": ("epsilon", 1.5, "in (0, 1]"),
    "svd": ("epsilon", 0.0, "in (0, 1]"),
    "wasi": ("weight_epsilon", -1, "in (0, 1]"),
}


def test_registry_is_sorted_and_every_method_has_a_bad_parameter_case():
    assert list(COMPRESSORS) == sorted(COMPRESSORS) == sorted(BAD_PARAMS)
    assert all(cls.name == name for name, cls in COMPRESSORS.items())


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_every_method_builds_trains_and_keeps_its_state(name):
    model, (x, y) = tiny(), batch()
    before = model(x).detach()
    prepare_compression(model, name, calibration_batch=(x, y))
    wrapped = [n for n, m in model.named_modules() if isinstance(m, Compressed)]
    assert wrapped == (["5", "7"] if name == "wasi" else ["0", "2", "5", "7"])
    if name != "wasi":  # same forward, same parameters
        torch.testing.assert_close(model(x), before)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(start[k], v) for k, v in model.state_dict().items())
    state = model.state_dict()
    twin = prepare_compression(tiny(), name, calibration_batch=(x, y))
    twin.load_state_dict(state)
    model.eval(), twin.eval()
    torch.testing.assert_close(twin(x), model(x))


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_every_method_rejects_a_bad_parameter_with_the_standard_message(name):
    key, value, expected = BAD_PARAMS[name]
    message = f"The '{key}' parameter of {name} must be {expected}. Got {value!r}."
    with pytest.raises(ParameterError, match=re.escape(message)):
        make_compressor(name, **{key: value})


def test_unknown_names_get_close_matches():
    with pytest.raises(UnknownNameError, match="Did you mean 'hosvd'"):
        make_compressor("hosdv")
    with pytest.raises(UnknownNameError, match="Did you mean 'epsilon'"):
        make_compressor("hosvd", epsilom=0.5)
    with pytest.raises(UnknownNameError, match="Unknown layer for svd '9'"):
        prepare_compression(tiny(), "svd", layers=["9"])


def test_layers_by_name_or_count():
    model = prepare_compression(tiny(), "hosvd", layers="2")
    assert [n for n, m in model.named_modules() if isinstance(m, Compressed)] == ["2"]
    model = prepare_compression(tiny(), "hosvd", layers=1)
    assert [n for n, m in model.named_modules() if isinstance(m, Compressed)] == ["7"]
    prepare_compression(model, "svd", layers=1)  # the already compressed layer is skipped
    assert [n for n, m in model.named_modules() if isinstance(m, Compressed)] == ["5", "7"]
    with pytest.raises(ParameterError, match="The 'layers' parameter of svd must be an int >= 1"):
        prepare_compression(tiny(), "svd", layers=0)


def test_default_layers_are_the_last_trainable_ones():
    model = tiny()
    for p in model[7].parameters():
        p.requires_grad_(False)
    prepare_compression(model, "hosvd", layers=2)
    assert [n for n, m in model.named_modules() if isinstance(m, Compressed)] == ["2", "5"]


def test_methods_without_a_budget_reject_one():
    with pytest.raises(ParameterError, match="The 'budget_bytes' parameter of hosvd must be None"):
        prepare_compression(tiny(), "hosvd", budget_bytes=1000)
    with pytest.raises(ParameterError, match="The 'budget_bytes' parameter of asi must be an int > 0"):
        prepare_compression(tiny(), "asi", budget_bytes=-5, calibration_batch=batch())
