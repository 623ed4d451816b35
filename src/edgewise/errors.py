"""User-facing errors: one line that says what is wrong, the value, and what was expected.

Library code raises these and never prints or exits; the CLI turns a `UserError`
into ``error: ...`` on stderr and exit code 2. Any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations

from typing import Any


class UserError(ValueError):
    """A mistake of the user: bad path, corrupt file, unknown name, bad value."""


class UnknownNameError(UserError):
    """A name that is not in a registry."""


class DataError(UserError):
    """A data file that is missing, truncated, corrupt or inconsistent."""


class ParameterError(UserError):
    """A parameter outside its valid range."""


class BudgetError(UserError):
    """A budget (memory, compute, latency) that cannot be met."""


def check_param(owner: str, name: str, value: Any, ok: bool, expected: str) -> None:
    """Raise the standard parameter message unless `ok`.

    >>> check_param("trady", "budget_kb", -3, -3 > 0, "> 0")
    Traceback (most recent call last):
    ...
    edgewise.errors.ParameterError: The 'budget_kb' parameter of trady must be > 0. Got -3.
    """
    if not ok:
        raise ParameterError(f"The '{name}' parameter of {owner} must be {expected}. Got {value!r}.")
