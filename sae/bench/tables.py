"""Markdown tables of the benchmark's figures, made from the JSON files ``write_json`` writes.

Four groups, each a table (or a few): ``cpu`` (the figures of a run on the CPU, against their
targets), ``population`` (sweep trials trained as populations, by K), ``pruning`` (the Pareto
sweep with and without its pruner, by setting and seed) and ``gpu`` (the figures of runs on a
CUDA device, float32 and ``--amp`` side by side). Each table is headed by where its figures came
from: the command, the date (old files without one say "date unknown") and the machine. A figure
the JSON lacks is left out, and a group with none at all makes no table.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sae.bench.markdown import (
    BenchFile,
    fill,
    images_text,
    load,
    markdown_table,
    plural,
    provenance,
    target_note,
    whole,
)
from sae.bench.pruning import EPOCHS_TARGET, HYPERVOLUME_TARGET, SAFE_SHARE
from sae.bench.suite import FULL_PRUNING
from sae.config import TrainConfig
from sae.data.idx import atomic_write
from sae.paths import owned

__all__ = ["GROUPS", "BenchFile", "load", "render", "write"]

GROUPS = ("cpu", "population", "pruning", "gpu")
"""The groups of figures, in the order they are rendered."""

TITLES = {
    "cpu": "CPU",
    "population": "Populations",
    "pruning": "Pruning the Pareto sweep",
    "gpu": "GPU",
}
"""Each group's heading, when one output holds several groups."""


# The cpu and gpu groups: one row per figure (or a few that read together).


@dataclasses.dataclass(frozen=True)
class Row:
    """A row of the figure table: what it shows and its figure, templates over ``fields``."""

    what: str
    figure: str
    target: str | None = None
    """the key in TARGETS of the row's figure that has a target"""
    unit: str = ""
    """the unit of the target's bound"""


ROWS = (
    Row("training throughput, batch 100, the seed's math{span}: our core",
        "{core_images_per_s:,.0f} images/s"),
    Row("the seed's own loop (torchvision MNIST + ToTensor + DataLoader{copied}){span}",
        "{seed_loop_images_per_s:,.0f} images/s"),
    Row("speedup ({medians})", "{speedup_vs_seed_loop:.2f}x", "speedup_vs_seed_loop", "x"),
    Row("a whole 60,000-image epoch, untracked / tracked",
        "{epoch_seconds_untracked:.1f} s / {epoch_seconds_tracked:.1f} s"),
    Row("tracking overhead on a whole 60,000-image epoch", "{tracking_overhead_pct:.1f}%",
        "tracking_overhead_pct", "%"),
    Row("end-of-run logging (curves, histograms; model off)",
        "{tracking_end_of_run_seconds:.1f} s per run"),
    Row("evaluation over the 10,000 test images", "{eval_ms_10k:,.0f} ms"),
    Row("linear probe at the end of a run (encode both splits, fit)",
        "{probe_seconds:.1f} s, {probe_pct_of_10_epoch_run:.1f}% of a 10-epoch run "
        "({ten_epoch_run_seconds:,.0f} s)", "probe_pct_of_10_epoch_run", "%"),
    Row("the probe's accuracy after one epoch", "{probe_accuracy_after_1_epoch:.1%}"),
    Row("{sweep}, 1 worker", "{sweep_trials_per_hour_1w:sig} trials/hour"),
    Row("the same with `--workers 2`",
        "{sweep_trials_per_hour_2w:sig} trials/hour ({sweep_speedup_2w:.2f}x)",
        "sweep_speedup_2w", "x"),
    Row("the same with `--population 2` (1 worker)",
        "{sweep_trials_per_hour_pop2:sig} trials/hour"),
    Row("the same with `--population {sweep_n}` (1 worker)",
        "{sweep_trials_per_hour_popN:sig} trials/hour"),
    Row("whole sweep trials (`--parts workers`): 1 worker x 2 torch threads / 2 workers x 1",
        "{workers_trials_per_minute_1x2:.2f} / {workers_trials_per_minute_2x1:.2f} "
        "trials/minute ({workers_speedup_2x1:.2f}x)"),
    Row("peak resident memory: a training run", "{train_peak_rss_mb:,.0f} MB"),
    Row("peak resident memory: a sweep process, 1 worker / 2 workers",
        "{sweep_peak_rss_mb_1w:,.0f} MB / {sweep_peak_rss_mb_2w:,.0f} MB"),
    Row("peak resident memory: a sweep process, `--population 2` / `--population {sweep_n}`",
        "{sweep_peak_rss_mb_pop2:,.0f} MB / {sweep_peak_rss_mb_popN:,.0f} MB"),
    Row("FLOPs per training image (forward + backward, from the layer shapes)",
        "{train_mflops_per_image:.1f} MFLOP"),
    Row("{matmul_size} float32 matrix product (the practical peak)", "{matmul_gflops:flops}"),
    Row("achieved by the core",
        "{achieved_gflops:flops}, {fraction_of_matmul_peak:pct} of that peak"),
)  # fmt: skip
"""The rows of the cpu and gpu tables, in order."""


