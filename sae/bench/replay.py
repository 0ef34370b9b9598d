"""Replaying a Pareto pruner on a recorded, unpruned sweep: which trials it would have stopped,
the training epochs it would have saved, and the hypervolume of the front it would have kept.

A sweep records each trial's objective point after every epoch (``ATTR_EPOCH_POINTS``), so an
unpruned sweep holds everything a pruner would have seen. The replay takes its trials in number
order (one worker), lets each decide at its rungs against the points the trials before it would
have recorded (up to where they would have stopped), and keeps what it would have kept. The same
trials either way, so the comparison measures the pruner alone; a real pruned sweep also draws
other trials after its first stop (its sampler learns from the pruned points).

A *record* is such a sweep written to a JSON file (``write_record``): the trials' parameters,
values and per-epoch points, and nothing else (no run id, host or reason beyond the ones a
replay reads). The benchmark's fixtures are records (``RECORDS``), and the replay command reads
a record as it reads a storage.
"""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sae.data.idx import atomic_write
from sae.names import (
    ATTR_ACTIVE,
    ATTR_DEGENERATE,
    ATTR_EPOCH_POINTS,
    ATTR_FAILED,
    ATTR_L0,
    ATTR_NON_FINITE,
    ATTR_PROBE,
    ATTR_PRUNED_AT,
    ATTR_RETRY_OF,
    ATTR_TEST_MSE,
    STUDY_IDENTITY,
    STUDY_OBJECTIVE,
    STUDY_SPACE,
)
from sae.sweep.pareto import REFERENCE

RECORD_FORMAT = "sae-sweep-record/1"
RECORDS = Path(__file__).parent / "records"
"""The recorded full default sweeps (30 trials, 10 epochs, all 60,000 images, no pruner), one per
sampler seed: the fixtures the pruning part and the tests replay."""

KEPT_ATTRS = (
    ATTR_EPOCH_POINTS,
    ATTR_DEGENERATE,
    ATTR_FAILED,
    ATTR_NON_FINITE,
    ATTR_TEST_MSE,
    ATTR_ACTIVE,
    ATTR_L0,
    ATTR_PROBE,
    ATTR_RETRY_OF,
)
"""The user attributes a record keeps: what the replay and the front read, and the trial's
final metrics."""


STUDY_ATTRS = (STUDY_SPACE, STUDY_OBJECTIVE, STUDY_IDENTITY)
"""The study's own attributes a record keeps: what was searched, for what, on which data."""


class NotReplayable(ValueError):
    """The study cannot be replayed (pruned trials, no per-epoch points, not a Pareto study)."""


def epochs_of(trial: Any) -> int:
    """How many epochs ``trial`` trained, as its recorded points say."""
    return len(trial.user_attrs.get(ATTR_EPOCH_POINTS, {}))


def replayed_trials(study: Any) -> tuple[list[Any], int]:
    """The trials a replay takes, in number order (COMPLETE ones, and those that failed by
    themselves: both cost their epochs), and the sweep's epochs per trial; raises NotReplayable
    when the study was pruned, records no per-epoch points, or is not a 2-objective study."""
    from optuna.trial import TrialState

    from sae.sweep.recovery import counts_as_finished

    if len(study.directions) != 2:
        raise NotReplayable(
            f"study {study.study_name!r} has {len(study.directions)} objectives; the replay "
            "needs the Pareto sweep's two (test MSE, code active fraction)"
        )
    trials = study.get_trials(deepcopy=False)
    pruned = [t.number for t in trials if t.state == TrialState.PRUNED]
    if pruned:
        raise NotReplayable(
            f"study {study.study_name!r} was pruned ({len(pruned)} trials, first {pruned[0]}): "
            "a replay needs every trial trained to its end (--pruner none)"
        )
    taken = [t for t in trials if counts_as_finished(t)]
    complete = [t for t in taken if t.state == TrialState.COMPLETE]
    if not complete:
        raise NotReplayable(f"study {study.study_name!r} has no complete trial")
    epochs = max(epochs_of(t) for t in complete)
    missing = [t.number for t in complete if epochs_of(t) != epochs or epochs == 0]
    if missing:
        raise NotReplayable(
            f"study {study.study_name!r} has no per-epoch points for every epoch of trial "
            f"{missing[0]} ({len(missing)} such trials): it was made before they were recorded"
        )
    return sorted(taken, key=lambda t: t.number), epochs


