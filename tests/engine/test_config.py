"""TrainConfig rejects a bad value early, with the house's one message format."""

import pytest

from edgewise.engine import TrainConfig
from edgewise.errors import ParameterError, UnknownNameError


def test_the_standard_message():
    with pytest.raises(ParameterError) as info:
        TrainConfig(epochs=0)
    assert str(info.value) == "The 'epochs' parameter of TrainConfig must be >= 1. Got 0."


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_size", 0),
        ("lr", 0.0),
        ("momentum", 1.0),
        ("weight_decay", -1e-4),
        ("warmup_epochs", 10),
        ("label_smoothing", 1.0),
        ("seed", -1),
        ("device", "tpu"),
        ("eval_batch_size", 0),
        ("threads", 0),
        ("grad_clip", 0.0),
    ],
)
def test_each_bad_value_is_named(field, value):
    with pytest.raises(
        ParameterError,
        match=rf"^The '{field}' parameter of TrainConfig must be .* Got {value!r}\.$",
    ):
        TrainConfig(**{field: value})


def test_nesterov_needs_momentum():
    with pytest.raises(
        ParameterError, match="'momentum' parameter of TrainConfig must be > 0 with nesterov"
    ):
        TrainConfig(momentum=0.0)
    assert TrainConfig(momentum=0.0, nesterov=False).momentum == 0.0


@pytest.mark.parametrize(
    ("field", "value", "close"), [("optimizer", "sdg", "sgd"), ("schedule", "cosin", "cosine")]
)
def test_unknown_names_suggest_close_ones(field, value, close):
    with pytest.raises(UnknownNameError, match=f"Did you mean '{close}'"):
        TrainConfig(**{field: value})


def test_to_dict_round_trips():
    config = TrainConfig(epochs=3, optimizer="adamw", schedule="onecycle", threads=2)
    assert TrainConfig(**config.to_dict()) == config
