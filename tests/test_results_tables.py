"""The results pages of `make sweep` and `make baseline` (analysis/results_tables.py,
sae/report/results.py), on a store these tests make: synthetic baseline runs with every metric
(``synthetic_store``) and a tiny sweep trained for real on learnable data, one front trial
confirmed."""

import contextlib
import dataclasses
import io
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers_sweep import empty_store, sweep_base, sweep_config

from sae import baseline as B
from sae import metrics as M
from sae import report, sweep, tracking
from sae.cli import run_main
from sae.commands.sweep import report as print_sweep
from sae.report import results
from sae.sweep import run_sweep

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
import results_tables  # noqa: E402  (analysis/ holds scripts, not a package)
import synthetic_store  # noqa: E402

MADE = re.compile(
    r"Made \d{4}-\d\d-\d\d \d\d:\d\d UTC on `[^`]+` at git commit `[^`]+` by "
    r"`python analysis/results_tables\.py[^`]*`, from the runs in `sqlite:///[^`]+`\.$"
)
"""The first line of every page: when, where, by what command, from which store."""
SWEEP_FLAGS = (
    *("--trials", "2", "--sampler-seed", "3", "--confirm", "1", "--threads", "1"),
    *("--workers", "1"),
)
"""The command line the tiny sweep records (its settings are given to it directly)."""
DEGENERATE_HEADER = [
    *("trial", "beta", "lr", "batch size", "test MSE", "code active fraction"),
    *("why degenerate", "run"),
]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """10 synthetic baseline runs, then a 2-trial sweep on learnable data whose best trial is
    confirmed with two more seeds; the sweep's console output as the command prints it."""
    tmp = tmp_path_factory.mktemp("results")
    base = sweep_base(tmp)
    settings = tracking.load_settings(tmp / "mlflow.yaml")
    synthetic_store.synthetic_store(settings, n_runs=10)
    cfg = sweep_config(trials=2, batch_sizes=(10,), confirm=1)
    storage = sweep.make_storage(str(tmp / "optuna.journal"))
    study = sweep.open_study(storage, cfg, sweep.build_space(cfg), epochs=2)
    study.enqueue_trial({"lr": 1e-2, "beta": 1e-3, "batch_size": 10})  # one that learns
    with pytest.MonkeyPatch.context() as patch:  # the command line its runs record
        patch.setattr(sys, "argv", ["sweep.py", *SWEEP_FLAGS])
        result = run_sweep(base, cfg, log=lambda _line: None)
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        print_sweep(result, cfg)
    return tmp, settings, result, console.getvalue()


def _main(tmp: Path, *argv: str) -> int:
    """The command on the store in ``tmp``; its exit status."""
    args = ["--config-file", str(tmp / "mlflow.yaml"), "--output", str(tmp / "out"), *argv]
    with pytest.raises(SystemExit) as done:
        run_main(lambda: results_tables.main(args))
    return done.value.code


@pytest.fixture(scope="module")
def pages(swept):
    tmp = swept[0]
    assert _main(tmp) == 0
    return {page: (tmp / "out" / page).read_text(encoding="utf-8") for page in results.PAGES}


def _table(text: str, header: list[str]) -> list[list[str]]:
    """The rows of cells of the Markdown table with this ``header``."""
    lines = text.splitlines()
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and cells[i] == header)
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return cells[start + 2 : end]  # the rows after the |:--| line


def _code_block(text: str, after: str) -> list[str]:
    """The lines of the first fenced block after the line starting with ``after``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    opening = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
    closing = next(i for i in range(opening + 1, len(lines)) if lines[i].startswith("```"))
    return lines[opening + 1 : closing]


def _shown(value, whole: bool = False) -> str:
    return str(int(value)) if whole else f"{float(value):.6g}"


# The sweep page.


def test_sweep_page__front_is_the_reports_and_the_sweeps_with_their_values(swept, pages):
    """The front table holds exactly the report's front, in its order, with its values; and
    those are the trials the sweep itself put on its front (``front.front_of``)."""
    _, settings, result, _ = swept
    front = report.pareto_front(report.load_frames(settings).trials)
    assert len(front) >= 1
    rows = _table(pages[results.SWEEP_PAGE], list(results.FRONT_COLUMNS.values()))
    expected = [
        [_shown(trial[key], whole=key in results.WHOLE_COLUMNS) for key in results.FRONT_COLUMNS]
        for _, trial in front.iterrows()
    ]
    assert rows == expected
    assert sorted(int(r[0]) for r in rows) == sorted(int(n) for n in result.best["number"])
    by_number = result.best.set_index("number")
    for row in rows:
        assert row[4] == _shown(by_number.loc[int(row[0]), M.TEST_MSE])


def test_sweep_page__comparison_lines_are_those_the_sweep_printed(swept, pages):
    """Every line of the comparison with the baseline is a line the sweep's console printed,
    the confirmed trial with n=3 against the 5 baseline runs of the script's beta."""
    _, _, result, console = swept
    lines = _code_block(pages[results.SWEEP_PAGE], "Each front trial against")
    printed = console.splitlines()
    assert lines and all(line in printed for line in lines)
    assert lines[0].startswith("compared with the tracked baseline (beta 0.0001, 5 runs")
    (confirmed,) = [c for c in result.comparisons if c.confirmed]
    assert f"trial {confirmed.trial}, seeds 1, {confirmed.seeds[1]}, {confirmed.seeds[2]}:" in lines
    assert any("(n=3) vs" in line and "(n=5):" in line for line in lines)


