"""Which sparse code is best at every sparsity, and which sampler finds the front fastest.

One study per (family, sampler, seed) on the same setting and budget (``run_grid``); each study's
front in (code L0, test MSE) from its complete, fit trials (``study_points``); its hypervolume
against a fixed reference in (test MSE, L0 / 64) and its test MSE interpolated at L0 = 8, 16 and
32 (``study_figures``); the families (or samplers) compared over the seeds with Welch's test
(``verdicts``), a difference said only where the test finds one; a table and a figure.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from sae import stats
from sae.config import CODE_UNITS, Config
from sae.names import ATTR_ACTIVE, ATTR_DEGENERATE, ATTR_L0, STUDY_PARENT_RUN
from sae.sweep.config import Family, SamplerName, SweepConfig
from sae.sweep.pareto import REFERENCE, dominates, hypervolume

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SETTINGS: dict[str, dict[str, Any]] = {
    "small": {"epochs": 3, "train_size": 5000, "test_size": 2000},
    "full": {"epochs": 10, "train_size": None, "test_size": None},
    "custom": {},
}
"""The settings a grid runs on: small (minutes per study on 2 cores), the full default (30
trials of 10 epochs on all 60,000 images), or custom (--epochs, --train-size and --test-size
as given)."""

FAMILIES: tuple[str, ...] = get_args(Family)
"""Every family, in the order the grids and tables show them."""
SAMPLERS: tuple[str, ...] = get_args(SamplerName)
"""Every sampler, in the order the grids and tables show them."""

L0_AT = (8, 16, 32)
"""The code L0s at which each front's test MSE is read (interpolated between its points)."""

TRIALS_AT = (10, 20, 30)
"""The trial counts after which the samplers' hypervolumes are compared."""

Point = tuple[float, float]
"""(code L0, test MSE) of a complete, fit trial."""


def study_name(setting: str, family: str, sampler: str, seed: int, pruner: str = "auto") -> str:
    """``bench-SETTING-FAMILY-SAMPLER-sSEED``, then ``-PRUNER`` when the grid names a pruner
    (``--pruner none``: the same trials unpruned are other studies, not a resume)."""
    tail = "" if pruner == "auto" else f"-{pruner}"
    return f"bench-{setting}-{family}-{sampler}-s{seed}{tail}"


def setting_config(base: Config, setting: str) -> Config:
    """``base`` on ``setting``'s epochs and data sizes, without logging models (the grid compares
    fronts; its trials' models are not kept)."""
    chosen = SETTINGS[setting]
    sizes = {k: chosen[k] for k in ("train_size", "test_size") if k in chosen}
    return dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, **sizes),
        train=dataclasses.replace(base.train, epochs=chosen.get("epochs", base.train.epochs)),
        tracking=dataclasses.replace(base.tracking, log_model=False),
    )


def run_grid(
    base: Config,
    sweep: SweepConfig,
    setting: str,
    families: Sequence[str],
    samplers: Sequence[str],
    seeds: Sequence[int],
    log: Callable[[str], None] = print,
) -> list[str]:
    """Run (or resume: a complete study runs nothing) one study per family, sampler and seed,
    each ``sweep.trials`` trials on ``setting`` with ``sweep``'s other settings and no
    confirmation runs. Returns the study names, in order."""
    from sae.sweep.run import run_sweep  # the sweep's workers and stores, only when running

    cfg = setting_config(base, setting)
    names = []
    for family, sampler, seed in itertools.product(families, samplers, seeds):
        name = study_name(setting, family, sampler, seed, sweep.pruner)
        log(f"study {name}: {sweep.trials} trials of family {family}, sampler {sampler}")
        run = dataclasses.replace(
            sweep, family=family, sampler=sampler, sampler_seed=seed, study_name=name, confirm=0
        )
        run_sweep(cfg, run, log=log)
        names.append(name)
    return names


def study_points(trials: Sequence[FrozenTrial], upto: int | None = None) -> list[Point]:
    """(code L0, test MSE) of the complete trials that may stand on a front (not degenerate,
    feasible), among the first ``upto`` trials by number (all when unset)."""
    points = []
    for t in trials:
        if upto is not None and t.number >= upto:
            continue
        if t.state != TrialState.COMPLETE or t.user_attrs.get(ATTR_DEGENERATE):
            continue
        l0 = t.user_attrs.get(ATTR_L0, t.user_attrs.get(ATTR_ACTIVE, math.nan) * CODE_UNITS)
        points.append((float(l0), float(t.values[0])))
    return points


