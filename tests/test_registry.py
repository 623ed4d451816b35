import pytest

from edgewise.errors import UnknownNameError
from edgewise.registry import lookup

REGISTRY = {"cgt-hard": 1, "cgt-soft": 2, "joint": 3}


def test_lookup_returns_entry():
    assert lookup(REGISTRY, "joint", "exit strategy") == 3


def test_unknown_name_suggests_close_matches_and_lists_all():
    with pytest.raises(UnknownNameError) as info:
        lookup(REGISTRY, "cgt-hrd", "exit strategy")
    message = str(info.value)
    assert message.startswith("Unknown exit strategy 'cgt-hrd'. Did you mean 'cgt-hard'")
    assert "Valid names: cgt-hard, cgt-soft, joint." in message
    assert "\n" not in message


def test_unknown_name_without_close_match_has_no_hint():
    with pytest.raises(UnknownNameError) as info:
        lookup(REGISTRY, "zzz", "exit strategy")
    assert "Did you mean" not in str(info.value)
