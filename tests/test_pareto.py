"""The Pareto pruner: dominated trials stop at a rung, the rung's front never does, nothing before
the warm-up, the same answer from every worker, and a resumed study keeps its rungs."""

import optuna
import pytest
from helpers_sweep import client, load_study, sweep_base, sweep_config
from optuna.trial import TrialState, create_trial

from sae import names, sweep
from sae.sweep import run_sweep
from sae.sweep.pareto import ParetoPruner, dominates, hypervolume, pareto_order, rung_points

DIRECTIONS = ["minimize", "minimize"]
HALVING = ParetoPruner(rule="halving", first_rung=1, factor=2, warmup=3, grace=0)
"""Successive halving from epoch 1, written out (the rule before projection was the default)."""


def _study(storage=None, name="s"):
    return optuna.create_study(
        storage=storage, study_name=name, directions=DIRECTIONS, load_if_exists=True
    )


def _add(study, points, state=TrialState.COMPLETE):
    """A trial with its recorded points {epoch: (mse, active[, degenerate])}."""
    recorded = {str(e): [*p, 0.0] if len(p) == 2 else list(p) for e, p in points.items()}
    last = recorded[str(max(points))][:2]
    study.add_trial(
        create_trial(
            state=state,
            values=last if state == TrialState.COMPLETE else None,
            user_attrs={names.ATTR_EPOCH_POINTS: recorded},
        )
    )
    return study.trials[-1].number


def test_pareto_order__dominated_points_come_after_the_front_and_its_ends_first():
    points = [(0.01, 0.5), (0.02, 0.3), (0.03, 0.1), (0.03, 0.6), (0.015, 0.4)]
    assert dominates(points[0], points[3]) and not dominates(points[0], points[1])
    order, ranks = pareto_order(points)
    assert ranks == [0, 0, 0, 1, 0]
    assert order[-1] == 3  # the one dominated point last
    assert set(order[:2]) == {0, 2}  # the front's two ends: infinite crowding distance
    assert hypervolume([(0.01, 0.5), (0.03, 0.1)], (0.07, 1.0)) == pytest.approx(
        0.06 * 0.5 + 0.04 * 0.4
    )
    assert hypervolume([(0.08, 0.1)], (0.07, 1.0)) == 0.0  # beyond the reference


def test_pruner__rungs_are_successive_halving_epochs_before_the_last():
    assert HALVING.rungs(10) == [1, 2, 4, 8]
    assert ParetoPruner(first_rung=2, factor=3).rungs(10) == [2, 6]
    assert ParetoPruner(first_rung=2, factor=4).rungs(10) == [2, 8]
    assert ParetoPruner().rule == "projection"  # the default rule
    assert HALVING.rungs(1) == [] and ParetoPruner(first_rung=2).rungs(2) == []


def test_pruner__a_trial_dominated_at_a_rung_by_enough_complete_trials_is_pruned():
    study = _study()
    for mse, active in [(0.01, 0.5), (0.02, 0.3), (0.03, 0.1), (0.015, 0.4)]:
        _add(study, {1: (mse, active), 2: (mse * 0.9, active)})
    bad = _add(study, {1: (0.05, 0.6)}, TrialState.RUNNING)
    why = HALVING.decide(study.trials, bad, 1, epochs=2)
    assert why.startswith("pruned at epoch 1: ") and "5 of 5" in why and "rank 1" in why
    # a dominated point inside the best half goes on: four worse points join the rung
    for i in range(4):
        _add(study, {1: (0.06 + 0.01 * i, 0.7)}, TrialState.RUNNING)
    assert HALVING.decide(study.trials, bad, 1, epochs=2) is None
    with pytest.raises(ValueError, match=r"^--pareto-factor must be >= 2, got 1$"):
        ParetoPruner(factor=1)
    with pytest.raises(ValueError, match=r"^--pareto-tiebreak must be crowding or hyper"):
        ParetoPruner(tiebreak="random")
    # not a rung (the last epoch is never one): no decision
    assert HALVING.decide(study.trials, bad, 2, epochs=2) is None
    assert HALVING.decide(study.trials, bad, 1, epochs=1) is None


