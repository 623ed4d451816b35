"""The `edgewise` command line: one small module per command group, all on one app."""

from edgewise.cli import (  # noqa: F401  (each module registers its commands on `app`)
    cost,
    data,
    demo,
    exits,
    finetune,
    models,
    prune,
    train,
)
from edgewise.cli.app import app, main, run_app

__all__ = ["app", "main", "run_app"]
