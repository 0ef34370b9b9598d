"""What a sweep searches, for what, and where its study lives: ``SweepConfig`` and space files."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Literal

import simple_parsing

from sae.config import check_types, read_yaml_mapping
from sae.sweep.pareto import ParetoPruner

Objective = Literal["pareto", "pareto-probe", "constrained"]
SamplerName = Literal["tpe", "random", "nsga2", "gp"]
Family = Literal["l1", "kl", "topk"]
DEFAULT_STUDY = "sae-sweep"
PrunerName = Literal["auto", "median", "hyperband", "pareto", "none"]
Workers = int | Literal["auto"]


def parse_workers(text: str) -> Workers:
    """argparse type of ``--workers``: ``auto`` or a whole number."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto or a whole number, got {text!r}") from None


@dataclass(frozen=True)
class SweepConfig:
    """What the sweep searches, for what, and where the study lives."""

    trials: int = 30
    """finished trials in total; a resumed sweep runs only the rest"""
    family: Family = "l1"
    """the sparse code a study searches: l1 (the seed's L1 penalty, searching beta), kl (the KL
    penalty towards --rho, searching beta; rho is fixed) or topk (a TopK code, searching its K,
    no penalty on the code); each also searches lr and batch size. A study is one family"""
    objective: Objective = "pareto"
    """pareto: minimise test MSE and code active fraction together (a Pareto front);
    pareto-probe: the same and maximise the linear probe's accuracy (a 3-objective front);
    constrained: minimise test MSE subject to active fraction <= max-active-frac, with pruning.
    Degenerate trials (a collapsed or dead model) are infeasible in every mode"""
    max_active_frac: float = 0.25
    """constrained objective: the largest allowed fraction of active code units"""
    sampler: SamplerName = "tpe"
    """Optuna sampler: tpe, random, nsga2 or gp (Gaussian-process Bayesian optimisation, log
    expected hypervolume improvement with two objectives)"""
    pruner: PrunerName = "auto"
    """stops unpromising trials early: with the constrained objective Optuna's median (the
    default) or hyperband pruner, from the per-epoch test MSE; with the Pareto objective pareto
    (the default), which stops a trial that can no longer add to the front (sae.sweep.pareto;
    replayed on the recorded full sweeps in docs/performance.md); with pareto-probe none by
    default (unmeasured there); none turns pruning off"""
    pareto_rule: str = ParetoPruner.rule
    """--pruner pareto: projection (a trial's projected final point against the front) or
    halving (successive halving at rungs, by Pareto rank)"""
    pareto_budget: float = ParetoPruner.budget
    """--pruner pareto, projection: the share of the front's hypervolume that the stopped
    trials, at their projected final points, may add together at most"""
    pareto_first_rung: int = ParetoPruner.first_rung
    """--pruner pareto: the first epoch at which trials are compared (projection: 2 at the
    earliest)"""
    pareto_factor: int = ParetoPruner.factor
    """--pruner pareto, halving: rungs every this many times the last one's epoch; a trial goes
    on if it is in the best 1/factor at a rung, or on its front"""
    pareto_warmup: int = ParetoPruner.warmup
    """--pruner pareto: complete trials before any is pruned"""
    pareto_grace: int = ParetoPruner.grace
    """--pruner pareto: epochs during which a degenerate point is no reason to stop (a model that
    has not started to learn may still)"""
    pareto_tiebreak: str = ParetoPruner.tiebreak
    """--pruner pareto, halving: how the points of one non-domination rank are ordered: crowding or
    hypervolume (each point's own share)"""
    pareto_protect: float = ParetoPruner.protect
    """--pruner pareto, halving: a point on the rung's front goes on when its own share of the
    front's hypervolume is above this fraction (0: every point on the front goes on)"""
    sampler_seed: int = 0
    """seed of the sampler (worker k uses seed + k)"""
    timeout: float | None = None
    """stop starting new trials after this many seconds; unset means no limit"""
    study_name: str = DEFAULT_STUDY
    """Optuna study name; the same name resumes the study (kl and topk: sae-sweep-FAMILY unless
    given)"""
    storage: str | None = None
    """Optuna storage: a journal file path or a database URL (postgresql+psycopg://...); unset
    means optuna_storage in mlflow.yaml"""
    workers: Workers = simple_parsing.field(default="auto", type=parse_workers)
    """worker processes on this machine sharing the study, trials and then confirmation runs;
    auto: chosen for the machine and said in one line (on a CPU one per usable core, one torch
    thread each, at most the runs there are and what memory holds; with a GPU or --population K,
    one). --workers N and --threads N override it (sae.sweep.workers.plan_workers)"""
    population: int | None = None
    """trials trained together in one pass by each worker, K models stepped as one
    (sae.population); unset: chosen for the device (1 on a CPU, where one model at a time is
    fastest; on a GPU the K that trains fastest, measured at the start)"""
    space: str | None = None
    """YAML file of the search space (beta: [low, high], lr: [low, high], batch_size: [...])"""
    beta_range: tuple[float, float] = (1e-6, 1e-1)
    """beta, log-uniform: LOW HIGH"""
    lr_range: tuple[float, float] = (1e-4, 1e-2)
    """lr, log-uniform: LOW HIGH"""
    batch_sizes: tuple[int, ...] = (32, 64, 100, 128, 256)
    """batch_size, categorical: the choices"""
    k_range: tuple[int, int] = (1, 64)
    """--family topk: K, the code units kept per image, log-uniform whole numbers: LOW HIGH"""
    confirm: int = 3
    """front trials trained again with 2 more seeds each once the study is complete, spread along
    the front, so their comparison with the baseline has n=3; 0 turns it off. 3 trials x 2 seeds
    = 6 runs, 20% on top of a 30-trial sweep"""

    def __post_init__(self) -> None:
        check_types(self)
        if self.family not in Family.__args__:
            choices = ", ".join(Family.__args__)
            raise ValueError(f"unknown family {self.family!r}; choose one of {choices}")
        if self.study_name == DEFAULT_STUDY and self.family != "l1":  # the name says the family
            object.__setattr__(self, "study_name", f"{DEFAULT_STUDY}-{self.family}")
        if self.trials < 1:
            raise ValueError(f"--trials must be >= 1, got {self.trials}")
        if self.confirm < 0:
            raise ValueError(f"--confirm must be >= 0, got {self.confirm}")
        if self.workers != "auto" and self.workers < 1:
            raise ValueError(f"--workers must be auto or >= 1, got {self.workers}")
        if self.population is not None and self.population < 1:
            raise ValueError(f"--population must be >= 1, got {self.population}")
        if not 0 < self.max_active_frac <= 1:
            raise ValueError(f"max_active_frac must be in (0, 1], got {self.max_active_frac}")
        if self.timeout is not None and not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise ValueError(f"--timeout must be a finite number > 0, got {self.timeout}")
        for name, choices in (("sampler", SamplerName), ("pruner", PrunerName)):
            if getattr(self, name) not in choices.__args__:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of "
                    f"{', '.join(choices.__args__)}"
                )
        if self.objective not in Objective.__args__:
            choices = ", ".join(Objective.__args__)
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {choices}")
        ParetoPruner.named_by(self)  # a rule its flags cannot make is refused now
        if self.objective == "constrained" and self.pruner == "pareto":
            raise ValueError("--pruner pareto prunes the Pareto objectives; use median or none")
        if self.objective != "constrained" and self.pruner in ("median", "hyperband"):
            raise ValueError(
                f"--pruner {self.pruner} prunes one objective; with --objective {self.objective} "
                "use --pruner pareto or none"
            )
        if not self.study_name:
            raise ValueError("--study-name must not be empty")

    @property
    def pruner_used(self) -> str:
        """The pruner that ``auto`` means for the objective: median when constrained, pareto for
        the Pareto objective (it kept 99% of the front's hypervolume on every recorded full
        sweep: docs/performance.md), none for pareto-probe (not measured there)."""
        if self.pruner != "auto":
            return self.pruner
        return {"constrained": "median", "pareto": "pareto"}.get(self.objective, "none")

    @property
    def directions(self) -> list[str]:
        """The study's directions, one per objective value (``objective_names``)."""
        return {
            "pareto": ["minimize", "minimize"],
            "pareto-probe": ["minimize", "minimize", "maximize"],
            "constrained": ["minimize"],
        }[self.objective]

    @property
    def objective_names(self) -> list[str]:
        """What each objective value is, for plots and tables."""
        return ["test MSE", "code active fraction", "probe accuracy"][: len(self.directions)]


