"""`experiments/ui.py`: its checks, and what a person sees through it in a real browser.

The browser test logs a tiny baseline run and a 2-trial sweep into a temporary store, starts the
UI with the project's own command, and drives headless Chromium (Playwright with the system
Chromium) through the runs, a trial's metrics and reconstruction image, the Optuna dashboard and
the report's HTML page. Screenshots go to reports/screenshots/ui (or $SAE_SCREENSHOT_DIR).
Without Chromium it skips, except under CI=true, where it fails.
"""

from __future__ import annotations

import dataclasses
import os
import runpy
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import helpers_postgres
import optuna
import pytest
from helpers import build_config
from helpers_proc import ArgvWatch, Command, live_in_group

from sae import baseline, report, tracking, ui
from sae.sweep import SweepConfig, run_sweep

ROOT = Path(__file__).resolve().parents[1]
UI = ROOT / "experiments" / "ui.py"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(os.environ.get("SAE_SCREENSHOT_DIR", ROOT / "reports" / "screenshots" / "ui"))
TIMEOUT_MS = 60_000


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_free_port__the_preferred_one_when_free_else_another():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        other = ui.free_port("127.0.0.1", busy)
        assert other != busy and other > 0
    assert ui.free_port("127.0.0.1", other) == other


def _ui_here(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    """``experiments/ui.py`` run in this process through its own main: (exit code, out, err)."""
    monkeypatch.setattr(sys, "argv", [str(UI), *argv])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(UI), run_name="__main__")
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def test_ui_command__missing_stores_are_one_line_errors_naming_the_command(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "mlflow.yaml").write_text("tracking_uri: sqlite:///mlflow.db\n")
    code, _, err = _ui_here(monkeypatch, capsys, "--config-file", str(tmp_path / "mlflow.yaml"))
    assert code == 1
    assert err.strip().splitlines() == [
        f"error: no MLflow store at {tmp_path / 'mlflow.db'}; create one with `make sweep` "
        "(or `python experiments/train.py`)"
    ]
    settings = tracking.Settings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", optuna_storage=str(tmp_path / "none")
    )
    with pytest.raises(ui.UIError, match="no Optuna storage at .*none; create one with `make"):
        ui.check_optuna_storage(settings.optuna_storage)
    served = dataclasses.replace(settings, tracking_uri="http://127.0.0.1:5000")
    with pytest.raises(ui.UIError, match="is a tracking server, which serves its own UI"):
        ui.check_tracking_store(served)


def test_mlflow_command__stores_reach_the_servers_through_their_environment(tmp_path, monkeypatch):
    """Fix: the stores were on the servers' command lines, which every local user can read."""
    monkeypatch.delenv(ui.JOBS_ENV, raising=False)
    settings = tracking.load_settings(_write_settings(tmp_path))
    command = ui.mlflow_command("127.0.0.1", 5123)
    assert command[-6:] == ["--host", "127.0.0.1", "--port", "5123", "--workers", "1"]
    assert not any(str(tmp_path) in arg for arg in command)
    assert ui.mlflow_env(settings) == {
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "MLFLOW_DEFAULT_ARTIFACT_ROOT": (tmp_path / "mlartifacts").as_uri(),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    board = ui.dashboard_command("127.0.0.1", 8123)
    assert board[-2:] == ["127.0.0.1", "8123"] and not any(str(tmp_path) in a for a in board)
    assert ui.dashboard_env(settings.optuna_storage) == {
        ui.STORAGE_ENV: str(tmp_path / "optuna.journal")
    }


def test_is_loopback__only_addresses_no_other_machine_reaches():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert ui.is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "mlflow.lab", "example.com"):
        assert not ui.is_loopback(host), host


def test_reject_password__a_password_on_a_command_line_is_a_one_line_error():
    ui.reject_password("--storage", "postgresql+psycopg://sae@db/sae_optuna")
    ui.reject_password("--storage", None)
    with pytest.raises(ui.UIError) as error:
        ui.reject_password("--storage", "postgresql://sae:hunter2@db/x", ", or in mlflow.yaml")
    assert str(error.value) == (
        "--storage postgresql://sae:***@db/x holds a password, which any local user can read on "
        "the command line: drop it from the URL and put it in ~/.pgpass (or PGPASSFILE, or "
        "PGPASSWORD), or in mlflow.yaml"
    )


