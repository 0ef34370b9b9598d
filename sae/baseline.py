"""Replicating the published 10-epoch baseline, and setting our figures beside the README's.

The README reports a training loss of 0.00487120 and a testing loss of 0.00054854. Its training
loss is the epoch mean of (batch MSE + penalty) taken while training; its testing loss is not a
mean MSE but 2 * MSE(last shuffled test batch) / number of test batches. The script used a
penalty weight of 1e-4, the README states beta = 0.005: both are run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pandas as pd
import torch

from sae import metrics as M
from sae.config import Config, ModelConfig
from sae.names import (
    TAG_BASELINE,
    TAG_BETA_SOURCE,
    TAG_DESCRIPTION,
    param_column,
    tag_column,
)
from sae.runner import train_run
from sae.splits import load_splits, resolve_device
from sae.train import Callback, alive_seeds, dead_at_init

if TYPE_CHECKING:
    from sae.tracking import Settings

README_TRAIN_LOSS = 0.00487120
README_TEST_LOSS = 0.00054854

BETAS: dict[str, float] = {"script": 1e-4, "readme": 0.005}
"""The penalty weight the seed's script used, and the one its README states."""


README_PROTOCOL = {"epochs": 10, "train_size": 60000, "test_size": 10000, "batch_size": 100}
"""The protocol behind the README's two figures: epochs, training and test images, batch size."""
README_TEST_BATCH_SIZE = 600


def test_loss_explanation(
    test_size: int = README_PROTOCOL["test_size"],
    test_batch_size: int = README_TEST_BATCH_SIZE,
    ratio: float | None = None,
) -> str:
    """Why the README's testing loss is not a test error, with the runs' own numbers: their test
    size and test batch size, and ``ratio`` (the runs' mean test MSE over their README-defined
    testing loss) when measured; otherwise the ratio a typical last batch gives."""
    batches = math.ceil(test_size / test_batch_size)
    last = test_size - (batches - 1) * test_batch_size
    how = (
        f"the runs here measure it as the true mean test MSE divided by {ratio:.2f}"
        if ratio is not None and math.isfinite(ratio)
        else f"when the last batch is typical, that is the true mean test MSE divided by "
        f"{batches / 2:g}"
    )
    return (
        "The README's testing loss is not the mean test error: the seed's script overwrites its "
        f"accumulator on every test batch, so the printed figure is 2 x the MSE of the last "
        f"({last:,}-image) batch divided by the number of batches ({batches:,}, for "
        f"{test_size:,} test images in batches of {test_batch_size:,}); {how}. It does not "
        "mean the model generalises better than it trains."
    )


def protocol_differences(
    epochs: int | None, train_size: int | None, test_size: int | None, batch_size: int | None
) -> list[str]:
    """How a protocol differs from the README's, one phrase per difference ("2 epochs, not the
    README's 10"); a size of None means the whole split. Empty when it is the README's."""
    ours = {
        "epochs": epochs,
        "train_size": train_size or README_PROTOCOL["train_size"],
        "test_size": test_size or README_PROTOCOL["test_size"],
        "batch_size": batch_size,
    }
    what = {
        "epochs": "epochs",
        "train_size": "training images",
        "test_size": "test images",
        "batch_size": "as the training batch size",
    }
    return [
        f"{value:,} {what[key]}, not the README's {README_PROTOCOL[key]:,}"
        for key, value in ours.items()
        if value is not None and value != README_PROTOCOL[key]
    ]


TEST_LOSS_EXPLANATION = test_loss_explanation()
"""The explanation for the README's own protocol (10,000 test images in batches of 600)."""

DEAD_RUNS_EXPLANATION = (
    "seeds whose network is dead at initialisation (a layer, usually the ReLU output, zero on "
    "every training image, so that no gradient ever reaches the weights) are skipped before "
    "training and listed; a run that ends degenerate (a dead layer, a constant code, or a "
    "reconstruction no better than the mean image) is counted, not averaged in."
)