def read_space_file(path: str) -> dict[str, Any]:
    """The overrides a space file makes, as SweepConfig fields (beta_range, lr_range, ...)."""
    raw = read_yaml_mapping(path, "search space", "parameters")
    keys = {"beta": "beta_range", "lr": "lr_range", "batch_size": "batch_sizes", "topk": "k_range"}
    unknown = set(raw) - set(keys)
    if unknown:
        raise ValueError(
            f"search space {path}: unknown parameter {sorted(unknown)[0]!r}; "
            "searchable are beta, lr, batch_size, topk"
        )
    out = {}
    for name, values in raw.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"search space {path}: {name} must be a non-empty list")
        if name in ("batch_size", "topk"):
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise ValueError(
                    f"search space {path}: {name} must hold whole numbers, got {values}"
                )
            if name == "topk" and len(values) != 2:
                raise ValueError(f"search space {path}: topk needs [low, high], got {values}")
            out[keys[name]] = tuple(values)
            continue
        if len(values) != 2:
            raise ValueError(f"search space {path}: {name} needs [low, high], got {values}")
        numbers = tuple(_finite(v) for v in values)
        if None in numbers:
            raise ValueError(f"search space {path}: {name} must hold finite numbers, got {values}")
        out[keys[name]] = numbers
    return out


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (YAML may give a string or a bool)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
