"""Pruning the Pareto sweep: a trial stops when it can no longer add to the front.

Optuna prunes single objectives only: ``Trial.report`` takes one value and ``Trial.should_prune``
refuses a multi-objective study (optuna/optuna#3450). So each trial records its objective point
after every epoch as a user attribute (``ATTR_EPOCH_POINTS``: test MSE, code active fraction and
whether the model is degenerate, by epoch), which every worker reads from the study's storage,
and ``ParetoPruner`` decides from those points alone, so every worker decides alike.

Two rules. **projection** (the default) asks of each trial, after every epoch from the second,
what it could still add to the front: its final point, projected optimistically from its own
curve, against the front of the complete trials.

- The projection: test MSE falls as a power law through the trial's first and latest epochs,
  ``mse(E) = mse(e) * (E / e) ** -b`` with ``b = log(mse(1) / mse(e)) / log(e)``, and the code
  active fraction stays where it is. A loss curve flattens in log-log axes, so this overshoots:
  on the recorded sweeps (``sae/bench/records``) the final MSE was at least 0.94 of the
  projection from epoch 2 on, mostly well above it. A slow starter (a low learning rate) is
  judged by its own slope, not by where it starts, and nothing is projected from epoch 1 alone.
- The test: the trial stops when its projected point, together with the projections of the
  trials stopped so far, would add less than ``budget`` (2% by default) to the hypervolume of
  the complete trials' front (against ``REFERENCE``). The stopped trials share one budget, so
  many near-front trials stopped one by one cannot together cost more than it, at their
  projections; and a trial whose present point alone adds the budget is never stopped (its
  projection adds at least as much).
- A degenerate point (a collapsed or dead model) adds nothing: it stops after ``grace`` epochs
  (1 by default: a model that has not started to learn by the end of epoch 2 is not waited for).
- Nothing stops before ``warmup`` complete trials may stand on the front (neither degenerate
  nor infeasible), nor at the last epoch.

**halving** is successive halving with a Pareto order, after "Multi-objective Asynchronous
Successive Halving" (Schmucker, Donini, Zafar, Salinas and Archambeau, 2021), which orders the
points of a rung as NSGA-II orders a population (Deb, Pratap, Agarwal and Meyarivan, 2002):

- Rungs at epochs ``first_rung * factor**k`` before the last epoch (1, 2, 4 and 8 of 10 by
  default).
- At a rung, the trial's point is ranked among the points every trial recorded at that epoch
  (complete, pruned or still running: ASHA's asynchronous rule, so no worker waits for another):
  by non-domination rank, ties broken by crowding distance (the larger, the better: a point in
  an empty stretch of the front is worth keeping).
- The trial goes on if its point is among the best ``1 / factor`` of them (half by default),
  or on the rung's front (rank 0): a trial on the rung's front is never pruned.
- Degenerate points are ranked after all others: they are kept off the final front, so they are
  not the front a rung's point must beat either.
- Nothing is pruned until ``warmup`` trials have completed, nor at a rung with fewer than
  ``factor`` other points.

It compares trials at the same epoch, so it stops slow starters: replayed on the recorded full
default sweeps it kept the front but saved less than 2x (docs/performance.md has both rules'
figures).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from sae.names import ATTR_EPOCH_POINTS, ATTR_FAILED, ATTR_NON_FINITE

if TYPE_CHECKING:  # the sweep's settings read the pruner's defaults without importing Optuna
    from optuna.trial import FrozenTrial

Point = tuple[float, ...]

REFERENCE = (0.07, 1.0)
"""The hypervolume's reference point (test MSE, code active fraction): a reconstruction no
better than MNIST's mean image (test MSE about 0.067) with every code unit active. Fixed, so that
the fronts of all runs are measured against the same point."""

RULES = ("projection", "halving")


def rung_points(trials: Sequence[FrozenTrial], epoch: int) -> dict[int, tuple[Point, bool]]:
    """Each trial's recorded point at ``epoch``, and whether it was degenerate, by trial number;
    none of an interrupted trial's (FAIL, not by itself), whose retry carries its points on."""
    out = {}
    for trial in trials:
        if trial.state.name == "FAIL" and not (
            trial.user_attrs.get(ATTR_FAILED) or trial.user_attrs.get(ATTR_NON_FINITE)
        ):
            continue
        point = _curve(trial).get(epoch)
        if point:
            out[trial.number] = point
    return out


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one (all minimised)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def pareto_order(
    points: Sequence[Point], tiebreak: str = "crowding"
) -> tuple[list[int], list[int]]:
    """The indices of ``points`` best first, by non-domination rank, then by crowding distance
    (larger first; with ``tiebreak="hypervolume"``, each point's own share of its rank's
    hypervolume), then by index; and each point's rank (0: on the front). All objectives
    minimised."""
    ranks = [0] * len(points)
    key: dict[int, tuple[int, float, int]] = {}
    remaining = list(range(len(points)))
    rank = 0
    spread = crowding if tiebreak == "crowding" else own_volume
    while remaining:
        front = [
            i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining)
        ]
        for i, distance in spread(points, front).items():
            ranks[i] = rank
            key[i] = (rank, -distance, i)
        remaining = [i for i in remaining if i not in key]
        rank += 1
    return sorted(key, key=key.get), ranks


