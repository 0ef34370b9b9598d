import json
import math

import pytest
import torch

from sae import bench
from sae.bench import suite
from sae.bench.replay import REFERENCE
from sae.config import TrainConfig
from sae.model import SparseAutoencoder
from sae.penalties import penalty


def test_core_and_seed_loop__same_loss_on_the_same_batch_and_weights():
    torch.manual_seed(0)
    core = SparseAutoencoder()
    seed = bench.SeedModel()
    seed.load_state_dict(core.state_dict())
    x = torch.rand(100, 1, 28, 28)
    recon, acts = core(x.contiguous(memory_format=torch.channels_last))
    ours = torch.nn.functional.mse_loss(recon, x) + penalty(acts, TrainConfig(beta=1e-4))
    theirs = bench.seed_loss(seed, x, weight=1e-4)
    assert torch.allclose(ours, theirs, rtol=1e-5)


def test_flops_per_image__from_layer_shapes_by_hand():
    flops = bench.flops_per_image()
    assert flops["enc1"] == 16 * 14 * 14 * 1 * 9
    assert flops["enc3"] == 64 * 32 * 49
    assert flops["dec1"] == 64 * 1 * 1 * 32 * 49
    assert flops["dec3"] == 16 * 14 * 14 * 1 * 9
    macs = sum(flops[k] for k in ("enc1", "enc2", "enc3", "dec1", "dec2", "dec3"))
    assert flops["forward_flops"] == 2 * macs
    assert flops["train_flops"] == 2 * macs + 4 * macs - 2 * flops["enc1"]


def test_probe_seconds__measures_the_probe_against_a_ten_epoch_run(tmp_path):
    from helpers import build_config

    from sae.splits import load_splits

    cfg = build_config(tmp_path, epochs=1)
    out = bench.probe_seconds(cfg, load_splits(cfg.data, torch.device("cpu")), repeats=1)
    assert out["probe_seconds"] > 0 and out["ten_epoch_run_seconds"] > 0
    total = out["ten_epoch_run_seconds"] + out["probe_seconds"]
    assert out["probe_pct_of_10_epoch_run"] == pytest.approx(100 * out["probe_seconds"] / total)
    assert 0 <= out["probe_accuracy_after_1_epoch"] <= 1


def _bench_parser():
    from sae.cli import ArgumentParser

    parser = ArgumentParser(prog="bench.py")
    parser.add_dataclass("bench", bench.BenchConfig())
    return parser


def test_bench_flags__parts_population_and_its_sizes_parse():
    args = _bench_parser().parse_args(
        ["--parts", "population", "--population-ks", "1", "2", "--population-epochs", "2"]
    )
    assert args.bench.parts == ("population",)
    assert args.bench.population_ks == (1, 2)
    assert args.bench.population_epochs == 2
    defaults = _bench_parser().parse_args([]).bench
    assert defaults.parts[-2:] == ("population", "pruning")
    assert defaults.population_ks == (1, 2, 4, 8, 16, 32)
    assert defaults.pruning_seeds == (0, 1, 2) and defaults.pruning_settings == ("recorded",)
    assert defaults.images is None and defaults.population_train_size is None


@pytest.mark.parametrize("ks", [(), (0,), (1, -2), (2, 2)])
def test_bench_config__refuses_bad_population_sizes_in_one_line(ks):
    with pytest.raises(ValueError, match=r"^--population-ks needs distinct sizes >= 1") as err:
        bench.BenchConfig(population_ks=ks)
    assert "\n" not in str(err.value)


def test_bench_config__refuses_repeated_pruning_seeds_in_one_line():
    with pytest.raises(ValueError, match=r"^--pruning-seeds needs distinct seeds, got \[1, 1\]$"):
        bench.BenchConfig(pruning_seeds=(1, 1))


def test_bench_flags__a_population_size_below_one_is_refused_in_one_line():
    with pytest.raises(
        ValueError, match=r"^--population-ks needs distinct sizes >= 1, got \[1, 0\]$"
    ):
        _bench_parser().parse_args(["--population-ks", "1", "0"])


def test_sweep_trial_params__the_sweep_space_and_the_same_draws_for_every_k():
    pytest.importorskip("sae.sweep.space", reason="the sweep's space needs Optuna")
    from sae.sweep.config import SweepConfig

    four = bench.sweep_trial_params(4)
    assert bench.sweep_trial_params(2) == four[:2]
    space = SweepConfig()
    for params in four:
        assert set(params) == {"beta", "lr", "batch_size"}
        assert space.beta_range[0] <= params["beta"] <= space.beta_range[1]
        assert space.lr_range[0] <= params["lr"] <= space.lr_range[1]
        assert params["batch_size"] in space.batch_sizes


