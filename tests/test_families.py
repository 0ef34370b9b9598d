"""Families of sparse codes (``--family l1|kl|topk``): the TopK code, each family's search space,
a study that keeps to its family, and the GP sampler."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
from pathlib import Path

import optuna
import pytest
import torch
from helpers_sweep import (
    clean_env,
    client,
    load_study,
    sweep_base,
    sweep_command,
    sweep_config,
)
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from sae import names
from sae.bench import frontiers as F
from sae.config import Config, ModelConfig, TrainConfig
from sae.model import SparseAutoencoder, keep_topk
from sae.penalties import l1_penalty, penalty
from sae.sweep import SweepConfig, run_sweep
from sae.sweep.pareto import REFERENCE, hypervolume
from sae.sweep.space import build_space, family_base, with_params
from sae.sweep.study import make_sampler

FRONTIERS = Path(__file__).resolve().parents[1] / "experiments" / "frontiers.py"


@pytest.mark.parametrize("k", [1, 5, 64])
def test_topk__keeps_exactly_k_units_per_image_the_largest(k):
    code = torch.rand(7, 64, 1, 1) + 0.01  # every unit positive: exactly k stay
    kept = keep_topk(code, k)
    assert kept.shape == code.shape
    assert ((kept != 0).sum(dim=1).flatten() == k).all()
    for image, out in zip(code.flatten(1), kept.flatten(1), strict=True):
        largest = image.topk(k).indices
        assert torch.equal(out[largest], image[largest])  # kept as they were
        assert out.sum() == pytest.approx(image[largest].sum().item())


def test_topk__gradient_reaches_only_the_kept_units():
    code = (torch.rand(5, 64, 1, 1) + 0.01).requires_grad_()
    weights = torch.randn(5, 64, 1, 1)
    (keep_topk(code, 3) * weights).sum().backward()
    kept = keep_topk(code.detach(), 3) != 0
    assert torch.equal(code.grad[kept], weights[kept])
    assert (code.grad[~kept] == 0).all()


def test_topk_model__code_has_at_most_k_active_units_and_gradients_stop_at_the_rest():
    torch.manual_seed(0)
    model = SparseAutoencoder(ModelConfig(topk=4))
    x = torch.rand(8, 1, 28, 28)
    _, acts = model(x)
    code = acts[2].flatten(1)
    assert ((code > 0).sum(dim=1) <= 4).all()
    assert torch.equal(model.encode(x), code.detach())
    # the encoder's last layer learns only through the kept units: a unit never kept on these
    # images gets no gradient on its weights
    (code * torch.randn(8, 64)).sum().backward()
    never = ~(code > 0).any(dim=0)
    assert never.any()
    assert (model.enc3.weight.grad[never] == 0).all()
    assert (model.enc3.weight.grad[~never] != 0).any()


def test_topk__k_outside_1_to_64_is_refused():
    for bad in (0, 65):
        with pytest.raises(ValueError, match="topk must be in"):
            ModelConfig(topk=bad)


def test_penalty__without_the_code_leaves_out_the_code_layer_only():
    acts = [torch.rand(2, 3, 4, 4) for _ in range(6)]
    tc = TrainConfig(beta=0.5)
    expected = 0.5 * l1_penalty(acts, (0, 1, 3, 4, 5))
    assert penalty(acts, tc, code=False) == pytest.approx(expected.item())
    assert penalty(acts, tc) == pytest.approx(0.5 * l1_penalty(acts, "all").item())
    code_only = TrainConfig(beta=0.5, penalty_layers="code")
    assert penalty(acts, code_only, code=False) == 0  # nothing left to penalise


def test_families__each_searches_its_own_space():
    l1 = build_space(SweepConfig())
    assert list(l1) == ["beta", "lr", "batch_size"]  # today's sweep, unchanged
    assert l1["beta"] == FloatDistribution(1e-6, 1e-1, log=True)
    kl = build_space(SweepConfig(family="kl"))
    assert kl == l1  # beta with rho fixed at --rho
    topk = build_space(SweepConfig(family="topk"))
    assert list(topk) == ["topk", "lr", "batch_size"]
    assert topk["topk"] == IntDistribution(1, 64, log=True)
    assert isinstance(topk["batch_size"], CategoricalDistribution)
    assert build_space(SweepConfig(family="topk", k_range=(2, 16)))["topk"].high == 16
    with pytest.raises(ValueError, match="topk range"):
        build_space(SweepConfig(family="topk", k_range=(8, 100)))


def test_families__name_their_study_and_set_their_trials_config():
    assert SweepConfig().study_name == "sae-sweep"
    assert SweepConfig(family="topk").study_name == "sae-sweep-topk"
    assert SweepConfig(family="kl", study_name="mine").study_name == "mine"
    base = Config()
    assert family_base(base, SweepConfig()) == base
    assert family_base(base, SweepConfig(family="kl")).train.penalty == "kl"
    made = with_params(base, {"topk": 8, "lr": 0.01, "batch_size": 32}, seed=3)
    assert (made.model.topk, made.train.lr, made.train.batch_size, made.train.seed) == (
        8,
        0.01,
        32,
        3,
    )
    kl_base = dataclasses.replace(base, train=dataclasses.replace(base.train, penalty="kl"))
    with pytest.raises(ValueError, match="--family kl"):
        family_base(kl_base, SweepConfig())
    topk_base = dataclasses.replace(base, model=ModelConfig(topk=4))
    with pytest.raises(ValueError, match="searched by --family topk"):
        family_base(topk_base, SweepConfig(family="topk"))
    with pytest.raises(ValueError, match="unknown family"):
        SweepConfig(family="relu")


def test_topk_sweep__trials_train_their_k_and_say_their_family(tmp_path):
    base = sweep_base(tmp_path)
    cfg = sweep_config(trials=2, family="topk", k_range=(2, 8))
    result = run_sweep(base, cfg, log=lambda _m: None)
    mlflow = client(tmp_path)
    parent = mlflow.get_run(result.parent_run_id)
    assert parent.data.tags[names.TAG_FAMILY] == "topk"
    assert "family topk" in parent.data.tags[names.TAG_DESCRIPTION]
    study = load_study(tmp_path, "sae-sweep-topk")
    assert study.user_attrs[names.STUDY_FAMILY] == "topk"
    for trial in study.get_trials():
        assert trial.state == TrialState.COMPLETE
        run = mlflow.get_run(trial.user_attrs[names.ATTR_RUN_ID])
        assert run.data.tags[names.TAG_FAMILY] == "topk"
        assert int(run.data.params["model.topk"]) == trial.params["topk"]
        assert "beta" not in trial.params
        assert trial.user_attrs[names.ATTR_L0] <= trial.params["topk"]


def test_study__refuses_to_resume_with_another_family_before_any_write(tmp_path):
    base = sweep_base(tmp_path, epochs=1)
    run_sweep(base, sweep_config(trials=1, family="topk", study_name="s"), log=lambda _m: None)
    journal = (tmp_path / "optuna.journal").read_bytes()
    for family in ("l1", "kl"):
        with pytest.raises(ValueError, match=f"exists with family 'topk', not '{family}'"):
            run_sweep(
                base,
                sweep_config(trials=2, family=family, study_name="s"),
                log=lambda _m: None,
            )
    assert (tmp_path / "optuna.journal").read_bytes() == journal


def test_gp_sampler__runs_a_two_objective_study_and_resumes(tmp_path):
    base = sweep_base(tmp_path, epochs=1)
    first = run_sweep(base, sweep_config(trials=2, sampler="gp"), log=lambda _m: None)
    again = run_sweep(base, sweep_config(trials=3, sampler="gp"), log=lambda _m: None)
    assert again.parent_run_id == first.parent_run_id
    trials = again.study.get_trials()
    assert len(trials) == 3 and len(again.study.directions) == 2
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 3


def test_gp_sampler__models_the_front_after_its_random_start():
    """Past its 10 random trials the GP proposes from its model, with constraints, two
    objectives and a categorical parameter, as a sweep asks."""
    cfg = SweepConfig(sampler="gp")
    sampler = make_sampler(cfg)
    assert isinstance(sampler, optuna.samplers.GPSampler)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    space = build_space(cfg)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        beta = trial.suggest_float("beta", 1e-6, 1e-1, log=True)
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        trial.suggest_categorical("batch_size", space["batch_size"].choices)
        trial.set_constraint(names.ATTR_DEGENERATE, 1.0 if beta > 0.05 else -1.0)
        return 1 / (1 + 1e3 * beta), beta

    study.optimize(objective, n_trials=13)
    assert len(study.trials) == 13
    assert len({t.params["beta"] for t in study.trials}) == 13


def _record(family: str, seed: int, hv: float, mse8: float = math.nan) -> F.StudyRecord:
    figures = {"hypervolume": hv, "front_size": 1.0, "mse_at_l0_8": mse8}
    figures |= {"mse_at_l0_16": math.nan, "mse_at_l0_32": math.nan}
    return F.StudyRecord(f"s-{family}-{seed}", family, "tpe", seed, 30, None, [], figures, {})


def test_frontiers__a_family_is_better_only_where_welchs_test_finds_it():
    apart = [_record("l1", s, 0.050 + 0.001 * s) for s in range(3)]
    apart += [_record("topk", s, 0.040 + 0.001 * s) for s in range(3)]
    (line,) = F.verdicts(F.groups_of(apart, "family"), "hypervolume", higher_is_better=True)
    assert "l1 is better than topk" in line and "p=" in line
    close = [_record("l1", s, 0.050 + 0.004 * s) for s in range(3)]
    close += [_record("topk", s, 0.051 + 0.004 * (2 - s)) for s in range(3)]
    (line,) = F.verdicts(F.groups_of(close, "family"), "hypervolume", higher_is_better=True)
    assert "not distinguishable" in line and "better" not in line
    one_seed = [_record("l1", 0, 0.05), _record("kl", 0, 0.01)]
    (line,) = F.verdicts(F.groups_of(one_seed, "family"), "hypervolume", higher_is_better=True)
    assert "too few to test" in line


def test_frontiers__front_hypervolume_and_mse_between_front_points():
    points = [(4.0, 0.04), (8.0, 0.03), (16.0, 0.01), (10.0, 0.05)]  # (10, 0.05) is dominated
    assert F.front(points) == [(4.0, 0.04), (8.0, 0.03), (16.0, 0.01)]
    assert F.mse_at(points, 12) == pytest.approx(0.02)
    assert F.mse_at(points, 32) == pytest.approx(0.01)  # (16, 0.01) dominates denser codes
    assert math.isnan(F.mse_at(points, 2))  # sparser than any point found: not extrapolated
    assert F.front_hypervolume(points) == pytest.approx(
        hypervolume([(m, l0 / 64) for l0, m in points], REFERENCE)
    )


def test_frontiers_command__on_tiny_settings_writes_its_figure_and_table(tmp_path):
    base = sweep_base(tmp_path, epochs=1)
    out = tmp_path / "out"
    argv = [
        "--setting", "custom", "--seeds", "0", "--families", "l1", "topk",
        "--trials", "2", "--batch-sizes", "10", "20", "--epochs", "1", "--out", str(out),
    ]  # fmt: skip
    command = sweep_command(base, *argv)
    command[1] = str(FRONTIERS)
    result = subprocess.run(
        command, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    table = (out / "families-custom.md").read_text()
    assert re.search(r"\| l1 +\| 1 +\|", table) and re.search(r"\| topk +\| 1 +\|", table)
    assert "bench-custom-topk-tpe-s0" in table and "too few to test" in table
    assert (out / "families-custom.png").stat().st_size > 1000
    tables = (out / "families-custom.tables.md").read_text()  # for a page to include
    assert tables.startswith("Made by") and "![" not in tables and "bench-custom-l1" in tables
    studies = json.loads((out / "families-custom.json").read_text())["studies"]
    assert [s["family"] for s in studies] == ["l1", "topk"]