def test_pruner__a_point_on_the_rungs_front_is_never_pruned():
    """Eight complete trials on one front, all points at the rung non-dominated: the new point is
    the most crowded, outside the best half by crowding distance, and still goes on."""
    study = _study()
    front = [(0.01 + 0.002 * i, 0.9 - 0.1 * i) for i in range(8)]
    for point in front:
        _add(study, {1: point, 2: point})
    between = (0.0121, 0.79)  # just past the second point: dominated by none, the most crowded
    trial = _add(study, {1: between}, TrialState.RUNNING)
    assert not any(dominates(p, between) or dominates(between, p) for p in front)
    order, ranks = pareto_order([*front, between])
    assert order.index(8) >= 5 and ranks[8] == 0  # outside the best half, on the front
    assert HALVING.decide(study.trials, trial, 1, epochs=2) is None


def test_pruner__nothing_is_pruned_during_the_warm_up_and_degenerate_points_come_last():
    study = _study()
    for mse, active in [(0.01, 0.5), (0.02, 0.3)]:
        _add(study, {1: (mse, active), 2: (mse, active)})
    _add(study, {1: (0.012, 0.45)}, TrialState.RUNNING)
    bad = _add(study, {1: (0.05, 0.6)}, TrialState.RUNNING)
    assert (
        ParetoPruner("halving", warmup=3, grace=0).decide(study.trials, bad, 1, epochs=2) is None
    )  # 2 complete
    assert (
        ParetoPruner("halving", warmup=2, grace=0).decide(study.trials, bad, 1, epochs=2)
        is not None
    )
    # a degenerate point (a dead code: active fraction 0 would dominate) neither beats the
    # others nor is kept
    dead = _add(study, {1: (0.06, 0.0, 1.0)}, TrialState.RUNNING)
    why = ParetoPruner("halving", warmup=2, grace=0).decide(study.trials, dead, 1, epochs=2)
    assert why is not None and "(degenerate)" in why
    assert ParetoPruner("halving", warmup=2, grace=0).decide(study.trials, 2, 1, epochs=2) is None


def test_pruner__two_workers_on_one_storage_decide_the_same(tmp_path):
    """Each worker reads the rung's points from the shared storage: a decision made from
    another process's handle on the journal equals the one from the trial's own."""
    storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
    mine, theirs = _study(storage), _study(sweep.make_storage(str(tmp_path / "optuna.journal")))
    for mse, active in [(0.01, 0.5), (0.02, 0.3), (0.03, 0.1)]:
        _add(theirs, {1: (mse, active), 2: (mse, active)})
    bad = _add(mine, {1: (0.05, 0.6)}, TrialState.RUNNING)
    decisions = [
        HALVING.decide(study.get_trials(deepcopy=False), bad, 1, epochs=2)
        for study in (mine, theirs)
    ]
    assert decisions[0] is not None and decisions[0] == decisions[1]


def test_sweep__a_resumed_study_prunes_against_the_rungs_of_its_first_session(tmp_path):
    """Three trials complete in a first session without the pruner; the second session, with
    it, prunes a slow learner at epoch 1 against their recorded points: PRUNED in both stores
    with the rung and the reason, its run FINISHED, never on the front."""
    base = sweep_base(tmp_path)
    first = sweep_config(trials=3, pruner="none")
    storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
    study = sweep.open_study(storage, first, sweep.build_space(first), epochs=2)
    for lr, beta in [(1e-2, 1e-3), (1e-2, 1e-4), (2e-2, 3e-3)]:
        study.enqueue_trial({"lr": lr, "beta": beta, "batch_size": 10})
    run_sweep(base, first, log=lambda _m: None)
    assert all(names.ATTR_EPOCH_POINTS in t.user_attrs for t in load_study(tmp_path).trials)

    resumed = sweep_config(
        trials=4,
        pruner="pareto",
        pareto_rule="halving",
        pareto_first_rung=1,
        pareto_factor=2,
        pareto_warmup=3,
        pareto_grace=0,
    )
    study = sweep.open_study(storage, resumed, sweep.build_space(resumed), epochs=2)
    # a learning rate below the space's, that barely moves (Optuna trains an enqueued value as
    # it is, warning that it is out of range)
    study.enqueue_trial({"lr": 1e-6, "beta": 1e-3, "batch_size": 20})
    result = run_sweep(base, resumed, log=lambda _m: None)
    trials = result.study.get_trials()
    slow = trials[3]
    assert slow.state == TrialState.PRUNED, slow.user_attrs
    assert slow.user_attrs[names.ATTR_PRUNED_AT] == 1
    assert slow.user_attrs[names.ATTR_FAIL_REASON].startswith("pruned at epoch 1: ")
    assert list(slow.user_attrs[names.ATTR_EPOCH_POINTS]) == ["1"]
    run = client(tmp_path).get_run(slow.user_attrs[names.ATTR_RUN_ID])
    assert run.info.status == "FINISHED"
    assert run.data.tags[names.TAG_TRIAL_STATE] == "PRUNED"
    assert run.data.tags[names.TAG_PRUNED_AT] == "1"
    assert run.data.tags[names.TAG_REASON].startswith("pruned at epoch 1: ")
    assert 3 not in [t.number for t in sweep.best_trials(result.study)]
    assert sweep.finished_count(result.study) == 4


