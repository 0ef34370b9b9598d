"""What the sweep puts on its front: degenerate trials kept off it in every mode, a network dead
at initialisation failed before its first step, the probe as a third objective, the console
table, and every view of the study (console, MLflow, report, optuna-dashboard, registry) showing
the same front."""

import dataclasses
import json
import math

import optuna
import optuna_dashboard
import pytest
from helpers_sweep import (
    client,
    dashboard_study,
    degenerate_front_stores,
    sweep_base,
    sweep_config,
)
from optuna.trial import TrialState, create_trial

from sae import metrics as M
from sae import names, sweep, tracking
from sae import splits as splits_module
from sae import train as train_module
from sae.commands.sweep import report
from sae.report import tables as report_tables
from sae.report.frames import Selection, load_frames
from sae.sweep import dashboard, front, run_sweep
from sae.sweep.summary import log_summary, summarize
from sae.tracking import views

GOOD, DEAD = (1e-2, 1e-3), (1e-2, 1e-1)
"""(lr, beta) at batch size 10 on learnable_data: one that learns, one whose enc2 dies (its code
is then all but silent: the sparsest trial there is, and a constant reconstruction)."""


def _enqueue(tmp_path, cfg, *params):
    storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
    study = sweep.open_study(storage, cfg, sweep.build_space(cfg), epochs=2)
    for lr, beta in params:
        study.enqueue_trial({"lr": lr, "beta": beta, "batch_size": 10})


def test_sweep__a_degenerate_trial_is_kept_off_the_front_and_named_on_the_console(tmp_path, capsys):
    """Regression: a dead model (a constant reconstruction) sat on the Pareto front as its
    sparsest point, and the console praised it."""
    cfg = sweep_config(trials=2, beta_range=(1e-6, 1.0), batch_sizes=(10,))
    _enqueue(tmp_path, cfg, GOOD, DEAD)
    result = run_sweep(sweep_base(tmp_path), cfg, log=lambda _m: None)
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    good, dead = trials
    reason = dead.user_attrs[names.ATTR_DEGENERATE]
    assert reason.startswith("layer enc") and "is dead" in reason
    assert good.user_attrs[names.ATTR_DEGENERATE] == ""
    assert [t.constraints for t in trials] == [{"degenerate": -1.0}, {"degenerate": 1.0}]
    assert dead.values[1] < good.values[1]  # by its values alone it is on the front
    assert list(result.best["number"]) == [0]
    assert [t.number for t in result.study.best_trials] == [0]
    for t in trials:  # the new user attributes
        assert t.user_attrs[names.ATTR_L0] == pytest.approx(64 * t.values[1])
        assert 0 <= t.user_attrs[names.ATTR_PROBE] <= 1
    mlflow = client(tmp_path)
    run = mlflow.get_run(dead.user_attrs[names.ATTR_RUN_ID])
    assert run.data.tags[names.TAG_DEGENERATE] == "true"
    assert run.data.tags[names.TAG_DEGENERATE_REASON] == reason
    assert run.data.tags[names.TAG_DESCRIPTION].startswith("**Degenerate:**")
    # optuna-dashboard: the dead trial's note says so first, and it is no Best Trial there
    note = optuna_dashboard.get_note(optuna.Trial(result.study, dead._trial_id))
    assert note.startswith(f"**Degenerate:** {reason}. Kept off the front") and "trial-001" in note
    served = dashboard_study(dashboard.app(result.study._storage), result.study._study_id)
    assert [t["number"] for t in served["best_trials"]] == [0]
    assert run.data.tags[names.TAG_FRONT] == "false"
    assert mlflow.get_run(good.user_attrs[names.ATTR_RUN_ID]).data.tags[names.TAG_FRONT] == "true"
    parent = mlflow.get_run(result.parent_run_id)
    assert parent.data.metrics["trials/degenerate"] == 1
    top = result.best.iloc[0]
    assert parent.data.metrics["best/code_l0"] == pytest.approx(top[M.CODE_L0])
    assert parent.data.metrics["best/probe_accuracy"] == pytest.approx(top[M.PROBE_ACCURACY])
    assert (
        "degenerate trials (a collapsed or dead model) are kept off the front"
        in (parent.data.tags[names.TAG_DESCRIPTION])
    )
    assert list(result.trials["degenerate"]) == ["", reason]

    capsys.readouterr()
    report(result, cfg)
    out = capsys.readouterr().out.splitlines()
    header = next(line for line in out if line.startswith("|") and "trial" in line)
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns == [
        "trial",
        "beta",
        "lr",
        "batch size",
        "test MSE",
        "code L0",
        "active fraction",
        "probe accuracy",
    ]
    assert f"trial 1 degenerate, kept off the front: {reason}" in out
    rows = [line.split("|")[1].strip() for line in out if line.startswith("|")]
    assert rows[0] == "trial" and rows[2:] == ["0"]  # header, rule, the one front trial
    assert any(line.startswith("no tracked baseline runs to compare with") for line in out)