def test_sweep_page__states_degenerate_trials_wall_time_and_settings(swept, pages):
    tmp, settings, result, _ = swept
    text = pages[results.SWEEP_PAGE]
    rows = _table(text, ["state", "trials"])
    assert {state: int(n) for state, n in rows} == dict(Counter(result.trials["state"]))
    degenerate = result.trials[result.trials["degenerate"].fillna("").ne("")]
    if len(degenerate):
        shown = _table(text, DEGENERATE_HEADER)
        assert sorted(int(r[0]) for r in shown) == sorted(degenerate["number"])
    else:
        assert "None of the 2 complete trials is degenerate." in text
    assert (
        f"Study `sae-sweep`, made by `sweep.py {' '.join(SWEEP_FLAGS)}` (as its parent run "
        "records it): 2 trials, objective pareto, the tpe sampler with seed 3, 1 worker, 1 front "
        "trials confirmed, 1 thread (the flags it does not give at this code's defaults)."
    ) in text
    assert (
        "Each trial trained 2 epochs on all the training images, tested on all the test images "
        "(its run's params)."
    ) in text
    assert re.search(
        r"Wall time: \d+\.\d minutes from the parent run's start to its end; "
        r"\d+\.\d minutes for the 2 trials .*; \d+\.\d minutes for the 2 "
        r"confirmation runs\.",
        text,
    )
    assert "host `" in text and "device `cpu`" in text


def test_pages__start_with_when_where_and_what_made_them_and_end_with_the_command_again(
    swept, pages
):
    tmp = swept[0]
    for page, text in pages.items():
        first, *_, last = text.rstrip("\n").splitlines()
        assert MADE.match(first), (page, first)
        assert last == (
            f"Made again by `python analysis/results_tables.py --config-file "
            f"{tmp / 'mlflow.yaml'} --output {tmp / 'out'} --study sae-sweep`"
        )


# The baseline page.


def test_baseline_page__the_table_is_the_one_the_baseline_and_the_report_make(swept, pages):
    """The table's cells are ``baseline.comparison_table`` of the tracked baseline runs read
    without the report's frames, and the report's own table of them."""
    _, settings, _, _ = swept
    tracked = B.comparison_table(B.tracked_runs(settings))
    header = list(tracked.columns)
    rows = _table(pages[results.BASELINE_PAGE], header)
    assert rows == [list(row) for row in tracked.astype(str).itertuples(index=False)]
    frames = report.load_frames(settings)
    reported = B.comparison_table(report.finished_baseline(frames))
    assert rows == [list(row) for row in reported.astype(str).itertuples(index=False)]
    assert "5 of 5 runs trained" in header[-1]
    text = pages[results.BASELINE_PAGE]
    said = "tag `baseline=true`): 10 of 10 FINISHED, made by a command they do not record; 0."
    assert said in text
    assert "The seeds: beta 0.0001: 1, 2, 3, 4, 5; beta 0.005: 1, 2, 3, 4, 5." in text
    assert "3 epochs, not the README's 10" in text  # the synthetic runs' protocol


# What the sweep ran with, from its command line.


