import dataclasses
import json
import runpy
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from sae.cli import ArgumentParser, add_config_arguments, config_from_args
from sae.config import Config

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "experiments" / "train.py"
BASELINE = ROOT / "experiments" / "baseline.py"
SWEEP = ROOT / "experiments" / "sweep.py"


def _parse(argv):
    parser = ArgumentParser(prog="train.py")
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def _run_script(script, argv, monkeypatch, capsys, cwd):
    """Run an entry point as `python script argv...` in `cwd`; (exit status, stderr)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [str(script), *argv])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    return exit_.value.code, capsys.readouterr().err


def test_help__lists_every_config_field_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        _parse(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default_factory):
            assert "--" + f.name.replace("_", "-") in text, f.name
    assert "(default: 100)" in text and "{l1,kl}" in text


def test_flags__set_any_field_and_keep_other_defaults():
    cfg = _parse(
        [
            "--beta",
            "0.005",
            "--epochs",
            "3",
            "--penalty-layers",
            "code",
            "--train-size",
            "500",
            "--test-size",
            "none",
            "--no-track",
        ]
    )
    assert (cfg.train.beta, cfg.train.epochs, cfg.train.penalty_layers) == (0.005, 3, "code")
    assert cfg.data.train_size == 500 and cfg.data.test_size is None
    assert cfg.tracking.track is False and cfg.train.lr == 1e-3


def test_config_file__loads_and_flags_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  beta: 0.01\n  epochs: 2\nmodel:\n  output_activation: sigmoid\n")
    cfg = _parse(["--config", str(path), "--epochs", "5"])
    assert (cfg.train.beta, cfg.train.epochs) == (0.01, 5)
    assert cfg.model.output_activation == "sigmoid"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "-1"], "error: epochs must be >= 1, got -1"),
        (["--epochs", "0"], "error: epochs must be >= 1, got 0"),
        (["--lr", "0"], "error: lr must be > 0, got 0.0"),
        (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
        (["--lr", "inf"], "argument --lr: must be a finite number, got 'inf'"),
        (["--lr", "nan"], "argument --lr: must be a finite number, got 'nan'"),
        (["--beta", "1e400"], "argument --beta: must be a finite number, got '1e400'"),
        (["--batch-size", "12.7"], "argument --batch-size: invalid int value: '12.7'"),
        (["--penalty", "l2"], "argument --penalty: invalid choice: 'l2'"),
        (["--penalty-layers", "decoder"], "argument --penalty-layers: invalid choice"),
        (["--config", "/nonexistent/run.yaml"], "error: cannot read config /nonexistent/run.yaml"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_train_cli__bad_input_is_one_line_and_non_zero(argv, message, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(TRAIN), *argv])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(TRAIN), run_name="__main__")
    assert exit_.value.code != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_train_cli__unreadable_config_contents(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    monkeypatch.setattr(sys, "argv", [str(TRAIN), "--config", str(bad)])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(TRAIN), run_name="__main__")
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.startswith(f"error: cannot read config {bad}")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "0"], "error: --seeds must be >= 1, got 0\n"),
        (["--seeds", "-2"], "error: --seeds must be >= 1, got -2\n"),
        (["--seeds", "2.5"], ": error: argument --seeds: invalid int value: '2.5'\n"),
        (["--output", "no/such/table.md"], "error: --output no/such/table.md: not a file name"),
        (["--output", "."], "error: --output .: not a file name in an existing folder\n"),
    ],
)
def test_baseline_cli__bad_seeds_or_output_refused_before_any_run(
    argv, message, tmp_path, monkeypatch, capsys
):
    """Regression (--output): the table was written after every run had trained, so a path in
    a missing folder ended hours of training in a FileNotFoundError traceback."""
    code, err = _run_script(BASELINE, argv, monkeypatch, capsys, tmp_path)
    assert code != 0 and message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_baseline_cli__an_output_that_is_a_symbolic_link_is_refused_before_any_run(
    tmp_path, monkeypatch, capsys
):
    """Bug fix (issue 23): ``--output LINK`` trained every run, then wrote the table through
    the link into its target."""
    (tmp_path / "theirs.md").write_text("theirs")
    (tmp_path / "table.md").symlink_to(tmp_path / "theirs.md")
    code, err = _run_script(BASELINE, ["--output", "table.md"], monkeypatch, capsys, tmp_path)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("error: table.md is a symbolic link: nothing is written or deleted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.md", "theirs.md"]
    assert (tmp_path / "theirs.md").read_text() == "theirs"


def test_train_cli__subprocess_error_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, str(TRAIN), "--data-root-does-not-exist"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("script", [TRAIN, BASELINE, SWEEP], ids=lambda p: p.name)
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "error: epochs must be >= 1, got 0\n"),
        (
            ["--adam-eps", "inf"],
            ": error: argument --adam-eps: must be a finite number, got 'inf'\n",
        ),
    ],
)
def test_entry_points__refuse_zero_epochs_and_inf_in_one_line_writing_nothing(
    script, argv, message, tmp_path, monkeypatch, capsys
):
    """Regression: --epochs 0 finished a tracked run (or a sweep of trials) that trained
    nothing, and --adam-eps inf was taken; train, baseline and sweep share the config."""
    code, err = _run_script(script, argv, monkeypatch, capsys, tmp_path)
    assert code != 0 and err.endswith(message) and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_float_flags__every_one_refuses_inf_and_nan_by_name(capsys):
    """Regression: float flags used plain float(), which takes inf and nan. Every float field of
    the config dataclasses, the sweep's included, is a flag that refuses them; the exact set is
    pinned so that a new float field is covered too."""
    from sae.sweep import SweepConfig

    parser = ArgumentParser(prog="p")
    parser.add_dataclass("sweep", SweepConfig())
    add_config_arguments(parser)
    floats = {}  # flag -> how many values it takes
    for cls in (*(f.default_factory for f in dataclasses.fields(Config)), SweepConfig):
        for name, hint in typing.get_type_hints(cls).items():
            args = typing.get_args(hint)
            if float in (hint, *args):
                flag = "--" + name.replace("_", "-")
                floats[flag] = len(args) if typing.get_origin(hint) is tuple else 1
    assert set(floats) == {
        "--lr",
        "--adam-beta1",
        "--adam-beta2",
        "--adam-eps",
        "--beta",
        "--rho",
        "--max-active-frac",
        "--pareto-budget",
        "--pareto-protect",
        "--timeout",
        "--beta-range",
        "--lr-range",
    }
    for flag, n in floats.items():
        # "--lr -inf" reads -inf as an option, so a user writes --lr=-inf; a range takes "1 inf".
        for bad in ("inf", "-inf", "nan", "NaN", "1e400") if n == 1 else ("inf", "nan"):
            argv = [f"{flag}={bad}"] if n == 1 else [flag, "1", bad]
            with pytest.raises(SystemExit) as exit_:
                parser.parse_args(argv)
            assert exit_.value.code == 2
            err = capsys.readouterr().err
            assert err == f"p: error: argument {flag}: must be a finite number, got '{bad}'\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  lr: .inf\n", "error: lr must be a finite number, got inf"),
        ("train:\n  beta: .nan\n", "error: beta must be a finite number, got nan"),
        ("train:\n  rho: -.inf\n", "error: rho must be a finite number, got -inf"),
        ("train:\n  lr: fast\n", "error: lr must be a finite number, got 'fast'"),
        ("train:\n  batch_size: 12.7\n", "error: batch_size must be a whole number, got 12.7"),
        ("train:\n  epochs: '3'\n", "error: epochs must be a whole number, got '3'"),
        ("train:\n  epochs: 0\n", "error: epochs must be >= 1, got 0"),
        ("train:\n  lr: yes\n", "error: lr must be a finite number, got True"),
        ("train:\n  amp: 1\n", "error: amp must be true or false, got 1"),
        ("data:\n  train_size: 1.0e3\n", "error: train_size must be a whole number, got 1000.0"),
        ("train:\n  lrr: 0.1\n", "error: unknown config field(s): train.lrr"),
        ("train: 3\n", "error: {path}: section 'train' must map fields to values"),
        ("optim: {}\n", "error: {path}: unknown config section 'optim'"),
        ("", "error: cannot read config {path}: expected a mapping of sections"),
        ("- train\n", "error: cannot read config {path}: expected a mapping of sections"),
    ],
)
def test_train_cli__bad_config_file_values_are_one_line_naming_the_field(
    text, message, tmp_path, monkeypatch, capsys
):
    """Regression: a config file's values were not type-checked: .inf and .nan were taken,
    batch_size 12.7 failed inside training with a traceback, and a string lr gave
    "bad config: '>' not supported between instances of 'str' and 'int'"."""
    path = tmp_path / "run.yaml"
    path.write_text(text)
    work = tmp_path / "work"
    work.mkdir()
    code, err = _run_script(TRAIN, ["--config", str(path)], monkeypatch, capsys, work)
    assert code == 1 and err == message.format(path=path) + "\n"
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "No such file or directory"),
        (lambda p: p.mkdir(), "Is a directory"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00train"), "codec can't decode"),
    ],
    ids=["missing", "directory", "binary"],
)
def test_train_cli__config_file_that_cannot_be_read_is_one_line(
    make, reason, tmp_path, monkeypatch, capsys
):
    path = tmp_path / "run.yaml"
    make(path)
    work = tmp_path / "work"
    work.mkdir()
    code, err = _run_script(TRAIN, ["--config", str(path)], monkeypatch, capsys, work)
    assert code == 1 and err.startswith(f"error: cannot read config {path}: ")
    assert reason in err and err.count("\n") == 1
    assert list(work.iterdir()) == []


def test_train_cli__a_runs_saved_config_json_loads_back(tmp_path):
    """Regression: the README's --config FILE with a run's config.json failed, because YAML 1.1
    read adam_eps 1e-08 (as json.dumps writes it) as text."""
    cfg = Config()
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.to_dict(), indent=2))
    assert _parse(["--config", str(path)]) == cfg


SECRET = "hunter2hunter2"
DB_URL = f"postgresql+psycopg://sae:{SECRET}@127.0.0.1:9/sae"
SECRET_ARGS = {
    "train": ["--tracking-uri"],
    "baseline": ["--tracking-uri"],
    "sweep": ["--tracking-uri", "--storage"],
    "report": ["--tracking-uri", "--storage"],
    "bench": ["--tracking-uri"],
    "ui": ["--tracking-uri", "--storage"],
    "server": ["--backend-store-uri", "--artifacts-destination", "--auth-db"],
    "demo": ["--root", "--manifest"],
}
"""Every command's URL-valued options (and, for the demo, which has none, its path options)."""
SECRET_VALUES = {
    "url password": DB_URL,
    "query password": f"postgresql+psycopg://sae@127.0.0.1:9/sae?password={SECRET}",
    "query token": f"http://127.0.0.1:9/?token={SECRET}",
}


