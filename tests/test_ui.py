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
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import build_config

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


def test_ui_command__missing_stores_are_one_line_errors_naming_the_command(tmp_path):
    (tmp_path / "mlflow.yaml").write_text("tracking_uri: sqlite:///mlflow.db\n")
    done = subprocess.run(
        [sys.executable, str(UI), "--config-file", str(tmp_path / "mlflow.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
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


def test_mlflow_command__serves_the_store_and_artifact_root_of_the_settings(tmp_path):
    settings = tracking.load_settings(_write_settings(tmp_path))
    command = ui.mlflow_command(settings, "127.0.0.1", 5123)
    assert command[command.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path}/mlflow.db"
    root = command[command.index("--default-artifact-root") + 1]
    assert root == (tmp_path / "mlartifacts").as_uri()
    assert command[command.index("--host") + 1 :][:3] == ["127.0.0.1", "--port", "5123"]


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
    report.build_report(tracking.load_settings(config_file), folder=folder / "report")
    return folder


class _UI:
    """``experiments/ui.py --dashboard`` as a user starts it, on free ports; stopped by Ctrl-C."""

    def __init__(self, store: Path) -> None:
        self.mlflow_port = ui.free_port("127.0.0.1", 0)
        self.dashboard_port = ui.free_port("127.0.0.1", 0)
        self.process = subprocess.Popen(
            [
                *(sys.executable, str(UI), "--config-file", str(store / "mlflow.yaml")),
                *("--port", str(self.mlflow_port), "--dashboard"),
                *("--dashboard-port", str(self.dashboard_port)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if found := re.search(pattern, line):
                    return found
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"ui.py never printed {pattern!r}; it printed: {self.lines}")

    def interrupt(self) -> int | None:
        """Ctrl-C, as a user stops it; the exit code, or None if it had to be killed."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return None


@pytest.fixture
def running_ui(store) -> Iterator[_UI]:
    server = _UI(store)
    try:
        yield server
    finally:
        server.interrupt()
        # whatever happened, no server of ours is left listening (each runs in its own session,
        # so it is found by the port on its command line: `--port N` or `127.0.0.1 N`)
        for port, pattern in (
            (server.mlflow_port, f"--port {server.mlflow_port}"),
            (server.dashboard_port, f"127.0.0.1 {server.dashboard_port}"),
        ):
            if _listening(port):
                subprocess.run(["pkill", "-f", "--", pattern], check=False)


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
    assert url.endswith(f":{running_ui.mlflow_port}")
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
    page.get_by_text(re.compile(r"^reconstructions\+step\+2\+.*[0-9a-f]\.png$")).first.click()
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
    assert running_ui.interrupt() == 0
    assert not _listening(running_ui.mlflow_port)
    assert not _listening(running_ui.dashboard_port)
    assert "stopping" in running_ui.lines
