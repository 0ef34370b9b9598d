"""The population part: sweep trials trained together as populations of K, against the same
trials trained alone."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from sae import metrics as M
from sae.bench.loops import flops_per_image, synchronize
from sae.config import Config, TrainConfig
from sae.population import Member, fit_population
from sae.train import Splits, fit


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
    (``base`` with the trial's beta, lr and batch size), grouped by batch size, and each group
    trained as one population (``fit_population``) for ``base.train.epochs`` epochs, with the
    evaluation and the probe a trial has, untracked (the tracking part measures the tracker's
    cost). Per K (keys ``population_k{K}_...``):

    - ``trials_per_hour``: K trials over the wall time of all groups, projected to the sweep's
      epochs (``TrainConfig().epochs``, 10) by scaling the measured epochs linearly. What a trial
      does once (its start, the probe) is scaled too, so from one measured epoch the projection
      is on the slow side.
    - ``images_per_s``: all members' training images over the groups' training seconds
      (``perf/epoch_seconds``: evaluation and probe excluded).
    - ``fraction_of_matmul_peak``: those images/s times the training FLOPs per image, over
      ``peak_gflops``.
    - ``groups``: batch-size groups, trained one after another; ``failed``: members that left
      their population early (a diverged loss, a dead network), counted as trials as a sweep
      counts them.

    - ``speedup_vs_alone``: the wall time of the same K trials trained alone, one after another
      with ``fit`` (as the sweep trains without --population), over the population's: the fair
      comparison, since trials/hour depends on the mix of batch sizes drawn.

    Also ``population_alone_trials_per_hour`` (all the drawn trials alone), then
    ``population_best_k`` (the most trials per hour) and, when K=1 was measured,
    ``population_speedup_best_vs_k1``. The first trial is trained once untimed on the first
    ``WARM_UP_IMAGES`` images of each split, so that K=1, measured first, does not pay for the
    device's first kernels.
    """
    params = sweep_trial_params(max(ks), sampler_seed)
    epochs = base.train.epochs
    projected = TrainConfig().epochs
    n = splits.train.shape[0]
    train_flops = flops_per_image()["train_flops"]
    device = splits.train.device

    def members(trials: list[dict[str, Any]]) -> list[Member]:
        return [
            Member(dataclasses.replace(base, train=dataclasses.replace(base.train, **p)))
            for p in trials
        ]

    head = {
        name: getattr(splits, name)[:WARM_UP_IMAGES]
        for name in ("train", "test", "train_labels", "test_labels")
        if getattr(splits, name) is not None
    }
    fit_population(members(params[:1]), dataclasses.replace(splits, **head))

    # The same trials alone, one after another, as the sweep trains them without --population
    alone = []
    for member in members(params):
        synchronize(device)
        started = time.perf_counter()
        fit(member.cfg, splits)
        synchronize(device)
        alone.append(time.perf_counter() - started)
    out: dict[str, float] = {
        "population_alone_trials_per_hour": len(alone) * 3600 / (sum(alone) * projected / epochs)
    }
    log(
        f"alone: {len(alone)} trial(s) one after another in {sum(alone):.1f} s, "
        f"{out['population_alone_trials_per_hour']:,.0f} trials/h projected to {projected} epochs"
    )
    for k in ks:
        groups: dict[int, list[dict[str, Any]]] = {}
        for p in params[:k]:
            groups.setdefault(p["batch_size"], []).append(p)
        synchronize(device)
        started = time.perf_counter()
        outcomes = [fit_population(members(group), splits) for group in groups.values()]
        synchronize(device)
        wall = time.perf_counter() - started
        # the members of a group share each epoch's training seconds; the longest history has
        # every epoch the group trained
        seconds = sum(
            max(sum(r[M.PERF_EPOCH_SECONDS] for r in o.result.history) for o in group)
            for group in outcomes
        )
        images = n * sum(len(o.result.history) for group in outcomes for o in group)
        images_per_s = images / seconds if seconds else 0.0
        fraction = train_flops * images_per_s / 1e9 / peak_gflops
        failed = sum(o.error is not None for group in outcomes for o in group)
        trials_per_hour = k * 3600 / (wall * projected / epochs)
        key = f"population_k{k}"
        out[f"{key}_trials_per_hour"] = trials_per_hour
        out[f"{key}_images_per_s"] = images_per_s
        out[f"{key}_fraction_of_matmul_peak"] = fraction
        out[f"{key}_groups"] = len(groups)
        out[f"{key}_failed"] = failed
        out[f"{key}_speedup_vs_alone"] = sum(alone[:k]) / wall
        log(
            f"population K={k}: {k} trial(s) of {epochs} epoch(s) in {wall:.1f} s as "
            f"{len(groups)} population(s) by batch size, {images_per_s:,.0f} training img/s "
            f"({fraction:.2%} of matmul peak), {failed} failed; {trials_per_hour:,.0f} trials/h "
            f"projected to {projected} epochs ({epochs} measured, scaled linearly); "
            f"{sum(alone[:k]) / wall:.2f}x the same trials alone"
        )
    best = max(ks, key=lambda k: out[f"population_k{k}_trials_per_hour"])
    out["population_best_k"] = best
    if 1 in ks:
        out["population_speedup_best_vs_k1"] = (
            out[f"population_k{best}_trials_per_hour"] / out["population_k1_trials_per_hour"]
        )
    return out
