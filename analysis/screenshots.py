"""Take the screenshots of docs/browsing.md: the MLflow UI and optuna-dashboard on real runs.

    python analysis/screenshots.py --config-file demo/mlflow.yaml   # after `make demo --no-ui`

It starts `experiments/ui.py --dashboard` on the stores the settings file names, opens the links it
prints in headless Chromium (Playwright with the system `chromium`), saves one PNG per view in
--output-dir (docs/screenshots) and stops the UI. The browser test (tests/test_ui.py) checks the
same views on a tiny synthetic store; this script only photographs a real one.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from sae import tracking
from sae.paths import owned
from sae.tracking import views

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1400, "height": 900}


def start_ui(config_file: Path) -> tuple[subprocess.Popen[str], str]:
    """``experiments/ui.py --dashboard`` and everything it printed once both servers answer."""
    ui = subprocess.Popen(
        [sys.executable, str(ROOT / "experiments" / "ui.py"), "--config-file", str(config_file)]
        + ["--dashboard"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    printed = []
    deadline = time.monotonic() + 120
    for line in ui.stdout:
        printed.append(line.rstrip())
        if "Ctrl-C stops" in line or time.monotonic() > deadline:
            break
    text = "\n".join(printed)
    if "Ctrl-C stops" not in text:
        ui.kill()
        raise SystemExit(f"error: the UI did not start: {printed[-1] if printed else 'no output'}")
    return ui, text


def shoot(config_file: Path, output: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    settings = tracking.load_settings(config_file)
    client = tracking.client(settings)
    sweep = client.get_experiment_by_name(settings.experiment("sweep"))
    trained = sweep and client.search_runs(
        [sweep.experiment_id], views.TRAINED_RUNS, order_by=[f"{views.ORDER_BY} ASC"]
    )
    if not trained:  # a selection that matches nothing: nothing to photograph, nothing written
        raise SystemExit(
            f"error: no trained run in the experiment {settings.experiment('sweep')!r} of "
            f"{config_file}: run `make demo` first"
        )
    best = trained[0]
    ui, printed = start_ui(config_file)
    mlflow = re.search(r"MLflow UI: (http://\S+)", printed).group(1)
    board = re.search(r"Optuna dashboard: (http://\S+)", printed).group(1)
    study_link = re.search(r"^    study .+? +(http\S+)$", printed, re.M).group(1)
    owned(output).mkdir(parents=True, exist_ok=True)
    saved = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.set_default_timeout(60_000)

            def save(name: str) -> None:
                page.wait_for_timeout(1500)  # charts finish drawing
                path = owned(output, f"{name}.png")  # never through a symbolic link
                page.screenshot(path=str(path))
                saved.append(path)

            page.goto(mlflow)
            page.get_by_text("Model training", exact=True).first.click()
            page.goto(study_link)
            page.get_by_text(best.info.run_name, exact=True).first.wait_for()
            close = page.get_by_role("button", name="Close")
            if close.count():
                close.first.click()
            save("experiment")
            page.locator("label", has=page.locator("input[value=CHART]")).click()
            page.get_by_text("Objectives", exact=True).first.wait_for()
            save("charts")
            page.goto(views.run_url(mlflow, sweep.experiment_id, best.info.run_id))
            page.get_by_text("of study").first.wait_for()
            save("run")
            page.get_by_role("tab", name="System metrics").click()
            page.get_by_text("cpu_utilization_percentage", exact=True).first.wait_for()
            save("system_metrics")
            name = settings.experiment("sweep")
            page.goto(f"{mlflow}/#/models/{name}")
            page.get_by_text("Version 1", exact=True).first.wait_for()
            save("model")
            page.goto(f"{board}/dashboard/studies/0")
            page.get_by_text("test MSE", exact=True).first.wait_for()
            save("dashboard")
            browser.close()
    finally:
        ui.send_signal(signal.SIGINT)
        ui.wait(30)
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", type=Path, default=ROOT / "demo" / "mlflow.yaml")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    if not args.config_file.is_file():
        parser.error(f"no settings file {args.config_file}: run `make demo` first")
    try:
        owned(args.output_dir)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    for path in shoot(args.config_file, args.output_dir, args.chromium):
        print(path)


if __name__ == "__main__":
    main()
