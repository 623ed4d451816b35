"""The face every depth pruner shares, and the loop that runs it.

A depth pruner takes a trained model and data and returns a copy with some
rectifiers replaced by `Linearized` marks, ready for `edgewise.prune.fold`.
Each method (one file, registered in `edgewise.prune.PRUNERS`) says what one
round does (`step`) and what it does once fine-tuning is over
(`after_finetune`); the loop here owns the model, the masks, fine-tuning
through `edgewise.engine.fit`, the rollback and the merge planning:

1. per round: ``step`` (prune weights and/or remove rectifiers), fine-tune
   with the masks enforced, ``after_finetune``, validate; a round that loses
   more than `tolerance` validation accuracy against the unpruned model is
   undone, and the method's next step knows it (`undone_rounds`): EGP and
   NEPENTHE halve their budget, TLC leaves that layer alone;
2. at the end, with ``merge=True``, plan which linear runs are worth merging
   (`fold.plan_padding`, timed), move their paddings so that the merges will be
   exact, and fine-tune once more (``final_epochs``; undone if that loses more
   than `tolerance`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from torch import nn

from edgewise.engine import TrainConfig, evaluate, fit
from edgewise.errors import UserError, check_param
from edgewise.prune.fold import Timer, move_padding, plan_padding
from edgewise.prune.linearize import linearized_names, rectifier_names
from edgewise.prune.masks import Masks
from edgewise.prune.states import record_states

logger = logging.getLogger(__name__)


class NoPrunableLayerError(UserError):
    """A model without the layers a depth pruner works on."""


@dataclass
class PrunerParams:
    """What every depth pruner takes.

    rounds: the most pruning rounds, undone ones included. tolerance: the
    validation accuracy (a fraction, 0.005 = half a point) a round may lose
    against the unpruned model before it is undone; None never undoes. merge: plan the
    merges and move paddings before a last fine-tune. samples: training inputs
    used to record neuron states (None: all). final_epochs: epochs of that last
    fine-tune, run even when no padding moved (None: the rounds' epochs, and
    only when paddings moved).
    """

    rounds: int = 5
    tolerance: float | None = None
    merge: bool = True
    samples: int | None = 10_000
    final_epochs: int | None = None

    def validate(self, owner: str) -> None:
        check_param(owner, "rounds", self.rounds, isinstance(self.rounds, int) and self.rounds >= 1,
                    ">= 1")
        check_param(owner, "tolerance", self.tolerance,
                    self.tolerance is None or 0 <= self.tolerance < 1, "None or in [0, 1)")
        check_param(owner, "samples", self.samples, self.samples is None or self.samples >= 1,
                    "None or >= 1")
        check_param(owner, "final_epochs", self.final_epochs,
                    self.final_epochs is None or self.final_epochs >= 0, "None or >= 0")


class DepthPruner:
    """Base of the depth pruners: ``Pruner(**params).prune(model, splits, train) -> model``.

    Learned state, set by `prune`: ``masks_`` (the weight masks), ``history_``
    (one dict per round), ``entropy_before_`` / ``entropy_after_`` (bits per
    rectifier, removed ones at 0), ``merge_plans_`` (the planned merges).
    """

    name: ClassVar[str]
    Params: ClassVar[type[PrunerParams]] = PrunerParams

    def __init__(self, **params: Any) -> None:
        self.params = self.Params(**params)
        self.params.validate(self.name)
        self.masks_ = Masks()
        self.history_: list[dict[str, Any]] = []
        self.entropy_before_: dict[str, float] = {}
        self.entropy_after_: dict[str, float] = {}
        self.merge_plans_: list[dict[str, Any]] = []

    # ---- what a method defines ----------------------------------------------------------

    def check(self, model: nn.Module) -> None:
        """Raise `NoPrunableLayerError` when `model` has nothing this method can remove."""
        if not rectifier_names(model):
            raise NoPrunableLayerError(
                f"{self.name} found no prunable layer in {type(model).__name__}: it removes "
                "rectifiers (ReLU, ReLU6, GELU modules) and the model has none."
            )

    def step(self, model: nn.Module, splits: Any, index: int) -> dict[str, Any] | None:
        """One round before fine-tuning; returns what it did, or None when nothing is left."""
        raise NotImplementedError

    def after_finetune(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        """What a round does once fine-tuned (e.g. remove the layers whose entropy vanished)."""
        return {}

    def undone_rounds(self) -> list[dict[str, Any]]:
        """The records of the rounds undone so far in this `prune`."""
        return [record for record in self.history_ if record.get("undone")]

    # ---- the loop -----------------------------------------------------------------------

    def entropies(self, model: nn.Module, splits: Any) -> dict[str, float]:
        """Entropy per rectifier on the training data; removed rectifiers count 0."""
        states = record_states(model, splits.train, max_samples=self.params.samples)
        return {name: states.entropy.get(name, 0.0)
                for name in rectifier_names(model, linearized=True)}

    def finetune(self, model: nn.Module, splits: Any, train: TrainConfig, progress: bool) -> float:
        """Fine-tune with the masks enforced; return the validation accuracy at the end."""
        with self.masks_.enforced(model):
            history = fit(model, splits, train, progress=progress)
        return history.last["val_accuracy"]

    def prune(self, model: nn.Module, splits: Any, train: TrainConfig, *,
              timer: Timer | None = None, progress: bool = False) -> nn.Module:
        """Return a pruned copy of the trained `model` (see the module docstring).

        `splits` are `edgewise.data.Splits`; `train` configures each fine-tune;
        `timer` times the merge candidates (default `fold.Timer()`).
        """
        model = copy.deepcopy(model)
        self.check(model)
        self.history_ = []
        self.entropy_before_ = self.entropies(model, splits)
        reference = evaluate(model, splits.val)["accuracy"]
        floor = None if self.params.tolerance is None else reference - self.params.tolerance
        for index in range(self.params.rounds):
            kept = copy.deepcopy(model), self.masks_.state_dict()
            record = self.step(model, splits, index)
            if record is None:
                break
            accuracy = self.finetune(model, splits, train, progress)
            removed = linearized_names(model)
            record |= self.after_finetune(model, splits)
            if linearized_names(model) != removed:  # layers went after fine-tuning: validate again
                accuracy = evaluate(model, splits.val)["accuracy"]
            record |= {"round": index + 1, "removed": linearized_names(model),
                       "val_accuracy": accuracy}
            self.history_.append(record)
            if floor is not None and record["val_accuracy"] < floor:
                record["undone"] = True
                model = kept[0]
                self.masks_.load_state_dict(kept[1])
            logger.info("%s round %d: %d removed, val accuracy %.4f%s", self.name, index + 1,
                        len(record["removed"]), accuracy, " (undone)" if record.get("undone") else "")
        model = self._close(model, splits, train, floor, timer, progress)
        self.entropy_after_ = self.entropies(model, splits)
        return model

    def _close(self, model, splits, train, floor, timer, progress) -> nn.Module:
        """Plan the merges and move their paddings (with ``merge``), then the last fine-tune."""
        kept = copy.deepcopy(model)
        moved = []
        if self.params.merge:
            plans = plan_padding(model, tuple(splits.input_shape), timer)
            self.merge_plans_ = [plan.to_dict() for plan in plans]
            moved = move_padding(model, plans)
        epochs = self.params.final_epochs
        if (moved and epochs != 0) or epochs:
            config = train if epochs is None else dataclasses.replace(train, epochs=epochs)
            accuracy = self.finetune(model, splits, config, progress)
            self.history_.append({"round": "final", "removed": linearized_names(model),
                                  "padding_moved": moved, "val_accuracy": accuracy})
            if floor is not None and accuracy < floor:
                self.history_[-1]["undone"] = True
                self.merge_plans_ = []
                return kept
        return model

    def state_dict(self) -> dict[str, Any]:
        """Parameters and learned state as JSON-ready values (the masks are `masks_.state_dict()`)."""
        return {
            "name": self.name,
            "params": asdict(self.params),
            "history": self.history_,
            "entropy_before": self.entropy_before_,
            "entropy_after": self.entropy_after_,
            "merge_plans": self.merge_plans_,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (parameters are checked to be this pruner's)."""
        if state.get("name") != self.name:
            raise UserError(f"This state is of {state.get('name')!r}, not of {self.name}.")
        self.params = self.Params(**state["params"])
        self.params.validate(self.name)
        self.history_ = list(state["history"])
        self.entropy_before_ = dict(state["entropy_before"])
        self.entropy_after_ = dict(state["entropy_after"])
        self.merge_plans_ = list(state["merge_plans"])
