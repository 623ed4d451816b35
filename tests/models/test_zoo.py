"""Every zoo model: builds for every input the data layer gives, runs as a plain chain of stages,
keeps rectifiers as modules, and rebuilds from its spec."""

import json

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from edgewise import models
from edgewise.errors import ParameterError, UnknownNameError, UserError

SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8)]
CHILDREN = {
    "convnet": ["block1", "block2", "block3", "classifier"],
    "mobilenetv2": ["stem", *(f"block{i}" for i in range(1, 18)), "head", "classifier"],
    "resnet": ["stem", "layer1", "layer2", "layer3", "classifier"],
    "vit": ["patch_embed", *(f"block{i}" for i in range(1, 7)), "classifier"],
}
RECTIFIERS = (nn.ReLU, nn.ReLU6, nn.GELU)
RECTIFIER_OPS = {"relu", "relu_", "hardtanh", "hardtanh_", "gelu", "clamp", "clamp_min"}


def test_list_models_is_sorted_and_complete():
    assert models.list_models() == ["convnet", "mobilenetv2", "resnet", "vit"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", models.list_models())
def test_model_is_a_chain_of_its_children(name, shape):
    torch.manual_seed(0)
    model = models.build(name, 7, shape).eval()
    x = torch.randn(2, *shape)
    out = x
    for child in model.children():
        out = child(out)
    assert [n for n, _ in model.named_children()] == CHILDREN[name]
    assert out.shape == (2, 7)
    torch.testing.assert_close(model(x), out)


class OpCounter(TorchDispatchMode):
    """Counts rectifier operators, whoever calls them."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func.overloadpacket.__name__ in RECTIFIER_OPS
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", models.list_models())
def test_every_rectifier_call_is_a_module_call(name):
    model = models.build(name, 10, (1, 28, 28)).eval()
    calls = []
    for module in model.modules():
        if isinstance(module, RECTIFIERS):
            module.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad(), OpCounter() as ops:
        model(torch.randn(1, 1, 28, 28))
    assert ops.count == len(calls) > 0


@pytest.mark.parametrize("name", models.list_models())
def test_rectifiers_are_distinct_instances(name):
    model = models.build(name, 10, (1, 28, 28))
    rectifiers = [m for m in model.modules() if isinstance(m, RECTIFIERS)]
    named = [m for _, m in model.named_modules(remove_duplicate=False) if isinstance(m, RECTIFIERS)]
    assert len(named) == len(rectifiers)


@pytest.mark.parametrize("name", models.list_models())
def test_spec_round_trips_through_json(name):
    model = models.build(name, 5, (3, 32, 32), width=0.5)
    spec = json.loads(json.dumps(models.spec_of(model)))
    assert spec["name"] == name and spec["num_classes"] == 5 and spec["width"] == 0.5
    rebuilt = models.from_spec(spec)
    rebuilt.load_state_dict(model.state_dict())  # strict: same architecture
    model.eval(), rebuilt.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(rebuilt(x), model(x))
    assert models.spec_of(rebuilt) == models.spec_of(model)


def test_spec_keeps_defaults_and_kwargs():
    spec = models.spec_of(models.build("resnet", 10, (1, 28, 28), depth=18))
    assert spec == {"name": "resnet", "num_classes": 10, "input_shape": (1, 28, 28),
                    "width": 1.0, "depth": 18}
    assert models.spec_of(models.build("vit", 10, (1, 28, 28)))["pool"] == "mean"


def test_spec_of_a_foreign_model_is_a_user_error():
    with pytest.raises(UserError, match="not built by edgewise"):
        models.spec_of(nn.Linear(2, 2))


@pytest.mark.parametrize("name", models.list_models())
def test_width_scales_parameters(name):
    def params(width):
        return sum(p.numel() for p in models.build(name, 10, (1, 28, 28), width=width).parameters())

    ratio = params(2.0) / params(1.0)
    assert 2.5 < ratio < 4.5  # about width ** 2


def test_describe_and_defaults():
    assert models.model_defaults("resnet") == {"depth": 8}
    assert models.model_defaults("mobilenetv2") == {}
    for name in models.list_models():
        assert models.describe(name)


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet'"):
        models.build("resnett", 10, (1, 28, 28))


def test_unknown_parameter_suggests_close_names():
    with pytest.raises(UnknownNameError, match="Unknown resnet parameter 'dpeth'. Did you mean 'depth'"):
        models.build("resnet", 10, (1, 28, 28), dpeth=18)
    with pytest.raises(ParameterError, match="mobilenetv2 takes no parameter 'depth'"):
        models.build("mobilenetv2", 10, (1, 28, 28), depth=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 0}, "The 'num_classes' parameter of convnet must be an int >= 1. Got 0."),
        ({"input_shape": (28, 28)}, "The 'input_shape' parameter of convnet must be"),
        ({"input_shape": (1, 0, 28)}, "The 'input_shape' parameter of convnet must be"),
        ({"width": 0}, "The 'width' parameter of convnet must be > 0. Got 0."),
    ],
)
def test_bad_common_arguments(kwargs, message):
    arguments = {"num_classes": 10, "input_shape": (1, 28, 28), **kwargs}
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        models.build("convnet", **arguments)