def figure_fields(bench: BenchFile) -> dict[str, Any]:
    """The figures of ``bench`` and what the rows' words say of its settings."""
    m, r = bench.machine, bench.results
    fields: dict[str, Any] = dict(r)
    images = m.get("images")
    if images == "None":
        fields["span"] = ", whole 60,000-image epochs"
    else:
        fields["span"] = f", {whole(images):,}-image runs" if whole(images) else ""
    fields["copied"] = ", each batch copied to the GPU" if bench.cuda else ""
    repeats = m.get("repeats")
    fields["medians"] = (
        f"median of {repeats} alternating repetitions each"
        if repeats
        else "medians of alternating repetitions"
    )
    fields["matmul_size"] = "an 8192x8192" if bench.cuda else "a 1024x1024"
    populations = [int(k) for k in re.findall(r"sweep_trials_per_hour_pop(\d+)", " ".join(r))]
    n = m.get("sweep_trials") or next((str(k) for k in populations if k != 2), None)
    if n and n != "2":
        fields["sweep_n"] = n
        for name in ("sweep_trials_per_hour", "sweep_peak_rss_mb"):
            if f"{name}_pop{n}" in r:
                fields[f"{name}_popN"] = r[f"{name}_pop{n}"]
    size = m.get("sweep_train_size")
    trials = f"{n} one-epoch trials" if n else "one-epoch trials"
    fields["sweep"] = f"sweep of {trials}" + (f" on {whole(size):,} images" if whole(size) else "")
    return fields


def figure_table(benches: Sequence[BenchFile], labels: Sequence[str]) -> str | None:
    """The rows of ROWS that any of ``benches`` has figures for, a column each (``labels``),
    headed by where each column came from; None when none has a figure of ROWS."""
    fields = [figure_fields(b) for b in benches]
    rows = []
    for row in ROWS:
        cells = [fill(row.figure, f) for f in fields]
        present = [i for i, cell in enumerate(cells) if cell is not None]
        if not present:
            continue
        note = ""
        if row.target:
            values = [
                benches[i].results[row.target] if i in present else None for i in range(len(cells))
            ]
            note = target_note(row.target, row.unit, values)
        what = fill(row.what, fields[present[0]]) or row.what
        rows.append([what, *(cell or "" for cell in cells), note])
    if not rows:
        return None
    if len(benches) == 1:
        heads = [provenance(benches[0])]
    else:
        heads = [f"{label}: {provenance(b)}" for label, b in zip(labels, benches, strict=True)]
    table = markdown_table(["what", *labels, "target"], rows)
    return "\n\n".join([*heads, table])


FIGURE_PARTS = ("throughput", "tracking", "eval", "probe", "sweep", "workers", "memory", "flops")
"""The parts whose figures the cpu and gpu tables show (the population part also records the
matrix product's rate, which makes no table of its own)."""


def has_figure_parts(bench: BenchFile) -> bool:
    """Whether ``bench`` ran one of FIGURE_PARTS (or does not say which parts it ran)."""
    parts = bench.machine.get("parts")
    return parts is None or any(part in parts.split(",") for part in FIGURE_PARTS)