@dataclass(frozen=True)
class Stop:
    """A trial the replay stopped: where, and why (the pruner's reason)."""

    number: int
    epoch: int
    why: str


@dataclass(frozen=True)
class Replay:
    """What a pruner would have done to an unpruned sweep."""

    epochs: int
    """training epochs with the pruner"""
    total: int
    """training epochs without it (the sweep's)"""
    hypervolume: float
    """of the kept front, against REFERENCE"""
    unpruned: float
    """of the sweep's own front"""
    stops: tuple[Stop, ...]
    kept: Any
    """the study the pruner would have left (in memory)"""

    @property
    def saved(self) -> float:
        """How many times fewer epochs."""
        return self.total / self.epochs if self.epochs else float("inf")

    @property
    def kept_share(self) -> float:
        """The kept front's hypervolume over the unpruned one's."""
        return self.hypervolume / self.unpruned if self.unpruned else float("nan")

    def line(self) -> str:
        return (
            f"replayed: epochs {self.epochs} of {self.total} ({self.saved:.2f}x fewer), "
            f"hypervolume {self.hypervolume:.5f} of {self.unpruned:.5f} "
            f"({100 * self.kept_share:.1f}%)"
        )


def front_hypervolume(study: Any) -> float:
    """The hypervolume of ``study``'s front (``sweep.best_trials``: no degenerate trial)."""
    from sae.sweep import best_trials
    from sae.sweep.pareto import hypervolume

    return hypervolume([tuple(t.values[:2]) for t in best_trials(study)], REFERENCE)


def replay(study: Any, pruner: Any) -> Replay:
    """What ``pruner`` (``decide(trials, number, epoch, epochs)``, as ``sweep.pareto``'s)
    would have kept of the unpruned ``study``: its trials in number order, each deciding after
    every epoch against the points the earlier ones would have recorded."""
    import optuna

    trials, epochs = replayed_trials(study)
    kept = optuna.create_study(directions=study.directions, study_name=study.study_name)
    seen: list[Any] = []
    stops = []
    for trial, stop in _decisions(trials, pruner, epochs, seen):
        kept.add_trial(trial)
        if stop is not None:
            stops.append(stop)
    return Replay(
        epochs=sum(epochs_of(t) for t in seen),
        total=sum(epochs_of(t) for t in trials),
        hypervolume=front_hypervolume(kept),
        unpruned=front_hypervolume(study),
        stops=tuple(stops),
        kept=kept,
    )


def _decisions(
    trials: Sequence[Any], pruner: Any, epochs: int, seen: list[Any]
) -> Iterator[tuple[Any, Stop | None]]:
    """Each trial as the pruner would have left it (appended to ``seen``, the trials a later
    one's decisions read), and its stop, if any."""
    from optuna.trial import TrialState, create_trial

    for trial in trials:
        points = trial.user_attrs.get(ATTR_EPOCH_POINTS, {})
        running = copy.deepcopy(trial)
        running.state = TrialState.RUNNING
        stop = None
        for epoch in range(1, epochs_of(trial) + 1):
            running.user_attrs = {
                **trial.user_attrs,
                ATTR_EPOCH_POINTS: {e: p for e, p in points.items() if int(e) <= epoch},
            }
            why = pruner.decide([*seen, running], trial.number, epoch, epochs)
            if why:
                stop = Stop(trial.number, epoch, why)
                break
        if stop is None:
            seen.append(trial)
            yield trial, None
            continue
        running.state = TrialState.PRUNED
        seen.append(running)
        attrs = {ATTR_EPOCH_POINTS: running.user_attrs[ATTR_EPOCH_POINTS]}
        pruned = create_trial(
            state=TrialState.PRUNED,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={**attrs, ATTR_PRUNED_AT: stop.epoch},
        )
        yield pruned, stop