def test_best_trials__never_a_degenerate_trial_in_either_mode_nor_in_an_older_study():
    """A trial of an older study carries neither the degenerate mark nor a constraint, so Optuna
    counts it feasible: it is judged here (its run's metrics, else a zero active fraction), and
    the trials it dominates come back onto the front."""
    study = optuna.create_study(directions=["minimize", "minimize"])
    ok = {names.ATTR_DEGENERATE: ""}
    study.add_trials(
        [
            create_trial(values=[0.01, 0.5], user_attrs=ok, constraints={"degenerate": -1}),
            create_trial(
                values=[0.02, 0.0],
                user_attrs={names.ATTR_DEGENERATE: "layer enc3 is dead: ..."},
                constraints={"degenerate": 1},
            ),
            # older: no mark, no constraint; its code is dead, and it dominates the next one
            create_trial(values=[0.02, 0.0], user_attrs={names.ATTR_ACTIVE: 0.0}),
            create_trial(values=[0.03, 0.3], user_attrs={names.ATTR_ACTIVE: 0.3}),
            # older, with a run whose metrics show a dead layer
            create_trial(
                values=[0.005, 0.9], user_attrs={names.ATTR_ACTIVE: 0.9, names.ATTR_RUN_ID: "r"}
            ),
        ]
    )
    assert {t.number for t in study.best_trials} == {0, 2, 4}  # Optuna's own front
    assert [t.number for t in sweep.best_trials(study)] == [4, 0, 3]  # without reading runs

    class Runs:  # an MLflow client that knows one run
        def get_run(self, run_id):
            metrics = {M.sparsity_key("enc2", M.DEAD_FRAC): 1.0, M.CODE_ACTIVE_FRAC: 0.9}
            return type("Run", (), {"data": type("Data", (), {"metrics": metrics})})

    reasons = sweep.degenerate_reasons(study, Runs())
    assert reasons[4].startswith("layer enc2 is dead") and reasons[2] and not reasons[3]
    assert [t.number for t in sweep.best_trials(study, reasons)] == [0, 3]

    constrained = optuna.create_study()
    constrained.add_trials(
        [
            create_trial(value=0.005, user_attrs=ok, constraints={"code_active_frac": 0.2}),
            create_trial(
                value=0.01,
                user_attrs={names.ATTR_DEGENERATE: "the code is constant: ..."},
                constraints={"code_active_frac": -0.2, "degenerate": 1},
            ),
            create_trial(value=0.02, user_attrs=ok, constraints={"code_active_frac": -0.1}),
        ]
    )
    assert [t.number for t in sweep.best_trials(constrained)] == [2]