def test_rung_points__an_interrupted_trial_counts_once_through_its_retry():
    """An interrupted trial (FAIL, not by itself) hands its points to its retry, which resumes
    from its checkpoint: the rung counts them once. A trial that failed by itself keeps its."""
    study = _study()
    _add(study, {1: (0.01, 0.5)})
    interrupted = _add(study, {1: (0.02, 0.3)}, TrialState.FAIL)
    retry = _add(study, {1: (0.02, 0.3)}, TrialState.RUNNING)
    attrs = {names.ATTR_EPOCH_POINTS: {"1": [0.05, 0.6, 0.0]}, names.ATTR_NON_FINITE: True}
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs=attrs))
    diverged = study.trials[-1].number
    points = rung_points(study.get_trials(deepcopy=False), 1)
    assert interrupted not in points and {retry, diverged} <= set(points)


# The projection rule (the default), on curves shaped like the recorded full sweeps'
# (sae/bench/records): MSE by epoch, the active fraction nearly flat.
FRONT = {  # three complete trials of ten epochs: their finals make the front
    "fast": [(0.0089, 0.489), (0.0073, 0.492), (0.0054, 0.495)],
    "dense": [(0.0084, 0.539), (0.0069, 0.541), (0.0051, 0.543)],
    "sparse": [(0.0482, 0.069), (0.0374, 0.076), (0.0314, 0.077)],
}
PROJECTION = ParetoPruner()


def _complete(study, curve, epochs=10):
    """A complete trial whose points at epochs 1, 2 and ``epochs`` are ``curve``."""
    points = {1: curve[0], 2: curve[1]}
    points.update({e: curve[2] for e in range(3, epochs + 1)})
    return _add(study, points)


def _projection_study():
    study = _study()
    for curve in FRONT.values():
        _complete(study, curve)
    return study


def test_projection__a_slow_starter_is_kept_and_a_flat_dominated_trial_stopped():
    """Seed 3's trial 12 (learning rate 6e-4, batch 256), degenerate at epoch 1 as the proxy's
    slow starters were: halving stops it there. It nearly halves its MSE by epoch 2, and its own
    slope projects it into the front's empty stretch: kept. The same start without the slope (a
    trial that has stopped learning) is dominated: stopped at epoch 2."""
    study = _projection_study()
    slow = _add(study, {1: (0.0282, 0.202, 1.0)}, TrialState.RUNNING)
    assert PROJECTION.decide(study.trials, slow, 1, epochs=10) is None  # grace, and epoch 1
    assert "(degenerate)" in HALVING.decide(study.trials, slow, 1, epochs=10)
    study = _projection_study()
    slow = _add(study, {1: (0.0282, 0.202, 1.0), 2: (0.0155, 0.284)}, TrialState.RUNNING)
    assert PROJECTION.decide(study.trials, slow, 2, epochs=10) is None
    flat = _add(study, {1: (0.0352, 0.202), 2: (0.0345, 0.284)}, TrialState.RUNNING)
    why = PROJECTION.decide(study.trials, flat, 2, epochs=10)
    assert why.startswith("pruned at epoch 2: its final point projected from its curve ")
    assert "would add 0.00% to the front's hypervolume" in why and "2% budget" in why


