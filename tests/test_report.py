"""The comparison report, on runs these tests log themselves: a tiny baseline and a tiny sweep
trained for real, and synthetic stores for the empty, failed and partial cases."""

import dataclasses
import html
import importlib.metadata
import math
import os
import platform
import re
import runpy
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from helpers import N_TEST, build_config
from optuna.distributions import CategoricalDistribution, FloatDistribution

from sae import baseline as B
from sae import metrics as M
from sae import names, report, sweep, tracking
from sae.report import document
from sae.runner import train_run
from sae.splits import load_splits
from sae.sweep import SweepConfig, run_sweep
from sae.train import alive_seeds

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
import synthetic_store  # noqa: E402  (analysis/ holds scripts, not a package)

REPORT = Path(__file__).resolve().parents[1] / "analysis" / "report.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL_FIGURES = (
    report.FIG_BASELINE,
    report.FIG_CURVES,
    report.FIG_TRADEOFF,
    report.FIG_HYPERPARAMETERS,
    report.FIG_IMPORTANCES,
    report.FIG_LAYERS,
    report.FIG_RECONSTRUCTIONS,
)
BASELINE_RUNS = (("script", 0), ("script", 1), ("readme", 0))
"""(beta source, which of the two seeds alive at initialisation) of each tiny baseline run."""
CONFIRM_RUNS = 2
"""The tiny sweep confirms one front trial with two more seeds."""
BUILT_AT = re.compile(rb"(, at git commit (?:`|<code>))(?:[0-9a-f]{40}(?:\+dirty)?|unknown)")
"""The report's own line "built with ..., at git commit `<sha>`", in Markdown or HTML."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny data and a tracked config in one folder, and two seeds alive at initialisation on
    its training images (the others would end DeadNetworkError before their first step). The
    test size is given, not left None: the report reads None as the README's 10,000."""
    tmp = tmp_path_factory.mktemp("report-store")
    cfg = build_config(tmp, track=True)
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, test_size=N_TEST),
        tracking=dataclasses.replace(cfg.tracking, log_model=False),
    )
    seeds, _ = alive_seeds(2, cfg.model, load_splits(cfg.data, torch.device("cpu")).train)
    return tmp, cfg, seeds


@pytest.fixture(scope="module")
def store(tiny):
    """A tiny baseline (3 runs) and a tiny 2-trial sweep, trained on tiny data in one store.

    The tiny test images are noise, which no model reconstructs better than their mean image, so
    the FVU rule would call every tiny run degenerate: it is lifted for this module."""
    tmp, cfg, seeds = tiny
    (tmp / "mlflow.yaml").write_text(
        "tracking_uri: sqlite:///mlflow.db\nartifact_location: mlartifacts\n"
        "optuna_storage: optuna.journal\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(M, "FVU_DEGENERATE", math.inf)
        for source, which in BASELINE_RUNS:
            seed = seeds[which]
            train = dataclasses.replace(cfg.train, beta=B.BETAS[source], seed=seed)
            train_run(
                dataclasses.replace(cfg, train=train),
                kind="baseline",
                run_name=B.run_name(B.BETAS[source], seed),
                tags={names.TAG_BASELINE: "true", names.TAG_BETA_SOURCE: source},
            )
        trials = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seeds[0]))
        sweep_cfg = SweepConfig(trials=2, batch_sizes=(50, 100), workers=1, confirm=1)
        run_sweep(trials, sweep_cfg, log=lambda _m: None)
        settings = tracking.load_settings(tmp / "mlflow.yaml")
        yield tmp, settings


@pytest.fixture(scope="module")
def built(store):
    tmp, settings = store
    return report.build_report(settings, name="first", output_dir=tmp / "reports", command="cmd")


def _settings(tmp: Path) -> tracking.Settings:
    return tracking.Settings(
        tracking_uri=f"sqlite:///{tmp}/mlflow.db",
        artifact_location=(tmp / "mlartifacts").as_uri(),
        optuna_storage=str(tmp / "optuna.journal"),
    )


