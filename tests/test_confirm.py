"""``--confirm K``: front trials trained again with more seeds, as child runs of their trial's
run, resumable; and every front trial compared with the baseline as n, mean ± sd and Welch."""

import json
import warnings

import pandas as pd
import pytest
from helpers_sweep import client, log_baseline_runs, sweep_base, sweep_config
from optuna.trial import create_trial

from sae import metrics as M
from sae import names, stats, sweep
from sae import splits as splits_module
from sae import train as train_module
from sae.commands.sweep import report
from sae.sweep import CONFIRM_SEEDS, run_sweep
from sae.sweep import confirm as sweep_confirm
from sae.sweep.front import spread_along
from sae.train import Callback

GOOD = (1e-2, 1e-3)
"""(lr, beta) at batch size 10 that learn on learnable_data."""


def _confirm_runs(tmp_path):
    mlflow = client(tmp_path)
    experiment = mlflow.get_experiment_by_name("sae-sweep").experiment_id
    return mlflow.search_runs([experiment], f"tags.{names.TAG_KIND} = '{names.KIND_CONFIRM}'")


def _sweep(tmp_path, log, **kwargs):
    base = sweep_base(tmp_path)
    cfg = sweep_config(trials=1, batch_sizes=(10,), **kwargs)
    if not (tmp_path / "optuna.journal").exists():
        storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
        study = sweep.open_study(storage, cfg, sweep.build_space(cfg), epochs=2)
        study.enqueue_trial({"lr": GOOD[0], "beta": GOOD[1], "batch_size": 10})
    return base, cfg, run_sweep(base, cfg, log=log.append)


def test_sweep__confirm_1_trains_two_more_seeds_under_the_trial_run_once(tmp_path, capsys):
    """The lowest-MSE front trial is trained with the first two seeds after the base seed that
    are alive at initialisation, as child runs of its trial's run; the console compares it with
    the baseline at n=3; a second identical command trains nothing."""
    log_baseline_runs(
        tmp_path,
        [
            {M.TEST_MSE: 0.05 + d, M.CODE_L0: 20.0 + d, M.PROBE_ACCURACY: 0.5 + d}
            for d in (0.0, 0.001, 0.002)
        ],
    )
    lines: list[str] = []
    base, cfg, result = _sweep(tmp_path, lines, confirm=1)
    trial = result.study.trials[int(result.best.iloc[0]["number"])]
    trial_run = trial.user_attrs[names.ATTR_RUN_ID]
    splits = splits_module.load_splits(base.data, splits_module.resolve_device("cpu"))
    seeds, _ = train_module.alive_seeds(CONFIRM_SEEDS, base.model, splits.train, start=2, skip=[1])
    runs = _confirm_runs(tmp_path)
    assert sorted(r.info.run_name for r in runs) == [
        f"trial-{trial.number:03d}-seed{s}" for s in seeds
    ]
    for run in runs:
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags[names.TAG_PARENT_RUN] == trial_run
        assert tags[names.TAG_CONFIRM_TRIAL_RUN] == trial_run
        assert tags[names.TAG_CONFIRM_TRIAL] == str(trial.number)
        assert tags[names.TAG_STUDY] == "sae-sweep"
        assert "trained again with seed" in tags[names.TAG_DESCRIPTION]
        assert int(run.data.params["train.seed"]) in seeds
        assert float(run.data.params["train.lr"]) == pytest.approx(trial.params["lr"])
    confirmed = json.loads(result.study.user_attrs[names.ATTR_CONFIRM])
    assert sorted(confirmed[str(trial.number)]) == sorted(r.info.run_id for r in runs)
    assert [line.split(": ")[0] for line in lines if line.startswith("confirm ")] == [
        f"confirm {i}/2" for i in (1, 2)
    ]
    # confirm.csv on the parent: the trial's own run and its two confirmations
    frame = result.confirmations
    assert list(frame["seed"]) == [1, *seeds] and list(frame["source"]) == [
        "trial",
        "confirm",
        "confirm",
    ]
    artifacts = {a.path for a in client(tmp_path).list_artifacts(result.parent_run_id)}
    assert "confirm.csv" in artifacts
    # the comparison: n=3 against the 3 baseline runs, Welch stated once
    (first,) = result.comparisons
    assert first.trial == trial.number and first.seeds == (1, *seeds)
    capsys.readouterr()
    report(result, cfg)
    out = capsys.readouterr().out
    assert out.count(stats.TEST_NAME) == 1
    assert f"trial {trial.number}, seeds 1, {seeds[0]}, {seeds[1]}:" in out
    mse_line = next(line for line in out.splitlines() if line.startswith("  test MSE"))
    assert "(n=3) vs" in mse_line and "(n=3):" in mse_line

    again: list[str] = []
    _sweep(tmp_path, again, confirm=1)
    assert len(_confirm_runs(tmp_path)) == 2
    assert any("0 runs to train, 2 done before" in line for line in again)


class _Boom(Callback):
    def on_epoch_end(self, epoch, step, metrics, model):
        raise RuntimeError("boom")