def test_ui_command__a_remote_host_needs_the_explicit_flag(tmp_path, monkeypatch, capsys):
    """Without --allow-remote-without-login, one line and exit 1 before anything starts."""
    config = str(_write_settings(tmp_path))
    code, out, err = _ui_here(monkeypatch, capsys, "--config-file", config, "--host", "0.0.0.0")
    assert code == 1
    assert err.splitlines() == [
        "error: the UI has no login: anyone who can reach 0.0.0.0 could read and delete the "
        "runs; bind 127.0.0.1 (and use an SSH tunnel), or add --allow-remote-without-login "
        "to go on"
    ]
    assert out == ""


def _ui(config_file: Path, *flags: str, **popen) -> Command:
    return Command(
        [
            *(sys.executable, str(UI), "--config-file", str(config_file), "--dashboard"),
            *("--port", str(ui.free_port("127.0.0.1", 0))),
            *("--dashboard-port", str(ui.free_port("127.0.0.1", 0)), *flags),
        ],
        **popen,
    )


def test_ui__no_password_on_a_command_line_or_in_its_output_and_sigterm_stops_both(tmp_path):
    """Fix: the stores' URLs, passwords included, were on the servers' command lines. With both
    stores in PostgreSQL behind a password, no process's command line ever holds it, and every
    line printed shows *** instead.

    Then SIGTERM to ui.py alone (as a service manager sends it) stops both servers, whose process
    groups are then empty; it prints one line about it and exits 0 within the servers' stop
    timeout. Bound to every interface, which --allow-remote-without-login allows."""
    password = secrets.token_urlsafe(18)
    with helpers_postgres.scratch_databases("mlflow", "optuna") as names:
        tracking_uri = helpers_postgres.url(names["mlflow"], password=password)
        storage = helpers_postgres.url(names["optuna"], password=password)
        optuna.create_study(study_name="sae-sweep", storage=storage)  # the dashboard needs one
        (tmp_path / "mlflow.yaml").write_text(
            f"tracking_uri: {tracking_uri}\noptuna_storage: {storage}\n"
            "artifact_location: mlartifacts\n"
        )
        with ArgvWatch([password]) as watch:
            # the watch sees a password on a command line, as the old argv had it
            decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)", password])
            command = _ui(tmp_path / "mlflow.yaml", "--host", "0.0.0.0", ui.REMOTE_FLAG)
            try:
                command.wait_for(r"Ctrl-C stops both")
                groups = command.note_groups()
                assert len(groups) == 2 and all(live_in_group(g) for g in groups)
                printed = len(command.lines)
                started = time.monotonic()
                code = command.stop(signal.SIGTERM)
                seconds = time.monotonic() - started
            finally:
                command.close()
                decoy.wait()
    assert code == 0
    assert seconds < ui.STOP_TIMEOUT_S + 5
    assert {g: live_in_group(g) for g in groups} == {g: [] for g in groups}
    assert command.lines[printed:] == ["stopping"]
    assert command.lines[0] == (
        "warning: no login: anyone who can reach 0.0.0.0 can read and delete the runs"
    )
    assert watch.scans > 10 and list(watch.found) == [decoy.pid]
    assert not any(password in line for line in command.lines)
    masked = helpers_postgres.url(names["mlflow"], password="***")
    assert f"(store {masked})" in command.lines[1]
    assert f"(storage {helpers_postgres.url(names['optuna'], password='***')})" in "\n".join(
        command.lines
    )


# The browser test.


def _write_settings(folder: Path) -> Path:
    path = folder / "mlflow.yaml"
    path.write_text(
        "tracking_uri: sqlite:///mlflow.db\nartifact_location: mlartifacts\n"
        "optuna_storage: optuna.journal\n"
    )
    return path