def test_projection__a_point_that_adds_the_budget_now_is_never_stopped():
    """A point that alone adds more than the budget to the front goes on, whatever the trials
    stopped before it; one that adds less stops, and the stopped trials' projections count
    against the next one: their share of the budget is used."""
    study = _projection_study()
    between = {1: (0.0300, 0.25), 2: (0.0200, 0.26)}  # an empty stretch of the front
    assert PROJECTION.decide(study.trials, _add(study, between, TrialState.RUNNING), 2, 10) is None
    near = {1: (0.0090, 0.50), 2: (0.0074, 0.50)}  # just beside "fast": adds little
    mine = _add(study, near, TrialState.RUNNING)
    assert PROJECTION.decide(study.trials, mine, 2, epochs=10) is not None
    # the same near trial after a stopped one whose projection fills the empty stretch: the
    # budget is used up, so the near one goes on
    study = _projection_study()
    _add(study, between, TrialState.PRUNED)
    mine = _add(study, near, TrialState.RUNNING)
    assert PROJECTION.decide(study.trials, mine, 2, epochs=10) is None
    assert ParetoPruner(budget=0.5).decide(study.trials, mine, 2, epochs=10) is not None
    with pytest.raises(ValueError, match=r"^--pareto-budget must be in \[0, 1\), got 1.5$"):
        ParetoPruner(budget=1.5)
    with pytest.raises(ValueError, match=r"^--pareto-rule must be projection or halving"):
        ParetoPruner(rule="median")


def test_projection__warm_up_grace_and_the_last_epoch():
    """Nothing stops before three complete trials may stand on the front (a degenerate one does
    not count), nor at the last epoch; a degenerate point stops after the grace epoch."""
    study = _study()
    _complete(study, FRONT["fast"])
    _complete(study, FRONT["dense"])
    degenerate = {str(e): [0.0677, 0.047, 1.0] for e in range(1, 11)}
    attrs = {names.ATTR_EPOCH_POINTS: degenerate, names.ATTR_DEGENERATE: "collapsed"}
    study.add_trial(create_trial(values=[0.0677, 0.047], user_attrs=attrs))
    flat = {1: (0.0352, 0.202), 2: (0.0345, 0.284)}
    mine = _add(study, flat, TrialState.RUNNING)
    assert PROJECTION.decide(study.trials, mine, 2, epochs=10) is None  # two count
    _complete(study, FRONT["sparse"])
    assert PROJECTION.decide(study.trials, mine, 2, epochs=10) is not None
    assert PROJECTION.decide(study.trials, mine, 2, epochs=2) is None  # the last epoch
    dead = _add(study, {1: (0.098, 0.0, 1.0), 2: (0.098, 0.0, 1.0)}, TrialState.RUNNING)
    assert PROJECTION.decide(study.trials, dead, 1, epochs=10) is None
    why = PROJECTION.decide(study.trials, dead, 2, epochs=10)
    assert why == "pruned at epoch 2: its model is degenerate (collapsed or dead)"
    assert ParetoPruner(grace=2).decide(study.trials, dead, 2, epochs=10) is None


def test_projection__two_workers_on_one_storage_decide_the_same(tmp_path):
    storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
    mine, theirs = _study(storage), _study(sweep.make_storage(str(tmp_path / "optuna.journal")))
    for curve in FRONT.values():
        _complete(theirs, curve)
    _add(theirs, {1: (0.0090, 0.50), 2: (0.0074, 0.50)}, TrialState.PRUNED)
    flat = _add(mine, {1: (0.0352, 0.202), 2: (0.0345, 0.284)}, TrialState.RUNNING)
    decisions = [
        PROJECTION.decide(study.get_trials(deepcopy=False), flat, 2, epochs=10)
        for study in (mine, theirs)
    ]
    assert decisions[0] is not None and decisions[0] == decisions[1]
    assert "the projections of the 1 trials stopped before it" in decisions[0]


def test_default_pruner__pareto_prunes_by_projection_pareto_probe_does_not():
    assert sweep_config(objective="pareto").pruner_used == "pareto"
    assert sweep_config(objective="pareto-probe").pruner_used == "none"
    assert sweep_config(objective="constrained").pruner_used == "median"
    assert sweep_config(objective="pareto", pruner="none").pruner_used == "none"