def test_recorded_settings__the_sweep_flags_of_its_command_and_defaults_for_the_rest():
    read = results.recorded_settings("sweep.py --trials 30 --threads 1 --lr 0.01 --beta 0.1")
    assert read is not None and read.threads == 1
    assert read.sweep.trials == 30 and read.sweep.sampler == "tpe"
    assert read.sweep.sampler_seed == 0 and read.sweep.confirm == 3
    # --lr and --beta are the training flags, not abbreviations of --lr-range and --beta-range
    assert read.sweep.lr_range == (1e-4, 1e-2) and read.sweep.beta_range == (1e-6, 1e-1)
    other = results.recorded_settings("sae-sweep --sampler random --sampler-seed 7 --confirm 0")
    assert other is not None and other.threads is None
    assert (other.sweep.sampler, other.sweep.sampler_seed, other.sweep.confirm) == ("random", 7, 0)
    assert results.recorded_settings("pytest -q tests") is None
    assert results.recorded_settings("sweep.py --trials many") is None
    assert results.recorded_settings(None) is None


# What a store without a part gives.


def _baseline_only(tmp: Path) -> tracking.Settings:
    (tmp / "mlflow.yaml").write_text("tracking_uri: sqlite:///mlflow.db\n")
    settings = tracking.load_settings(tmp / "mlflow.yaml")
    synthetic_store.synthetic_store(settings, n_runs=10)
    return settings


def test_main__a_store_without_a_study_writes_the_baseline_page_and_says_so_in_one_line(
    tmp_path, capsys
):
    """The baseline page is written (a failed baseline run counted, not averaged in); the sweep
    page is not, an earlier one is left as it was, and the command ends with one line and exit
    status 1."""
    settings = _baseline_only(tmp_path)
    synthetic_store.log_completed_run(
        settings,
        "sae-baseline",
        run_name="baseline-failed",
        params={},
        tags={"baseline": "true", "beta_source": "script"},
        history={},
        status="FAILED",
    )
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / results.SWEEP_PAGE).write_text("an earlier page\n")
    assert _main(tmp_path) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"error: no sweep study in sqlite:///{tmp_path}/mlflow.db: run `make sweep` (python "
        f"experiments/sweep.py), so {results.SWEEP_PAGE} is not written\n"
    )
    assert captured.out == f"wrote {tmp_path / 'out' / results.BASELINE_PAGE}\n"
    assert (tmp_path / "out" / results.SWEEP_PAGE).read_text() == "an earlier page\n"
    baseline = (tmp_path / "out" / results.BASELINE_PAGE).read_text()
    assert "10 of 11 FINISHED (1 FAILED), made by" in baseline
    assert baseline.rstrip().endswith(
        f"`python analysis/results_tables.py --config-file {tmp_path / 'mlflow.yaml'} "
        f"--output {tmp_path / 'out'}`"
    )


def test_main__a_store_without_runs_is_one_line_naming_both_parts_and_writes_nothing(
    tmp_path, capsys
):
    (tmp_path / "mlflow.yaml").write_text("tracking_uri: sqlite:///mlflow.db\n")
    empty_store(tmp_path / "mlflow.db")
    assert _main(tmp_path) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "no sweep study in" in captured.err and "; no finished baseline run in" in captured.err
    assert not (tmp_path / "out").exists()


def test_main__an_unknown_study_is_one_line_and_writes_nothing(swept, tmp_path, capsys):
    tmp = swept[0]
    args = ["--config-file", str(tmp / "mlflow.yaml"), "--output", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as done:
        run_main(lambda: results_tables.main([*args, "--study", "no-such-study"]))
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: no study 'no-such-study' among ")
    assert "the studies there are 'sae-sweep'" in err
    assert not (tmp_path / "out").exists()


def test_write_results__without_baseline_runs_the_sweep_page_is_still_written(swept, tmp_path):
    _, settings, _, _ = swept
    elsewhere = dataclasses.replace(
        settings, experiments={**settings.experiments, "baseline": "sae-no-baseline"}
    )
    done = results.write_results(elsewhere, tmp_path / "out")
    assert done.written == (tmp_path / "out" / results.SWEEP_PAGE,)
    (missing,) = done.missing
    assert missing.startswith("no finished baseline run in sqlite:///")
    assert "run `make baseline`" in missing
    assert not (tmp_path / "out" / results.BASELINE_PAGE).exists()
    sweep_text = (tmp_path / "out" / results.SWEEP_PAGE).read_text()
    assert "no tracked baseline runs to compare with" in sweep_text


def test_write_results__an_output_folder_that_is_a_link_is_refused(swept, tmp_path):
    _, settings, _, _ = swept
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="is a symbolic link"):
        results.write_results(settings, tmp_path / "out")
    assert list((tmp_path / "elsewhere").iterdir()) == []
