"""What makes a study one experiment: the settings every trial shares besides the searched
parameters, recorded when the study is created and compared on every resume."""

from __future__ import annotations

import json
from typing import Any

from sae.config import Config
from sae.data import dataset_digest
from sae.names import param
from sae.splits import data_files, split_sizes
from sae.sweep.config import SweepConfig
from sae.sweep.space import build_space, section

OUTSIDE = frozenset(
    {
        param("data", "root"),  # the data is its digest, wherever it lies
        param("data", "manifest"),
        param("train", "device"),
        param("train", "threads"),
        param("train", "log_every"),
        param("tracking", "track"),
        param("tracking", "config_file"),
        param("tracking", "tracking_uri"),
        param("tracking", "run_name"),
        param("tracking", "log_model"),
    }
)
"""Config fields that do not define a trial: where the files and stores are found, the machine
it runs on, how often it reports, whether it keeps its model. Every other field of ``Config``
(but the searched ones) is in the identity, so a field added to it later is too."""

DIGEST = "data.digest"


def study_identity(base: Config, cfg: SweepConfig) -> dict[str, Any]:
    """The settings that define every trial of the study besides the searched parameters
    (the objective and the space have their own attributes), as ``{"section.field": value}``.
    How the search goes is not in it: the sampler, the pruner (a resume may turn it on, pruning
    against the rungs of the trials so far), the trial count, workers, population, timeout and
    confirmations.

    ``base.tracking.experiment`` must be the experiment the sweep logs to, resolved. The data
    sizes are the images trained on (60000, not unset), so the same trials compare equal however
    they were asked for; ValueError when the data cannot honour them (``split_sizes``).
    """
    searched = {param(section(name), name) for name in build_space(cfg)}
    identity = {k: v for k, v in base.flat().items() if k not in OUTSIDE | searched}
    if base.train.penalty != "kl":  # rho is the KL penalty's alone
        del identity[param("train", "rho")]
    identity[param("data", "train_size")], identity[param("data", "test_size")] = split_sizes(
        base.data
    )
    identity[DIGEST] = dataset_digest(data_files(base.data))
    if cfg.objective == "constrained":  # every trial's constraint
        identity[param("sweep", "max_active_frac")] = cfg.max_active_frac
    return identity


def identity_json(identity: dict[str, Any]) -> str:
    return json.dumps(identity, sort_keys=True)


def differences(recorded: str, identity: dict[str, Any]) -> str | None:
    """How ``identity`` differs from the recorded one (``identity_json``), in one clause naming
    the fields, or None when they agree. Fields only one of them has are not compared: a field
    the study predates, or one that only some settings use (rho with the KL penalty), whose
    setting then differs itself."""
    before = json.loads(recorded)
    changed = sorted(k for k in before.keys() & identity.keys() if before[k] != identity[k])
    if not changed:
        return None
    was = ", ".join(f"{k}={_shown(before[k])}" for k in changed)
    now = ", ".join(f"{k}={_shown(identity[k])}" for k in changed)
    return f"was created with {was}; this command has {now}"


def _shown(value: Any) -> str:
    return "unset" if value is None else str(value)
