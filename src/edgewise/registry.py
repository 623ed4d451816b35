"""One look-up helper for every registry (a plain dict from name to class or function)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TypeVar

from edgewise.errors import UnknownNameError

T = TypeVar("T")


def lookup(registry: Mapping[str, T], name: str, kind: str) -> T:
    """Return ``registry[name]``; an unknown name raises a one-line error with close matches.

    `kind` names what is looked up ("model", "dataset", "exit strategy") for the message.
    """
    try:
        return registry[name]
    except KeyError:
        pass
    names = sorted(registry)
    close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownNameError(f"Unknown {kind} {name!r}.{hint} Valid names: {', '.join(names)}.")
