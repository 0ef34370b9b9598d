"""What the report claims, on a small store of hand-made runs whose every number is known: the
degenerate trials kept off the front, each trial against the baseline with n, mean ± sd and
Welch's verdict, the protocol and the README's testing loss said from the runs' own params, the
exact reproduction's gap to the README, and the caveat on importances from few trials."""

import re
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from sae import baseline as B
from sae import metrics as M
from sae import names, report, stats, sweep, tracking
from sae.report import claims, figures, protocol, tables

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
import synthetic_store  # noqa: E402  (analysis/ holds scripts, not a package)

PROTOCOL = {
    "train.epochs": 2,
    "data.train_size": 5000,
    "data.test_size": 2000,
    "train.test_batch_size": 600,
}
"""Not the README's protocol: 2 epochs, 5,000 training and 2,000 test images."""
BASELINE = ((1, 0.0050, 0.58, 0.90), (2, 0.0052, 0.60, 0.91), (3, 0.0048, 0.56, 0.89))
"""The script's beta: (seed, test MSE, code active fraction, probe accuracy)."""
README_RATIO = 8.0
"""Each baseline run's test MSE over its README-defined testing loss."""
SEED1_TRAIN_LOSS = 0.0049
DEAD_CODE = "layer enc3 is dead: no unit active on any test image"


def _metrics(mse: float, active: float, probe: float, **overrides: float) -> dict[str, float]:
    values = {key: 0.5 for key in report.FINAL_METRICS}
    values |= {
        M.TEST_MSE: mse,
        M.TEST_FVU: mse / 0.067,
        M.README_TEST_LOSS: mse / README_RATIO,
        M.EPOCH_LOSS: mse,
        M.CODE_ACTIVE_FRAC: active,
        M.CODE_L0: 64 * active,
        M.PROBE_ACCURACY: probe,
        M.DEGENERATE: 0.0,
        B.OUTPUT_ACTIVE: 0.9,
    }
    return values | overrides


def _log(settings, experiment, name, metrics, *, tags, params, parent=None) -> str:
    return synthetic_store.log_completed_run(
        settings,
        experiment,
        run_name=name,
        params={**PROTOCOL, **params},
        tags=tags,
        history={1: metrics, 2: metrics},
        parent_run_id=parent,
    )


TRIALS = {
    # number: (test MSE, active fraction, probe accuracy, degenerate tag, metric overrides)
    0: (0.0080, 0.30, 0.80, "false", {}),
    1: (0.0600, 0.00, 0.11, "true", {}),  # degenerate by its tag
    2: (0.0700, 0.00, 0.11, None, {M.sparsity_key("enc3", M.DEAD_FRAC): 1.0}),  # by its metrics
    3: (0.0040, 0.90, 0.95, "false", {}),
    4: (0.0500, 0.10, 0.50, "false", {M.TEST_FVU: 0.99}),  # its tag says it is sound
}
CONFIRMATIONS = ((2, 0.0082, 0.31, 0.81), (3, 0.0078, 0.29, 0.79))
"""Trial 0 trained again: (seed, test MSE, active fraction, probe accuracy)."""


def _store(settings: tracking.Settings) -> None:
    for seed, mse, active, probe in BASELINE:
        loss = SEED1_TRAIN_LOSS if seed == 1 else mse
        _log(
            settings,
            "sae-baseline",
            f"b{seed}",
            _metrics(mse, active, probe, **{M.EPOCH_LOSS: loss}),
            tags={names.TAG_BASELINE: "true", names.TAG_BETA_SOURCE: "script"},
            params={
                "train.beta": 1e-4,
                "train.seed": seed,
                "train.batch_size": 100,
                "train.data_order": "script",
            },
        )
    parent = synthetic_store.log_completed_run(
        settings,
        "sae-sweep",
        run_name="study-s",
        params={},
        tags={names.TAG_STUDY: "s"},
        history={},
    )
    for number, (mse, active, probe, degenerate, overrides) in TRIALS.items():
        tags = {
            names.TAG_STUDY: "s",
            names.TAG_TRIAL_NUMBER: str(number),
            names.TAG_TRIAL_STATE: "COMPLETE",
        }
        if degenerate:
            tags[names.TAG_DEGENERATE] = degenerate
        if degenerate == "true":
            tags[names.TAG_DEGENERATE_REASON] = DEAD_CODE
        params = {"train.beta": 10.0 ** -(number + 2), "train.lr": 1e-3, "train.batch_size": 64}
        trial_run = _log(
            settings,
            "sae-sweep",
            f"trial-{number:03d}",
            _metrics(mse, active, probe, **overrides),
            tags=tags,
            params={**params, "train.seed": 1},
            parent=parent,
        )
        for seed, c_mse, c_active, c_probe in CONFIRMATIONS if number == 0 else ():
            _log(
                settings,
                "sae-sweep",
                f"trial-000-seed{seed}",
                _metrics(c_mse, c_active, c_probe),
                tags={
                    names.TAG_KIND: names.KIND_CONFIRM,
                    names.TAG_STUDY: "s",
                    names.TAG_CONFIRM_TRIAL: "0",
                    names.TAG_CONFIRM_TRIAL_RUN: trial_run,
                },
                params={**params, "train.seed": seed},
                parent=trial_run,
            )