def test_population_figures__k1_and_k2_on_tiny_data(tmp_path):
    pytest.importorskip("sae.sweep.space", reason="the sweep's space needs Optuna")
    from helpers import build_config

    from sae.splits import load_splits

    base = build_config(tmp_path, epochs=1, probe=True)
    splits = load_splits(base.data, torch.device("cpu"))
    lines = []
    out = bench.population_figures(base, splits, (1, 2), peak_gflops=1.0, log=lines.append)
    per_k = {"trials_per_hour", "images_per_s", "fraction_of_matmul_peak", "groups", "failed"}
    per_k.add("speedup_vs_alone")
    assert set(out) == {f"population_k{k}_{name}" for k in (1, 2) for name in per_k} | {
        "population_alone_trials_per_hour",
        "population_best_k",
        "population_speedup_best_vs_k1",
    }
    for key, value in out.items():
        assert math.isfinite(value), key
        if not key.endswith("_failed"):
            assert value > 0, key
    assert out["population_k1_groups"] == 1 and 1 <= out["population_k2_groups"] <= 2
    assert out["population_best_k"] in (1, 2)
    assert len(lines) == 3 and lines[0].startswith("alone: 2 trial(s)")
    assert all("scaled linearly" in line for line in lines[1:])


def test_run__population_part_trains_trials_configured_as_the_sweep_configures_them(
    tmp_path, monkeypatch
):
    """The part's wiring: its own training-set size, the whole test split, and a trial's
    TrainConfig (the defaults, probe on, but for the epochs) before the sampled parameters."""
    pytest.importorskip("sae.sweep.space", reason="the sweep's space needs Optuna")
    from helpers import build_config

    from sae.splits import load_splits

    tiny = build_config(tmp_path, epochs=1)
    seen = {}

    def load(data, device):
        seen["data"] = data
        return load_splits(tiny.data, device)

    figures = bench.population_figures

    def population(base, *args, **kwargs):
        seen["train"] = base.train
        return figures(base, *args, **kwargs)

    monkeypatch.setattr(suite, "load_splits", load)
    monkeypatch.setattr(suite, "matmul_gflops", lambda device: 1.0)
    monkeypatch.setattr(suite, "population_figures", population)
    scratch = tmp_path / "scratch"
    monkeypatch.setattr(suite.tempfile, "mkdtemp", lambda prefix: scratch.mkdir() or scratch)
    cfg = bench.BenchConfig(
        parts=("population",), population_ks=(1, 2), population_train_size=200, device="cpu"
    )
    out = bench.run(cfg, str(tmp_path / "data"), log=lambda line: None)
    assert seen["data"].train_size == 200 and seen["data"].test_size is None
    assert seen["train"] == TrainConfig(epochs=1, device="cpu")
    assert out["matmul_gflops"] == 1.0
    assert {"population_k2_trials_per_hour", "population_speedup_best_vs_k1"} <= set(out)
    assert not scratch.exists()  # the scratch stores go with the run (--keep-stores keeps them)


def test_sweep_outcome__epochs_spent_pruned_trials_and_the_fronts_hypervolume():
    import optuna
    from optuna.trial import TrialState, create_trial

    from sae.bench.pruning import sweep_outcome
    from sae.names import ATTR_DEGENERATE, ATTR_EPOCH_POINTS

    study = optuna.create_study(directions=["minimize", "minimize"])
    for values, epochs, state, degenerate in [
        ([0.01, 0.5], 4, TrialState.COMPLETE, ""),
        ([0.03, 0.1], 4, TrialState.COMPLETE, ""),
        ([0.02, 0.05], 4, TrialState.COMPLETE, "layer enc3 is dead"),  # off the front
        (None, 1, TrialState.PRUNED, ""),
    ]:
        points = {str(e): [0.05, 0.5, 0.0] for e in range(1, epochs + 1)}
        attrs = {ATTR_EPOCH_POINTS: points, ATTR_DEGENERATE: degenerate}
        study.add_trial(create_trial(state=state, values=values, user_attrs=attrs))
    out = sweep_outcome(study)
    assert out["epochs"] == 13 and out["pruned"] == 1 and out["front"] == 2
    x, y = REFERENCE
    want = (x - 0.01) * (y - 0.5) + (x - 0.03) * (0.5 - 0.1)
    assert out["hypervolume"] == pytest.approx(want)