def test_sweep__a_network_dead_at_initialisation_fails_its_trial_before_any_step(tmp_path, capsys):
    """A seed whose fresh network is zero on every training image can never learn: its trial
    ends FAIL with that reason (its parameters' outcome, not retried) without one optimiser step,
    and its run is FAILED and tagged degenerate."""
    base = sweep_base(tmp_path, epochs=50)
    splits = splits_module.load_splits(base.data, splits_module.resolve_device("cpu"))
    seed = next(s for s in range(1, 50) if train_module.dead_at_init(base.model, s, splits.train))
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, seed=seed))
    result = run_sweep(base, sweep_config(trials=1, confirm=1), log=lambda _m: None)
    (trial,) = result.study.get_trials()
    assert trial.state == TrialState.FAIL
    reason = trial.user_attrs[names.ATTR_FAIL_REASON]
    assert reason.startswith("dead at initialisation: ")
    assert trial.user_attrs[names.ATTR_DEGENERATE] == reason
    assert trial.user_attrs[names.ATTR_FAILED] is True and sweep.counts_as_finished(trial)
    run = client(tmp_path).get_run(trial.user_attrs[names.ATTR_RUN_ID])
    assert run.info.status == "FAILED"
    assert run.data.tags[names.TAG_TRIAL_STATE] == "FAIL"
    assert run.data.tags[names.TAG_DEGENERATE] == "true"
    assert run.data.tags[names.TAG_DEGENERATE_REASON].startswith("dead at initialisation: ")
    assert not {M.TRAIN_LOSS, M.EPOCH_LOSS, M.TEST_MSE} & set(run.data.metrics)  # no step
    assert (trial.datetime_complete - trial.datetime_start).total_seconds() < 30  # not 50 epochs
    assert f"trial 0 FAIL: {reason}" in capsys.readouterr().out
    assert result.best.empty and result.comparisons == []


def test_sweep__pareto_probe_is_a_study_with_three_directions(tmp_path):
    cfg = sweep_config(objective="pareto-probe", trials=1, batch_sizes=(10,))
    _enqueue(tmp_path, cfg, GOOD)
    result = run_sweep(sweep_base(tmp_path), cfg, log=lambda _m: None)
    directions = optuna.study.StudyDirection
    assert result.study.directions == [
        directions.MINIMIZE,
        directions.MINIMIZE,
        directions.MAXIMIZE,
    ]
    for t in result.study.get_trials(states=(TrialState.COMPLETE,)):
        assert t.values[2] == t.user_attrs[names.ATTR_PROBE]
        assert t.values[:2] == [t.user_attrs[names.ATTR_TEST_MSE], t.user_attrs[names.ATTR_ACTIVE]]
    assert result.study.user_attrs[names.STUDY_OBJECTIVE] == "pareto-probe"
    mlflow = client(tmp_path)
    assert (
        "maximise the linear probe's accuracy"
        in (mlflow.get_run(result.parent_run_id).data.tags[names.TAG_DESCRIPTION])
    )
    with pytest.raises(ValueError, match="exists with objective 'pareto-probe', not 'pareto'"):
        run_sweep(sweep_base(tmp_path), sweep_config(trials=3), log=lambda _m: None)
    no_probe = sweep_base(tmp_path, probe=False)
    with pytest.raises(ValueError, match="pareto-probe maximises the probe's accuracy"):
        run_sweep(no_probe, sweep_config(objective="pareto-probe"), log=lambda _m: None)
    assert not math.isnan(result.best[M.PROBE_ACCURACY].iloc[0])


@pytest.fixture(scope="module", params=["pareto", "pareto-probe", "constrained"])
def summarized(request, tmp_path_factory):
    """A finished study with a degenerate trial that would be on its front if its constraint
    were ignored (``helpers_sweep.FRONT_POINTS``), summarized as the sweep ends: (the front by
    its one definition, the summary, the sweep config, the settings, the study)."""
    folder = tmp_path_factory.mktemp(request.param)
    settings, study, parent, experiment_id = degenerate_front_stores(folder, request.param)
    cfg = sweep_config(objective=request.param, study_name="s")
    result = summarize(study, parent, settings, "optuna.journal", 1.0, "sae-sweep", experiment_id)
    log_summary(tracking.client(settings), result, cfg)
    front = [t.number for t in sweep.best_trials(study)]
    assert (
        front
        == {"pareto": [0, 1, 3], "pareto-probe": [0, 1, 5, 3], "constrained": [1]}[request.param]
    )
    return front, result, cfg, settings, study


def _console(result, cfg, settings, study, capsys) -> list[int]:
    capsys.readouterr()
    report(result, cfg)
    out = capsys.readouterr().out.splitlines()
    for number in (2, 4):  # the degenerate trials: named apart
        assert any(line.startswith(f"trial {number} degenerate, kept") for line in out)
    rows = [line.split("|")[1].strip() for line in out if line.startswith("|")]
    return [int(n) for n in rows[2:]]  # after the header and its rule


