import dataclasses
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from sae.cli import ArgumentParser, add_config_arguments, config_from_args
from sae.config import Config

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "experiments" / "train.py"
BASELINE = ROOT / "experiments" / "baseline.py"


def _parse(argv):
    parser = ArgumentParser(prog="train.py")
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(argv))


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
        (["--epochs", "-1"], "error: epochs must be >= 0, got -1"),
        (["--lr", "0"], "error: lr must be > 0, got 0.0"),
        (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
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


def test_baseline_cli__rejects_zero_seeds(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(BASELINE), "--seeds", "0"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(BASELINE), run_name="__main__")
    assert exit_.value.code == 1
    assert capsys.readouterr().err == "error: --seeds must be >= 1, got 0\n"


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