def crowding(points: Sequence[Point], front: Sequence[int]) -> dict[int, float]:
    """NSGA-II's crowding distance of each point of ``front``: the sum over objectives of the
    gap between its neighbours, relative to the front's range; infinite at either end."""
    distance = dict.fromkeys(front, 0.0)
    if len(front) <= 2:
        return dict.fromkeys(front, math.inf)
    for m in range(len(points[front[0]])):
        ordered = sorted(front, key=lambda i: points[i][m])
        low, high = points[ordered[0]][m], points[ordered[-1]][m]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if high == low:
            continue
        for before, i, after in zip(ordered, ordered[1:], ordered[2:], strict=False):
            distance[i] += (points[after][m] - points[before][m]) / (high - low)
    return distance


@dataclass(frozen=True)
class ParetoPruner:
    """Stops a trial of a Pareto sweep early (the module's docstring has the rules)."""

    rule: str = "projection"
    """projection: stop a trial whose optimistically projected final point would add less than
    the budget to the front; halving: successive halving at rungs, by Pareto rank"""
    budget: float = 0.02
    """projection: the share of the front's hypervolume that the stopped trials, at their
    projected final points, may add together at most"""
    first_rung: int = 1
    """the first epoch at which trials are compared (projection: from epoch 2 at the earliest)"""
    factor: int = 2
    """halving: rungs every this many times the last one's epoch; a trial goes on if it is among
    the best 1/factor of the points at the rung"""
    warmup: int = 3
    """complete trials before any is pruned (projection: complete trials that may stand on the
    front, neither degenerate nor infeasible)"""
    grace: int = 1
    """epochs during which a degenerate point is no reason to stop: a model that has not started
    to learn may still (0: from the first rung on)"""
    tiebreak: str = "crowding"
    """halving: how points of one non-domination rank are ordered: crowding (NSGA-II's crowding
    distance) or hypervolume (each point's own share of the rank's hypervolume)"""
    protect: float = 0.0
    """halving: a point on the rung's front goes on when its own share of the front's hypervolume is
    above this fraction (0: every point on the front goes on)"""

    def __post_init__(self) -> None:
        for name, least in (("first_rung", 1), ("factor", 2), ("warmup", 0), ("grace", 0)):
            if getattr(self, name) < least:
                flag = "--pareto-" + name.replace("_", "-")
                raise ValueError(f"{flag} must be >= {least}, got {getattr(self, name)}")
        if self.rule not in RULES:
            raise ValueError(f"--pareto-rule must be projection or halving, got {self.rule!r}")
        if not 0.0 <= self.budget < 1.0:
            raise ValueError(f"--pareto-budget must be in [0, 1), got {self.budget}")
        if self.tiebreak not in ("crowding", "hypervolume"):
            raise ValueError(
                f"--pareto-tiebreak must be crowding or hypervolume, got {self.tiebreak!r}"
            )
        if not 0.0 <= self.protect < 1.0:
            raise ValueError(f"--pareto-protect must be in [0, 1), got {self.protect}")

    @classmethod
    def named_by(cls, options: Any) -> ParetoPruner:
        """The rule that ``options``' ``pareto_*`` fields name (the sweep's flags)."""
        return cls(**{f.name: getattr(options, f"pareto_{f.name}") for f in fields(cls)})

    def rungs(self, epochs: int) -> list[int]:
        """The epochs at which trials of ``epochs`` epochs are compared: before the last."""
        out, rung = [], self.first_rung
        while rung < epochs:
            out.append(rung)
            rung *= self.factor
        return out

    def decide(
        self, trials: Sequence[FrozenTrial], number: int, epoch: int, epochs: int
    ) -> str | None:
        """Why trial ``number``, whose point at ``epoch`` is recorded in ``trials`` (the study's
        trials as its storage has them), should stop there; None when it goes on."""
        from optuna.trial import TrialState

        if self.rule == "projection":
            return self._project(trials, number, epoch, epochs)
        if epoch not in self.rungs(epochs):
            return None
        complete = sum(t.state == TrialState.COMPLETE for t in trials)
        if complete < self.warmup:
            return None
        points = rung_points(trials, epoch)
        if number not in points or len(points) - 1 < self.factor:
            return None
        if points[number][1] and epoch <= self.grace:
            return None
        healthy = sorted(n for n in points if not points[n][1])
        values = [points[n][0] for n in healthy]
        best, ranks = pareto_order(values, self.tiebreak)
        order = [healthy[i] for i in best] + sorted(n for n in points if points[n][1])
        position = order.index(number)
        keep = math.ceil(len(order) / self.factor)
        if position < keep:
            return None
        if points[number][1]:  # degenerate points come last
            why = "degenerate"
        else:
            mine = healthy.index(number)
            if ranks[mine] == 0 and self._protected(values, ranks, mine):
                return None
            why = f"non-domination rank {ranks[mine]}"
        return (
            f"pruned at epoch {epoch}: its (test MSE, active fraction) point is "
            f"{position + 1} of {len(order)} at this rung ({why}), outside the best {keep}"
        )

    def _project(
        self, trials: Sequence[FrozenTrial], number: int, epoch: int, epochs: int
    ) -> str | None:
        """The projection rule's decision (the module's docstring)."""
        from optuna.trial import TrialState

        if epoch >= epochs or epoch < self.first_rung:
            return None
        fit = _fit(trials)
        if len(fit) < self.warmup:
            return None
        mine = next((t for t in trials if t.number == number), None)
        curve = _curve(mine) if mine is not None else {}
        if epoch not in curve:
            return None
        if curve[epoch][1]:
            if epoch <= self.grace:
                return None
            return f"pruned at epoch {epoch}: its model is degenerate (collapsed or dead)"
        projected = project(curve, epoch, epochs)
        if projected is None:
            return None
        front = _front(fit)
        base = hypervolume(front, REFERENCE)
        if base <= 0.0:
            return None
        stopped = [
            p
            for t in trials
            if t.state == TrialState.PRUNED and t.number != number
            for p in [_stopped_projection(t, epochs)]
            if p is not None
        ]
        gain = (hypervolume([*front, *stopped, projected], REFERENCE) - base) / base
        if gain >= self.budget:
            return None
        return (
            f"pruned at epoch {epoch}: its final point projected from its curve (test MSE "
            f"{projected[0]:.5f}, active fraction {projected[1]:.3f}) would add {100 * gain:.2f}% "
            f"to the front's hypervolume, with the projections of the {len(stopped)} trials "
            f"stopped before it: under the {100 * self.budget:g}% budget"
        )

    def _protected(self, values: Sequence[Point], ranks: Sequence[int], mine: int) -> bool:
        """Whether the point ``mine`` of the rung's front holds more than ``protect`` of the
        front's hypervolume (against the rung's own nadir)."""
        if self.protect == 0.0:
            return True
        front = [values[i] for i in range(len(values)) if ranks[i] == 0]
        reference = nadir(values)
        total = hypervolume(front, reference)
        share = contributions(front, reference)[front.index(values[mine])]
        return total > 0 and share / total > self.protect


