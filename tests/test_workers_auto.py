"""``--workers auto``, the default: the worker processes and torch threads it chooses for the
machine (``sae.sweep.workers.plan_workers``), their overrides, the one line that says so; and the
confirmation runs shared among the worker processes, each trained once."""

import json
import os

import pytest
from helpers_sweep import client, sweep_base, sweep_config

from sae import names, sweep
from sae.cli import ArgumentParser
from sae.sweep import SweepConfig, run_sweep
from sae.sweep import run as sweep_run
from sae.sweep.recovery import worker_id
from sae.sweep.workers import WORKER_MEMORY, plan_workers, usable_cores

PLENTY = 64 * WORKER_MEMORY
OVERRIDES = "--workers N or --threads N overrides"


def _plan(
    workers="auto", threads=None, *, cores, runs=30, device="cpu", population=None, memory=PLENTY
):
    return plan_workers(
        workers,
        threads,
        runs=runs,
        cores=cores,
        device=device,
        population=population,
        memory=memory,
    )


@pytest.mark.parametrize("cores", [1, 2, 8])
def test_plan_workers__auto_on_a_cpu_one_worker_per_usable_core_one_thread_each(cores):
    plan = _plan(cores=cores)
    assert (plan.workers, plan.threads) == (cores, 1)
    shape = f"{cores} worker process{'es' if cores > 1 else ''} x 1 torch thread"
    core = f"{cores} usable core{'s' if cores > 1 else ''}"
    assert plan.line == f"workers: auto chose {shape} ({core}, CPU); {OVERRIDES}"


def test_plan_workers__auto_never_more_workers_than_runs_or_memory_the_cores_left_shared():
    three = _plan(cores=8, runs=3)
    assert (three.workers, three.threads) == (3, 2)
    assert "(8 usable cores, CPU; 3 runs to train)" in three.line
    tight = _plan(cores=8, memory=2 * WORKER_MEMORY + WORKER_MEMORY // 2)
    assert (tight.workers, tight.threads) == (2, 4)
    assert "memory for 2" in tight.line
    assert _plan(cores=8, memory=0).workers == 1  # never none


def test_plan_workers__auto_with_cuda_or_a_population_is_one_worker_as_before():
    cuda = _plan(cores=8, device="cuda")
    assert (cuda.workers, cuda.threads) == (1, None)
    assert cuda.line == (
        f"workers: auto chose 1 worker process (CUDA: one process drives the GPU); {OVERRIDES}"
    )
    population = _plan(cores=8, population=4)
    assert (population.workers, population.threads) == (1, None)
    assert "(--population 4)" in population.line
    assert _plan(cores=8, population=1).workers == 8  # one at a time: as unset


def test_plan_workers__threads_n_sets_the_threads_and_the_workers_follow_the_cores():
    """``--threads 2`` alone on 2 cores gives 1 worker; on 8 cores, 4."""
    two = _plan(threads=2, cores=2)
    assert (two.workers, two.threads) == (1, 2)
    assert two.line == (
        "workers: auto chose 1 worker process x 2 torch threads (2 usable cores, CPU; "
        f"--threads 2); {OVERRIDES}"
    )
    assert (_plan(threads=2, cores=8).workers, _plan(threads=2, cores=8).threads) == (4, 2)
    assert _plan(threads=4, cores=2).workers == 1  # more threads than cores: still one
    assert _plan(threads=1, cores=8, device="cuda").threads == 1  # kept with CUDA too


def test_plan_workers__workers_n_wins_over_auto_and_shares_the_cores():
    three = _plan(3, cores=8)
    assert (three.workers, three.threads) == (3, 2)
    assert (
        three.line == "workers: 3 worker processes x 2 torch threads (--workers 3; 8 usable cores)"
    )
    both = _plan(2, 3, cores=8)
    assert (both.workers, both.threads) == (2, 3)
    assert "(--workers 2 --threads 3; 8 usable cores)" in both.line
    one = _plan(1, cores=8)
    assert (one.workers, one.threads) == (1, None)  # torch's own threads, as before auto
    assert one.line == "workers: 1 worker process (--workers 1; 8 usable cores)"
    assert _plan(4, cores=8, device="cuda").workers == 4  # asked for: as asked
    assert _plan(2, cores=1).threads == 1


def test_usable_cores__the_affinity_not_the_machine(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3}, raising=False)
    assert usable_cores() == 2


def test_workers_flag__auto_by_default_a_number_or_refused_in_one_line():
    parser = ArgumentParser(exit_on_error=False)
    parser.add_dataclass("sweep", SweepConfig())
    assert parser.parse_args([]).sweep.workers == "auto"
    assert parser.parse_args(["--workers", "3"]).sweep.workers == 3
    assert parser.parse_args(["--workers", "AUTO"]).sweep.workers == "auto"
    with pytest.raises(Exception, match="must be auto or a whole number, got 'two'"):
        parser.parse_args(["--workers", "two"])
    with pytest.raises(ValueError, match="--workers must be auto or >= 1, got 0"):
        SweepConfig(workers=0)
    with pytest.raises(ValueError, match="workers must be a whole number or 'auto', got 1.5"):
        SweepConfig(workers=1.5)


def test_run_sweep__auto_on_one_usable_core_says_its_choice_in_one_line(tmp_path, monkeypatch):
    """On one usable core, auto trains in this process with one thread, and says so first."""
    monkeypatch.setattr(sweep_run, "usable_cores", lambda: 1)
    lines: list[str] = []
    run_sweep(sweep_base(tmp_path), sweep_config(trials=1, workers="auto"), log=lines.append)
    said = [line for line in lines if line.startswith("workers:")]
    assert said == [
        f"workers: auto chose 1 worker process x 1 torch thread (1 usable core, CPU); {OVERRIDES}"
    ]


