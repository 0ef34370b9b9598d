"""The markdown tables made from benchmark JSON (sae/bench/tables.py, analysis/bench_tables.py)."""

import re
import runpy
import sys
from pathlib import Path

import pytest
from helpers_bench import (
    COMMAND,
    CPU,
    GPU,
    GPU_MACHINE,
    MACHINE,
    POPULATION,
    PRUNING,
    bench_json,
)

from sae.bench import markdown, tables

SCRIPT = Path(__file__).resolve().parents[1] / "analysis" / "bench_tables.py"
SOURCE = (
    f"From `{COMMAND}`, 2026-11-28 09:15 UTC; AMD EPYC, 2 cores, 2 torch threads, "
    "torch 2.14.1, Python 3.11.7, device cpu."
)


def _render(tmp_path, results, groups=tables.GROUPS, **kwargs) -> str:
    path = bench_json(tmp_path / "bench.json", results, **kwargs)
    return tables.render([tables.load(path)], groups)


def _cli(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    return done.value.code


def test_cpu_table__the_figures_as_the_readme_wrote_them_with_their_targets(tmp_path):
    text = _render(tmp_path, CPU, ("cpu",))
    lines = text.splitlines()
    assert lines[0] == SOURCE
    assert lines[2:4] == ["| what | figure | target |", "| --- | --- | --- |"]
    rows = lines[4:]
    assert rows == [
        "| training throughput, batch 100, the seed's math, whole 60,000-image epochs: our core"
        " | 5,229 images/s |  |",
        "| the seed's own loop (torchvision MNIST + ToTensor + DataLoader), whole 60,000-image"
        " epochs | 2,478 images/s |  |",
        "| speedup (median of 3 alternating repetitions each) | 2.11x | at least 2x: met |",
        "| a whole 60,000-image epoch, untracked / tracked | 11.5 s / 11.4 s |  |",
        "| tracking overhead on a whole 60,000-image epoch | -0.8% | at most 3%: met |",
        "| end-of-run logging (curves, histograms; model off) | 3.6 s per run |  |",
        "| evaluation over the 10,000 test images | 1,001 ms |  |",
        "| linear probe at the end of a run (encode both splits, fit)"
        " | 1.7 s, 2.9% of a 10-epoch run (59 s) | at most 5%: met |",
        "| the probe's accuracy after one epoch | 91.2% |  |",
        "| sweep of 6 one-epoch trials on 3,000 images, 1 worker | 369 trials/hour |  |",
        "| the same with `--workers 2` | 389 trials/hour (1.05x) | at least 1.2x: not met |",
        "| the same with `--population 2` (1 worker) | 364 trials/hour |  |",
        "| the same with `--population 6` (1 worker) | 372 trials/hour |  |",
        "| peak resident memory: a training run | 1,158 MB |  |",
        "| peak resident memory: a sweep process, 1 worker / 2 workers | 1,970 MB / 1,890 MB |  |",
        "| peak resident memory: a sweep process, `--population 2` / `--population 6`"
        " | 2,010 MB / 2,200 MB |  |",
        "| FLOPs per training image (forward + backward, from the layer shapes) | 4.2 MFLOP |  |",
        "| a 1024x1024 float32 matrix product (the practical peak) | 172 GFLOP/s |  |",
        "| achieved by the core | 21.9 GFLOP/s, 12.7% of that peak |  |",
    ]


def test_cpu_table__a_target_not_met_says_so(tmp_path):
    slow = {**CPU, "speedup_vs_seed_loop": 1.95, "probe_pct_of_10_epoch_run": 5.5}
    text = _render(tmp_path, slow, ("cpu",))
    assert "| 1.95x | at least 2x: not met |" in text
    assert "of a 10-epoch run (59 s) | at most 5%: not met |" in text


def test_cpu_table__a_missing_figure_drops_its_row_and_nothing_else(tmp_path):
    missing = {k: v for k, v in CPU.items() if k not in ("eval_ms_10k", "epoch_seconds_tracked")}
    text = _render(tmp_path, missing, ("cpu",))
    assert "evaluation over the 10,000 test images" not in text
    assert "untracked / tracked" not in text  # one of its two figures is gone
    assert len(text.splitlines()) == len(_render(tmp_path, CPU, ("cpu",)).splitlines()) - 2
    assert "| tracking overhead on a whole 60,000-image epoch | -0.8% |" in text


def test_cpu_table__a_run_without_targets_has_no_target_column(tmp_path):
    text = _render(tmp_path, {"eval_ms_10k": 1091.76, "matmul_gflops": 69.03}, ("cpu",))
    assert text.splitlines()[2:] == [
        "| what | figure |",
        "| --- | --- |",
        "| evaluation over the 10,000 test images | 1,092 ms |",
        "| a 1024x1024 float32 matrix product (the practical peak) | 69.0 GFLOP/s |",
    ]


def test_cpu_table__a_file_of_the_workers_part_alone_makes_its_row(tmp_path):
    """Bug fix: the workers part was not among the parts a figure table is made for, so a file
    of ``--parts workers`` made no table."""
    workers = {
        "workers_trials_per_minute_1x2": 1.126,
        "workers_trials_per_minute_2x1": 1.010,
        "workers_speedup_2x1": 0.897,
    }
    machine = {**MACHINE, "parts": "workers,pruning"}
    text = _render(tmp_path, workers, ("cpu",), machine=machine)
    assert text.splitlines()[-1] == (
        "| whole sweep trials (`--parts workers`): 1 worker x 2 torch threads / 2 workers x 1"
        " | 1.13 / 1.01 trials/minute (0.90x) |"
    )


def test_render__an_old_file_without_date_or_command_still_renders(tmp_path):
    """Files written before the date and command were kept have only machine and results."""
    old = {k: v for k, v in MACHINE.items() if k not in ("sweep_trials", "sweep_train_size")}
    text = _render(tmp_path, CPU, ("cpu",), machine=old, origin={})
    parts = MACHINE["parts"]
    assert text.splitlines()[0] == (
        f"From a command not recorded (parts {parts}), date unknown; AMD EPYC, 2 cores, "
        "2 torch threads, torch 2.14.1, Python 3.11.7, device cpu."
    )
    # the sweep's size is read from its figures' names when the settings are not there
    assert "| sweep of 6 one-epoch trials, 1 worker | 369 trials/hour |" in text


def test_render__a_group_without_figures_makes_no_table(tmp_path):
    text = _render(tmp_path, CPU)
    assert text.startswith("## CPU\n\n" + SOURCE)
    assert "## Populations" not in text and "## Pruning" not in text and "## GPU" not in text
    with pytest.raises(ValueError, match=r"^no population figures in .*bench.json: nothing"):
        _render(tmp_path, CPU, ("population",))
    with pytest.raises(ValueError, match=r"^no gpu figures in"):  # a CPU run is not a GPU table
        _render(tmp_path, CPU, ("gpu",))


def test_population_table__a_row_per_k_and_the_trials_alone(tmp_path):
    text = _render(tmp_path, POPULATION, ("population",))
    blocks = text.strip().split("\n\n")
    assert blocks[0] == SOURCE
    assert "1 epoch on all 60,000 training images" in blocks[1]
    assert "scaled linearly to the sweep's 10 epochs" in blocks[1]
    assert blocks[2].splitlines() == [
        "| K | batch-size groups | trials/hour (10 epochs) | training images/s | of matmul peak"
        " | vs the same trials alone | failed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        "| 1 | 1 | 20.0 | 4,381 | 10.7% | 0.60x | 0 |",
        "| 2 | 2 | 22.0 | 4,819 | 11.7% | 0.65x | 1 |",
    ]
    assert blocks[3] == (
        "The same trials alone, one after another with `fit()`: 24.2 trials/hour. "
        "The most trials per hour at K = 2 (1.10x K = 1's)."
    )


def test_population_table__a_missing_column_is_left_out(tmp_path):
    figures = {k: v for k, v in POPULATION.items() if not k.endswith("_failed")}
    figures.pop("population_k2_images_per_s")
    table = _render(tmp_path, figures, ("population",)).split("\n\n")[2].splitlines()
    assert table[0].endswith("| vs the same trials alone |")  # no failed column
    assert table[3] == "| 2 | 2 | 22.0 |  | 11.7% | 0.65x |"


def test_pruning_table__a_row_per_seed_the_means_and_the_target(tmp_path):
    text = _render(tmp_path, PRUNING, ("pruning",))
    blocks = text.strip().split("\n\n")
    assert blocks[0] == SOURCE
    assert blocks[1].startswith("The small setting: 12 trials of 4 epochs on 10,000 training")
    assert "sampler seeds 0, 1" in blocks[1]
    rows = blocks[2].splitlines()
    assert rows[0] == (
        "| seed | epochs: none / pareto | saved | trials pruned | hypervolume: none / pareto"
        " | kept | on the front: none / pareto | replayed: epochs, saved, kept"
        " | wall time: none / pareto |"
    )
    # 48/36 = 1.33x, 0.03686/0.03783 = 97.4%; 48/33 = 1.45x, 0.03768/0.03783 = 99.6%
    assert rows[2] == (
        "| 0 | 48 / 36 | 1.33x | 4 | 0.03783 / 0.03686 | 97.4% | 5 / 4 | 33, 1.45x, 99.6%"
        " | 233 / 166 s |"
    )
    assert rows[3].startswith("| 1 | 48 / 33 | 1.45x | 5 | 0.04399 / 0.03767 | 85.6% |")
    # the means are the JSON's own: (1.333 + 1.455) / 2 = 1.39x, (97.4% + 85.6%) / 2 = 91.5%
    assert rows[4] == "| mean |  | 1.39x |  |  | 91.5% |  | 1.45x, 91.5% |  |"
    assert blocks[3] == (
        "Target: at least 2x fewer epochs for a hypervolume within 2% of the unpruned front's, "
        "means over the seeds: not met."
    )


def test_pruning_table__the_full_setting_says_its_size(tmp_path):
    full = {k.replace("_small_", "_full_"): v for k, v in PRUNING.items() if "seed1" not in k}
    text = _render(tmp_path, {**full, "pruning_full_target_met": 1.0}, ("pruning",))
    assert "The full setting: 30 trials of 10 epochs on all 60,000 training images" in text
    assert "sampler seeds 0," in text and "| 0 | 48 / 36 |" in text and "| 1 |" not in text
    assert text.rstrip().endswith("means over the seeds: met.")


def test_pruning_table__the_recorded_sweeps_replayed_first_with_safety_and_target(tmp_path):
    recorded = {}
    for name, (epochs, pruned, volume, unpruned) in {
        "seed0": (120, 18, 0.0556, 0.0560),
        "seed2": (150, 15, 0.0495, 0.0500),
    }.items():
        figures = {"epochs": epochs, "total": 300, "saved": 300 / epochs, "pruned": pruned}
        figures |= {"hypervolume": volume, "unpruned": unpruned, "kept": volume / unpruned}
        recorded |= {f"pruning_recorded_{name}_{k}": v for k, v in figures.items()}
    recorded |= {
        "pruning_recorded_saved_mean": (2.5 + 2.0) / 2,
        "pruning_recorded_kept_min": 0.99,
        "pruning_recorded_safe": 1.0,
        "pruning_recorded_target_met": 1.0,
    }
    blocks = _render(tmp_path, {**recorded, **PRUNING}, ("pruning",)).strip().split("\n\n")
    rows = blocks[2].splitlines()
    assert rows[0].startswith("| recorded sweep | trials stopped | epochs | saved |")
    assert rows[2] == "| seed0 | 18 | 120 of 300 | 2.50x | 0.05560 / 0.05600 | 99.3% |"
    assert rows[3] == "| seed2 | 15 | 150 of 300 | 2.00x | 0.04950 / 0.05000 | 99.0% |"
    assert rows[4] == "| mean |  |  | 2.25x |  | least 99.0% |"
    assert blocks[3] == (
        "Safe (at least 99% of the unpruned hypervolume on every recorded sweep): yes. Target, "
        "at least 2x fewer epochs on the mean: met."
    )
    assert blocks[5].startswith("The small setting: 12 trials")  # the proxy's table after


def test_gpu_table__float32_and_amp_side_by_side_each_with_its_source(tmp_path):
    amp = {
        **GPU,
        "core_images_per_s": 22312.0,
        "seed_loop_images_per_s": 7847.0,
        "speedup_vs_seed_loop": 22312.0 / 7847.0,
    }
    amp.pop("eval_ms_10k")
    population = {**GPU_MACHINE, "parts": "population"}
    paths = [  # as reports/cuda/*.json lists them: --amp first
        bench_json(tmp_path / "amp.json", amp, {**GPU_MACHINE, "amp": "True"}, origin={}),
        bench_json(tmp_path / "f32.json", GPU, GPU_MACHINE),
        bench_json(tmp_path / "cpu.json", CPU),  # a CPU run: not in the GPU table
        # the population part, which records the matrix product's rate: not a column either
        bench_json(tmp_path / "pop.json", {**POPULATION, "matmul_gflops": 51000.0}, population),
    ]
    text = tables.render([tables.load(p) for p in paths], ("gpu",))
    blocks = text.strip().split("\n\n")
    assert blocks[0].startswith(f"float32: From `{COMMAND}`, 2026-11-28 09:15 UTC; Intel Xeon")
    assert blocks[0].endswith("device cuda: NVIDIA H200.")
    assert blocks[1].startswith("`--amp` (float16 autocast): From a command not recorded")
    assert blocks[1].endswith("date unknown; Intel Xeon, 16 cores, 2 torch threads, "
                              "torch 2.11.0+cu130, Python 3.11.7, device cuda: NVIDIA H200, "
                              "--amp.")  # fmt: skip
    rows = blocks[2].splitlines()
    assert rows[0] == "| what | float32 | `--amp` (float16 autocast) | target |"
    assert len(blocks) == 3
    assert rows[2].endswith(": our core | 28,758 images/s | 22,312 images/s |  |")
    assert "each batch copied to the GPU" in rows[3]
    assert rows[4] == (
        "| speedup (median of 3 alternating repetitions each) | 3.87x | 2.84x"
        " | at least 2x: met / met |"
    )
    assert rows[5] == "| evaluation over the 10,000 test images | 59 ms |  |  |"
    assert "| an 8192x8192 float32 matrix product (the practical peak) | 51.2 TFLOP/s |" in text
    assert "| achieved by the core | 121 GFLOP/s, 0.236% of that peak |" in text


@pytest.mark.parametrize(
    "content, message",
    [
        (None, r"^error: .*nope\.json: no such file$"),
        ("{not json", r"^error: .*bad\.json is not a benchmark JSON file \(Expecting"),
        ('{"results": {"x": 1}}', r"^error: .*bad\.json is not a benchmark JSON file \(it needs"),
        ('{"machine": {}, "results": {"x": "fast"}}', r"^error: .*bad\.json is not a benchmark"),
        ("[1, 2]", r"^error: .*bad\.json is not a benchmark JSON file"),
    ],
)
def test_cli__bad_input_is_one_line_and_a_non_zero_exit(
    tmp_path, monkeypatch, capsys, content, message
):
    name = tmp_path / ("nope.json" if content is None else "bad.json")
    if content is not None:
        name.write_text(content)
    good = bench_json(tmp_path / "good.json", CPU)
    output = tmp_path / "out.md"
    assert _cli(monkeypatch, str(good), str(name), "--output", str(output)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.match(message, err)
    assert not output.exists()


def test_cli__writes_the_group_to_output_and_prints_to_stdout_without_one(
    tmp_path, monkeypatch, capsys
):
    path = bench_json(tmp_path / "bench.json", {**CPU, **POPULATION})
    output = tmp_path / "docs" / "generated" / "bench-population.md"
    assert _cli(monkeypatch, str(path), "--group", "population", "--output", str(output)) == 0
    assert capsys.readouterr().out == f"written to {output}\n"
    want = tables.render([tables.load(path)], ("population",))
    assert output.read_text() == want and "## " not in want  # one group: no heading
    assert _cli(monkeypatch, str(path)) == 0
    out = capsys.readouterr().out
    assert out == tables.render([tables.load(path)])
    assert out.startswith("## CPU\n") and "\n## Populations\n" in out


def test_cli__an_unknown_group_is_a_usage_error(tmp_path, monkeypatch, capsys):
    path = bench_json(tmp_path / "bench.json", CPU)
    assert _cli(monkeypatch, str(path), "--group", "tpu") == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli__the_output_through_a_symbolic_link_is_refused_and_its_target_kept(
    tmp_path, monkeypatch, capsys
):
    theirs = tmp_path / "theirs.md"
    theirs.write_text("theirs")
    link = tmp_path / "bench-cpu.md"
    link.symlink_to(theirs)
    path = bench_json(tmp_path / "bench.json", CPU)
    assert _cli(monkeypatch, str(path), "--group", "cpu", "--output", str(link)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {link} is a symbolic link: nothing is written")
    assert err.count("\n") == 1
    assert theirs.read_text() == "theirs" and link.is_symlink()


def test_significant__three_digits_and_thousands_separators():
    assert [markdown.significant(v) for v in (1.7, 20.0, 21.34, 369.2, 5229.4, 0.00236)] == [
        "1.70",
        "20.0",
        "21.3",
        "369",
        "5,229",
        "0.00236",
    ]
