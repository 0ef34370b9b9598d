"""What the comparison report writes and where: only inside its folder, swapped in whole, around
the user's own files, never a secret; and the names and studies it refuses before writing."""

import runpy
import shutil
import sys
from pathlib import Path

import mlflow
import pytest

from sae import names, report, tracking
from sae.report import figures

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
import synthetic_store  # noqa: E402  (analysis/ holds scripts, not a package)

REPORT = Path(__file__).resolve().parents[1] / "analysis" / "report.py"
SECRET = "hunter2"
"""Every password in the store and on the command line starts with this."""
STORAGE_WITH_PASSWORD = f"postgresql://alice:{SECRET}-storage@127.0.0.1:1/optuna"
ONE_RUN = report.Selection(experiments=("sae-sweep",), tags=((names.TAG_STUDY, "s0"),))
"""The parent run of the older study alone: the quickest complete report (a selection that
matches nothing is refused)."""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """10 baseline runs, an older study ``s0`` and the study ``s1`` of 3 trials, whose runs carry
    passwords in their command tags and params as runs logged before redaction did."""
    tmp = tmp_path_factory.mktemp("report-output")
    (tmp / "mlflow.yaml").write_text(
        "tracking_uri: sqlite:///mlflow.db\nartifact_location: mlartifacts\n"
        "optuna_storage: optuna.journal\n"
    )
    settings = tracking.load_settings(tmp / "mlflow.yaml")
    synthetic_store.log_completed_run(
        settings,
        settings.experiment("sweep"),
        run_name="study-s0",
        params={},
        tags={names.TAG_STUDY: "s0"},
        history={},
    )
    synthetic_store.synthetic_store(settings, n_runs=13, epochs=2, study="s1")
    client = tracking.client(settings)
    for run_id in report.load_frames(settings).runs["run_id"]:
        client.set_tag(
            run_id,
            names.TAG_COMMAND,
            f"sweep.py --storage postgresql://alice:{SECRET}-tag@db/optuna "
            f"--note password={SECRET}-kw",
        )
        client.log_param(
            run_id, "tracking.tracking_uri", f"https://bob:{SECRET}-param@mlflow.example"
        )
    return tmp, settings


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, hidden ones included, by relative path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _cli(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", [str(REPORT), *args])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(REPORT), run_name="__main__")
    return done.value.code


# The name.


@pytest.mark.parametrize("name", ["latest", "sweep-30", "β_run.2", "a..b"])
def test_check_name__a_plain_folder_name_passes(name):
    assert report.check_name(name) == name


@pytest.mark.parametrize(
    "name", ["../../escaped", "ABSOLUTE", "a/b", "a\\b", "..", ".", "", ".hidden", "x" * 101]
)
def test_build_report__a_name_that_is_not_a_plain_name_is_refused_and_nothing_written(
    store, tmp_path, name
):
    """Bug fix: ``../../x`` and an absolute path were joined to the output folder, so the report
    was written outside it (tmp_path/escaped and tmp_path/abs here)."""
    _, settings = store
    name = str(tmp_path / "abs") if name == "ABSOLUTE" else name
    with pytest.raises(ValueError, match=r"^report name .* is not a plain folder name") as err:
        report.build_report(settings, ONE_RUN, name, output_dir=tmp_path / "a" / "reports")
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_report_cli__a_path_as_name_is_a_one_line_error_and_writes_nothing(
    store, tmp_path, monkeypatch, capsys
):
    """Bug fix: ``--name ../escaped`` wrote tmp_path/escaped, beside the output folder."""
    tmp, _ = store
    monkeypatch.chdir(tmp_path)
    code = _cli(monkeypatch, "--config-file", str(tmp / "mlflow.yaml"), "--name", "../escaped")
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: report name '../escaped' is not a plain folder name")
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


# Swapped in whole, around the user's files.


def test_build_report__a_failure_or_interrupt_while_building_leaves_the_previous_report(
    store, tmp_path, monkeypatch
):
    """Bug fix: the report deleted figures/ and tables/ before drawing, so a figure that raised
    left a folder with no figures and half the tables."""
    _, settings = store
    output = tmp_path / "reports"
    report.build_report(settings, output_dir=output)
    previous = _tree(output / "latest")
    assert report.FIG_TRADEOFF in previous and report.TABLE_BEST in previous
    for error in (RuntimeError("drawing failed"), KeyboardInterrupt()):

        def fail(*_args, error=error):
            raise error

        monkeypatch.setattr(figures, "plot_tradeoff", fail)
        with pytest.raises(type(error)):
            report.build_report(settings, output_dir=output)
        assert _tree(output / "latest") == previous
        assert sorted(p.name for p in output.iterdir()) == ["latest"]  # no build folder left


def test_build_report__files_a_user_put_in_the_folder_survive_a_rebuild(store, tmp_path):
    """Bug fix: a rebuild deleted the whole figures/ and tables/ folders, the user's files in
    them included. Now only the report's own files (report.OUTPUTS) are replaced; one an earlier
    build wrote and this one does not is removed."""
    _, settings = store
    output = tmp_path / "reports"
    first = report.build_report(settings, output_dir=output)
    assert report.FIG_TRADEOFF in {p.relative_to(first.folder).as_posix() for p in first.figures}
    folder = output / "latest"
    mine = {
        "notes.md": b"my notes",
        "figures/my-plot.png": b"not the report's",
        "tables/extra.csv": b"a,b\n1,2\n",
        "drafts/deep/draft.txt": b"draft",
    }
    for path, data in mine.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    (folder / report.REPORT_MD).write_text("an old report")

    again = report.build_report(settings, ONE_RUN, output_dir=output)
    after = _tree(folder)
    assert {path: after.get(path) for path in mine} == mine
    # the first build's figures and other tables are gone: this selection has no trained run
    assert set(after) == set(mine) | {
        report.REPORT_MD,
        report.REPORT_HTML,
        report.TABLE_RUNS,
        report.TABLE_CURVES,
        report.TABLE_STATES,
        report.TABLE_BEST,
        report.TABLE_DEGENERATE,
    }
    assert after[report.REPORT_MD] == again.markdown.read_bytes() != b"an old report"
    assert again.figures == [] and again.folder == folder


def test_build_report__writes_only_its_outputs_in_its_folder(store, tmp_path):
    _, settings = store
    built = report.build_report(settings, output_dir=tmp_path, name="r")
    assert [p.name for p in tmp_path.iterdir()] == ["r"]
    assert set(_tree(built.folder)) <= report.OUTPUTS
    assert set(_tree(built.folder)) == {
        p.relative_to(built.folder).as_posix()
        for p in [built.markdown, built.html, *built.figures, *built.tables]
    }


def test_build_report__a_build_folder_left_by_a_killed_build_is_cleared(store, tmp_path):
    """A build killed outright leaves its hidden build folder; the next build of that name works
    and removes it. It leaves another report's alone, and one holding a file no report writes."""
    _, settings = store
    output = tmp_path / "reports"
    killed, other, odd = (
        f".{n}.building-{c * 32}" for n, c in (("latest", "a"), ("x", "b"), ("latest", "c"))
    )
    for leftover, path in (
        (killed, report.FIG_TRADEOFF),
        (killed, ".artifacts-xyz/0/images/reconstructions.png"),  # killed while drawing
        (other, report.FIG_TRADEOFF),
        (odd, "mine.txt"),
    ):
        (output / leftover / path).parent.mkdir(parents=True, exist_ok=True)
        (output / leftover / path).write_bytes(b"half")
    built = report.build_report(settings, ONE_RUN, output_dir=output)
    assert sorted(p.name for p in output.iterdir()) == sorted([other, odd, "latest"])
    assert built.markdown.is_file()


# The study.


def test_report_cli__an_unknown_study_is_one_line_naming_those_there_and_writes_nothing(
    store, tmp_path, monkeypatch, capsys
):
    """Bug fix: ``--study`` naming no study exited 0 with an empty sweep section."""
    tmp, settings = store
    output = tmp_path / "reports"
    code = _cli(
        monkeypatch,
        *("--config-file", str(tmp / "mlflow.yaml"), "--output-dir", str(output)),
        *("--study", "nope", "--name", "unknown-study"),
    )
    assert code == 1
    assert capsys.readouterr().err == (
        "error: no study 'nope' among the runs of sae-baseline, sae-sweep: "
        "the studies there are 's0', 's1'\n"
    )
    assert not output.exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)  # for mlflow.search_runs
    assert not mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.report = 'unknown-study'"
    ).shape[0]
    with pytest.raises(ValueError, match=r"no study 'x' among the runs of sae-baseline: there is"):
        report.load_frames(settings, report.Selection(experiments=("sae-baseline",), study="x"))
    assert report.load_frames(settings, report.Selection(study="s0")).study == "s0"


