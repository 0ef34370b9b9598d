"""Replicating the published 10-epoch baseline, and setting our figures beside the README's.

The README reports a training loss of 0.00487120 and a testing loss of 0.00054854. Its training
loss is the epoch mean of (batch MSE + penalty) taken while training; its testing loss is not a
mean MSE but 2 * MSE(last shuffled test batch) / number of test batches. The script used a
penalty weight of 1e-4, the README states beta = 0.005: both are run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pandas as pd
import torch

from sae import metrics as M
from sae.config import Config, ModelConfig
from sae.model import SparseAutoencoder
from sae.names import (
    TAG_BASELINE,
    TAG_BETA_SOURCE,
    TAG_DESCRIPTION,
    param_column,
    tag_column,
)
from sae.runner import train_run
from sae.train import Callback, load_splits, resolve_device

if TYPE_CHECKING:
    from sae.tracking import Settings

README_TRAIN_LOSS = 0.00487120
README_TEST_LOSS = 0.00054854

BETAS: dict[str, float] = {"script": 1e-4, "readme": 0.005}
"""The penalty weight the seed's script used, and the one its README states."""


TEST_LOSS_EXPLANATION = (
    "The README's testing loss is not the mean test error: the seed's script overwrites its "
    "accumulator on every test batch, so the printed figure is 2 x the MSE of the last "
    "(400-image) batch divided by the 17 batches, about 8.5 times smaller than the true mean "
    "test MSE. It does not mean the model generalises ten times better than it trains."
)

DEAD_RUNS_EXPLANATION = (
    "a run that did not train is one whose ReLU output layer was zero on every image from the "
    "first step: no gradient ever reaches the weights and the reconstruction stays black. With "
    "the seed's architecture this is decided by the initial weights alone (see the count of "
    "seeds dead at initialisation below). Such runs are counted, not averaged in."
)

# (label, metric, which definition) for the comparison table, in display order.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("training loss", M.EPOCH_LOSS, "README"),
    ("testing loss", M.README_TEST_LOSS, "README"),
    ("test MSE, whole test set", M.TEST_MSE, "correct"),
    ("test penalty (beta included)", M.TEST_PENALTY, "correct"),
    ("train MSE, epoch mean", M.EPOCH_MSE, "correct"),
    ("explained variance, test", M.TEST_EXPLAINED_VARIANCE, "correct"),
    ("code active fraction, test", M.CODE_ACTIVE_FRAC, "correct"),
    ("code dead fraction, test", M.sparsity_key("enc3", M.DEAD_FRAC), "correct"),
)
README_FIGURES = {M.EPOCH_LOSS: README_TRAIN_LOSS, M.README_TEST_LOSS: README_TEST_LOSS}
OUTPUT_ACTIVE = M.sparsity_key("dec3", M.ACTIVE_FRAC)
DEAD_SCAN_SEEDS = range(1, 51)
"""Seeds scanned for a model dead at initialisation, to say how common it is."""


def run_name(beta: float, seed: int) -> str:
    return f"baseline-beta{beta:g}-seed{seed}"