def test_confirm__a_failed_run_is_one_line_and_an_interrupted_one_is_trained_again(
    tmp_path, monkeypatch
):
    """A confirmation run that fails is one line and the sweep ends well (FAILED: its seed's
    outcome, not trained again); one that was interrupted (KILLED) is trained again next time."""
    real = sweep_confirm.train_run
    failing_seed = []

    def fails_for_the_second_seed(cfg, **kwargs):
        failing_seed.append(cfg.train.seed)
        callbacks = [_Boom()] if len(failing_seed) == 2 else []
        return real(cfg, callbacks=callbacks, **kwargs)

    monkeypatch.setattr(sweep_confirm, "train_run", fails_for_the_second_seed)
    lines: list[str] = []
    _, _, result = _sweep(tmp_path, lines, confirm=1)
    failed = [line for line in lines if " FAIL: " in line]
    assert failed == [
        f"confirm 2/2: trial {result.best.iloc[0]['number']} seed {failing_seed[1]} "
        "FAIL: RuntimeError: boom"
    ]
    assert client(tmp_path).get_run(result.parent_run_id).info.status == "FINISHED"
    runs = {int(r.data.params["train.seed"]): r for r in _confirm_runs(tmp_path)}
    assert runs[failing_seed[1]].info.status == "FAILED"
    client(tmp_path).set_terminated(runs[failing_seed[0]].info.run_id, "KILLED")
    monkeypatch.setattr(sweep_confirm, "train_run", real)

    again: list[str] = []
    _, _, result = _sweep(tmp_path, again, confirm=1)
    assert any("1 runs to train, 1 done before" in line for line in again)
    statuses = sorted(
        (int(r.data.params["train.seed"]), r.info.status) for r in _confirm_runs(tmp_path)
    )
    assert statuses == sorted(
        [(failing_seed[0], "KILLED"), (failing_seed[0], "FINISHED"), (failing_seed[1], "FAILED")]
    )
    assert result.comparisons[0].seeds == (1, failing_seed[0])  # n=2: FINISHED runs only


def test_spread_along__evenly_spaced_from_the_lowest_test_mse_to_the_sparsest():
    front = [create_trial(values=[0.01 * (i + 1), 0.5 - 0.1 * i]) for i in range(5)]
    for number, trial in enumerate(front):
        trial.number = number
    shuffled = front[3:] + front[:3]
    assert [t.number for t in spread_along(shuffled, 3)] == [0, 2, 4]
    assert [t.number for t in spread_along(shuffled, 2)] == [0, 4]
    assert [t.number for t in spread_along(shuffled, 1)] == [0]
    assert spread_along(shuffled, 0) == []
    assert [t.number for t in spread_along(shuffled, 9)] == [0, 1, 2, 3, 4]


def test_compare_front__one_run_is_never_better_or_worse_three_can_be():
    """Unconfirmed front trials show n=1 and get no verdict, however far from the baseline."""
    front = pd.DataFrame(
        [
            {"number": 4, M.TEST_MSE: 0.001, M.CODE_L0: 5.0, M.PROBE_ACCURACY: 0.99},
            {"number": 7, M.TEST_MSE: 0.001, M.CODE_L0: 5.0, M.PROBE_ACCURACY: 0.99},
        ]
    )
    confirmations = pd.DataFrame(
        {
            "trial": [7, 7, 7],
            "seed": [1, 4, 5],
            "status": ["FINISHED"] * 3,
            M.TEST_MSE: [0.0010, 0.0011, 0.0012],
            M.CODE_L0: [5.0, 5.5, 6.0],
            M.PROBE_ACCURACY: [0.99, 0.98, 0.985],
        }
    )
    baseline = pd.DataFrame(
        {M.TEST_MSE: [0.0050, 0.0051, 0.0049], M.CODE_L0: [30.0, 31.0, 29.0]}
    )  # older baseline runs: no probe
    seven, four = sweep_confirm.compare_front(front, confirmations, baseline)
    assert (seven.trial, seven.seeds, four.trial, four.seeds) == (7, (1, 4, 5), 4, ())
    mse, l0, probe = seven.lines()
    assert mse.startswith("test MSE 0.0011 ± 0.0001 (n=3) vs 0.005 ± 0.0001 (n=3): better (p=")
    assert "better" in l0
    assert probe == "probe accuracy 0.985 ± 0.005 (n=3) vs no value: not distinguishable " + (
        "(n=3 vs n=0: too few to test)"
    )
    assert all("(n=1) vs" in line and "too few to test" in line for line in four.lines())
    # no spread on one side (a probe at 1.0 on every seed): a verdict, and no scipy warning
    confirmations[M.PROBE_ACCURACY] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (seven, _) = sweep_confirm.compare_front(
            front, confirmations, baseline.assign(**{M.PROBE_ACCURACY: [0.9, 0.91, 0.92]})
        )
    assert seven.lines()[2].startswith("probe accuracy 1 ± 0 (n=3) vs 0.91 ± 0.01 (n=3): better")
    assert not any(" better" in line or " worse" in line for line in four.lines())