def _curve(trial: FrozenTrial) -> dict[int, tuple[Point, bool]]:
    """``trial``'s recorded points by epoch, and whether each was degenerate."""
    out = {}
    for epoch, recorded in trial.user_attrs.get(ATTR_EPOCH_POINTS, {}).items():
        if recorded:
            *values, degenerate = recorded
            out[int(epoch)] = (tuple(values), bool(degenerate))
    return out


def project(curve: dict[int, tuple[Point, bool]], epoch: int, epochs: int) -> Point | None:
    """The optimistic final point (test MSE, active fraction) of a trial whose ``curve`` (points
    by epoch, as ``_curve`` has them) reaches ``epoch`` of ``epochs``: the power law through its
    MSE at epoch 1 and ``epoch``, extended to the last epoch, never rising; the active fraction
    as it is. None before epoch 2, or without epoch 1's point."""
    if epoch < 2 or 1 not in curve or epoch not in curve:
        return None
    (first, _), _ = curve[1]
    (mse, active), _ = curve[epoch]
    if not (first > 0.0 and mse > 0.0 and math.isfinite(first) and math.isfinite(mse)):
        return None
    slope = max(0.0, math.log(first / mse) / math.log(epoch))
    return (mse * (epochs / epoch) ** -slope, active)


def _stopped_projection(trial: FrozenTrial, epochs: int) -> Point | None:
    """What a pruned trial was projected to when it stopped (None: degenerate, or too early)."""
    curve = _curve(trial)
    if not curve:
        return None
    last = max(curve)
    return None if curve[last][1] else project(curve, last, epochs)