def front(points: Sequence[Point]) -> list[Point]:
    """The non-dominated points (lower L0, lower MSE), by L0."""
    return sorted({p for p in points if not any(dominates(q, p) for q in points)})


def front_hypervolume(points: Sequence[Point]) -> float:
    """The area the points dominate in (test MSE, L0 / 64), bounded by ``REFERENCE``."""
    return hypervolume([(mse, l0 / CODE_UNITS) for l0, mse in points], REFERENCE)


def mse_at(points: Sequence[Point], l0: float) -> float:
    """The front's test MSE at code L0 ``l0``: linear between its two points around it; beyond
    its densest point, that point's (it dominates every denser code); NaN below its sparsest
    point (no code that sparse was found, and none is extrapolated)."""
    line = front(points)
    if not line or l0 < line[0][0]:
        return math.nan
    xs, ys = zip(*line, strict=True)
    return float(np.interp(l0, xs, ys))


def study_figures(trials: Sequence[FrozenTrial], upto: int | None = None) -> dict[str, float]:
    """A study's hypervolume, its front's size and its test MSE at each of ``L0_AT``."""
    points = study_points(trials, upto)
    out = {"hypervolume": front_hypervolume(points), "front_size": float(len(front(points)))}
    for l0 in L0_AT:
        out[f"mse_at_l0_{l0}"] = mse_at(points, l0)
    return out


@dataclasses.dataclass(frozen=True)
class StudyRecord:
    """One study of the grid, read back from its storage."""

    name: str
    family: str
    sampler: str
    seed: int | None
    """The sampler's seed (None where it is not known: a study the report found)."""
    trials: int
    parent_run: str | None
    points: list[Point]
    figures: dict[str, float]
    by_trials: dict[int, float]
    """Hypervolume after the first N trials, for each of ``TRIALS_AT`` the study reached."""


def read_grid(
    storage: optuna.storages.BaseStorage,
    setting: str,
    families: Sequence[str],
    samplers: Sequence[str],
    seeds: Sequence[int],
    pruner: str = "auto",
) -> list[StudyRecord]:
    """Every study of the grid that the storage holds (ValueError naming the first missing)."""
    existing = set(optuna.get_all_study_names(storage))
    out = []
    for family, sampler, seed in itertools.product(families, samplers, seeds):
        name = study_name(setting, family, sampler, seed, pruner)
        if name not in existing:
            raise ValueError(f"study {name} is not in the storage: run the grid first")
        study = optuna.load_study(study_name=name, storage=storage)
        out.append(study_record(study, family, sampler, seed))
    return out


def study_record(study: optuna.Study, family: str, sampler: str, seed: int | None) -> StudyRecord:
    """The study's front, figures and hypervolumes after ``TRIALS_AT`` trials."""
    trials = study.get_trials(deepcopy=False)
    return StudyRecord(
        name=study.study_name,
        family=family,
        sampler=sampler,
        seed=seed,
        trials=len(trials),
        parent_run=study.user_attrs.get(STUDY_PARENT_RUN),
        points=study_points(trials),
        figures=study_figures(trials),
        by_trials={
            n: front_hypervolume(study_points(trials, n)) for n in TRIALS_AT if n <= len(trials)
        },
    )


def _values(records: Sequence[StudyRecord], key: str) -> list[float]:
    return [r.figures[key] for r in records]


def verdicts(
    groups: dict[str, Sequence[StudyRecord]], key: str, higher_is_better: bool
) -> list[str]:
    """One line per pair of groups: their ``key`` over the seeds (mean ± sd, n), and which is
    better only where Welch's test finds a difference (``sae.stats``)."""
    lines = []
    for (a, ra), (b, rb) in itertools.combinations(groups.items(), 2):
        c = stats.compare(_values(ra, key), _values(rb, key))
        said = stats.verdict(c, lower_is_better=not higher_is_better)
        p = "" if math.isnan(c.p) else f", p={c.p:.2g}"
        unreached = [name for name, side in ((a, c.ours), (b, c.theirs)) if side.n == 0]
        if unreached:  # a front that never reaches this L0 has nothing to test
            words = f"not compared, no front of {' or '.join(unreached)} reaches it"
        elif said == "better":
            words = f"{a} is better than {b}"
        elif said == "worse":
            words = f"{b} is better than {a}"
        else:
            words = f"{a} and {b}: {said}"
        lines.append(
            f"{LABELS.get(key, key)}: {a} {stats.describe(c.ours, 3)} vs {b} "
            f"{stats.describe(c.theirs, 3)}: "
            f"{words}{p}"
        )
    return lines