# (label, metric, which definition) for the comparison table, in display order.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("training loss", M.EPOCH_LOSS, "README"),
    ("testing loss", M.README_TEST_LOSS, "README"),
    ("test MSE, whole test set", M.TEST_MSE, "correct"),
    ("test penalty (beta included)", M.TEST_PENALTY, "correct"),
    ("train MSE, epoch mean", M.EPOCH_MSE, "correct"),
    ("explained variance, test", M.TEST_EXPLAINED_VARIANCE, "correct"),
    ("code L0 (active units per image), test", M.CODE_L0, "correct"),
    ("code active fraction, test", M.CODE_ACTIVE_FRAC, "correct"),
    ("code dense fraction (on > half the images)", M.CODE_DENSE_FRAC, "correct"),
    ("code dead fraction, test", M.sparsity_key("enc3", M.DEAD_FRAC), "correct"),
    ("linear probe accuracy (digit from code)", M.PROBE_ACCURACY, "correct"),
)
README_FIGURES = {M.EPOCH_LOSS: README_TRAIN_LOSS, M.README_TEST_LOSS: README_TEST_LOSS}
OUTPUT_ACTIVE = M.sparsity_key("dec3", M.ACTIVE_FRAC)
DEAD_SCAN_SEEDS = range(1, 51)
"""Seeds scanned for a model dead at initialisation, to say how common it is."""


def run_name(beta: float, seed: int) -> str:
    return f"baseline-beta{beta:g}-seed{seed}"