def write_record(study: Any, path: Path, about: dict[str, Any]) -> None:
    """Write the replayable ``study`` (``replayed_trials``) to ``path`` as a record, with
    ``about`` (what made it: command, sampler seed, machine) beside its trials."""
    from optuna.distributions import distribution_to_json

    trials, epochs = replayed_trials(study)
    shared = {k: study.user_attrs[k] for k in STUDY_ATTRS if k in study.user_attrs}
    record = {
        "format": RECORD_FORMAT,
        "study": study.study_name,
        "directions": [d.name for d in study.directions],
        "epochs": epochs,
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **about,
        "study_attrs": shared,
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "params": t.params,
                "distributions": {n: distribution_to_json(d) for n, d in t.distributions.items()},
                "values": t.values,
                "user_attrs": {k: t.user_attrs[k] for k in KEPT_ATTRS if k in t.user_attrs},
            }
            for t in trials
        ],
    }
    atomic_write(path, (json.dumps(record, indent=1) + "\n").encode("utf-8"))


def read_record(path: Path) -> Any:
    """The study a record holds, in memory; raises NotReplayable when ``path`` is not one."""
    import optuna
    from optuna.distributions import json_to_distribution
    from optuna.study import StudyDirection
    from optuna.trial import TrialState, create_trial

    try:
        record = json.loads(Path(path).read_text())
        if record.get("format") != RECORD_FORMAT:
            raise ValueError(f"format {record.get('format')!r}, not {RECORD_FORMAT!r}")
        directions = [StudyDirection[d] for d in record["directions"]]
        study = optuna.create_study(directions=directions, study_name=record["study"])
        for key, value in record.get("study_attrs", {}).items():
            study.set_user_attr(key, value)
        for t in record["trials"]:
            state = TrialState[t["state"]]
            study.add_trial(
                create_trial(
                    state=state,
                    params=t["params"],
                    distributions={
                        n: json_to_distribution(d) for n, d in t["distributions"].items()
                    },
                    values=t["values"] if state == TrialState.COMPLETE else None,
                    user_attrs=t["user_attrs"],
                )
            )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise NotReplayable(f"{path} is not a sweep record ({err})") from None
    return study


def open_recorded(storage: str, name: str | None = None) -> Any:
    """The study ``name`` in ``storage`` (a journal file, a database URL, or a record), read
    only; the storage's only study when ``name`` is None. Raises ValueError in one line when
    there is no such storage or study."""
    import optuna

    from sae.redact import redact
    from sae.sweep import make_storage

    if storage.endswith(".json") and "://" not in storage:
        study = read_record(Path(storage))
        if name not in (None, study.study_name):
            raise ValueError(f"{storage} records study {study.study_name!r}, not {name!r}")
        return study
    if "://" not in storage and not Path(storage).is_file():
        raise ValueError(f"no Optuna storage at {storage}")  # a journal would be created
    opened = make_storage(storage)
    names = [s.study_name for s in opened.get_all_studies()]
    if name is None:
        if len(names) != 1:
            raise ValueError(f"{redact(storage)} holds {len(names)} studies: name one (--study)")
        name = names[0]
    if name not in names:
        known = ", ".join(map(repr, names)) or "none"
        raise ValueError(f"no study {name!r} in {redact(storage)} (its studies: {known})")
    return optuna.load_study(study_name=name, storage=opened)


def restore(study: Any, storage: str) -> Any:
    """A copy of the recorded ``study`` (its trials, and the study's own attributes: identity,
    space, objective) as a new study in ``storage``, which the sweep command then resumes: a
    recording cut short, continued on another machine. Refuses a storage that holds the study."""
    import optuna

    from sae.sweep import make_storage

    opened = make_storage(storage)
    if study.study_name in [s.study_name for s in opened.get_all_studies()]:
        raise ValueError(f"study {study.study_name!r} is already in {storage}")
    copy_ = optuna.create_study(
        storage=opened, study_name=study.study_name, directions=study.directions
    )
    for key, value in study.user_attrs.items():
        copy_.set_user_attr(key, value)
    for trial in study.get_trials(deepcopy=False):
        copy_.add_trial(trial)
    return copy_


def records(folder: Path = RECORDS) -> dict[str, Any]:
    """The records in ``folder`` (the fixtures by default), by file stem, as studies."""
    return {path.stem: read_record(path) for path in sorted(folder.glob("*.json"))}


def replay_lines(result: Replay, log: Callable[[str], None]) -> None:
    """The replay command's output: a line per trial it would stop, then the summary line."""
    for stop in result.stops:
        log(f"trial {stop.number}: {stop.why}")
    log(result.line())