@pytest.fixture(scope="module")
def blank_store(tmp_path_factory):
    """An MLflow database with its tables and no runs: copied, it saves each test the migrations."""
    tmp = tmp_path_factory.mktemp("blank")
    tracking.ensure_experiment(_settings(tmp), "sae-baseline")
    return tmp / "mlflow.db"


@pytest.fixture
def empty(tmp_path, blank_store):
    """Settings for a store of this test's own, holding no runs yet."""
    shutil.copy(blank_store, tmp_path / "mlflow.db")
    return _settings(tmp_path)


def _metrics(**overrides):
    values = {key: 0.5 for key in report.FINAL_METRICS}
    values.update({M.TEST_MSE: 0.006, M.CODE_ACTIVE_FRAC: 0.4, B.OUTPUT_ACTIVE: 0.9})
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def _log(settings, experiment, name, *, tags, params=None, status="FINISHED", parent=None, **m):
    return synthetic_store.log_completed_run(
        settings,
        experiment,
        run_name=name,
        params={f"train.{k}": v for k, v in (params or {}).items()},
        tags=tags,
        history={1: _metrics(**m), 2: _metrics(**m)} if parent or experiment != "sae-sweep" else {},
        status=status,
        parent_run_id=parent,
    )


def _study_runs(settings, study, states, *, last=None):
    """A RUNNING parent run and one trial per state; ``last`` overrides the last one's metrics."""
    parent = _log(
        settings, "sae-sweep", f"study-{study}", tags={names.TAG_STUDY: study}, status="RUNNING"
    )
    for number, state in enumerate(states):
        _log(
            settings,
            "sae-sweep",
            f"trial-{number:03d}",
            tags={
                names.TAG_STUDY: study,
                names.TAG_TRIAL_NUMBER: str(number),
                names.TAG_TRIAL_STATE: state,
            },
            params={"beta": 10.0 ** -(number + 3), "lr": 1e-3, "batch_size": 64},
            status="FAILED" if state == "FAIL" else "FINISHED",
            parent=parent,
            **((last or {}) if number == len(states) - 1 else {}),
        )


# The frames.


def test_runs_frame__one_row_per_run_with_final_metrics_params_and_tags(store):
    _, settings = store
    frame = tracking.runs_frame(settings, ["sae-baseline", "sae-sweep", "no-such-experiment"])
    assert list(frame.columns[: len(tracking.RUN_COLUMNS)]) == list(tracking.RUN_COLUMNS)
    # the trials, their study's parent run and a front trial's confirmation runs
    assert len(frame) == len(BASELINE_RUNS) + 2 + 1 + CONFIRM_RUNS
    assert frame["start_time"].is_monotonic_increasing
    client = tracking.client(settings)
    for _, row in frame.iterrows():
        run = client.get_run(row["run_id"])
        for key, value in run.data.metrics.items():
            assert row[key] == value
        for key, value in run.data.params.items():
            assert row[f"params.{key}"] == value
        assert row["tags.mlflow.runName"] == row["run_name"] == run.info.run_name
        assert row["status"] == run.info.status == "FINISHED"
    assert set(frame["experiment"]) == {"sae-baseline", "sae-sweep"}


def test_curves_frame__one_row_per_run_epoch_and_metric(store):
    _, settings = store
    runs = tracking.runs_frame(settings, ["sae-baseline"])
    ids = list(runs["run_id"])
    curves = tracking.curves_frame(settings, ids, [M.TEST_MSE, M.EPOCH_LOSS])
    assert list(curves.columns) == list(tracking.CURVE_COLUMNS)
    assert len(curves) == len(ids) * 2 * 2  # runs x metrics x 2 epochs
    client = tracking.client(settings)
    for run_id in ids:
        history = client.get_metric_history(run_id, M.TEST_MSE)
        mine = curves[(curves["run_id"] == run_id) & (curves["metric"] == M.TEST_MSE)]
        assert list(mine["epoch"]) == [m.step for m in history] == [1, 2]
        assert list(mine["value"]) == [m.value for m in history]
    assert curves.equals(curves.sort_values(["run_id", "metric", "epoch"]))