def cpu_tables(benches: Sequence[BenchFile]) -> list[str]:
    """The figure table of each file measured on the CPU."""
    tables = [figure_table([b], ["figure"]) for b in benches if not b.cuda and has_figure_parts(b)]
    return [t for t in tables if t]


def gpu_tables(benches: Sequence[BenchFile]) -> list[str]:
    """One figure table of the files measured on a CUDA device: a column each, float32 first
    and then ``--amp`` (the file's name beside it when two columns would read the same)."""
    cuda = sorted((b for b in benches if b.cuda and has_figure_parts(b)), key=lambda b: b.amp)
    labels = ["`--amp` (float16 autocast)" if b.amp else "float32" for b in cuda]
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({Path(b.name).name})" for label, b in zip(labels, cuda, strict=True)]
    table = figure_table(cuda, labels) if cuda else None
    return [table] if table else []


# The population group: a row per K.

POPULATION_COLUMNS = (
    ("K", "{k}"),
    ("batch-size groups", "{groups:.0f}"),
    ("trials/hour ({epochs} epochs)", "{trials_per_hour:sig}"),
    ("training images/s", "{images_per_s:,.0f}"),
    ("of matmul peak", "{fraction_of_matmul_peak:pct}"),
    ("vs the same trials alone", "{speedup_vs_alone:.2f}x"),
    ("failed", "{failed:.0f}"),
)
"""The population table's columns: header and cell, over one K's figures."""


def population_table(bench: BenchFile) -> str | None:
    """The population part's figures of ``bench`` by K, with the same trials alone and the best
    K below; None when it has none."""
    r, m = bench.results, bench.machine
    ks = sorted({int(k) for k in re.findall(r"population_k(\d+)_", " ".join(r))})
    if not ks and "population_alone_trials_per_hour" not in r:
        return None
    epochs = TrainConfig().epochs
    rows = []
    for k in ks:
        prefix = f"population_k{k}_"
        figures = {key[len(prefix) :]: v for key, v in r.items() if key.startswith(prefix)}
        rows.append([fill(cell, {**figures, "k": k}) or "" for _, cell in POPULATION_COLUMNS])
    header = [head.format(epochs=epochs) for head, _ in POPULATION_COLUMNS]
    trained = whole(m.get("population_epochs"))
    trained = "the measured epochs" if trained is None else plural(trained, "epoch")
    images = images_text(m.get("population_train_size"))
    lines = [
        provenance(bench),
        f"K sweep trials drawn from the default space as the sweep draws them, grouped by batch "
        f"size, each group one population, {trained} on {images} training images "
        f"with evaluation and the probe, untracked; trials/hour scaled linearly to the sweep's "
        f"{epochs} epochs.",
    ]
    if ks:
        lines.append(markdown_table(header, rows))
    alone = fill(
        "The same trials alone, one after another with `fit()`: "
        "{population_alone_trials_per_hour:sig} trials/hour.",
        r,
    )
    best = fill("The most trials per hour at K = {population_best_k:.0f}", r)
    if best:
        best += (fill(" ({population_speedup_best_vs_k1:.2f}x K = 1's)", r) or "") + "."
    notes = " ".join(note for note in (alone, best) if note)
    return "\n\n".join([*lines, notes] if notes else lines)


def population_tables(benches: Sequence[BenchFile]) -> list[str]:
    """The population table of each file that has the part's figures."""
    return [t for t in map(population_table, benches) if t]


# The pruning group: a table per setting, a row per sampler seed.