def _run_command(name: str, argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """``sae-NAME argv...`` run in this process through its own entry point."""
    import importlib

    monkeypatch.setattr(sys, "argv", [f"sae-{name}", *argv])
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(f"sae.commands.{name.replace('-', '_')}").run()
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.mark.parametrize("value", SECRET_VALUES.values(), ids=SECRET_VALUES)
@pytest.mark.parametrize(
    ("command", "flag"), [(c, f) for c, flags in SECRET_ARGS.items() for f in flags]
)
def test_every_command__refuses_a_secret_in_any_option_in_one_line(
    command, flag, value, tmp_path, monkeypatch, capsys
):
    """Fix: sweep, report and train took a password in --storage or --tracking-uri, where any
    local user reads it (ps); only ui and server refused one, and none a token in a query string.
    Now every command refuses it, in both flag forms, before doing anything: one line naming the
    flag, the value masked, where to put the secret instead; exit 1."""
    monkeypatch.chdir(tmp_path)
    for argv in ([flag, value], [f"{flag}={value}"]):
        code, out, err = _run_command(command, argv, monkeypatch, capsys)
        assert (code, out) == (1, "")
        (line,) = err.splitlines()
        assert line.startswith(f"error: {flag} ") and "***" in line, line
        assert (
            "holds a password or token, which any local user can read on the command line: " in line
        )
        assert SECRET not in line
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_every_command__refuses_a_secret_as_a_positional_or_through_python_m_sae(
    monkeypatch, capsys
):
    """The same through ``python -m sae COMMAND``, ``python -m sae.data``, and for a positional
    argument (repair-journal's)."""
    from sae.commands import data

    code, out, err = _run_command("repair-journal", [DB_URL], monkeypatch, capsys)
    assert (code, out) == (1, "")
    assert err.startswith("error: argument postgresql+psycopg://sae:***@") and SECRET not in err
    monkeypatch.setattr(sys, "argv", ["python -m sae", "sweep", "--storage", DB_URL])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("sae", run_name="__main__")
    (line,) = capsys.readouterr().err.splitlines()
    assert exit_.value.code == 1 and line.startswith("error: --storage postgresql+psycopg://")
    assert data.main(["fetch", "--root", DB_URL]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --root postgresql+psycopg://sae:***@") and SECRET not in line


def test_secret_places__each_url_flag_says_where_its_secret_goes():
    """The one-line error of --tracking-uri, --storage and --backend-store-uri names the places
    their stores read a secret from (libpq's, MLflow's environment, mlflow.yaml)."""
    from sae.cli.parser import SecretOnCommandLine, refuse_secrets

    refuse_secrets(["--storage", "postgresql+psycopg://sae@db/sae_optuna", "--trials", "3"])
    with pytest.raises(SecretOnCommandLine) as error:
        refuse_secrets(["--trials", "3", "--storage", "postgresql://sae:hunter2@db/x"])
    assert str(error.value) == (
        "--storage postgresql://sae:***@db/x holds a password or token, which any local user can "
        "read on the command line: drop it from the URL and put it in ~/.pgpass (or PGPASSFILE, "
        "or PGPASSWORD), or the whole URL in mlflow.yaml (optuna_storage)"
    )
    with pytest.raises(
        SecretOnCommandLine, match="MLFLOW_TRACKING_PASSWORD .* MLFLOW_TRACKING_URI$"
    ):
        refuse_secrets(["--tracking-uri=http://u:p@mlflow.lab:5000"])
    with pytest.raises(SecretOnCommandLine, match="the whole URL in MLFLOW_BACKEND_STORE_URI$"):
        refuse_secrets(["--backend-store-uri", "postgresql://u@db/x?password=p"])