def test_load_frames__default_is_the_baseline_and_the_latest_study(tiny, store):
    _, settings = store
    seeds = tiny[2]
    frames = report.load_frames(settings)
    assert frames.study == "sae-sweep"
    roles = frames.runs["role"].value_counts().to_dict()
    assert roles == {"baseline": 3, "trial": 2, "study": 1, "confirm": CONFIRM_RUNS}
    confirm = frames.confirmations
    (confirmed,) = set(confirm["confirm_trial_run_id"])
    assert confirmed in set(frames.trials["run_id"]) and set(confirm["parent_run_id"]) == {
        confirmed
    }
    assert confirm["kind"].eq(names.KIND_CONFIRM).all() and confirm["trial_state"].isna().all()
    base = frames.baseline.sort_values(["beta", "seed"])
    assert list(base["beta"]) == [1e-4, 1e-4, 0.005]
    assert list(base["seed"]) == [seeds[0], seeds[1], seeds[0]]
    assert list(base["beta_source"]) == ["script", "script", "readme"]
    trials = frames.trials.sort_values("trial_number")
    assert list(trials["trial_number"]) == [0, 1]
    assert set(trials["trial_state"]) == {"COMPLETE"}
    assert set(trials["batch_size"]) <= {50, 100}
    assert set(frames.curves["metric"]) == set(report.CURVE_METRICS)
    assert set(frames.curves["run_id"]) == set(base["run_id"]) | set(trials["run_id"])
    assert frames.parent["run_name"] == "study-sae-sweep"


def test_load_frames__experiment_and_tag_flags_select_runs(tiny, store):
    _, settings = store
    only = report.Selection(experiments=("sae-baseline",), tags=(("beta_source", "script"),))
    frames = report.load_frames(settings, only)
    assert list(frames.runs["seed"]) == tiny[2] and frames.study is None
    assert only.filter_string() == "tags.`beta_source` = 'script'"
    with pytest.raises(ValueError, match="KEY=VALUE"):
        report.parse_tag("no-equals-sign")


# Tables.


def test_pareto_front__keeps_exactly_the_non_dominated_complete_trials():
    trials = pd.DataFrame(
        {
            "trial_number": [0, 1, 2, 3, 4],
            "run_id": list("abcde"),
            "trial_state": ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"],
            M.TEST_MSE: [0.004, 0.005, 0.006, 0.001, 0.003],
            M.CODE_ACTIVE_FRAC: [0.5, 0.2, 0.6, 0.1, 0.9],
        }
    )
    assert list(report.pareto_front(trials)["trial_number"]) == [4, 0, 1]


# The document.


def test_document__markdown_and_html_from_templates_escaped_and_redacted(tmp_path):
    """The Markdown table is laid out as tabulate's pipe format was (the report's earlier
    renderer); the HTML page escapes every text; both mask a password."""
    doc = document.Document("T <1>")
    doc.text("a <b> & ", document.code("postgresql://u:pw@h/db"), " ", document.strong("c"))
    frame = pd.DataFrame({"state": ["COMPLETE", "FAIL"], "trials": [2, 10], "β x": [None, 0.5]})
    doc.table(frame)
    doc.code("run <x>")
    text, page = doc.markdown(), doc.html(tmp_path)
    assert text.startswith("# T <1>\n\na <b> & `postgresql://u:***@h/db` **c**\n\n")
    cells = frame.assign(trials=["2", "10"], **{"β x": ["–", "0.5"]})
    assert cells.to_markdown(index=False, disable_numparse=True) in text
    assert text.endswith("\n\n```\nrun <x>\n```\n")
    assert "<p>a &lt;b&gt; &amp; <code>postgresql://u:***@h/db</code> <strong>c</strong>" in page
    assert "<title>T &lt;1&gt;</title>" in page and "<pre><code>run &lt;x&gt;</code></pre>" in page
    assert "<td>–</td>" in page and "pw@" not in page + text


# The report.


