"""`experiments/ui.py`: its checks, and what a person sees through it in a real browser.

The browser tests log a tiny baseline run and a 2-trial sweep into a temporary store, start the
UI once with the project's own command (the ``served`` fixture: add a check as one more test
taking it and ``page``, above the last test, which stops it), and drive headless Chromium
(Playwright with the system Chromium) through the printed landing links, a trial's metrics and
reconstruction image, the Optuna dashboard and the report's HTML page. Screenshots go to
reports/screenshots/ui (or $SAE_SCREENSHOT_DIR). Without Chromium they skip, except under
CI=true, where they fail.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import runpy
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import helpers_postgres
import optuna
import pytest
from helpers import build_config
from helpers_proc import ArgvWatch, Command, descendants, live_in_group, running
from helpers_sweep import empty_store
from mlflow.tracking import MlflowClient

from sae import baseline, names, report, sweep, tracking, ui
from sae import metrics as M
from sae.sweep import SweepConfig, run_sweep
from sae.tracking import views

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


def test_experiment_links__the_landing_view_else_sorted_by_the_url_and_the_latest_studies(
    tmp_path,
):
    """An experiment with its landing view links to it; one from an older store to its trained
    runs sorted through the URL; one without a trained run (benchmarks) to its runs page. Below
    the sweep's, the studies with a saved view, most recent first, STUDY_LINKS of them."""
    empty_store(tmp_path / "mlflow.db")
    settings = tracking.Settings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient(settings.tracking_uri)
    ids = {name: client.create_experiment(name) for name in ("bench", "older", "sweep")}

    def run(experiment: str, start: int, mse: float | None = None, **tags: str) -> None:
        run_id = client.create_run(ids[experiment], start_time=start, tags=tags).info.run_id
        if mse is not None:
            client.log_metric(run_id, M.TEST_MSE, mse)

    run("bench", 1)
    run("older", 1, 0.1)
    views.save_experiment_view(client, ids["sweep"])
    for i in range(ui.STUDY_LINKS + 2):  # study 6 has no saved view, 0 is the oldest
        study = f"s {i}"
        run("sweep", 1000 + 10 * i, **{names.TAG_STUDY: study})  # its parent run
        run("sweep", 1001 + 10 * i, 0.1, **{names.TAG_STUDY: study})
        if i < ui.STUDY_LINKS + 1:
            views.save_study_view(client, ids["sweep"], study)
    url = "http://127.0.0.1:5123"
    key = views.study_view_key
    studies = [
        f"    study s {i}{' ' * 16}  {views.view_url(url, ids['sweep'], key(f's {i}'))}"
        for i in range(ui.STUDY_LINKS, 0, -1)
    ]
    bench = f"{url}/#/experiments/{ids['bench']}/runs?workflowType=machine_learning"
    assert ui.experiment_links(settings, url) == [
        f"  bench                1 runs  {bench}",
        f"  older                1 runs  {views.sorted_url(url, ids['older'])}",
        f"  sweep               14 runs  {views.view_url(url, ids['sweep'], 'objectives')}",
        *studies,
        "    1 older study: in the UI's Views menu",
    ]


def test_is_loopback__only_addresses_no_other_machine_reaches():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert ui.is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "mlflow.lab", "example.com"):
        assert not ui.is_loopback(host), host


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