def test_replay__the_pruner_on_an_unpruned_sweep_trial_by_trial_in_order():
    """Three good trials complete (the warm-up), a dominated fourth stops at the first rung,
    and the fifth is judged against the fourth's point at that rung only: what one worker would
    have seen. The kept study counts the stopped trial's epochs up to its rung."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from sae.bench.pruning import sweep_outcome
    from sae.bench.replay import replay
    from sae.names import ATTR_DEGENERATE, ATTR_EPOCH_POINTS, ATTR_PRUNED_AT
    from sae.sweep.pareto import ParetoPruner

    study = optuna.create_study(directions=["minimize", "minimize"])
    finals = [(0.01, 0.5), (0.02, 0.3), (0.03, 0.1), (0.06, 0.6), (0.015, 0.45)]
    for mse, active in finals:
        points = {str(e): [mse * (5 - e) / 4 + mse, active, 0.0] for e in range(1, 5)}
        attrs = {ATTR_EPOCH_POINTS: points, ATTR_DEGENERATE: ""}
        study.add_trial(
            create_trial(state=TrialState.COMPLETE, values=[mse, active], user_attrs=attrs)
        )
    result = replay(study, ParetoPruner("halving", first_rung=1, factor=2, warmup=3, grace=0))
    kept = result.kept
    assert [(s.number, s.epoch) for s in result.stops] == [(3, 1)]
    assert (result.epochs, result.total) == (17, 20) and result.saved == 20 / 17
    states = [t.state for t in kept.trials]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED, TrialState.COMPLETE]
    stopped = kept.trials[3]
    assert stopped.user_attrs[ATTR_PRUNED_AT] == 1
    assert list(stopped.user_attrs[ATTR_EPOCH_POINTS]) == ["1"]
    assert stopped.params == study.trials[3].params
    out, unpruned = sweep_outcome(kept), sweep_outcome(study)
    assert (out["epochs"], unpruned["epochs"]) == (17, 20) and out["pruned"] == 1
    assert out["hypervolume"] == pytest.approx(unpruned["hypervolume"])  # it was dominated
    # no warm-up left: the same sweep with a warm-up of five prunes nothing
    assert (
        sweep_outcome(replay(study, ParetoPruner("halving", warmup=5, grace=0)).kept)["pruned"] == 0
    )


@pytest.mark.parametrize("link", ["benchmarks.json", "benchmarks.tmp"])
def test_write_json__never_writes_through_a_symbolic_link(tmp_path, link):
    """Bug fix (issue 23): the figures were written to ``<output>.tmp`` first, through a link
    planted there into its target; a link as the output itself is refused in one line."""
    theirs = tmp_path / "theirs.json"
    theirs.write_text("theirs")
    (tmp_path / link).symlink_to(theirs)
    output = tmp_path / "benchmarks.json"
    if link == "benchmarks.json":
        with pytest.raises(ValueError, match="is a symbolic link: nothing is written"):
            bench.write_json({"x": 1.0}, {"machine": "m"}, output)
    else:
        bench.write_json({"x": 1.0}, {"machine": "m"}, output)
        assert json.loads(output.read_text())["results"] == {"x": 1.0}
    assert theirs.read_text() == "theirs"


def test_part_steps__one_step_for_each_part_in_the_order_of_parts():
    assert tuple(suite.PART_STEPS) == suite.PARTS


def test_measure__the_requested_parts_in_parts_order_each_seeing_the_figures_before_it(
    tmp_path, monkeypatch
):
    """``measure`` is a loop over the table of parts: a part named in ``--parts`` runs, in
    PARTS order whatever the order asked, and reads what the parts before it measured."""
    calls = []

    def step(name, figures):
        def part(context):
            calls.append((name, dict(context.results)))
            return figures

        return part

    fake = {name: step(name, {f"{name}_figure": float(i)}) for i, name in enumerate(suite.PARTS)}
    monkeypatch.setattr(suite, "PART_STEPS", fake)
    cfg = bench.BenchConfig(parts=("flops", "eval", "throughput"), device="cpu")
    out = suite.measure(cfg, str(tmp_path / "data"), lambda line: None, tmp_path)
    assert [name for name, _ in calls] == ["throughput", "eval", "flops"]
    assert calls[2][1] == {"throughput_figure": 0.0, "eval_figure": 2.0}
    assert out == {"throughput_figure": 0.0, "eval_figure": 2.0, "flops_figure": 6.0}
    assert (tmp_path / "mlflow.yaml").exists()


def test_source__the_date_in_utc_and_the_command_as_typed_with_credentials_masked():
    import datetime

    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    argv = ["/x/experiments/bench.py", "--parts", "flops", "--output", "my file.json"]
    out = bench.source(argv, program="python experiments/bench.py")
    assert set(out) == {"date", "command"}
    date = datetime.datetime.fromisoformat(out["date"])
    assert date.utcoffset() == datetime.timedelta(0) and before <= date
    assert out["command"] == "python experiments/bench.py --parts flops --output 'my file.json'"
    assert bench.source(["/venv/bin/sae-bench", "--device", "cpu"])["command"] == (
        "sae-bench --device cpu"
    )
    masked = bench.source(["sae-bench", "--tracking-uri", "postgresql://bob:hunter2@db/x"])
    assert "hunter2" not in masked["command"] and "bob:***@db" in masked["command"]


def test_bench_cli__the_json_says_when_and_by_which_command_its_figures_were_made(
    tmp_path, monkeypatch, capsys
):
    """The file records its date, command and settings beside the machine and the figures, and
    the tables made from it say so."""
    import runpy
    import sys
    from pathlib import Path

    from sae.bench import tables

    script = Path(__file__).resolve().parents[1] / "experiments" / "bench.py"
    output = tmp_path / "bench.json"
    argv = ["--parts", "flops", "--no-track", "--device", "cpu", "--output", str(output)]
    monkeypatch.setattr(sys, "argv", [str(script), *argv])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code == 0, capsys.readouterr().err
    saved = json.loads(output.read_text())
    assert set(saved) == {"machine", "results", "date", "command"}
    assert saved["command"] == f"python experiments/bench.py {' '.join(argv)}"
    assert set(saved["results"]) == {"train_mflops_per_image", "matmul_gflops"}
    assert saved["machine"]["parts"] == "flops" and saved["machine"]["sweep_trials"] == "6"
    text = tables.render([tables.load(output)], ("cpu",))
    assert text.startswith(f"From `{saved['command']}`, {saved['date'][:10]} ")
    assert (
        "| FLOPs per training image (forward + backward, from the layer shapes) | 4.2 MFLOP |"
        in (text)
    )


def test_pruning_figures__each_seeds_sweeps_the_replay_the_means_and_the_target(
    tmp_path, monkeypatch
):
    """The part's steps put together: each seed's two sweeps (run_sweep, here in-memory studies)
    and the replay under the keys the tables read, then the means of the ratios over the seeds
    and the target, with values computed by hand."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from sae.bench import pruning
    from sae.names import ATTR_DEGENERATE, ATTR_EPOCH_POINTS

    def study(finals, epochs):
        made = optuna.create_study(directions=["minimize", "minimize"])
        for mse, active in finals:
            points = {str(e): [mse, active, 0.0] for e in range(1, epochs + 1)}
            attrs = {ATTR_EPOCH_POINTS: points, ATTR_DEGENERATE: ""}
            made.add_trial(
                create_trial(state=TrialState.COMPLETE, values=[mse, active], user_attrs=attrs)
            )
        return made

    unpruned = study([(0.01, 0.5), (0.02, 0.3), (0.03, 0.1)], epochs=4)  # 12 epochs
    pruned = study([(0.01, 0.5), (0.03, 0.1)], epochs=3)  # 6 epochs, one point off the front
    sweeps = {"none": (unpruned, 100.0), "pareto": (pruned, 40.0)}
    calls = []

    def run_sweep(folder, data_root, argv, name, seed, pruner):
        calls.append((seed, pruner))
        return sweeps[pruner]

    monkeypatch.setattr(pruning, "run_sweep", run_sweep)
    lines = []
    out = pruning.pruning_figures(tmp_path, "data", "small", [], (0, 1), lines.append)
    assert calls == [(0, "none"), (0, "pareto"), (1, "none"), (1, "pareto")]
    per_seed = {
        f"pruning_small_seed{seed}_{sweep}_{figure}"
        for seed in (0, 1)
        for sweep in ("none", "pareto", "replay")
        for figure in ("epochs", "pruned", "front", "hypervolume")
    } | {
        f"pruning_small_seed{seed}_{sweep}_seconds"
        for seed in (0, 1)
        for sweep in ("none", "pareto")
    }
    means = {
        f"pruning_small_{name}_ratio"
        for name in ("epochs", "hypervolume", "replay_epochs", "replay_hypervolume")
    }
    assert set(out) == per_seed | means | {"pruning_small_target_met"}
    x, y = REFERENCE
    full = (x - 0.01) * (y - 0.5) + (x - 0.02) * (0.5 - 0.3) + (x - 0.03) * (0.3 - 0.1)
    part = (x - 0.01) * (y - 0.5) + (x - 0.03) * (0.5 - 0.1)
    assert out["pruning_small_seed1_none_hypervolume"] == pytest.approx(full)
    assert out["pruning_small_seed1_pareto_seconds"] == 40.0
    assert out["pruning_small_epochs_ratio"] == 12 / 6
    assert out["pruning_small_hypervolume_ratio"] == pytest.approx(part / full)
    assert out["pruning_small_target_met"] == float(part / full >= pruning.HYPERVOLUME_TARGET)
    assert len(lines) == 2 * 3 + 2 and lines[-1].startswith("pruning, small: 2.00x fewer epochs")