GOOD = {"lr": 1e-2, "beta": 1e-3, "batch_size": 10}
"""Parameters that learn on learnable_data: a front to confirm."""


def _confirm_runs(tmp_path) -> list:
    mlflow = client(tmp_path)
    experiment = mlflow.get_experiment_by_name("sae-sweep").experiment_id
    return mlflow.search_runs([experiment], f"tags.{names.TAG_KIND} = '{names.KIND_CONFIRM}'")


def test_sweep__two_workers_share_the_confirmation_runs_each_trained_once(tmp_path):
    """With --workers 2 the confirmation runs train in the worker processes, not in the
    command's: each (trial, seed) once, the two runs by two workers, and the study records them.
    (Which runs are left to train, on a resume, is the one-worker path's: tests/test_confirm.py.)"""
    base = sweep_base(tmp_path)
    cfg = sweep_config(trials=2, workers=2, confirm=1, batch_sizes=(10,))
    storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
    study = sweep.open_study(storage, cfg, sweep.build_space(cfg), epochs=2)
    study.enqueue_trial(GOOD)
    lines: list[str] = []
    result = run_sweep(base, cfg, log=lines.append)
    (said,) = [line for line in lines if line.startswith("workers:")]
    assert said.startswith("workers: 2 worker processes x ") and "(--workers 2; " in said
    runs = _confirm_runs(tmp_path)
    pairs = sorted(
        (int(r.data.tags[names.TAG_CONFIRM_TRIAL]), int(r.data.params["train.seed"])) for r in runs
    )
    assert len(pairs) == 2 and len(set(pairs)) == 2
    assert {r.info.status for r in runs} == {"FINISHED"}
    trained_by = {r.data.tags[names.TAG_WORKER] for r in runs}
    assert len(trained_by) == 2 and worker_id() not in trained_by
    confirmed = json.loads(result.study.user_attrs[names.ATTR_CONFIRM])
    assert sorted(sum(confirmed.values(), [])) == sorted(r.info.run_id for r in runs)


def test_bench_workers_part__both_shapes_on_the_same_trials_and_their_ratio(tmp_path, monkeypatch):
    """The benchmark's workers part (not run here: it trains whole trials) runs the sweep with
    1 worker x 2 threads then 2 workers x 1 thread, on studies holding the same enqueued trials,
    and gives trials per minute of each and their ratio, ``workers_speedup_2x1``."""
    from sae.bench import workers as bench_workers

    commands, enqueued = [], []

    def fake_run(command, cwd):
        commands.append(command)
        journal = command[command.index("--storage") + 1]
        name = command[command.index("--study-name") + 1]
        study = bench_workers.optuna_study(journal, name)
        enqueued.append([t.params for t in study.get_trials(deepcopy=False)])
        return 1500.0, 100.0

    minutes = iter([4.0, 2.5])
    monkeypatch.setattr(bench_workers, "peak_rss_mb", fake_run)
    monkeypatch.setattr(bench_workers, "trial_minutes", lambda journal, name: next(minutes))
    out = bench_workers.workers_figures(tmp_path, "data", 4, 10, None, log=lambda _m: None)
    shapes = [(c[c.index("--workers") + 1], c[c.index("--threads") + 1]) for c in commands]
    assert shapes == [("1", "2"), ("2", "1")]
    assert all("--train-size" not in c and c[c.index("--epochs") + 1] == "10" for c in commands)
    assert len(enqueued[0]) == 4 and enqueued[0] == enqueued[1]
    assert out["workers_trials_per_minute_1x2"] == 1.0
    assert out["workers_trials_per_minute_2x1"] == 1.6
    assert out["workers_speedup_2x1"] == pytest.approx(1.6)
    assert out["workers_peak_rss_mb_2x1"] == 1500.0 and out["workers_sweep_seconds_1x2"] == 100.0


class _LostPool:
    """A pool whose workers were all lost before taking a confirmation run."""

    def __init__(self) -> None:
        self.handed: list = []

    def share(self, jobs: list) -> None:
        self.handed += jobs


def test_confirm__runs_a_lost_worker_left_are_trained_by_the_command(tmp_path):
    """Handed to workers that were lost, the confirmation runs are planned again and trained in
    the command's process, each once, with one line saying so."""
    import dataclasses

    from sae import tracking
    from sae.splits import load_splits, resolve_device

    base = sweep_base(tmp_path)
    cfg = sweep_config(trials=1, batch_sizes=(10,))
    storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
    sweep.open_study(storage, cfg, sweep.build_space(cfg), epochs=2).enqueue_trial(GOOD)
    result = run_sweep(base, cfg, log=lambda _line: None)
    settings = tracking.load_settings(base.tracking.config_file, base.tracking.tracking_uri)
    splits = load_splits(base.data, resolve_device("cpu"))
    pool, lines = _LostPool(), []
    sweep_run._confirm(
        base,
        dataclasses.replace(cfg, confirm=1),
        result.study,
        settings,
        "sae-sweep",
        splits,
        str(tmp_path / "optuna.journal"),
        lines.append,
        pool,
    )
    assert len(pool.handed) == 2
    assert "2 confirmation runs left by lost workers: trained here" in lines
    runs = _confirm_runs(tmp_path)
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    assert {r.data.tags[names.TAG_WORKER] for r in runs} == {worker_id()}
