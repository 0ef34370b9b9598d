"""The population part: sweep trials trained together as populations of K, against the same
trials trained alone."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

from sae import metrics as M
from sae.bench.loops import flops_per_image, synchronize
from sae.config import Config, TrainConfig
from sae.population import Member, Outcome, fit_population
from sae.splits import Splits
from sae.train import fit


def sweep_trial_params(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """The parameters of ``count`` trials drawn from the sweep's default space as a sweep with
    the random sampler draws them (``suggest`` on trials of an in-memory study). The draws do not
    depend on ``count``: the first two of four are the two of two."""
    import optuna

    from sae.sweep.config import SweepConfig
    from sae.sweep.space import build_space, suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line for the in-memory study
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    space = build_space(SweepConfig())
    return [suggest(study.ask(), space) for _ in range(count)]


WARM_UP_IMAGES = 1_000
"""Images of each split in the untimed run before the populations are timed."""


def population_figures(
    base: Config,
    splits: Splits,
    ks: Sequence[int],
    peak_gflops: float,
    log: Callable[[str], None],
    sampler_seed: int = 0,
) -> dict[str, float]:
    """Sweep trials trained as populations, for each K in ``ks``; a flat dict of figures.

    K trials' parameters are drawn as the sweep draws them (``sweep_trial_params``: the same
    draws for every K, so K=2 trains K=4's first two), made configs as the sweep makes them
    (``base`` with the trial's beta, lr and batch size), and trained for ``base.train.epochs``
    epochs with the evaluation and the probe a trial has, untracked (the tracking part measures
    the tracker's cost): first alone, one after another (``alone_figures``), then as
    populations of each K (``k_figures``, keys ``population_k{K}_...``). Then
    ``population_best_k`` (the most trials per hour) and, when K=1 was measured,
    ``population_speedup_best_vs_k1``. The first trial is trained once untimed on the first
    ``WARM_UP_IMAGES`` images of each split, so that K=1, measured first, does not pay for the
    device's first kernels.
    """
    params = sweep_trial_params(max(ks), sampler_seed)
    timing = Timing(base, splits, peak_gflops, log)
    fit_population(timing.members(params[:1]), head(splits, WARM_UP_IMAGES))
    out, alone = alone_figures(timing, params)
    for k in ks:
        out.update(k_figures(timing, params[:k], sum(alone[:k])))
    best = max(ks, key=lambda k: out[f"population_k{k}_trials_per_hour"])
    out["population_best_k"] = best
    if 1 in ks:
        out["population_speedup_best_vs_k1"] = (
            out[f"population_k{best}_trials_per_hour"] / out["population_k1_trials_per_hour"]
        )
    return out


def head(splits: Splits, images: int) -> Splits:
    """The first ``images`` images (and labels) of each split."""
    parts = {
        name: getattr(splits, name)[:images]
        for name in ("train", "test", "train_labels", "test_labels")
        if getattr(splits, name) is not None
    }
    return dataclasses.replace(splits, **parts)


@dataclasses.dataclass(frozen=True)
class Timing:
    """What every timing of the part shares: the trials' base config, their data, the matrix
    product's rate and the log."""

    base: Config
    splits: Splits
    peak_gflops: float
    log: Callable[[str], None]

    def projected(self, seconds: float) -> float:
        """``seconds`` of the measured epochs scaled linearly to the sweep's
        (``TrainConfig().epochs``, 10)."""
        return seconds * TrainConfig().epochs / self.base.train.epochs

    def members(self, trials: Sequence[dict[str, Any]]) -> list[Member]:
        """The trials as members: ``base`` with each one's parameters."""
        return [
            Member(dataclasses.replace(self.base, train=dataclasses.replace(self.base.train, **p)))
            for p in trials
        ]

    def timed(self, train: Callable[[], Any]) -> tuple[Any, float]:
        """What ``train()`` returns, and its wall seconds (the device synchronised)."""
        device = self.splits.train.device
        synchronize(device)
        started = time.perf_counter()
        done = train()
        synchronize(device)
        return done, time.perf_counter() - started


def alone_figures(
    timing: Timing, params: list[dict[str, Any]]
) -> tuple[dict[str, float], list[float]]:
    """The trials alone, one after another with ``fit``, as the sweep trains them without
    --population: ``population_alone_trials_per_hour``, projected to the sweep's epochs, and
    each trial's wall seconds."""
    members = timing.members(params)
    alone = [timing.timed(functools.partial(fit, m.cfg, timing.splits))[1] for m in members]
    out = {"population_alone_trials_per_hour": len(alone) * 3600 / timing.projected(sum(alone))}
    timing.log(
        f"alone: {len(alone)} trial(s) one after another in {sum(alone):.1f} s, "
        f"{out['population_alone_trials_per_hour']:,.0f} trials/h projected to "
        f"{TrainConfig().epochs} epochs"
    )
    return out, alone


def k_figures(timing: Timing, params: list[dict[str, Any]], alone: float) -> dict[str, float]:
    """K = ``len(params)`` trials grouped by batch size, each group trained as one population
    (``fit_population``), one after another; ``alone`` the same trials' seconds alone. Keys
    ``population_k{K}_...``:

    - ``trials_per_hour``: K trials over the wall time of all groups, projected to the sweep's
      epochs (``TrainConfig().epochs``, 10) by scaling the measured epochs linearly. What a trial
      does once (its start, the probe) is scaled too, so from one measured epoch the projection
      is on the slow side.
    - ``images_per_s``: all members' training images over the groups' training seconds
      (``perf/epoch_seconds``: evaluation and probe excluded).
    - ``fraction_of_matmul_peak``: those images/s times the training FLOPs per image, over
      the matrix product's rate.
    - ``groups``: batch-size groups, trained one after another; ``failed``: members that left
      their population early (a diverged loss, a dead network), counted as trials as a sweep
      counts them.
    - ``speedup_vs_alone``: the wall time of the same K trials trained alone over the
      population's: the fair comparison, since trials/hour depends on the mix of batch sizes
      drawn.
    """
    k, epochs = len(params), timing.base.train.epochs
    groups: dict[int, list[dict[str, Any]]] = {}
    for p in params:
        groups.setdefault(p["batch_size"], []).append(p)
    outcomes, wall = timing.timed(
        lambda: [fit_population(timing.members(group), timing.splits) for group in groups.values()]
    )
    images_per_s = training_rate(outcomes, timing.splits.train.shape[0])
    fraction = flops_per_image()["train_flops"] * images_per_s / 1e9 / timing.peak_gflops
    failed = sum(o.error is not None for group in outcomes for o in group)
    trials_per_hour = k * 3600 / timing.projected(wall)
    timing.log(
        f"population K={k}: {k} trial(s) of {epochs} epoch(s) in {wall:.1f} s as "
        f"{len(groups)} population(s) by batch size, {images_per_s:,.0f} training img/s "
        f"({fraction:.2%} of matmul peak), {failed} failed; {trials_per_hour:,.0f} trials/h "
        f"projected to {TrainConfig().epochs} epochs ({epochs} measured, scaled linearly); "
        f"{alone / wall:.2f}x the same trials alone"
    )
    key = f"population_k{k}"
    return {
        f"{key}_trials_per_hour": trials_per_hour,
        f"{key}_images_per_s": images_per_s,
        f"{key}_fraction_of_matmul_peak": fraction,
        f"{key}_groups": len(groups),
        f"{key}_failed": failed,
        f"{key}_speedup_vs_alone": alone / wall,
    }


def training_rate(outcomes: Sequence[Sequence[Outcome]], images_per_epoch: int) -> float:
    """Training images/s of populations trained one after another: every member's images over
    the populations' training seconds (``perf/epoch_seconds``)."""
    # the members of a population share each epoch's training seconds; the longest history has
    # every epoch the population trained
    seconds = sum(
        max(sum(r[M.PERF_EPOCH_SECONDS] for r in o.result.history) for o in group)
        for group in outcomes
    )
    images = images_per_epoch * sum(len(o.result.history) for group in outcomes for o in group)
    return images / seconds if seconds else 0.0
