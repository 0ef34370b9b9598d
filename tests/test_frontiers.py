"""The frontier benchmark's other faces: the ``frontiers`` and ``samplers`` parts of
``experiments/bench.py`` and the comparison report's families section, on studies made here."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from sae import bench, names
from sae.bench import frontiers as F
from sae.bench import suite
from sae.report import figures
from sae.report import files as FILES
from sae.report.document import Document
from sae.report.families import families_section, family_records
from sae.report.output import Output
from sae.sweep import make_storage

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def make_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    family: str,
    points: list[tuple[float, float]],
    *,
    epochs: int = 3,
    objective: str = "pareto",
    sampler: str | None = "tpe",
) -> None:
    """A finished study as a sweep records it: its family, objective and identity, and one
    complete trial per (code L0, test MSE) point, plus a pruned one that no front counts."""
    study = optuna.create_study(
        study_name=name, storage=storage, directions=["minimize", "minimize"]
    )
    study.set_user_attr(names.STUDY_FAMILY, family)
    if sampler is not None:  # None: a study from before the samplers were recorded
        study.set_user_attr(names.STUDY_SAMPLERS, [sampler])
    study.set_user_attr(names.STUDY_OBJECTIVE, objective)
    identity = {"train.epochs": epochs, "data.train_size": 5000, "data.test_size": 2000}
    study.set_user_attr(names.STUDY_IDENTITY, json.dumps({**identity, "data.digest": "d0"}))
    for l0, mse in points:
        attrs = {names.ATTR_L0: l0, names.ATTR_ACTIVE: l0 / 64}
        study.add_trial(create_trial(values=[mse, l0 / 64], user_attrs=attrs))
    study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs={names.ATTR_L0: 1.0}))


def front_of(family: str, seed: int) -> list[tuple[float, float]]:
    """topk's fronts lie well below l1's at every L0, and each seed differs a little."""
    scale = (0.5 if family == "topk" else 1.0) * (1 + 0.02 * seed)
    return [(l0, scale * 0.2 / l0) for l0 in (4.0, 8.0, 16.0, 32.0, 48.0)]


def test_families_section__compares_families_on_one_setting_only_where_the_test_says(tmp_path):
    journal = tmp_path / "optuna.journal"
    store = make_storage(str(journal))
    for family in ("l1", "topk"):
        for seed in range(3):
            make_study(store, f"{family}-{seed}", family, front_of(family, seed))
    make_study(store, "kl-10-epochs", "kl", front_of("l1", 0), epochs=10)  # alone on its setting
    make_study(store, "kl-constrained", "kl", front_of("l1", 0), objective="constrained")
    make_study(store, "kl-random", "kl", front_of("l1", 0), sampler="random")  # another search
    make_study(store, "kl-old", "kl", front_of("l1", 0), sampler=None)
    found = family_records(str(journal))
    assert list(found) == ["3 epochs, 5000 training images, 2000 test images; sampler tpe"]
    (records,) = found.values()
    assert [r.name for r in records] == ["l1-0", "l1-1", "l1-2", "topk-0", "topk-1", "topk-2"]
    assert all(len(r.points) == 5 for r in records)  # the pruned trial is on no front

    doc, out = Document("t"), Output(tmp_path)
    (tmp_path / FILES.FIGURES_DIR).mkdir()
    (tmp_path / FILES.TABLES_DIR).mkdir()
    with figures.style():
        families_section(out, doc, str(journal))
    text = doc.markdown()
    assert "### Families" in text and "0.07, 1" in text
    assert "hypervolume: l1" in text and "topk is better than l1" in text
    assert "test MSE at L0 = 8" in text and "| topk" in text
    assert (tmp_path / FILES.FIG_FAMILIES).stat().st_size > 1000
    rows = (tmp_path / FILES.TABLE_FAMILIES).read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("setting,study,family,trials,hypervolume")


def test_families_section__says_nothing_with_one_family_or_no_storage(tmp_path):
    journal = tmp_path / "optuna.journal"
    make_study(make_storage(str(journal)), "only", "l1", front_of("l1", 0))
    doc = Document("t")
    families_section(Output(tmp_path), doc, str(journal))
    families_section(Output(tmp_path), doc, str(tmp_path / "absent.journal"))
    assert doc.blocks == [] and not (tmp_path / "absent.journal").exists()
    # an unreachable database: said in one line, and the report goes on
    families_section(Output(tmp_path), doc, "postgresql://127.0.0.1:1/optuna")
    assert "Families: not compared" in doc.markdown() and "connection" in doc.markdown()


@pytest.mark.parametrize("part", ["frontiers", "samplers"])
def test_bench_grid_parts__run_the_grid_and_record_each_groups_mean_and_spread(
    tmp_path, monkeypatch, part
):
    """The bench parts call ``run_grid`` with their families, samplers, seeds and trials in the
    bench's scratch storage, and turn what it recorded into flat figures and Welch's lines."""
    calls = []

    def fake_grid(base, sweep, setting, families, samplers, seeds, log):
        calls.append((sweep.trials, setting, tuple(families), tuple(samplers), tuple(seeds)))
        store = make_storage(sweep.storage)
        for family in families:
            for sampler in samplers:
                for seed in seeds:
                    points = front_of("topk" if sampler == "gp" else family, seed)
                    make_study(store, F.study_name(setting, family, sampler, seed), family, points)

    monkeypatch.setattr(F, "run_grid", fake_grid)
    lines: list[str] = []
    cfg = bench.BenchConfig(parts=(part,), device="cpu", grid_trials=5, grid_samplers=("tpe", "gp"))
    results = suite.measure(cfg, str(tmp_path / "data"), lines.append, tmp_path)
    if part == "frontiers":
        assert calls == [(5, "small", ("l1", "kl", "topk"), ("tpe",), (0, 1, 2))]
        assert results["frontiers_small_topk_hypervolume_n"] == 3
        assert results["frontiers_small_topk_hypervolume_sd"] > 0
        assert (
            results["frontiers_small_topk_mse_at_l0_8_mean"]
            < results["frontiers_small_l1_mse_at_l0_8_mean"]
        )
        assert any("topk is better than l1" in line for line in lines)
    else:
        assert calls == [(5, "small", ("l1",), ("tpe", "gp"), (0, 1, 2))]
        # 6 trials each, 5 of them complete: the hypervolume after 10 trials is not reached
        assert results["samplers_small_gp_hv_after_10_n"] == 0
        assert any("after 10 trials" in line for line in lines)
    assert not (tmp_path / "reports").exists()


def test_bench_config__grid_settings_are_checked_and_grids_run_only_when_named():
    assert not set(suite.GRID_PARTS) & set(bench.BenchConfig().parts)
    with pytest.raises(ValueError, match="--grid-setting"):
        bench.BenchConfig(grid_setting="huge")
    with pytest.raises(ValueError, match="--grid-seeds"):
        bench.BenchConfig(grid_seeds=(0, 0))
    assert suite.parse_samplers("tpe,gp") == ("tpe", "gp")
    with pytest.raises(Exception, match="unknown sampler cmaes"):
        suite.parse_samplers("cmaes")


def test_study_record__a_study_read_back_keeps_its_front_and_hypervolume_by_trials(tmp_path):
    store = make_storage(str(Path(tmp_path) / "j.journal"))
    make_study(store, "s", "l1", front_of("l1", 0))
    record = F.study_record(optuna.load_study(study_name="s", storage=store), "l1", "tpe", 0)
    assert record.trials == 6 and F.front(record.points) == sorted(record.points)
    assert record.by_trials == {}  # fewer than 10 trials
    assert record.figures["hypervolume"] == pytest.approx(F.front_hypervolume(record.points))


def test_study_name__a_named_pruner_makes_other_studies_not_a_resume():
    assert F.study_name("small", "l1", "gp", 2) == "bench-small-l1-gp-s2"
    assert F.study_name("small", "l1", "gp", 2, "none") == "bench-small-l1-gp-s2-none"


def test_verdicts__a_family_whose_fronts_never_reach_an_l0_is_not_compared_there():
    def record(family, seed, mse8):
        figures = {"hypervolume": 0.05, "mse_at_l0_8": mse8}
        return F.StudyRecord(f"{family}-{seed}", family, "tpe", seed, 30, None, [], figures, {})

    records = [record("l1", s, 0.03 + 0.001 * s) for s in range(3)]
    records += [record("kl", s, float("nan")) for s in range(3)]
    (line,) = F.verdicts(F.groups_of(records, "family"), "mse_at_l0_8", higher_is_better=False)
    assert line.startswith("test MSE at L0 = 8: l1 0.031")
    assert "not compared, no front of kl reaches it" in line and "better" not in line


def test_record_sampler__a_study_keeps_every_sampler_its_sessions_used():
    from sae.sweep.study import record_sampler, study_samplers

    fresh = optuna.create_study(directions=["minimize", "minimize"])
    record_sampler(fresh, "tpe", had_trials=False)
    record_sampler(fresh, "gp", had_trials=True)  # a resume with another sampler
    record_sampler(fresh, "tpe", had_trials=True)
    assert study_samplers(fresh) == ("gp", "tpe")
    old = optuna.create_study(directions=["minimize", "minimize"])
    assert study_samplers(old) == ("unrecorded",)
    record_sampler(old, "tpe", had_trials=True)  # its earlier trials' sampler is not known
    assert study_samplers(old) == ("tpe", "unrecorded")