def _journal(path: Path) -> str:
    """An Optuna study ``s`` with the same five complete trials, for the importances."""
    study = optuna.create_study(
        study_name="s", storage=sweep.make_storage(str(path)), directions=["minimize"] * 2
    )
    dists = {
        "beta": FloatDistribution(1e-8, 1e-1, log=True),
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
        "batch_size": CategoricalDistribution([64, 128]),
    }
    for number, (mse, active, *_rest) in TRIALS.items():
        params = {
            "beta": 10.0 ** -(number + 2),
            "lr": 1e-3 * (number + 1),
            "batch_size": 128 if number % 2 else 64,
        }
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=dists, values=[mse, active])
        )
    return str(path)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("claims")
    settings = tracking.Settings(
        tracking_uri=f"sqlite:///{tmp}/mlflow.db",
        artifact_location=(tmp / "mlartifacts").as_uri(),
        optuna_storage=_journal(tmp / "optuna.journal"),
    )
    _store(settings)
    return report.build_report(settings, output_dir=tmp / "reports")


def _csv(built, path: str) -> pd.DataFrame:
    return pd.read_csv(built.folder / path)


# Degenerate trials.


def test_degenerate_reasons__the_tag_decides_and_without_one_the_metrics_do():
    runs = pd.DataFrame(
        {
            "degenerate": ["true", "true", "false", None, None],
            "degenerate_reason": ["dead code", None, None, None, None],
            M.TEST_FVU: [0.1, 0.1, 0.99, 0.99, 0.1],
            M.CODE_INFORMATIVE_FRAC: [0.5, 0.5, 0.5, 0.5, None],
        }
    )
    reasons = report.degenerate_reasons(runs)
    assert reasons[0] == "dead code" and reasons[1] == "flagged degenerate"
    assert reasons[2] is None  # the tag says sound, whatever the metrics
    assert reasons[3] == M.degenerate_reason({M.TEST_FVU: 0.99, M.CODE_INFORMATIVE_FRAC: 0.5})
    assert reasons[4] is None  # a metric not logged is not judged


def test_pareto_front__leaves_out_degenerate_trials_that_would_dominate():
    """Bug fix: a collapsed trial (no code unit active, so the lowest active fraction) sat on the
    front and was praised as the sparsest; it is now off the front, and the front is the one
    drawn through the trials that are left."""
    trials = pd.DataFrame(
        {
            "trial_number": [0, 1, 2],
            "run_id": list("abc"),
            "trial_state": ["COMPLETE"] * 3,
            "degenerate": ["false", "true", "false"],
            M.TEST_MSE: [0.004, 0.07, 0.006],
            M.CODE_ACTIVE_FRAC: [0.5, 0.0, 0.3],
        }
    )
    assert list(report.pareto_front(trials)["trial_number"]) == [0, 2]
    assert list(report.pareto_front(trials.drop(columns="degenerate"))["trial_number"]) == [0, 2, 1]
    assert list(report.degenerate_trials(trials)["trial_number"]) == [1]


def test_build_report__degenerate_trials_are_listed_with_their_reasons_and_not_best(built):
    best = _csv(built, report.TABLE_BEST)
    assert sorted(best["trial_number"]) == [0, 3, 4]
    degenerate = _csv(built, report.TABLE_DEGENERATE)
    assert degenerate[["trial_number", "reason"]].values.tolist() == [
        [1, DEAD_CODE],
        [2, DEAD_CODE],
    ]
    text = built.markdown.read_text()
    assert "**2 of the 5 complete trials are degenerate**" in text
    assert "kept off the front" in text
    assert "The 3 Pareto-optimal trials among the 3 complete trials that are not degenerate" in text


# Claims with n and spread.