def _chromium() -> str:
    path = os.environ.get("SAE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        message = "Chromium not found (install it: apt-get install chromium, or set SAE_CHROMIUM)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A temporary store holding one baseline run, a 2-trial sweep, and the report on both."""
    folder = tmp_path_factory.mktemp("ui-store")
    config_file = _write_settings(folder)
    cfg = build_config(folder, track=True, epochs=2)
    cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, log_model=False))
    baseline.run_baseline(cfg, seeds=[1], betas={"script": 1e-4})
    run_sweep(cfg, SweepConfig(trials=2, batch_sizes=(50, 100)), log=lambda _m: None)
    report.build_report(tracking.load_settings(config_file), name="report", output_dir=folder)
    return folder


@pytest.fixture
def running_ui(store) -> Iterator[Command]:
    """``experiments/ui.py --dashboard`` as a user starts it, on free ports; stopped by Ctrl-C,
    and whatever happens, none of its servers left running (found by their process groups)."""
    command = _ui(store / "mlflow.yaml")
    try:
        yield command
    finally:
        command.close()


@pytest.fixture
def browser():
    executable = _chromium()
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_FLAGS
            )
        except Error as err:
            pytest.fail(f"Chromium at {executable} could not be started: {err.message[:300]}")
        try:
            yield chromium
        finally:
            chromium.close()


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def test_ui__runs_metrics_images_dashboard_and_report_in_a_real_browser(store, running_ui, browser):
    url = running_ui.wait_for(r"MLflow UI: (http://127\.0\.0\.1:\d+)").group(1)
    sweep_page = running_ui.wait_for(r"sae-sweep\s+3 runs\s+(\S+)").group(1)
    baseline_page = running_ui.wait_for(r"sae-baseline\s+1 runs\s+(\S+)").group(1)
    board = running_ui.wait_for(r"Optuna dashboard: (http://127\.0\.0\.1:\d+)").group(1)
    running_ui.wait_for(r"Ctrl-C stops both")

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    # MLflow 3 opens on its GenAI view; the printed links ask for the model-training view, and a
    # user clicks "Model training" once, which the UI remembers for every later page.
    page.goto(url)
    page.get_by_text("Model training", exact=True).first.click()

    # The baseline run, listed by its readable name.
    page.goto(baseline_page)
    page.get_by_text("baseline-beta0.0001-seed1").first.wait_for()

    # The sweep: the study's parent run, its two trials nested below it once expanded.
    page.goto(sweep_page)
    parent = page.get_by_role("row").filter(has_text="study-sae-sweep")
    parent.first.wait_for()
    assert page.get_by_text("trial-000").count() == 0  # nested: hidden under the parent
    parent.get_by_role("button").first.click()
    page.get_by_text("trial-000").first.wait_for()
    page.get_by_text("trial-001").first.wait_for()
    page.get_by_role("button", name="Close").click()  # the assistant panel, for the screenshot
    _shot(page, "experiment")

    # A trial: its metrics, grouped by namespace, and its description.
    page.get_by_text("trial-000").first.click()
    page.get_by_text("Trial 0 of study").first.wait_for()
    assert page.get_by_text("Evaluation runs").count() == 0  # still the model-training view
    for metric in ("test/mse", "train_epoch/loss", "sparsity/enc3/hoyer", "perf/images_per_s"):
        page.get_by_text(metric, exact=True).first.wait_for()
    _shot(page, "run")

    # Its artifacts: the reconstruction grid of the last epoch, shown as an image.
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("images", exact=True).first.click()
    page.get_by_text("epoch_002.png", exact=True).first.click()  # images at explicit paths
    page.wait_for_function(
        "() => [...document.querySelectorAll('img')].some("
        "i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0)"
    )
    _shot(page, "artifact")

    # The Optuna dashboard on the sweep's storage.
    page.goto(board)
    page.get_by_text("sae-sweep").first.wait_for()
    _shot(page, "dashboard")

    # The report's HTML page: its tables and every figure render.
    page.goto((store / "report" / "report.html").as_uri())
    page.locator("table").first.wait_for()
    images = page.locator("img")
    assert page.locator("table").count() >= 2 and images.count() >= 3
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    broken = page.evaluate("[...document.images].filter(i => i.naturalWidth === 0).length")
    assert broken == 0
    _shot(page, "report")

    # Ctrl-C stops the UI and both servers.
    groups = running_ui.note_groups()
    ports = [int(u.rsplit(":", 1)[1]) for u in (url, board)]
    assert running_ui.stop() == 0
    assert not any(_listening(port) for port in ports)
    assert not any(live_in_group(group) for group in groups)
    assert running_ui.lines[-1] == "stopping"
