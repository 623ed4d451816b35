import pytest

from edgewise.errors import ParameterError, UserError, check_param


def test_check_param_message_format():
    with pytest.raises(ParameterError) as info:
        check_param("trady", "budget_kb", -3, False, "> 0")
    assert str(info.value) == "The 'budget_kb' parameter of trady must be > 0. Got -3."
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


def test_check_param_passes_when_ok():
    check_param("trady", "budget_kb", 3, True, "> 0")