def test_build_report__baseline_table_has_the_readme_and_replicated_figures(built):
    table = pd.read_csv(
        built.folder / "tables" / "baseline_table.csv", dtype=str, keep_default_na=False
    )
    table = table.set_index("quantity")
    assert table.loc["training loss", "README"] == "0.00487120"
    assert table.loc["testing loss", "README"] == "0.00054854"
    base = report.finished_baseline(built.frames)
    assert table.reset_index().to_dict("list") == B.comparison_table(base).to_dict("list")
    (script,) = [c for c in table.columns if c.startswith("beta 0.0001 (script)")]
    trained = base[B.trained(base) & base["beta_source"].eq("script")]
    if len(trained):  # the tiny model can be dead at initialisation for a seed
        shown = float(table.loc["training loss", script].split(" ± ")[0])
        assert shown == pytest.approx(trained[M.EPOCH_LOSS].mean(), rel=1e-3)
    else:
        assert table.loc["training loss", script] == "no run trained"
    text = built.markdown.read_text()
    assert "0.00487120" in text


def test_build_report__explains_the_readme_testing_loss_with_the_runs_own_test_batches(built):
    """Bug fix: the explanation was fixed text for 10,000 test images in 17 batches of 600 (the
    last of 400), whatever the runs used; these used 120 images in batches of 50."""
    base = report.finished_baseline(built.frames)
    trained = base[B.trained(base)]
    assert set(trained["test_size"]) == {N_TEST} and set(trained["test_batch_size"]) == {50}
    ratio = (trained[M.TEST_MSE] / trained[M.README_TEST_LOSS]).mean()
    text = built.markdown.read_text()
    assert B.test_loss_explanation(N_TEST, 50, ratio) in text
    assert "(20-image) batch divided by the number of batches (3, for 120 test images" in text
    assert B.TEST_LOSS_EXPLANATION not in text


def test_build_report__every_figure_is_a_png_and_the_html_embeds_them(built):
    assert sorted(p.relative_to(built.folder).as_posix() for p in built.figures) == sorted(
        ALL_FIGURES
    )
    for path in built.figures:
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    page = built.html.read_text()
    assert page.count('src="data:image/png;base64,') == len(ALL_FIGURES)
    assert "http://" not in page and "https://" not in page  # self-contained
    text = built.markdown.read_text()
    for figure in ALL_FIGURES:
        assert f"]({figure})" in text
    assert "Study `sae-sweep`: 2 trials so far; 2 complete, 0 pruned or failed, 0 running." in text
    importances = pd.read_csv(built.folder / "tables" / "importances.csv")
    assert set(importances["param"]) == {"beta", "lr", "batch_size"}
    assert set(importances["objective"]) == {M.TEST_MSE, M.CODE_ACTIVE_FRAC}
    assert {p.name for p in built.tables} >= {"runs.csv", "curves.csv", "best_trials.csv"}


def test_build_report__same_store_gives_the_same_tables_and_figure_bytes(store, built):
    tmp, settings = store
    again = report.build_report(settings, name="second", output_dir=tmp / "reports", command="cmd")
    for first in [*built.figures, *built.tables, built.markdown]:
        second = again.folder / first.relative_to(built.folder)
        assert first.read_bytes() == second.read_bytes(), first.name


def test_build_report__reproducibility_lists_the_runs_commits_digests_versions_commands(
    store, built
):
    """The section's values are the store's, read back here independently of the report."""
    client = tracking.client(store[1])
    measured = built.frames.runs[built.frames.runs["role"].isin(["baseline", "trial", "confirm"])]
    tags = [client.get_run(run_id).data.tags for run_id in measured["run_id"]]
    assert len(tags) == len(BASELINE_RUNS) + 2 + CONFIRM_RUNS
    expected = []
    for what, tag in (
        ("git commit", names.TAG_GIT_COMMIT),
        ("data digest", names.TAG_DATA_DIGEST),
        ("device", names.TAG_DEVICE),
        ("torch", names.TAG_TORCH),
        ("mlflow", names.TAG_MLFLOW),
    ):
        counts = Counter(t.get(tag, "not recorded") for t in tags)
        expected += [[what, value, str(n)] for value, n in sorted(counts.items())]
    table = pd.read_csv(built.folder / report.TABLE_PROVENANCE, dtype=str, keep_default_na=False)
    assert table.values.tolist() == expected
    (digest,) = {t[names.TAG_DATA_DIGEST] for t in tags}  # one tiny data set, really hashed
    assert re.fullmatch(r"[0-9a-f]{16,}", digest)
    assert {t[names.TAG_TORCH] for t in tags} == {torch.__version__}
    text, page = built.markdown.read_text(), built.html.read_text()
    section = text[text.index("## 4. Reproducibility") :]
    for value in {t[names.TAG_GIT_COMMIT] for t in tags} | {digest, torch.__version__}:
        assert f"| {value} " in section
    commands = Counter(t[names.TAG_COMMAND] for t in tags)
    assert commands and all(commands)
    for command, n in commands.items():
        assert f"{command}    # {n} runs" in section
        assert html.escape(f"{command}    # {n} runs") in page
    for package in ("mlflow", "optuna", "torch", "pandas", "seaborn", "matplotlib", "numpy"):
        assert f"{package} {importlib.metadata.version(package)}" in section
    assert f"python {platform.python_version()}" in section
    assert section.endswith("by:\n\n```\ncmd\n```\n")