# Links and selections: nothing written outside, nothing replaced by nothing.

LINKS = {
    "figures folder": ("latest/figures", {"tradeoff.png": b"theirs"}),
    "tables folder": ("latest/tables", {"runs.csv": b"theirs"}),
    "report folder": ("latest", {"report.md": b"theirs", "figures/tradeoff.png": b"theirs"}),
    "output folder": ("", {"latest/report.md": b"theirs"}),
    "report file": ("latest/report.md", {}),
}
"""Where a link to another folder is planted under the output folder (``""``: the output
folder itself is the link), and what that other folder holds."""


@pytest.mark.parametrize("where", sorted(LINKS))
def test_build_report__refuses_a_symbolic_link_in_its_folder_and_writes_nothing(
    store, tmp_path, where
):
    """Bug fix: with ``reports/latest/figures`` a link to another folder, a rebuild overwrote
    the files there and deleted one (a figure it did not draw again); the same through
    ``reports/latest`` and ``reports`` as links. Now the build is refused in one line before it
    writes anything, and the other folder and the report are as they were."""
    _, settings = store
    link, theirs = LINKS[where]
    elsewhere = tmp_path / "elsewhere"
    for path, data in {**theirs, "report.md": b"theirs"}.items():
        (elsewhere / path).parent.mkdir(parents=True, exist_ok=True)
        (elsewhere / path).write_bytes(data)
    output = tmp_path / "reports"
    (output / "latest" / "figures").mkdir(parents=True)
    (output / "latest" / report.TABLE_RUNS).parent.mkdir()
    (output / "latest" / report.FIG_TRADEOFF).write_bytes(b"an earlier figure")
    planted = output / link
    if planted.exists():
        shutil.rmtree(planted) if planted.is_dir() else planted.unlink()
    planted.symlink_to(elsewhere / "report.md" if where == "report file" else elsewhere)
    before = {"elsewhere": _tree(elsewhere), "reports": _tree(output)}
    with pytest.raises(ValueError, match=r"is a symbolic link: nothing is written or deleted") as e:
        report.build_report(settings, ONE_RUN, output_dir=output)
    assert "\n" not in str(e.value)
    assert {"elsewhere": _tree(elsewhere), "reports": _tree(output)} == before
    assert planted.is_symlink() and not list(output.glob(".*"))  # no build folder either