def _fit(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The complete trials that may stand on the front: neither degenerate nor infeasible (the
    study's own rule, ``sweep.front``)."""
    from optuna.trial import TrialState

    from sae.sweep.front import degenerate_reason, feasible

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return [t for t in complete if not degenerate_reason(t) and feasible(t)]


def _front(fit: Sequence[FrozenTrial]) -> list[Point]:
    """The points of the front of the ``fit`` trials (``sweep.front_of``'s, computed here: no
    Optuna study)."""
    points = [tuple(t.values[:2]) for t in fit]
    return [p for p in points if not any(dominates(q, p) for q in points)]


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The area dominated by ``points`` (two objectives, both minimised) and bounded by
    ``reference``; points beyond the reference add nothing."""
    area, lowest = 0.0, reference[1]
    for x, y in sorted(points):
        if x < reference[0] and y < lowest:
            area += (reference[0] - x) * (lowest - y)
            lowest = y
    return area


def nadir(points: Sequence[Point]) -> Point:
    """A reference just beyond the worst of ``points`` in each objective (10% of its range)."""
    worst = [max(p[m] for p in points) for m in range(len(points[0]))]
    best = [min(p[m] for p in points) for m in range(len(points[0]))]
    return tuple(w + 0.1 * (w - b) + 1e-12 for w, b in zip(worst, best, strict=True))


def contributions(front: Sequence[Point], reference: Point) -> list[float]:
    """Each point's own share of the hypervolume of ``front`` (two objectives): what the front
    loses without it."""
    total = hypervolume(front, reference)
    return [
        total - hypervolume([*front[:i], *front[i + 1 :]], reference) for i in range(len(front))
    ]


def own_volume(points: Sequence[Point], front: Sequence[int]) -> dict[int, float]:
    """``crowding``'s counterpart for ``pareto_order``: each point of ``front`` (one rank) by
    its own share of the rank's hypervolume against the nadir of ``points``; the front's ends
    infinite, as crowding has them."""
    if len(points[0]) != 2 or len(front) <= 2:
        return crowding(points, front)
    members = [points[i] for i in front]
    shares = contributions(members, nadir(points))
    out = dict(zip(front, shares, strict=True))
    for m in range(2):
        out[min(front, key=lambda i: points[i][m])] = math.inf
    return out