def _ui(config_file: Path, *flags: str, port: int = 0, **popen) -> Command:
    return Command(
        [
            *(sys.executable, str(UI), "--config-file", str(config_file), "--dashboard"),
            *("--port", str(port or ui.free_port("127.0.0.1", 0))),
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


def _small_store(folder: Path) -> Path:
    """An empty MLflow store and a journal holding one two-objective study of three trials, the
    sparsest degenerate (a dead code: non-dominated, off the sweep's front)."""
    empty_store(folder / "mlflow.db")
    storage = sweep.make_storage(str(folder / "optuna.journal"))
    study = optuna.create_study(
        study_name="sae-sweep", storage=storage, directions=["minimize", "minimize"]
    )
    for mse, active, degenerate in ((0.01, 0.5, ""), (0.02, 0.3, ""), (0.066, 0.0, "dead")):
        attrs = {names.ATTR_DEGENERATE: degenerate}
        study.add_trial(optuna.trial.create_trial(values=[mse, active], user_attrs=attrs))
    return _write_settings(folder)


def _status(url: str, method: str = "GET", host: str | None = None) -> int:
    request = urllib.request.Request(url, method=method)
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


OPEN_ENV = {
    "MLFLOW_SERVER_ALLOWED_HOSTS": "*",
    "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": "*",
    "MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE": "true",
}
"""An environment that asks MLflow's server to answer any Host and any origin."""


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Iterator[tuple[Command, str, str]]:
    """``experiments/ui.py --dashboard`` on ``_small_store``, in ``OPEN_ENV``, started once for
    the tests below (the last kills it): (the command, the MLflow UI's address, the
    dashboard's)."""
    folder = tmp_path_factory.mktemp("ui-small")
    command = _ui(_small_store(folder), env={**os.environ, **OPEN_ENV})
    try:
        command.wait_for(r"Ctrl-C stops both")
        printed = "\n".join(command.lines)
        yield (
            command,
            re.search(r"MLflow UI: (http://127\.0\.0\.1:\d+)", printed).group(1),
            re.search(r"Optuna dashboard: (http://127\.0\.0\.1:\d+)", printed).group(1),
        )
    finally:
        command.close()


def test_ui__both_servers_refuse_a_foreign_host_and_serve_their_own(small):
    """Fix: optuna-dashboard answered any Host: ``DELETE /api/studies/0`` with ``Host:
    evil.example`` deleted the study, as a page rebinding its name to 127.0.0.1 could. Now both
    servers answer 403 to a foreign Host (the MLflow UI even where the environment asks it to
    answer any), and serve 127.0.0.1 and localhost on their ports."""
    command, mlflow, board = small
    board_port, mlflow_port = board.rsplit(":", 1)[1], mlflow.rsplit(":", 1)[1]
    evil = f"evil.example:{board_port}"
    assert _status(f"{board}/api/studies", host=evil) == 403
    assert _status(f"{board}/api/studies/0", "DELETE", host=evil) == 403
    folder = Path(command.process.args[command.process.args.index("--config-file") + 1]).parent
    storage = sweep.make_storage(str(folder / "optuna.journal"))
    assert optuna.get_all_study_names(storage) == ["sae-sweep"]  # not deleted
    for name in ("127.0.0.1", "localhost"):
        assert _status(f"{board}/api/studies", host=f"{name}:{board_port}") == 200
    search = f"{mlflow}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _status(search, host=f"evil.example:{mlflow_port}") == 403
    assert _status(search, "POST", host=f"evil.example:{mlflow_port}") == 403
    assert _status(search, host=f"localhost:{mlflow_port}") == 200


def test_ui__the_dashboard_it_serves_shows_the_sweeps_front(small):
    """Regression: the dashboard ui.py started was optuna-dashboard's own app, whose Best Trials
    counted a degenerate trial (here trial 2, the sparsest). The one it serves now lists the
    sweep's front (``front.best_trials``) and draws the degenerate trial infeasible."""
    _, _, board = small
    with urllib.request.urlopen(f"{board}/api/studies/0", timeout=30) as response:
        shown = json.loads(response.read())
    assert sorted(t["number"] for t in shown["best_trials"]) == [0, 1]
    infeasible = {t["number"] for t in shown["trials"] if any(c > 0 for c in t["constraints"])}
    assert infeasible == {2}


def test_ui__kill_9_of_it_ends_both_servers_and_their_workers(small):
    """Fix: ``kill -9`` of experiments/ui.py, which gives it no chance to stop its servers, left
    both running, orphaned. Now every process it started, and theirs (uvicorn's), ends soon
    after, and both ports close."""
    command, mlflow, board = small
    tree = descendants(command.process.pid)
    assert len(running(tree)) >= 3  # mlflow ui and its uvicorn, the dashboard (and guards)
    ports = [int(url.rsplit(":", 1)[1]) for url in (mlflow, board)]
    os.kill(command.process.pid, signal.SIGKILL)
    command.process.wait()
    deadline = time.monotonic() + 60
    while running(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running(tree) == []
    assert not any(_listening(port) for port in ports)


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
def mlflow_port() -> int:
    """The port the module's MLflow UI will be served on, chosen before the sweep runs so that
    the trials' links in optuna-dashboard point at it (a user's point at the default port)."""
    return ui.free_port("127.0.0.1", 0)


@pytest.fixture(scope="module")
def store(tmp_path_factory, mlflow_port) -> Path:
    """A temporary store holding one baseline run, a 2-trial sweep with its models (the chosen
    one registered), and the report on both. The tiny noise images make every run degenerate;
    here they count as not, so that the sweep has a front and a model to register."""
    folder = tmp_path_factory.mktemp("ui-store")
    config_file = _write_settings(folder)
    cfg = build_config(folder, track=True, epochs=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(M, "FVU_DEGENERATE", math.inf)
        patch.setattr(views, "DEFAULT_UI_URL", f"http://127.0.0.1:{mlflow_port}")
        baseline.run_baseline(cfg, seeds=[1], betas={"script": 1e-4})
        sweep = SweepConfig(trials=2, batch_sizes=(50, 100), workers=1, confirm=0)
        run_sweep(cfg, sweep, log=lambda _m: None)
    report.build_report(tracking.load_settings(config_file), name="report", output_dir=folder)
    return folder


@dataclass
class Served:
    """``experiments/ui.py --dashboard`` running on the module's store, and what it printed."""

    command: Command
    mlflow: str
    """The MLflow UI's address."""
    board: str
    """optuna-dashboard's address."""
    links: dict[str, str]
    """Each experiment's printed link, by name."""
    studies: dict[str, str]
    """Each study's printed link, by name."""


@pytest.fixture(scope="module")
def served(store, mlflow_port) -> Iterator[Served]:
    """``experiments/ui.py --dashboard`` as a user starts it, on free ports, once for every check
    of the module; whatever happens, none of its servers left running (found by their process
    groups). ``test_ui__ctrl_c_stops_the_ui_and_both_servers``, the module's last, stops it."""
    command = _ui(store / "mlflow.yaml", port=mlflow_port)
    try:
        command.wait_for(r"Ctrl-C stops both")
        printed = "\n".join(command.lines)
        yield Served(
            command,
            mlflow=re.search(r"MLflow UI: (http://127\.0\.0\.1:\d+)", printed).group(1),
            board=re.search(r"Optuna dashboard: (http://127\.0\.0\.1:\d+)", printed).group(1),
            links=dict(re.findall(r"^  (\S+) +\d+\+? runs  (\S+)$", printed, re.M)),
            studies=dict(re.findall(r"^    study (.+?) +(http\S+)$", printed, re.M)),
        )
    finally:
        command.close()


@pytest.fixture(scope="module")
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


@pytest.fixture
def page(browser):
    """A new browser page, as a new user's: nothing remembered from an earlier check."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        yield page
    finally:
        context.close()


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def _close_assistant(page) -> None:
    """Close the assistant panel a new browser shows (it remembers): room for the runs table."""
    page.get_by_role("button", name="Close").click()
    page.get_by_role("button", name="Close").wait_for(state="detached")


def _grid(page, run_name: str) -> tuple[list[str], list[str], list[float]]:
    """The runs table once ``run_name`` shows: its data columns (MLflow's column ids, in the
    order shown), and its run names and test MSEs from the top row down."""
    page.get_by_text(run_name, exact=True).first.wait_for()
    last = views.OBJECTIVE_COLUMNS[-1]  # AG Grid renders columns only in view, in any DOM order
    page.locator(f"[role=columnheader][col-id='{last}']").wait_for(timeout=10_000)
    headers = page.evaluate(
        "() => [...document.querySelectorAll('[role=columnheader][col-id][aria-colindex]')]"
        ".map(c => [Number(c.getAttribute('aria-colindex')), c.getAttribute('col-id')])"
    )
    columns = [c for _, c in sorted(headers) if "`" in c]
    cells = page.evaluate(
        "() => [...document.querySelectorAll('[role=gridcell][col-id]')].map(c => "
        "[Number(c.closest('[role=row]').getAttribute('row-index')), c.getAttribute('col-id'),"
        " c.innerText])"
    )
    rows: dict[int, dict[str, str]] = {}
    for row, column, text in cells:
        rows.setdefault(row, {})[column] = text
    ordered = [rows[i] for i in sorted(rows)]
    names_ = [r["attributes.`Run Name`"].splitlines()[-1] for r in ordered]
    return columns, names_, [float(r[views.ORDER_BY]) for r in ordered]


def _trained_runs(store: Path, experiment: str, study: str | None = None) -> list[str]:
    """The names of the experiment's runs that have a test MSE, best first, from the store."""
    settings = tracking.load_settings(store / "mlflow.yaml")
    client = tracking.client(settings)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    search = views.study_filter(study) if study else views.TRAINED_RUNS
    runs = client.search_runs([experiment_id], search, order_by=[f"{views.ORDER_BY} ASC"])
    return [r.info.run_name for r in runs]


def test_landing_links__objective_columns_and_trained_runs_best_test_mse_first(store, served, page):
    """Each printed link opens its saved view: the objective columns, first and in order, instead
    of the UI's Source, Models and Dataset; the trials listed flat (none hidden under a parent
    run) and sorted by test MSE, best first; the view named in the UI's Views menu."""
    assert {"sae-baseline", "sae-sweep"} <= set(served.links)
    assert list(served.studies) == ["sae-sweep"]
    expected = {
        served.links["sae-sweep"]: _trained_runs(store, "sae-sweep"),
        served.studies["sae-sweep"]: _trained_runs(store, "sae-sweep", "sae-sweep"),
        served.links["sae-baseline"]: _trained_runs(store, "sae-baseline"),
    }
    assert len(expected[served.links["sae-sweep"]]) == 2  # the trials, not the parent run
    for link, runs in expected.items():
        assert views.SHARE_KEY_PARAM in link
        page.goto(link)
        if link == served.links["sae-sweep"]:  # the first
            page.get_by_text(runs[-1], exact=True).first.wait_for()
            _close_assistant(page)
        columns, shown, mse = _grid(page, runs[-1])
        data = [c for c in columns if not c.startswith("attributes.")]
        assert data[: len(views.OBJECTIVE_COLUMNS)] == list(views.OBJECTIVE_COLUMNS)
        assert "attributes.`Run Name`" in columns  # the UI's own column ids, as read here
        assert not {"attributes.`Source`", "attributes.`Models`", "attributes.`Dataset`"} & set(
            columns
        )
        assert shown == runs
        assert mse == sorted(mse)
        page.get_by_text("best test MSE first").first.wait_for()  # the Views menu's title
        if link == served.links["sae-sweep"]:
            _shot(page, "experiment")


def test_landing_link__its_charts_open_on_l0_against_test_mse(served, page):
    page.goto(served.links["sae-sweep"])
    page.get_by_text("trial-000", exact=True).first.wait_for()
    _close_assistant(page)
    page.locator("label", has=page.locator("input[value=CHART]")).click()  # the chart view
    page.get_by_text("Objectives", exact=True).first.wait_for()  # the first section
    page.get_by_text(f"{M.CODE_L0} vs. {M.TEST_MSE}", exact=True).first.wait_for()  # its chart
    _shot(page, "charts")


def test_ui__says_where_the_dashboard_links_point_when_not_on_the_default_port(served):
    """The dashboard's trial links assume the UI's default address; on another port, one line
    says so and how to free the port."""
    assert not served.mlflow.endswith(f":{ui.MLFLOW_PORT}")
    note = [line for line in served.command.lines if line.startswith("note: ")]
    assert note == [
        f"note: the dashboard's trial links point at {views.DEFAULT_UI_URL}, the default port, "
        f"not this UI: free port {ui.MLFLOW_PORT} (`lsof -i :{ui.MLFLOW_PORT}` names what holds "
        "it) and start this again without --port to follow them"
    ]


def test_ui__runs_metrics_images_dashboard_and_report_in_a_real_browser(store, served, page):
    # A trial's page keeps the model-training side only once the user chose it: the links'
    # workflowType opens their page on it, but the UI remembers only a click on its toggle.
    page.goto(served.mlflow)
    page.get_by_text("Model training", exact=True).first.click()

    # The baseline run, listed by its readable name.
    page.goto(served.links["sae-baseline"])
    page.get_by_text("baseline-beta0.0001-seed1").first.wait_for()
    _close_assistant(page)

    # A trial, from the sweep's landing view: its metrics, grouped by namespace, and its
    # description.
    page.goto(served.links["sae-sweep"])
    page.get_by_text("trial-000", exact=True).first.click()
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
    page.goto(served.board)
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


def _run_page(served: Served, page, store: Path, run_name: str) -> str:
    """Open ``run_name``'s page of the sweep on the model-training side; returns its run id."""
    client = tracking.client(tracking.load_settings(store / "mlflow.yaml"))
    experiment = client.get_experiment_by_name("sae-sweep").experiment_id
    (run,) = client.search_runs([experiment], f"attributes.run_name = '{run_name}'")
    page.goto(served.mlflow)
    page.get_by_text("Model training", exact=True).first.click()
    page.goto(views.run_url(served.mlflow, experiment, run.info.run_id))
    return run.info.run_id


def test_run_page__the_system_metrics_tab_charts_the_machine_during_the_run(store, served, page):
    """MLflow's system metrics (CPU, memory, disk, network) on every run: the tab the issue found
    empty. The tiny trial takes a second or two, under the 5 s sampling interval."""
    _run_page(served, page, store, "trial-001")
    page.get_by_text("Trial 1 of study").first.wait_for()
    page.get_by_role("tab", name="System metrics").click()
    # the first charts of the tab (the others render as they scroll into view)
    for chart in ("cpu_utilization_percentage", "disk_usage_percentage"):
        page.get_by_text(chart, exact=True).first.wait_for()
    _shot(page, "system_metrics")


def test_registry__the_studys_chosen_model_is_a_version_under_the_studys_alias(store, served, page):
    """The sweep registered its chosen trial's model: version 1 of the experiment's registered
    model, aliased to the study, its description naming the trial."""
    settings = tracking.load_settings(store / "mlflow.yaml")
    client = tracking.client(settings)
    (version,) = client.search_model_versions("name = 'sae-sweep'")
    assert str(client.get_model_version_by_alias("sae-sweep", "study-sae-sweep").version) == "1"
    trial = version.tags[names.TAG_TRIAL_NUMBER]
    page.goto(f"{served.mlflow}/#/models/sae-sweep")
    page.get_by_text("Version 1", exact=True).first.wait_for()
    page.get_by_text("study-sae-sweep").first.wait_for()  # the alias
    page.goto(f"{served.mlflow}/#/models/sae-sweep/versions/1")
    page.get_by_text(f"trial {trial}").first.wait_for()  # its description names the trial
    _shot(page, "model")


def test_dashboard__objective_names_and_each_trials_note_links_to_its_run(store, served, page):
    """optuna-dashboard names the objectives as the sweep does (not "Objective 0") and each
    trial's note holds a link that opens the trial's run in the MLflow UI."""
    page.goto(f"{served.board}/dashboard/studies/0")
    page.get_by_text("test MSE", exact=True).first.wait_for()
    page.get_by_text("code active fraction", exact=True).first.wait_for()
    assert page.get_by_text("Objective 0").count() == 0
    page.goto(f"{served.board}/dashboard/studies/0/trials")
    link = page.get_by_role("link", name="trial-000").first
    href = link.get_attribute("href")
    run_id = _run_page(served, page, store, "trial-000")
    assert href == page.url and href.endswith(run_id)  # the note's link is the run's page
    page.goto(f"{served.board}/dashboard/studies/0/trials")
    _shot(page, "dashboard_trial")
    page.goto(href)
    page.get_by_text("Trial 0 of study").first.wait_for()


# Checks on the served store go above: this one stops it.


def test_ui__ctrl_c_stops_the_ui_and_both_servers(served):
    groups = served.command.note_groups()
    ports = [int(u.rsplit(":", 1)[1]) for u in (served.mlflow, served.board)]
    assert served.command.stop() == 0
    assert not any(_listening(port) for port in ports)
    assert not any(live_in_group(group) for group in groups)
    assert served.command.lines[-1] == "stopping"