def run_baseline(
    base: Config,
    seeds: Sequence[int],
    betas: dict[str, float] = BETAS,
    *,
    callbacks: Callable[[], Sequence[Callback]] = tuple,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Train once per (beta, seed); one row per run: beta, its source, seed, run id, final metrics.

    ``callbacks`` makes fresh callbacks for each run (progress bars, for instance).
    """
    device = resolve_device(base.train.device)
    splits = load_splits(base.data, device, log)
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
                    TAG_DESCRIPTION: f"The seed's protocol ({cfg.train.epochs} epochs) with "
                    f"the penalty weight its {source} uses, beta {beta:g}; seed {seed}.",
                },
                callbacks=callbacks(),
                splits=splits,
            )
            rows.append(
                {
                    "beta": beta,
                    "beta_source": source,
                    "seed": seed,
                    "run_id": outcome.run_id,
                    **outcome.result.final,
                }
            )
    runs = pd.DataFrame(rows)
    runs.attrs["device"] = str(device)
    runs.attrs["dead_at_init"] = dead_at_init(DEAD_SCAN_SEEDS, splits.test[:600], base.model)
    return runs


@torch.inference_mode()
def dead_at_init(seeds: Sequence[int], images: torch.Tensor, cfg: ModelConfig) -> list[int]:
    """The seeds whose freshly initialised model outputs zero on every one of ``images``."""
    x = M.to_float(images)
    dead = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = SparseAutoencoder(cfg).to(images.device, memory_format=torch.channels_last)
        if not (model(x)[0] > 0).any():
            dead.append(seed)
    return dead


def trained(runs: pd.DataFrame) -> pd.Series:
    """Which runs trained at all: their output layer was positive on some test image."""
    return runs[OUTPUT_ACTIVE] > 0


def reference(runs: pd.DataFrame) -> dict[str, float] | None:
    """What a sweep's trials are compared with: the mean final test MSE and code active fraction
    of the runs that trained with the weight the seed's script used (their count and beta too);
    None when there are none, or the runs lack those metrics."""
    if not {OUTPUT_ACTIVE, M.TEST_MSE, M.CODE_ACTIVE_FRAC} <= set(runs.columns):
        return None
    runs = runs[trained(runs) & runs["beta_source"].eq("script")]
    if runs.empty:
        return None
    out = {key: float(runs[key].mean()) for key in (M.TEST_MSE, M.CODE_ACTIVE_FRAC)}
    out["runs"] = float(len(runs))
    out["beta"] = float(runs["beta"].iloc[0])
    return out


def tracked_reference(settings: Settings) -> dict[str, float] | None:
    """``reference`` of the tracked, FINISHED baseline runs; None when none."""
    from sae import tracking  # MLflow is needed only here: untracked baselines run without it

    runs = tracking.runs_frame(
        settings,
        [settings.experiment("baseline")],
        f"tags.{TAG_BASELINE} = 'true' and attributes.status = 'FINISHED'",
    )
    beta, source = param_column("train", "beta"), tag_column(TAG_BETA_SOURCE)
    if runs.empty or beta not in runs or source not in runs:
        return None
    return reference(runs.assign(beta=pd.to_numeric(runs[beta]), beta_source=runs[source]))


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample sd and count of each table metric per beta, over the runs that trained."""
    metrics = [metric for _, metric, _ in ROWS]
    grouped = runs[trained(runs)].groupby("beta", sort=True)[metrics]
    return pd.concat({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()})


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows of ROWS; columns: the definition, the README's figure, then "mean ± sd" per beta.

    Means and spreads are over the runs that trained; the last row counts those that did not.
    """
    summary = summarize(runs)
    columns = {
        beta: f"beta {beta:g} ({group['beta_source'].iloc[0]}), "
        f"{int(trained(group).sum())} of {len(group)} runs trained"
        for beta, group in runs.groupby("beta", sort=True)
    }
    table = []
    for label, metric, definition in ROWS:
        row = {"quantity": label, "definition": definition}
        row["README"] = f"{README_FIGURES[metric]:.8f}" if metric in README_FIGURES else ""
        for beta, column in columns.items():
            if ("n", beta) not in summary.index:
                row[column] = "no run trained"
                continue
            mean, std = summary.loc[("mean", beta), metric], summary.loc[("std", beta), metric]
            spread = f" ± {std:.2g}" if summary.loc[("n", beta), metric] > 1 else ""
            row[column] = f"{_fmt(mean)}{spread}"
        table.append(row)
    return pd.DataFrame(table)


def reproducing_beta(runs: pd.DataFrame) -> float | None:
    """The beta whose mean training loss (README definition) is closest to the README's."""
    means = runs[trained(runs)].groupby("beta")[M.EPOCH_LOSS].mean()
    return float((means - README_TRAIN_LOSS).abs().idxmin()) if len(means) else None


def _fmt(value: float) -> str:
    return f"{value:.8f}" if abs(value) < 0.1 else f"{value:.4f}"