def run_baseline(
    base: Config,
    seeds: int | Sequence[int],
    betas: dict[str, float] = BETAS,
    *,
    callbacks: Callable[[], Sequence[Callback]] = tuple,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Train once per (beta, seed); one row per run: beta, its source, seed, run id, data order,
    final metrics.

    ``seeds``: a number N means the first N seeds from 1 whose network is alive at
    initialisation (the others are skipped, with the reason, in ``attrs["skipped"]``); a list
    means exactly those seeds. ``callbacks`` makes fresh callbacks for each run.
    """
    device = resolve_device(base.train.device)
    splits = load_splits(base.data, device, log)
    skipped: dict[int, str] = {}
    if isinstance(seeds, int):
        seeds, skipped = alive_seeds(seeds, base.model, splits.train)
        for seed, why in skipped.items():
            if log:
                log(f"baseline: seed {seed} skipped, dead at initialisation: {why}")
    rows = []
    for source, beta in betas.items():
        for seed in seeds:
            cfg = dataclasses.replace(
                base, train=dataclasses.replace(base.train, beta=beta, seed=seed)
            )
            if log:
                log(f"baseline: beta {beta:g} ({source}), seed {seed}")
            outcome = train_run(
                cfg,
                kind="baseline",
                run_name=run_name(beta, seed),
                tags={
                    TAG_BASELINE: "true",
                    TAG_BETA_SOURCE: source,
                    TAG_DESCRIPTION: f"The seed's protocol ({cfg.train.epochs} epochs, "
                    f"{cfg.train.data_order} data order) with the penalty weight its {source} "
                    f"uses, beta {beta:g}; seed {seed}.",
                },
                callbacks=callbacks(),
                splits=splits,
            )
            rows.append(
                {
                    "beta": beta,
                    "beta_source": source,
                    "seed": seed,
                    "data_order": cfg.train.data_order,
                    "run_id": outcome.run_id,
                    **outcome.result.final,
                }
            )
    runs = pd.DataFrame(rows)
    runs.attrs["device"] = str(device)
    runs.attrs["skipped"] = skipped
    runs.attrs["dead_at_init"] = dead_seeds(DEAD_SCAN_SEEDS, splits.train, base.model)
    return runs


def dead_seeds(seeds: Sequence[int], images: torch.Tensor, cfg: ModelConfig) -> list[int]:
    """The seeds whose freshly initialised network is dead on every one of ``images``."""
    return [seed for seed in seeds if dead_at_init(cfg, seed, images) is not None]


def trained(runs: pd.DataFrame) -> pd.Series:
    """Which runs trained: their output layer was positive on some test image, and they did not
    end degenerate (``metrics.degenerate_reason``; runs that did not log it are judged on the
    output alone)."""
    ok = runs[OUTPUT_ACTIVE] > 0
    if M.DEGENERATE in runs:
        ok &= ~runs[M.DEGENERATE].eq(1.0)
    return ok


def reference_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs a sweep's trials are compared with: those that trained with the weight the seed's
    script used (one row per run)."""
    return runs[trained(runs) & runs["beta_source"].eq("script")]


def reference(runs: pd.DataFrame) -> dict[str, float] | None:
    """What a sweep's trials are compared with: the mean final test MSE and code active fraction
    of the runs that trained with the weight the seed's script used (their count and beta too);
    None when there are none, or the runs lack those metrics."""
    if not {OUTPUT_ACTIVE, M.TEST_MSE, M.CODE_ACTIVE_FRAC} <= set(runs.columns):
        return None
    runs = reference_runs(runs)
    if runs.empty:
        return None
    out = {key: float(runs[key].mean()) for key in (M.TEST_MSE, M.CODE_ACTIVE_FRAC)}
    out["runs"] = float(len(runs))
    out["beta"] = float(runs["beta"].iloc[0])
    return out


def tracked_runs(settings: Settings) -> pd.DataFrame | None:
    """The tracked, FINISHED baseline runs, one row per run with beta, beta_source, seed,
    data_order and the metric keys as columns; None when there are none."""
    from sae import tracking  # MLflow is needed only here: untracked baselines run without it

    runs = tracking.runs_frame(
        settings,
        [settings.experiment("baseline")],
        f"tags.{TAG_BASELINE} = 'true' and attributes.status = 'FINISHED'",
    )
    beta, source = param_column("train", "beta"), tag_column(TAG_BETA_SOURCE)
    if runs.empty or beta not in runs or source not in runs:
        return None
    order = param_column("train", "data_order")
    return runs.assign(
        beta=pd.to_numeric(runs[beta]),
        beta_source=runs[source],
        seed=pd.to_numeric(runs.get(param_column("train", "seed")), errors="coerce"),
        data_order=runs.get(order, "seeded"),
    )


def tracked_reference_runs(settings: Settings) -> pd.DataFrame | None:
    """``reference_runs`` of the tracked baseline runs; None when there are none."""
    runs = tracked_runs(settings)
    if runs is None or OUTPUT_ACTIVE not in runs:
        return None
    runs = reference_runs(runs)
    return None if runs.empty else runs


def tracked_reference(settings: Settings) -> dict[str, float] | None:
    """``reference`` of the tracked, FINISHED baseline runs; None when none."""
    runs = tracked_runs(settings)
    return None if runs is None else reference(runs)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample sd and count of each table metric per beta, over the runs that trained."""
    metrics = [metric for _, metric, _ in ROWS]
    runs = runs.reindex(columns=[*runs.columns, *(m for m in metrics if m not in runs)])
    grouped = runs[trained(runs)].groupby("beta", sort=True)[metrics]
    return pd.concat({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()})


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows of ROWS; columns: the definition, the README's figure, then "mean ± sd" per beta.

    Means and spreads are over the runs that trained. When the script's beta was run with seed 1
    in the script's data order, a column gives that run alone: the exact reproduction.
    """
    summary = summarize(runs)
    exact = exact_reproduction(runs)
    columns = {
        beta: f"beta {beta:g} ({group['beta_source'].iloc[0]}), "
        f"{int(trained(group).sum())} of {len(group)} runs trained, not degenerate"
        for beta, group in runs.groupby("beta", sort=True)
    }
    table = []
    for label, metric, definition in ROWS:
        row = {"quantity": label, "definition": definition}
        row["README"] = f"{README_FIGURES[metric]:.8f}" if metric in README_FIGURES else ""
        if exact is not None:
            row[EXACT_COLUMN] = _fmt(exact.get(metric, math.nan))
        for beta, column in columns.items():
            if ("n", beta) not in summary.index:
                row[column] = "every run degenerate"
                continue
            mean, std = summary.loc[("mean", beta), metric], summary.loc[("std", beta), metric]
            spread = f" ± {std:.2g}" if summary.loc[("n", beta), metric] > 1 else ""
            if pd.isna(mean):
                row[column] = "not logged"
                continue
            row[column] = f"{_fmt(mean)}{spread}"
        table.append(row)
    return pd.DataFrame(table)


EXACT_COLUMN = "seed 1, the script's data order (beta 0.0001)"


def exact_reproduction(runs: pd.DataFrame) -> pd.Series | None:
    """The run that repeats the seed's script exactly: its beta (1e-4), seed 1, and the script's
    data order; None when there is no such trained run."""
    if "data_order" not in runs or "seed" not in runs:
        return None
    match = runs[
        trained(runs)
        & runs["beta_source"].eq("script")
        & runs["seed"].eq(1)
        & runs["data_order"].eq("script")
    ]
    return match.iloc[0] if len(match) else None


def reproducing_beta(runs: pd.DataFrame) -> float | None:
    """The beta whose mean training loss (README definition) is closest to the README's."""
    means = runs[trained(runs)].groupby("beta")[M.EPOCH_LOSS].mean()
    return float((means - README_TRAIN_LOSS).abs().idxmin()) if len(means) else None


def _fmt(value: float) -> str:
    if pd.isna(value):
        return "not logged"
    return f"{value:.8f}" if abs(value) < 0.1 else f"{value:.4f}"
