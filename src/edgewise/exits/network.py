"""EarlyExitNetwork: a backbone cut into stages, with one exit head after each stage.

The interface (what training strategies, evaluation and inference rely on):

- ``EarlyExitNetwork(nn.Module)``, built with ``EarlyExitNetwork.from_model(model, exits=...)``.
- ``net.stages: nn.ModuleList``: the backbone segments; stage ``i`` feeds stage ``i + 1``
  and each runs once per forward.
- ``net.heads: nn.ModuleList``: head ``i`` reads stage ``i``'s output and returns logits
  ``(N, num_classes)``; the last head is the original classifier.
- ``net.num_exits``: ``len(net.heads)`` (the final classifier counts as an exit).
- ``net(x) -> list[Tensor]``: one logits tensor ``(N, num_classes)`` per exit, final last.
- ``net.exit_parameters(i)``: the parameters exit ``i``'s prediction depends on (stages
  ``0..i`` and head ``i``); ``net.head_parameters(i)``: head ``i``'s only;
  ``net.backbone_parameters()``: every stage's.
- ``net.infer(x, policy)``: real dynamic inference, stage by stage on the inputs that remain.
- ``net.costs("macs" | "latency")``: what each stage and head costs per input.

Exits go after named modules (``["layer1", "layer2.0"]``) or at fractions of the
backbone's cost (``[0.25, 0.5, 0.75]``, each at the nearest valid cut, in MACs or in
latency measured here); see `edgewise.exits.split` for what makes a cut valid. The cost
of reaching exit ``e`` counts every stage up to ``e`` and every head evaluated on the way
(SDN, Kaya et al., 2019, arXiv:1810.07052, counts the same way).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from edgewise import models
from edgewise.cost import count_macs, time_interleaved
from edgewise.errors import ParameterError, UserError, check_param
from edgewise.exits.heads import build_head
from edgewise.exits.policies import Policy
from edgewise.exits.split import Chain, chain_of
from edgewise.registry import lookup

CURRENCIES = ("latency", "macs")
PLANS_KEPT = 16


@dataclass(frozen=True)
class ExitCosts:
    """Cost per input of every stage and head: MACs, or seconds at `batch_size` (per input).

    ``cumulative[e]`` is the cost of reaching exit ``e`` with every head up to it evaluated;
    ``full`` is the static network's (all stages and the final head only). In latency, a
    head's cost includes scoring its logits, and `handoffs[e]` is what an input that goes on
    past an evaluated exit ``e`` pays to be gathered with the others that stay (empty: free,
    as in MACs).
    """

    currency: str
    stages: tuple[float, ...]
    heads: tuple[float, ...]
    batch_size: int
    handoffs: tuple[float, ...] = ()

    @property
    def full(self) -> float:
        return sum(self.stages) + self.heads[-1]

    @property
    def cumulative(self) -> tuple[float, ...]:
        return tuple(itertools.accumulate(self.steps()))

    def handoffs_paid(self) -> tuple[float, ...]:
        """`handoffs`, one per exit but the last, zeros when there are none (MACs)."""
        return self.handoffs or (0.0,) * (len(self.heads) - 1)

    def steps(self, evaluated: Sequence[bool] | None = None) -> list[float]:
        """Cost of each step, from exit ``e - 1`` to exit ``e``, when the heads `evaluated` run
        (a policy's `evaluated`; by default all): the handoff past exit ``e - 1`` if its head
        ran, stage ``e``, and head ``e`` if it runs."""
        evaluated = evaluated or (True,) * len(self.heads)
        came = [0.0] + [h if run else 0.0
                        for h, run in zip(self.handoffs_paid(), evaluated[:-1], strict=True)]
        return [c + s + (h if run else 0.0)
                for c, s, h, run in zip(came, self.stages, self.heads, evaluated, strict=True)]

    def fractions(self, evaluated: Sequence[bool] | None = None) -> Tensor:
        """Cost of leaving at each exit as a fraction of `full`: (E,) float64.

        `evaluated` says which heads run (a policy's `evaluated`); by default all.
        """
        steps = self.steps(evaluated)
        return torch.tensor(list(itertools.accumulate(steps)), dtype=torch.float64) / self.full


class EarlyExitNetwork(nn.Module):
    """Stages and exit heads; ``forward(x)`` returns one logits tensor per exit, final last.

    Build it with `from_model`. `exit_names` name the cut each exit reads (the last is the
    classifier's name); `origin` records how `from_model` built it, for saving; `policy`
    (thresholds, set by the user, e.g. from `calibrate`) is what `infer` uses by default.
    """

    def __init__(
        self,
        stages: Sequence[nn.Module],
        heads: Sequence[nn.Module],
        input_shape: Sequence[int],
        exit_names: Sequence[str] | None = None,
        origin: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not stages or len(stages) != len(heads):
            raise ParameterError(f"Got {len(stages)} stages and {len(heads)} heads; "
                                 "an early-exit network needs one head per stage, at least one.")
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleList(heads)
        self.input_shape = tuple(input_shape)
        self.exit_names = tuple(exit_names or (f"exit{i}" for i in range(len(heads))))
        self.origin = dict(origin or {})
        self.policy: Policy | None = None
        self.memory_format = torch.contiguous_format
        self._costs: dict[tuple, ExitCosts] = {}
        self._plans: dict[int, tuple[Policy, tuple]] = {}  # by id(policy), the policy kept alive
        self._exit_tensors: dict[tuple, Tensor] = {}

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        exits: Sequence[str] | Sequence[float],
        *,
        head: str = "pool-linear",
        head_params: dict[str, Any] | None = None,
        input_shape: Sequence[int] | None = None,
        cost: str = "macs",
        batch_size: int = 256,
    ) -> EarlyExitNetwork:
        """Cut a copy of `model` at `exits` and put a `head` after each cut.

        `exits` are module names (``"layer1"``, ``"layer2.0"``) or fractions in (0, 1) of the
        backbone's cost in `cost` ("macs", or "latency" measured at `batch_size`). A zoo
        model is cut between its children; any other model is traced with torch.fx and cut
        where one tensor carries everything onwards. `input_shape` (C, H, W) is needed for a
        model outside the zoo. The given model is copied, never modified.
        """
        lookup(dict.fromkeys(CURRENCIES), cost, "cost currency")
        exits = [exits] if isinstance(exits, (str, int, float)) else list(exits)
        check_param("from_model", "batch_size", batch_size, batch_size >= 1, ">= 1")
        spec = _spec_or_none(model)
        if input_shape is None:
            if spec is None:
                raise UserError(f"from_model needs input_shape=(C, H, W) for a "
                                f"{type(model).__name__}, which is not from the zoo.")
            input_shape = spec["input_shape"]
        device = next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device
        example = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)
        chain = chain_of(model, example, sequential=isinstance(model, nn.Sequential))
        points = _resolve_exits(chain, exits, cost, batch_size, example)
        bounds = [-1, *points, chain.final]
        stages = [chain.segment(a + 1, b + 1) for a, b in itertools.pairwise(bounds)]
        num_classes = chain.cuts[-1].shape[-1]
        heads = [build_head(head, chain.cuts[p].shape, num_classes, **(head_params or {}))
                 for p in points]
        heads.append(chain.segment(chain.final + 1, len(chain.cuts)))
        names = [chain.cuts[p].name for p in points] + [chain.cuts[-1].name]
        origin = {"model_spec": spec, "exits": names[:-1], "head": head,
                  "head_params": dict(head_params or {})}
        return cls(stages, heads, input_shape, names, origin).to(device)

    @property
    def num_exits(self) -> int:
        return len(self.heads)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Logits (N, num_classes) of every exit, final last."""
        outputs = []
        for stage, head in zip(self.stages, self.heads, strict=True):
            x = stage(x)
            outputs.append(head(x))
        return outputs

    def exit_parameters(self, i: int) -> list[nn.Parameter]:
        """Parameters that exit `i`'s prediction depends on: stages 0..i and head i."""
        stages = [p for stage in self.stages[: i + 1] for p in stage.parameters()]
        return stages + self.head_parameters(i)

    def head_parameters(self, i: int) -> list[nn.Parameter]:
        return list(self.heads[i].parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.stages.parameters())

    def set_memory_format(self, memory_format: torch.memory_format) -> EarlyExitNetwork:
        """Store 4-D weights in `memory_format`; `infer` converts inputs to match."""
        self.memory_format = memory_format
        self._costs.clear()
        return self.to(memory_format=memory_format)

    def costs(self, currency: str = "macs", batch_size: int = 256) -> ExitCosts:
        """Per-input cost of each stage and head, profiled once per setting and kept.

        "macs" counts one input's multiply-adds with `edgewise.cost.count_macs`;
        "latency" is the median time (`edgewise.cost.time_interleaved`) of each stage and head on a
        batch of `batch_size` in the current memory format and thread count, divided by
        `batch_size`: seconds per input at that batch size, on this machine.
        """
        lookup(dict.fromkeys(CURRENCIES), currency, "cost currency")
        batch = 1 if currency == "macs" else batch_size
        key = (currency, batch, torch.get_num_threads())
        if key not in self._costs:
            self._costs[key] = self._profile(currency, batch)
        return self._costs[key]

    def _profile(self, currency: str, batch: int) -> ExitCosts:
        """Count (MACs) or time each part on a batch: latency parts are timed in alternation
        (`edgewise.cost.time_interleaved`), so that their ratios hold on a busy machine."""
        device = next(self.parameters()).device
        x = self._prepare(torch.randn(batch, *self.input_shape,
                                      generator=torch.Generator().manual_seed(0)).to(device))
        last = self.num_exits - 1
        everyone = torch.arange(batch, device=device)
        stages, heads, handoffs = [], [], []  # (callable, its input)
        training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for e, (stage, head) in enumerate(zip(self.stages, self.heads, strict=True)):
                    stages.append((stage, x))
                    x = stage(x)
                    if currency == "macs" or e == last:
                        heads.append((head, x))
                        continue
                    # an exit's decision: its head, then the score (max-prob's, standing in for
                    # any rule's); an input that stays is then gathered with the others
                    heads.append((functools.partial(_decide, head), x))
                    handoffs.append((functools.partial(take_rows, rows=everyone), x))
                parts = stages + heads + handoffs
                if currency == "macs":
                    totals = [float(count_macs(part, z).total) for part, z in parts]
                else:
                    totals = _median_seconds(parts)
        finally:
            self.train(training)
        per_input = [total / batch for total in totals]
        n, m = len(stages), len(heads)
        return ExitCosts(currency, tuple(per_input[:n]), tuple(per_input[n:n + m]), batch,
                         tuple(per_input[n + m:]))

    def _prepare(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x

    def infer(self, x: Tensor, policy: Policy | None = None) -> tuple[Tensor, Tensor]:
        """Run stage by stage, dropping inputs as they leave: (predictions (N,), exit index (N,)).

        Inputs that leave at exit ``e`` are never fed to stage ``e + 1``; the result equals
        the policy simulated on ``self(x)``'s logits. Uses `self.policy` when `policy` is
        None. The network must be in eval mode (BatchNorm would otherwise use each shrinking
        sub-batch's statistics). Runs under ``torch.inference_mode`` (entered only when the
        caller has not already).
        """
        policy = policy or self.policy
        if policy is None:
            raise UserError("infer needs a policy: pass one, or set net.policy (see calibrate).")
        if self.training:
            raise UserError("infer runs in eval mode: call net.eval() first.")
        if not torch.is_inference_mode_enabled():
            with torch.inference_mode():
                return self.infer(x, policy)
        plan = self._plan(policy)
        x = self._prepare(x)
        if x.shape[0] == 1:
            return self._infer_one(x, plan)
        rule, thresholds, evaluated = plan
        last = self.num_exits - 1
        n = x.shape[0]
        predictions = torch.empty(n, dtype=torch.long, device=x.device)
        exits = torch.full((n,), last, dtype=torch.long, device=x.device)
        remaining = torch.arange(n, device=x.device)
        state = None
        for e in range(last):
            x = self.stages[e](x)
            if not evaluated[e]:
                continue
            logits = self.heads[e](x)
            score, state = rule.score(logits, state)
            leave = score >= thresholds[e]
            gone = leave.nonzero().squeeze(1)
            if gone.numel() == 0:
                continue
            rows = remaining.index_select(0, gone)
            predictions.index_copy_(0, rows, logits.index_select(0, gone).argmax(dim=1))
            exits.index_fill_(0, rows, e)
            if gone.numel() == remaining.numel():
                return predictions, exits
            kept = (~leave).nonzero().squeeze(1)
            x = take_rows(x, kept)
            remaining = remaining.index_select(0, kept)
            state = None if state is None else tuple(s.index_select(0, kept) for s in state)
        logits = self.heads[last](self.stages[last](x))
        predictions.index_copy_(0, remaining, logits.argmax(dim=1))
        return predictions, exits

    def _plan(self, policy: Policy) -> tuple[Any, tuple[float, ...], tuple[bool, ...]]:
        """(scorer, thresholds, which heads run) of `policy`, worked out once per policy (the
        last few are kept, so that alternating between policies costs nothing either)."""
        kept = self._plans.get(id(policy))
        if kept is None or kept[0] is not policy:
            if len(self._plans) >= PLANS_KEPT:
                self._plans.clear()
            kept = (policy, (policy.scorer, policy.thresholds, policy.evaluated(self.num_exits)))
            self._plans[id(policy)] = kept
        return kept[1]

    def _infer_one(self, x: Tensor, plan: tuple) -> tuple[Tensor, Tensor]:
        """One input: no index bookkeeping, one comparison per evaluated exit."""
        rule, thresholds, evaluated = plan
        state, last = None, len(thresholds)
        for index, (stage, head) in enumerate(zip(self.stages, self.heads, strict=True)):
            x = stage(x)
            if index < last and not evaluated[index]:
                continue
            logits = head(x)
            if index < last:
                score, state = rule.score(logits, state)
                if score.item() < thresholds[index]:
                    continue
            return logits.argmax(dim=1), self._exit_tensor(index, x.device)
        raise AssertionError("unreachable: the last exit always returns")

    def _exit_tensor(self, index: int, device: torch.device) -> Tensor:
        """``tensor([index])`` on `device`, copied from one made once (making one is slow)."""
        key = (index, device)
        if key not in self._exit_tensors:
            self._exit_tensors[key] = torch.tensor([index], device=device)
        return self._exit_tensors[key].clone()


def take_rows(x: Tensor, rows: Tensor) -> Tensor:
    """``x[rows]`` in `x`'s memory format, by the fastest copy: `index_select` on dim 0 of
    the dense layout (for channels-last, the NHWC view), 2-3x faster than ``x[rows]``.
    (`index_select` on a channels-last tensor itself returns a contiguous one, slowly.)"""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).index_select(0, rows).permute(0, 3, 1, 2)
    return x.index_select(0, rows)


def _spec_or_none(model: nn.Module) -> dict[str, Any] | None:
    try:
        return models.spec_of(model)
    except UserError:
        return None


def _decide(head: nn.Module, x: Tensor) -> Tensor:
    """What an exit computes to decide: its logits' max-prob score."""
    return head(x).softmax(dim=1).amax(dim=1)


def _median_seconds(parts: Sequence[tuple[Callable[[Tensor], object], Tensor]]) -> list[float]:
    """Median seconds per call of each ``part(x)``, the parts timed in alternation
    (`edgewise.cost.time_interleaved`), so that their ratios hold on a busy machine."""
    timings = time_interleaved([functools.partial(part, x) for part, x in parts],
                               warmup=3, repeats=15, inference=True)
    return [t.median_s for t in timings]


def _resolve_exits(chain: Chain, exits: list, cost: str, batch_size: int, example: Tensor) -> list[int]:
    """Cut indices, in order, for exit names or cost fractions (see `from_model`)."""
    if all(isinstance(e, str) for e in exits):
        points = [_cut_named(chain, name) for name in exits]
    elif all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in exits):
        points = _cuts_at_fractions(chain, [float(e) for e in exits], cost, batch_size, example)
    else:
        raise ParameterError(f"The 'exits' parameter of from_model must be module names or cost "
                             f"fractions, not a mix. Got {exits!r}.")
    for a, b in itertools.pairwise(sorted(points)):
        if a == b:
            raise UserError(f"Two exits fall on the same cut, after {chain.cuts[a].name!r}: "
                            "ask for fewer or farther-apart exits.")
    return sorted(points)


def _cut_named(chain: Chain, name: str) -> int:
    where = {alias: i for i, cut in enumerate(chain.cuts) for alias in cut.names}
    valid = [cut.name for cut in chain.cuts[: chain.final]]
    if name not in where:
        raise UserError(f"No valid cut after {name!r}: it is not a module of the model, or a "
                        "skip connection or a second tensor crosses the point after it. "
                        f"Valid exit points: {', '.join(valid) or 'none'}.")
    if where[name] >= chain.final:
        raise UserError(f"An exit after {name!r} would read the classifier's input or lie inside "
                        f"it: that is the final exit. Valid exit points: {', '.join(valid)}.")
    return where[name]


def _cuts_at_fractions(chain: Chain, fractions: list[float], cost: str, batch_size: int,
                       example: Tensor) -> list[int]:
    for f in fractions:
        check_param("from_model", "exits", f, 0 < f < 1, "fractions in (0, 1)")
    if cost == "macs":
        per_piece = [float(cut.macs) for cut in chain.cuts]
    else:
        x = example.expand(batch_size, *example.shape[1:]).contiguous()
        pieces = []
        with torch.inference_mode():
            for i in range(len(chain.cuts)):
                piece = chain.segment(i, i + 1)
                pieces.append((piece, x))
                x = piece(x)
        per_piece = _median_seconds(pieces)
    total = sum(per_piece)
    reached = [r / total for r in itertools.accumulate(per_piece)] if total > 0 else []
    candidates = [i for i in range(chain.final) if chain.cuts[i].clean]
    if not candidates or not reached:
        raise UserError("This model has no valid cut before its classifier: nowhere to put an exit.")
    points = [min(candidates, key=lambda i: abs(reached[i] - f)) for f in fractions]
    for (f, a), (g, b) in itertools.pairwise(sorted(zip(fractions, points, strict=True))):
        if a == b:
            raise UserError(
                f"Exits at {f:g} and {g:g} of the {cost} both fall nearest the cut after "
                f"{chain.cuts[a].name!r} ({reached[a]:.2f}); valid cuts lie at "
                + ", ".join(f"{chain.cuts[i].name} {reached[i]:.2f}" for i in candidates) + "."
            )
    return points