def test_claims__a_confirmed_trial_has_n_3_and_welch_verdicts_an_unconfirmed_one_too_few(built):
    found = _csv(built, report.TABLE_CLAIMS).set_index(["trial", "quantity"])
    confirmed = [(0.0080, 0.0082, 0.0078), (0.30, 0.31, 0.29), (0.80, 0.81, 0.79)]
    baseline = [[row[i] for row in BASELINE] for i in (1, 2, 3)]
    for (key, lower_is_better), ours, theirs in zip(
        claims.CLAIMS, confirmed, baseline, strict=True
    ):
        row = found.loc[(0, tables.LABELS[key])]
        expected = stats.compare(ours, theirs)
        assert (row["trial n"], row["baseline n"]) == (3, 3)
        assert row["trial mean"] == pytest.approx(sum(ours) / 3)
        assert row["p"] == pytest.approx(expected.p) and row["p"] < stats.ALPHA
        assert row["verdict"] == stats.verdict(expected, lower_is_better)
    assert [found.loc[(0, q), "verdict"] for q in ("test MSE", "code active fraction")] == [
        "worse",
        "better",
    ]
    alone = found.loc[(3, "test MSE")]
    assert alone["trial n"] == 1 and pd.isna(alone["p"])
    assert alone["verdict"] == "not distinguishable (n=1 vs n=3: too few to test)"
    text = built.markdown.read_text()
    assert text.count(stats.TEST_NAME) == 1
    assert re.search(r"0\.008 ± 0\.0002 \(n=3\) +\| 0\.005 ± 0\.0002 \(n=3\) +\| worse \(p=", text)
    assert "| one run: too few to test " in text


def test_report__confirmation_runs_are_a_role_of_their_own(built):
    runs = built.frames.runs
    assert runs["role"].value_counts()[report.ROLE_CONFIRM] == len(CONFIRMATIONS)
    assert len(built.frames.trials) == len(TRIALS)  # neither trials nor other runs
    assert "2 confirmation runs of its trials" in built.markdown.read_text()


def test_importances__fewer_than_20_trials_carry_the_caveat_in_text_and_title(built):
    caveat = "from 5 trials: indicative only, fewer than 20"
    assert stats.importance_caveat(5) == caveat
    assert stats.importance_caveat(stats.IMPORTANCE_TRIALS) == ""
    assert f"for each objective, {caveat}" in built.markdown.read_text()
    assert (built.folder / report.FIG_IMPORTANCES).exists()
    found = pd.read_csv(built.folder / report.TABLE_IMPORTANCES)
    fig = figures.plot_importances(found, 5, caveat)
    assert fig.axes[0].get_title().endswith(caveat)


# The protocol and the README's figures, from the runs.


def test_build_report__runs_with_another_protocol_say_so_where_they_meet_the_readme(built):
    text = built.markdown.read_text()
    said = "2 epochs, not the README's 10; 5,000 training images, not the README's 60,000"
    baseline = text[text.index("## 1.") : text.index("## 2.")]
    assert f"**These runs do not follow the README's protocol**: {said}; 2,000 test" in baseline
    assert f"(these runs: {said}" in baseline  # the caption of the figure with README lines
    sweep_part = text[text.index("## 2.") : text.index("## 3.")]
    assert f"**The trials do not follow the README's protocol**: {said}" in sweep_part


def test_build_report__the_testing_loss_explanation_follows_the_runs_test_batches(built):
    """Bug fix: the text and the figure's axis said 17 batches, the last of 400 images, whatever
    the runs used; 2,000 test images in batches of 600 make 4 batches, the last of 200."""
    assert protocol.test_batches(2000, 600) == (4, 200)
    base = report.finished_baseline(built.frames)
    assert protocol.testing_loss_label(base) == "2 x MSE(last batch of 200) / 4 batches"
    text = built.markdown.read_text()
    assert B.test_loss_explanation(2000, 600, README_RATIO) in text
    assert "(200-image) batch divided by the number of batches (4, for 2,000 test images" in text
    assert "17 batches" not in text and "400-image" not in text


def test_build_report__says_which_column_is_the_exact_reproduction_and_its_gap(built):
    gap = 100 * (SEED1_TRAIN_LOSS / B.README_TRAIN_LOSS - 1)
    table = _csv(built, report.TABLE_BASELINE)
    assert B.EXACT_COLUMN in table.columns
    text = built.markdown.read_text()
    assert f"The column `{B.EXACT_COLUMN}` is the exact reproduction" in text
    said = (
        f"training loss {SEED1_TRAIN_LOSS:.8f} against the README's 0.00487120 ({gap:.1f}% above)"
    )
    assert said in text


def test_exact_gaps__none_without_a_seed_1_run_in_the_script_order(built):
    base = report.finished_baseline(built.frames)
    assert [key for key, *_ in protocol.exact_gaps(base)] == list(B.README_FIGURES)
    assert protocol.exact_gaps(base.assign(data_order="seeded")) == []