def _mlflow_tags(result, cfg, settings, study, capsys) -> list[int]:
    mlflow = tracking.client(settings)
    runs = mlflow.search_runs([result.experiment_id], views.study_filter("s"))
    tagged = {r.data.tags[names.TAG_TRIAL_NUMBER]: r.data.tags[names.TAG_FRONT] for r in runs}
    assert set(tagged) == {"0", "1", "2", "3", "4", "5"}
    assert tagged["2"] == tagged["4"] == "false"
    return sorted(int(n) for n, on in tagged.items() if on == "true")


def _mlflow_front_view(result, cfg, settings, study, capsys) -> list[int]:
    """The runs the study's front view in the MLflow UI lists, in its order."""
    mlflow = tracking.client(settings)
    key = views.front_view_key("s")
    assert key in views.saved_views(mlflow.get_experiment(result.experiment_id))
    state = json.loads(
        json.loads(mlflow.get_experiment(result.experiment_id).tags[views.SHARED_VIEW_TAG + key])[
            "state"
        ]
    )
    order = [f"{state['orderByKey']} {'ASC' if state['orderByAsc'] else 'DESC'}"]
    runs = mlflow.search_runs([result.experiment_id], state["searchFilter"], order_by=order)
    return [int(r.data.tags[names.TAG_TRIAL_NUMBER]) for r in runs]


def _report(result, cfg, settings, study, capsys) -> list[int]:
    frames = load_frames(settings, Selection(study="s"))
    assert set(report_tables.degenerate_trials(frames.trials)["trial_number"]) == {2, 4}
    return [int(n) for n in report_tables.pareto_front(frames.trials)["trial_number"]]


def _dashboard(result, cfg, settings, study, capsys) -> list[int]:
    served = dashboard_study(dashboard.app(study._storage), study._study_id)
    infeasible = {t["number"] for t in served["trials"] if any(c > 0 for c in t["constraints"])}
    assert {2, 4} <= infeasible
    shown = {t["number"]: t for t in served["best_trials"]}
    return sorted(shown, key=lambda n: shown[n]["values"][0])


def _registry(result, cfg, settings, study, capsys) -> list[int]:
    """The registry registers the first of ``result.best``: the front's lowest test MSE."""
    return [int(n) for n in result.best["number"]]


@pytest.mark.parametrize(
    "view", [_console, _mlflow_tags, _mlflow_front_view, _report, _dashboard, _registry]
)
def test_every_view__shows_the_one_front_and_no_degenerate_trial_on_it(summarized, view, capsys):
    """Regression: optuna-dashboard listed a degenerate trial (a dead code, as bad as the mean
    image) among its Best Trials, and the report judged its own two-objective front whatever
    the study's objective (the constrained study's best feasible trial there beside two others).
    Every view of the study now shows ``front.front_of``'s trials: the console, the runs' front
    tags, the study's front view in the MLflow UI, the report, optuna-dashboard (served through
    ``sweep.dashboard``) and the registry's choice."""
    front, result, cfg, settings, study = summarized
    shown = view(result, cfg, settings, study, capsys)
    by_mse = sorted(front, key=lambda n: study.trials[n].values[0])
    assert shown == (by_mse if view is not _mlflow_tags else sorted(front))


def test_judged__the_pareto_plot_draws_a_degenerate_trial_of_an_older_study_infeasible():
    """Regression: the parent run's ``plots/pareto_front.png`` drew a degenerate trial of an
    older study (no constraint) on the front it dominated; the plotted copy makes it infeasible,
    as a new study's degenerate trial is, and leaves the study itself as it was."""
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.add_trials(
        [
            create_trial(values=[0.01, 0.5], user_attrs={names.ATTR_DEGENERATE: ""}),
            create_trial(values=[0.06, 0.0], user_attrs={names.ATTR_ACTIVE: 0.0}),  # older, dead
            create_trial(values=[0.07, 0.1], user_attrs={names.ATTR_DEGENERATE: ""}),
        ]
    )
    assert [t.number for t in study.best_trials] == [0, 1]
    copy = front.judged(study, sweep.degenerate_reasons(study))
    assert [t.number for t in copy.best_trials] == [0, 2]
    assert [t.constraints for t in copy.trials] == [{}, {names.ATTR_DEGENERATE: 1.0}, {}]
    assert [t.constraints for t in study.trials] == [{}, {}, {}]
