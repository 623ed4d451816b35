"""Exit policies, one rule per file; the file stem (with '-') is the rule's name."""

from __future__ import annotations

from edgewise.exits.policies.base import Policy, Rule, first_exit
from edgewise.exits.policies.entropy import Entropy
from edgewise.exits.policies.max_prob import MaxProb
from edgewise.exits.policies.patience import Patience
from edgewise.registry import lookup

RULES: dict[str, type[Rule]] = {
    "entropy": Entropy,
    "max-prob": MaxProb,
    "patience": Patience,
}


def rule_of(name: str) -> Rule:
    """The rule registered as `name` (an unknown name raises with close matches)."""
    return lookup(RULES, name, "exit policy")()


__all__ = ["RULES", "Policy", "Rule", "first_exit", "rule_of"]