PRUNING_COLUMNS = (
    ("seed", "{seed}", "mean"),
    ("epochs: none / pareto", "{none_epochs:,.0f} / {pareto_epochs:,.0f}", ""),
    ("saved", "{saved:.2f}x", "{epochs_ratio:.2f}x"),
    ("trials pruned", "{pareto_pruned:.0f}", ""),
    ("hypervolume: none / pareto", "{none_hypervolume:.5f} / {pareto_hypervolume:.5f}", ""),
    ("kept", "{kept:.1%}", "{hypervolume_ratio:.1%}"),
    ("on the front: none / pareto", "{none_front:.0f} / {pareto_front:.0f}", ""),
    ("replayed: epochs, saved, kept",
     "{replay_epochs:,.0f}, {replay_saved:.2f}x, {replay_kept:.1%}",
     "{replay_epochs_ratio:.2f}x, {replay_hypervolume_ratio:.1%}"),
    ("wall time: none / pareto", "{none_seconds:,.0f} / {pareto_seconds:,.0f} s", ""),
)  # fmt: skip
"""The pruning table's columns: header, a seed's cell, and the mean row's cell."""


def seed_fields(figures: Mapping[str, float], seed: int) -> dict[str, Any]:
    """One seed's figures (keys without ``pruning_{setting}_seed{seed}_``), with the pruned and
    the replayed sweep's ratios to the unpruned one."""
    fields: dict[str, Any] = {**figures, "seed": seed}
    for prefix, name in (("", "pareto"), ("replay_", "replay")):
        if {"none_epochs", f"{name}_epochs"} <= set(figures) and figures[f"{name}_epochs"]:
            fields[f"{prefix}saved"] = figures["none_epochs"] / figures[f"{name}_epochs"]
        if {"none_hypervolume", f"{name}_hypervolume"} <= set(figures):
            unpruned = figures["none_hypervolume"]
            kept = figures[f"{name}_hypervolume"] / unpruned if unpruned else math.nan
            fields[f"{prefix}kept"] = kept
    return fields


def setting_line(bench: BenchFile, setting: str, seeds: Sequence[int]) -> str:
    """The sweeps of a setting in words: trials, epochs, images, sampler seeds."""
    m = bench.machine
    size: tuple[Any, ...] | None = None
    if setting == "full":
        size = FULL_PRUNING
    elif all(m.get(f"pruning_{n}") for n in ("trials", "epochs", "train_size")):
        size = tuple(m[f"pruning_{n}"] for n in ("trials", "epochs", "train_size"))
    seeds_text = ", ".join(map(str, seeds))
    if size is None:
        return f"The {setting} setting, sampler seeds {seeds_text}."
    trials, epochs, images = size
    images = images_text(images)
    return (
        f"The {setting} setting: {trials} trials of {epochs} epochs on {images} training images, "
        f"`--pruner none` against `--pruner pareto` from sampler seeds {seeds_text}, and the "
        "pruner replayed on the unpruned sweep."
    )


def pruning_table(bench: BenchFile, setting: str) -> str:
    """One setting's sweeps by seed, the means over the seeds, and the target met or not."""
    r = bench.results
    key = f"pruning_{setting}_"
    seeds = sorted({int(s) for s in re.findall(rf"\b{key}seed(\d+)_", " ".join(r))})
    rows = []
    for seed in seeds:
        prefix = f"{key}seed{seed}_"
        figures = {k[len(prefix) :]: v for k, v in r.items() if k.startswith(prefix)}
        rows.append(
            [fill(cell, seed_fields(figures, seed)) or "" for _, cell, _ in PRUNING_COLUMNS]
        )
    means = {k[len(key) :]: v for k, v in r.items() if k.startswith(key) and "_seed" not in k}
    if means:
        rows.append([fill(cell, means) or "" for _, _, cell in PRUNING_COLUMNS])
    blocks = [provenance(bench), setting_line(bench, setting, seeds)]
    blocks.append(markdown_table([head for head, _, _ in PRUNING_COLUMNS], rows))
    if f"{key}target_met" in r:
        met = "met" if r[f"{key}target_met"] else "not met"
        blocks.append(
            f"Target: at least {EPOCHS_TARGET:g}x fewer epochs for a hypervolume within "
            f"{1 - HYPERVOLUME_TARGET:.0%} of the unpruned front's, means over the seeds: {met}."
        )
    return "\n\n".join(blocks)


