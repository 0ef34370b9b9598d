"""Pruning the Pareto sweep: a trial whose point is dominated at a rung by enough others stops.

Optuna prunes single objectives only: ``Trial.report`` takes one value and ``Trial.should_prune``
refuses a multi-objective study (optuna/optuna#3450). So each trial records its objective point
after every epoch as a user attribute (``ATTR_EPOCH_POINTS``: test MSE, code active fraction and
whether the model is degenerate, by epoch), which every worker reads from the study's storage,
and ``ParetoPruner`` decides from those points.

The rule is successive halving with a Pareto order, after "Multi-objective Asynchronous
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
- Degenerate points (a collapsed or dead model) are ranked after all others: they are kept off
  the final front, so they are not the front a rung's point must beat either.
- Nothing is pruned until ``warmup`` trials have completed, nor at a rung with fewer than
  ``factor`` other points.
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


def rung_points(trials: Sequence[FrozenTrial], epoch: int) -> dict[int, tuple[Point, bool]]:
    """Each trial's recorded point at ``epoch``, and whether it was degenerate, by trial number;
    none of an interrupted trial's (FAIL, not by itself), whose retry carries its points on."""
    out = {}
    for trial in trials:
        if trial.state.name == "FAIL" and not (
            trial.user_attrs.get(ATTR_FAILED) or trial.user_attrs.get(ATTR_NON_FINITE)
        ):
            continue
        recorded = trial.user_attrs.get(ATTR_EPOCH_POINTS, {}).get(str(epoch))
        if recorded:
            *values, degenerate = recorded
            out[trial.number] = (tuple(values), bool(degenerate))
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
    """Pareto successive halving (the module's docstring has the rule)."""

    first_rung: int = 1
    """the first epoch at which trials are compared"""
    factor: int = 2
    """rungs every this many times the last one's epoch; a trial goes on if it is among the best
    1/factor of the points at the rung"""
    warmup: int = 3
    """complete trials before any is pruned"""
    grace: int = 0
    """epochs during which a degenerate point is no reason to stop: a model that has not started
    to learn may still (0: from the first rung on)"""
    tiebreak: str = "crowding"
    """how points of one non-domination rank are ordered: crowding (NSGA-II's crowding distance)
    or hypervolume (each point's own share of the rank's hypervolume)"""
    protect: float = 0.0
    """a point on the rung's front goes on when its own share of the front's hypervolume is
    above this fraction (0: every point on the front goes on)"""

    def __post_init__(self) -> None:
        for name, least in (("first_rung", 1), ("factor", 2), ("warmup", 0), ("grace", 0)):
            if getattr(self, name) < least:
                flag = "--pareto-" + name.replace("_", "-")
                raise ValueError(f"{flag} must be >= {least}, got {getattr(self, name)}")
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