LABELS = {f"mse_at_l0_{l0}": f"test MSE at L0 = {l0}" for l0 in L0_AT}
"""How the verdicts name the figures they compare."""


def groups_of(records: Sequence[StudyRecord], by: str) -> dict[str, list[StudyRecord]]:
    """The records grouped by ``family`` or ``sampler``, in the order they came."""
    out: dict[str, list[StudyRecord]] = {}
    for r in records:
        out.setdefault(getattr(r, by), []).append(r)
    return out


def _cell(values: Sequence[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return f"not reached (n=0 of {len(values)})"
    s = stats.summarize(finite)
    spread = f" ± {s.sd:.3g}" if s.n > 1 else ""
    reached = "" if len(finite) == len(values) else f" of {len(values)}"
    return f"{s.mean:.4g}{spread} (n={s.n}{reached})"


def families_table(records: Sequence[StudyRecord]) -> pd.DataFrame:
    """Each family's hypervolume and test MSE at ``L0_AT``, mean ± sd over seeds."""
    head = ["family", "studies", "hypervolume", *(f"test MSE at L0 = {l0}" for l0 in L0_AT)]
    rows = []
    for family, rs in groups_of(records, "family").items():
        cells = [_cell(_values(rs, "hypervolume"))]
        cells += [_cell(_values(rs, f"mse_at_l0_{l0}")) for l0 in L0_AT]
        rows.append([family, str(len(rs)), *cells])
    return pd.DataFrame(rows, columns=head)


def samplers_table(records: Sequence[StudyRecord]) -> pd.DataFrame:
    """Each sampler's hypervolume after ``TRIALS_AT`` trials, mean ± sd over seeds."""
    head = ["sampler", "studies", *(f"hypervolume after {n} trials" for n in TRIALS_AT)]
    rows = []
    for sampler, rs in groups_of(records, "sampler").items():
        cells = [_cell([r.by_trials.get(n, math.nan) for r in rs]) for n in TRIALS_AT]
        rows.append([sampler, str(len(rs)), *cells])
    return pd.DataFrame(rows, columns=head)


def sampler_verdicts(records: Sequence[StudyRecord]) -> list[str]:
    """Welch's verdicts on the samplers' hypervolume after each of ``TRIALS_AT`` trials."""
    lines = []
    for n in TRIALS_AT:
        groups = {
            s: [dataclasses.replace(r, figures={"hv": r.by_trials.get(n, math.nan)}) for r in rs]
            for s, rs in groups_of(records, "sampler").items()
        }
        lines += [f"after {n} trials, {line}" for line in verdicts(groups, "hv", True)]
    return lines


def plot_fronts(records: Sequence[StudyRecord], by: str, path: Path, title: str) -> None:
    """``draw_fronts``, saved as the PNG ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw_fronts(records, by, title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw_fronts(records: Sequence[StudyRecord], by: str, title: str) -> Figure:
    """The fronts overlaid on (code L0, test MSE): a colour per family (or sampler), a marker per
    seed (or study), each front a step line through its points."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    groups = groups_of(records, by)
    colours = dict(zip(groups, sns.color_palette("colorblind", len(groups)), strict=True))
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, rs in groups.items():
        for i, r in enumerate(rs):
            line = front(r.points)
            if not line:
                continue
            xs, ys = zip(*line, strict=True)
            ax.step(xs, ys, where="post", color=colours[key], alpha=0.6, linewidth=1.2)
            ax.scatter(
                xs,
                ys,
                color=colours[key],
                marker=markers[i % len(markers)],
                s=28,
                label=f"{key}, seed {r.seed}" if r.seed is not None else f"{key}, {r.name}",
            )
    ax.set_xlabel("code L0 (active units of 64, mean per test image)")
    ax.set_ylabel("test MSE")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


REFERENCE_WORDS = (
    f"hypervolume in (test MSE, code L0 / 64) against the fixed reference point "
    f"({REFERENCE[0]:g}, {REFERENCE[1]:g}), both minimised; complete trials that are not "
    "degenerate only"
)


def markdown(table: pd.DataFrame) -> str:
    """A table of text cells as markdown, as written."""
    return table.to_markdown(index=False, disable_numparse=True)


def comparison(records: Sequence[StudyRecord], by: str) -> tuple[pd.DataFrame, list[str]]:
    """The table of the grid by ``family`` (hypervolume, test MSE at ``L0_AT``) or by
    ``sampler`` (hypervolume after ``TRIALS_AT`` trials), and Welch's verdicts on its columns."""
    if by == "family":
        groups = groups_of(records, "family")
        said = verdicts(groups, "hypervolume", higher_is_better=True)
        for l0 in L0_AT:
            said += verdicts(groups, f"mse_at_l0_{l0}", higher_is_better=False)
        return families_table(records), said
    return samplers_table(records), sampler_verdicts(records)


def document(
    records: Sequence[StudyRecord], by: str, setting: str, command: str, figure: str | None
) -> str:
    """The comparison in markdown: the table, the verdicts, the figure and the studies. Without
    ``figure``, no heading and no figure either: the tables alone, for a page to include."""
    trials = max((r.trials for r in records), default=0)
    title = f"# {'Families' if by == 'family' else 'Samplers'}: {setting} setting"
    lines = [] if figure is None else [title, ""]
    lines += [f"Made by `{command}`: {trials} trials per study; {REFERENCE_WORDS}.", ""]
    table, said = comparison(records, by)
    lines += [markdown(table), ""]
    lines += ["Welch's test over the seeds (a side is better only where p < 0.05):", ""]
    lines += [f"- {line}" for line in said]
    lines += ["", *([f"![fronts]({figure})", ""] if figure else [])]
    lines += ["| study | trials | MLflow parent run |", "|---|---|---|"]
    lines += [f"| {r.name} | {r.trials} | {r.parent_run} |" for r in records]
    return "\n".join(lines) + "\n"


def grid_figures(records: Sequence[StudyRecord], by: str, prefix: str) -> dict[str, float]:
    """The benchmark's flat figures of a grid read back: for each family (``by="family"``) its
    hypervolume and test MSE at ``L0_AT``, or for each sampler its hypervolume after
    ``TRIALS_AT`` trials; each as ``{prefix}_{name}_{figure}_{mean,sd,n}`` over the seeds."""
    out: dict[str, float] = {}
    for name, rs in groups_of(records, by).items():
        if by == "family":
            keys = ["hypervolume", *(f"mse_at_l0_{l0}" for l0 in L0_AT)]
            series = {key: _values(rs, key) for key in keys}
        else:
            series = {
                f"hv_after_{n}": [r.by_trials.get(n, math.nan) for r in rs] for n in TRIALS_AT
            }
        for key, values in series.items():
            s = stats.summarize(values)
            head = f"{prefix}_{name}_{key}"
            out.update({f"{head}_mean": s.mean, f"{head}_sd": s.sd, f"{head}_n": float(s.n)})
    return out


def bench_grid(
    base: Config,
    journal: str,
    by: str,
    setting: str,
    samplers: Sequence[str],
    seeds: Sequence[int],
    trials: int,
    log: Callable[[str], None],
) -> dict[str, float]:
    """The benchmark's grid parts: ``run_grid`` in the journal ``journal``, read back, as flat
    figures (``grid_figures``), with the table and Welch's verdicts in the log. ``by="family"``:
    l1, kl and topk with TPE; ``by="sampler"``: each of ``samplers`` on l1."""
    from sae.sweep.study import make_storage

    families = FAMILIES if by == "family" else ("l1",)
    samplers = ("tpe",) if by == "family" else samplers
    sweep = SweepConfig(trials=trials, storage=journal)
    run_grid(base, sweep, setting, families, samplers, seeds, log=log)
    records = read_grid(make_storage(journal), setting, families, samplers, seeds)
    table, said = comparison(records, by)
    for line in [*markdown(table).splitlines(), *said]:
        log(line)
    part = "frontiers" if by == "family" else "samplers"
    return grid_figures(records, by, f"{part}_{setting}")