RECORDED_COLUMNS = (
    ("recorded sweep", "{name}", "mean"),
    ("trials stopped", "{pruned:.0f}", ""),
    ("epochs", "{epochs:,.0f} of {total:,.0f}", ""),
    ("saved", "{saved:.2f}x", "{saved_mean:.2f}x"),
    ("hypervolume: pruned / unpruned", "{hypervolume:.5f} / {unpruned:.5f}", ""),
    ("kept", "{kept:.1%}", "least {kept_min:.1%}"),
)
"""The recorded setting's columns: header, a record's cell, and the summary row's cell."""


def recorded_table(bench: BenchFile) -> str:
    """The default rule replayed on each recorded sweep, the mean saving and the least kept
    hypervolume, and whether it is safe (SAFE_SHARE on every record) and meets the target."""
    r = bench.results
    key = "pruning_recorded_"
    summary = {"saved_mean", "kept_min", "safe", "target_met"}
    names = sorted(re.findall(rf"\b{key}(\w+?)_total\b", " ".join(r)))  # each record has one
    rows = []
    for name in names:
        prefix = f"{key}{name}_"
        figures = {k[len(prefix) :]: v for k, v in r.items() if k.startswith(prefix)}
        fields = {**figures, "name": name}
        rows.append([fill(cell, fields) or "" for _, cell, _ in RECORDED_COLUMNS])
    means = {k[len(key) :]: r[k] for k in r if k[len(key) :] in summary and k.startswith(key)}
    if means:
        rows.append([fill(cell, means) or "" for _, _, cell in RECORDED_COLUMNS])
    blocks = [
        provenance(bench),
        "The default rule replayed on the recorded full default sweeps (30 trials of 10 epochs "
        "on all 60,000 images, no pruner; `sae/bench/records`), each in trial-number order.",
        markdown_table([head for head, _, _ in RECORDED_COLUMNS], rows),
    ]
    if f"{key}safe" in r:
        safe = "yes" if r[f"{key}safe"] else "no"
        met = "met" if r.get(f"{key}target_met") else "not met"
        blocks.append(
            f"Safe (at least {SAFE_SHARE:.0%} of the unpruned hypervolume on every recorded "
            f"sweep): {safe}. Target, at least {EPOCHS_TARGET:g}x fewer epochs on the mean: "
            f"{met}."
        )
    return "\n\n".join(blocks)


def pruning_tables(benches: Sequence[BenchFile]) -> list[str]:
    """The pruning table of each setting of each file that has the part's figures: the
    recorded sweeps' replay first."""
    tables = []
    for bench in benches:
        if any(k.startswith("pruning_recorded_") for k in bench.results):
            tables.append(recorded_table(bench))
        names = " ".join(k for k in bench.results if not k.startswith("pruning_recorded_"))
        settings = dict.fromkeys(re.findall(r"\bpruning_(\w+?)_seed\d+_", names))
        tables += [pruning_table(bench, setting) for setting in settings]
    return tables


RENDERERS: dict[str, Callable[[Sequence[BenchFile]], list[str]]] = {
    "cpu": cpu_tables,
    "population": population_tables,
    "pruning": pruning_tables,
    "gpu": gpu_tables,
}
"""Each group's tables of a list of benchmark files."""


def render(benches: Sequence[BenchFile], groups: Sequence[str] = GROUPS) -> str:
    """The markdown of ``groups``' tables of ``benches``, a heading over each group when there
    are several; ValueError in one line when none of them has a figure."""
    sections = []
    for group in groups:
        tables = RENDERERS[group](benches)
        if tables and len(groups) > 1:
            tables = [f"## {TITLES[group]}", *tables]
        sections += tables
    if not sections:
        names = ", ".join(b.name for b in benches)
        what = "benchmark" if len(groups) > 1 else f"{groups[0]}"
        raise ValueError(f"no {what} figures in {names}: nothing to render")
    return "\n\n".join(sections) + "\n"


def write(text: str, path: str | Path) -> Path:
    """Write ``text`` to ``path`` whole (a temporary file renamed), never through a symbolic
    link: refused in one line (``sae.paths.owned``)."""
    path = owned(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode("utf-8"))
    return path