def test_report_cli__the_same_store_gives_the_same_bytes_whatever_the_hash_seed(
    store, tmp_path, monkeypatch
):
    """Two processes with different hash seeds rebuild one report from one store: every file
    (report.md, report.html with its embedded figures, the figures, the CSVs) is identical. One
    build runs in this process, the other in a child with another PYTHONHASHSEED.

    Save one value: the git commit of the code that built the report (the repository's HEAD, not
    the store's), which moves when work is committed between the two builds."""
    tmp, _ = store
    folder = tmp_path / "out" / "same"
    argv = [str(REPORT), "--no-log", "--config-file", str(tmp / "mlflow.yaml")]
    argv += ["--output-dir", str(tmp_path / "out"), "--name", "same"]
    ours = os.environ.get("PYTHONHASHSEED")  # unset or "random": a random seed per process
    other = "1" if ours == "4242" else "4242"

    def build_here() -> None:
        monkeypatch.chdir(tmp)
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(REPORT), run_name="__main__")
        assert done.value.code == 0

    def build_in_a_child() -> None:
        env = {**os.environ, "PYTHONHASHSEED": other, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(
            [sys.executable, *argv], cwd=tmp, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr

    builds = []
    for build in (build_here, build_in_a_child):
        build()
        files = {
            str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()
        }
        for page in (report.REPORT_MD, report.REPORT_HTML):
            files[page], n = BUILT_AT.subn(rb"\1HEAD", files[page])
            assert n == 1, page
        builds.append(files)
    first, second = builds
    one_family = report.OUTPUTS - {report.FIG_FAMILIES, report.TABLE_FAMILIES}
    assert set(first) == set(second) == one_family  # every figure and table of one family
    assert [p.name for p in folder.parent.iterdir()] == ["same"]  # no build folder, no download
    for path in sorted(first):
        assert first[path] == second[path], path


def test_report_cli__writes_the_folder_and_logs_it_as_a_report_run(store, monkeypatch, capsys):
    tmp, settings = store
    monkeypatch.chdir(tmp)
    argv = [
        str(REPORT),
        "--name",
        "cli",
        "--output-dir",
        str(tmp / "out"),
        "--tag",
        "kind=baseline",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(REPORT), run_name="__main__")
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert f"report:  {tmp / 'out' / 'cli' / 'report.md'}" in out
    client = tracking.client(settings)
    experiment = client.get_experiment_by_name(settings.experiment("report"))
    (run,) = client.search_runs([experiment.experiment_id], "tags.report = 'cli'")
    assert run.info.status == "FINISHED" and run.data.tags[names.TAG_KIND] == "report"
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "report.html", "figures", "tables"} <= files


def test_report_cli__no_store_is_one_line_error(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "none.db"
    argv = [str(REPORT), "--tracking-uri", f"sqlite:///{missing}", "--output-dir", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(REPORT), run_name="__main__")
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert err == f"error: no MLflow store at {missing}: run an experiment first\n"
    assert not missing.exists()


def test_build_report__empty_store_says_so_plainly(tmp_path, empty):
    built = report.build_report(empty, output_dir=tmp_path / "reports")
    text = built.markdown.read_text()
    assert "The store holds no runs matching this selection" in text
    assert built.figures == [] and built.html.exists()


def test_build_report__only_failed_runs_says_so_without_figures(tmp_path, empty):
    settings = empty
    for seed in (1, 2):
        _log(
            settings,
            "sae-baseline",
            f"b{seed}",
            tags={names.TAG_BASELINE: "true", names.TAG_BETA_SOURCE: "script"},
            params={"beta": 1e-4, "seed": seed},
            status="FAILED",
        )
    _study_runs(settings, "s", ["FAIL", "FAIL"])
    built = report.build_report(settings, output_dir=tmp_path / "reports")
    text = built.markdown.read_text()
    assert "holds 2 baseline runs but none FINISHED (2 FAILED)" in text
    states = pd.read_csv(built.folder / "tables" / "trial_states.csv")
    assert states.to_dict("list") == {"state": ["FAIL"], "trials": [2]}
    assert "No complete trial with a test MSE and an active fraction that is not degenerate" in text
    assert "2 trials so far; 0 complete, 2 pruned or failed, 0 running" in text
    assert "The sweep is still running" in text
    assert built.figures == []
    assert "not drawn, no complete trial" in text
    assert built.skipped[report.FIG_TRADEOFF].startswith("no complete trial")
    assert "<em>Sparsity / reconstruction trade-off: not drawn," in built.html.read_text()


def test_build_report__a_run_missing_a_metric_is_counted_and_left_out(tmp_path, empty):
    settings = empty
    for seed, readme_loss in ((1, 0.0005), (2, None)):
        _log(
            settings,
            "sae-baseline",
            f"b{seed}",
            tags={names.TAG_BASELINE: "true", names.TAG_BETA_SOURCE: "script"},
            params={"beta": 1e-4, "seed": seed},
            **{M.README_TEST_LOSS: readme_loss, M.EPOCH_LOSS: 0.005},
        )
    _study_runs(settings, "s", ["COMPLETE"] * 3, last={M.TEST_MSE: None})
    built = report.build_report(settings, output_dir=tmp_path / "reports")
    text = built.markdown.read_text()
    assert f"1 finished runs did not log `{M.TEST_MSE}`" in text
    assert f"1 finished runs did not log `{M.README_TEST_LOSS}`" in text
    table = pd.read_csv(built.folder / "tables" / "baseline_table.csv", dtype=str)
    testing = table.set_index("quantity").loc["testing loss"].iloc[-1]
    assert testing == "0.00050000"  # the one run that logged it, no spread
    front = pd.read_csv(built.folder / "tables" / "best_trials.csv")
    assert 2 not in set(front["trial_number"])
    assert (built.folder / report.FIG_TRADEOFF).exists()


def test_param_importances__too_few_trials_is_none_and_the_report_says_why(tmp_path, empty):
    journal = str(tmp_path / "optuna.journal")
    study = optuna.create_study(
        study_name="s", storage=sweep.make_storage(journal), directions=["minimize"] * 2
    )
    dists = {
        "beta": FloatDistribution(1e-6, 1e-1, log=True),
        "batch_size": CategoricalDistribution([64]),
    }
    study.add_trial(
        optuna.trial.create_trial(
            params={"beta": 1e-3, "batch_size": 64}, distributions=dists, values=[0.01, 0.3]
        )
    )
    assert sweep.param_importances(journal, "s") is None
    with pytest.raises(ValueError, match="no study 'other'"):
        sweep.param_importances(journal, "other")
    with pytest.raises(ValueError, match="no Optuna storage at"):
        sweep.param_importances(str(tmp_path / "missing.journal"), "s")
    assert not (tmp_path / "missing.journal").exists()

    _study_runs(empty, "s", ["COMPLETE"])
    built = report.build_report(empty, output_dir=tmp_path / "reports", storage=journal)
    text = built.markdown.read_text()
    assert "not drawn, importances need at least 2 complete trials and the study has 1" in text
    assert not (built.folder / report.FIG_IMPORTANCES).exists()
    assert np.isclose(built.frames.trials[M.TEST_MSE].iloc[0], 0.006)