def test_report_cli__a_link_as_the_output_folder_is_one_line_and_writes_nothing(
    store, tmp_path, monkeypatch, capsys
):
    """Bug fix: ``--output-dir LINK`` wrote the report through the link into its target."""
    tmp, _ = store
    (tmp_path / "target").mkdir()
    (tmp_path / "reports").symlink_to(tmp_path / "target")
    code = _cli(
        monkeypatch,
        *("--config-file", str(tmp / "mlflow.yaml"), "--no-log"),
        *("--output-dir", str(tmp_path / "reports")),
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: {tmp_path / 'reports'} is a symbolic link: nothing is written or deleted "
        "through one; remove the link or choose another path\n"
    )
    assert list((tmp_path / "target").iterdir()) == []


@pytest.mark.parametrize(
    "flags",
    [
        ["--experiment", "no-such-experiment"],
        ["--experiment", "sae-sweep", "--experiment", "no-such-experiment"],
        ["--experiment", "Default"],  # there, with no runs
        ["--tag", "kind=no-such-kind"],
        ["--experiment", "sae-baseline", "--tag", "optuna.study=s0"],
    ],
    ids=["unknown", "one-unknown", "no-runs", "tag", "experiment-and-tag"],
)
def test_report_cli__a_selection_that_matches_nothing_is_one_line_and_replaces_nothing(
    store, tmp_path, monkeypatch, capsys, flags
):
    """Bug fix: ``--experiment NAME`` naming no experiment (or a selection matching no run)
    exited 0 and replaced the existing report with an empty one."""
    tmp, settings = store
    output = tmp_path / "reports"
    report.build_report(settings, ONE_RUN, output_dir=output)
    previous = _tree(output)
    code = _cli(
        monkeypatch,
        *("--config-file", str(tmp / "mlflow.yaml"), "--no-log", "--output-dir", str(output)),
        *flags,
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no ") and err.count("\n") == 1
    if "no-such-experiment" in flags:
        assert err.startswith("error: no experiment 'no-such-experiment' in the store: ")
        assert "'sae-baseline'" in err
    else:
        assert err.endswith(": nothing to report\n")
    assert _tree(output) == previous


# Secrets.


def test_report_cli__no_password_in_any_file_artifact_or_console_line(
    store, tmp_path, monkeypatch, capfd
):
    """Bug fix: passwords in the runs' command tags and params, the tracking URI and the study's
    storage were written into report.md, report.html, runs.csv and best_trials.csv, and logged.
    The URIs' passwords come from a settings file, where the command line's refusal sends them
    (a password on the command line is refused: any user can read it with ``ps``)."""
    tmp, settings = store
    held = report.load_frames(settings).runs
    assert held["tags.command"].str.contains(f"{SECRET}-tag").all()  # the store really holds them
    assert held["params.tracking.tracking_uri"].str.contains(f"{SECRET}-param").all()
    uri = f"{settings.tracking_uri}?password={SECRET}-uri"
    output = tmp_path / "reports"
    refused = _cli(monkeypatch, "--tracking-uri", uri, "--output-dir", str(output))
    _, err = capfd.readouterr()
    assert refused == 1 and "holds a password or token" in err and SECRET not in err
    assert not output.exists()
    secrets = tmp_path / "secret.yaml"
    secrets.write_text(
        f"tracking_uri: {uri}\nartifact_location: {tmp / 'mlartifacts'}\n"
        f"optuna_storage: {STORAGE_WITH_PASSWORD}\n"
    )
    code = _cli(
        monkeypatch,
        *("--config-file", str(secrets), "--output-dir", str(output), "--name", "secrets"),
    )
    out, err = capfd.readouterr()
    assert code == 0, err
    files = _tree(output)
    assert report.TABLE_BEST in {p.removeprefix("secrets/") for p in files}
    text = (output / "secrets" / report.REPORT_MD).read_text()
    assert "--storage postgresql://alice:***@db/optuna --note password=***" in text

    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)  # for mlflow.search_runs
    (run_id,) = mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.report = 'secrets'"
    )["run_id"]
    logged = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(tmp_path / "a")))
    artifacts = _tree(logged)
    assert set(artifacts) == {p.removeprefix("secrets/") for p in files}
    for where, data in [*files.items(), *artifacts.items(), ("stdout", out), ("stderr", err)]:
        data = data if isinstance(data, bytes) else data.encode()
        assert SECRET.encode() not in data, where


# The synthetic store.


def test_synthetic_store__has_a_degenerate_trial_and_a_confirmed_one(store):
    frames = report.load_frames(store[1], report.Selection(study="s1"))
    assert list(report.degenerate_trials(frames.trials)["trial_number"]) == [1]
    assert set(frames.confirmations["confirm_trial"]) == {0}
    assert len(frames.confirmations) == 2
    assert not set(report.pareto_front(frames.trials)["trial_number"]) & {1}
