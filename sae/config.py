"""Run configuration: one dataclass per concern, defaults equal to the published baseline.

Every field's docstring is its help text: the command line (``sae.cli``) is parsed from these
fields, and the whole config is logged to each run and saved beside the model.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sae.errors import reason
from sae.paths import check_plain_name

OutputActivation = Literal["relu", "sigmoid"]
Penalty = Literal["l1", "kl"]
PenaltyLayers = Literal["all", "encoder", "code"]
Device = Literal["auto", "cpu", "cuda"]
DataOrder = Literal["seeded", "script"]

CODE_UNITS = 64
"""Units of the autoencoder's code (``sae.model``'s ``enc3``)."""


def _check_positive(name: str, value: float | int | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def check_types(obj: Any) -> None:
    """Every field of the dataclass ``obj`` holds a value of its annotated type.

    A ``float`` field takes any finite real number (an int too), an ``int`` field a whole number
    (not 12.7, not True), a ``bool`` field only true or false, a ``Literal`` one of its choices.
    Values from a config file reach the dataclasses as YAML typed them, so this is what refuses
    ``lr: .inf``, ``batch_size: 12.7`` or ``amp: 1``, naming the field. ValueError otherwise.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        _check_type(f.name, getattr(obj, f.name), hints[f.name])


_KINDS: dict[type, tuple[str, Any]] = {
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("a whole number", lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)),
    float: (
        "a finite number",
        lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v),
    ),
    str: ("text", lambda v: isinstance(v, str)),
}


def _check_type(name: str, value: Any, annotation: Any) -> None:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        _check_choice(name, value, annotation)
    elif type(None) in args:  # X | None
        if value is not None:
            (inner,) = (a for a in args if a is not type(None))
            _check_type(name, value, inner)
    elif origin is tuple:  # tuple[float, float] or tuple[int, ...]
        if not isinstance(value, tuple):
            raise ValueError(f"{name} must be a tuple, got {value!r}")
        if args[-1] is not Ellipsis and len(value) != len(args):
            raise ValueError(f"{name} must hold {len(args)} values, got {len(value)}")
        for i, item in enumerate(value):
            _check_type(f"{name}[{i}]", item, args[0] if args[-1] is Ellipsis else args[i])
    elif origin is typing.Union:  # X | Y, as int | Literal["auto"]: either one
        for option in args:
            try:
                return _check_type(name, value, option)
            except ValueError:
                continue
        raise ValueError(f"{name} must be {' or '.join(map(_what, args))}, got {value!r}")
    elif annotation in _KINDS:
        what, accepts = _KINDS[annotation]
        if not accepts(value):
            raise ValueError(f"{name} must be {what}, got {value!r}")
    elif not isinstance(value, annotation):
        raise ValueError(f"{name} must be a {annotation.__name__}, got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how much of it a run uses."""

    root: str = field(default_factory=lambda: os.environ.get("SAE_DATA_ROOT", "data"))
    """data root; MNIST lives in ROOT/MNIST/raw (env SAE_DATA_ROOT)"""
    manifest: str | None = None
    """JSON file of expected IDX sizes and SHA-256 digests; unset means canonical MNIST"""
    train_size: int | None = None
    """use only the first N training images, for quick looks; unset means all 60,000"""
    test_size: int | None = None
    """use only the first N test images, for quick looks; unset means all 10,000"""

    def __post_init__(self) -> None:
        check_types(self)
        if not self.root:
            raise ValueError("data root must not be empty")
        _check_positive("train_size", self.train_size, allow_none=True)
        _check_positive("test_size", self.test_size, allow_none=True)


@dataclass(frozen=True)
class ModelConfig:
    """The seed's six-layer convolutional autoencoder."""

    output_activation: OutputActivation = "relu"
    """activation of the output layer: relu (seed) or sigmoid"""
    topk: int | None = None
    """a TopK code: keep each image's K largest of the 64 code activations and zero the rest
    (1 to 64), and no penalty on the code (the other layers as --penalty-layers says); unset
    means the seed's ReLU code"""

    def __post_init__(self) -> None:
        check_types(self)
        if self.topk is not None and not 1 <= self.topk <= CODE_UNITS:
            raise ValueError(f"topk must be in [1, {CODE_UNITS}], got {self.topk}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, penalty and evaluation; defaults are the published 10-epoch baseline."""

    epochs: int = 10
    """number of passes over the training set"""
    batch_size: int = 100
    """training batch size"""
    test_batch_size: int = 600
    """evaluation batch size (600 as in the seed)"""
    lr: float = 1e-3
    """Adam learning rate"""
    adam_beta1: float = 0.9
    """Adam beta1"""
    adam_beta2: float = 0.999
    """Adam beta2"""
    adam_eps: float = 1e-8
    """Adam epsilon"""
    penalty: Penalty = "l1"
    """sparsity penalty: l1 (seed) or kl (towards rho)"""
    penalty_layers: PenaltyLayers = "all"
    """penalised activations: all six (seed), encoder (first three) or code (bottleneck)"""
    beta: float = 1e-4
    """penalty weight; 1e-4 is what the seed's script used (its README states 0.005)"""
    rho: float = 0.01
    """target mean activation of the kl penalty (README: 0.01)"""
    seed: int = 1
    """seed of weights and shuffling"""
    data_order: DataOrder = "seeded"
    """order of the batches: seeded (generators of their own, from the seed) or script (drawn
    from PyTorch's global generator exactly as the seed's DataLoader(shuffle=True) draws them,
    which reproduces its published figures; baseline.py's default)"""
    probe: bool = True
    """fit a linear probe (digit from the code) at the end of the run: probe/accuracy"""
    device: Device = "auto"
    """auto (cuda when present, else cpu), cpu or cuda"""
    threads: int | None = None
    """torch intra-op threads; unset means torch's own choice"""
    amp: bool = False
    """mixed precision: float16 autocast with a gradient scaler (CUDA only)"""
    log_every: int = 50
    """report training metrics every N optimiser steps"""

    def __post_init__(self) -> None:
        check_types(self)  # also refuses inf and NaN in every float field
        if self.epochs < 1:  # zero epochs would be a finished run that trained nothing
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        for name in ("batch_size", "test_batch_size", "lr", "adam_eps", "log_every"):
            _check_positive(name, getattr(self, name))
        _check_positive("threads", self.threads, allow_none=True)
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not 0 < self.rho < 1:
            raise ValueError(f"rho must be in (0, 1), got {self.rho}")


@dataclass(frozen=True)
class TrackingConfig:
    """Where and what a run logs to MLflow."""

    track: bool = True
    """log the run to MLflow (--no-track to train without tracking)"""
    config_file: str = "mlflow.yaml"
    """tracking settings file"""
    tracking_uri: str | None = None
    """MLflow tracking URI; unset means MLFLOW_TRACKING_URI, else mlflow.yaml"""
    experiment: str | None = None
    """MLflow experiment name; unset means the one mlflow.yaml names"""
    run_name: str | None = None
    """MLflow run name; unset means one derived from the config"""
    log_model: bool = True
    """log the trained model as an MLflow logged model (mlflow.pytorch flavour)"""

    def __post_init__(self) -> None:
        check_types(self)
        if self.experiment is not None:  # it names the experiment's artifact folder
            check_plain_name(self.experiment, "experiment name")


@dataclass(frozen=True)
class Config:
    """Everything a training run needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def flat(self) -> dict[str, Any]:
        """The config as ``{"section.field": value}``, the form logged as MLflow params."""
        return {
            f"{section.name}.{key}": value
            for section in dataclasses.fields(self)
            for key, value in dataclasses.asdict(getattr(self, section.name)).items()
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        """Rebuild a config saved with ``to_dict``; an unknown section or field is a ValueError."""
        sections = {f.name: f.default_factory for f in dataclasses.fields(cls)}
        unknown = set(raw) - set(sections)
        if unknown:
            raise ValueError(f"unknown config section(s): {', '.join(sorted(unknown))}")
        for name, values in raw.items():
            if not isinstance(values, dict):
                raise ValueError(f"config section {name!r} must map fields to values")
            known = {f.name for f in dataclasses.fields(sections[name])}
            unknown = set(values) - known
            if unknown:
                fields = ", ".join(f"{name}.{key}" for key in sorted(map(str, unknown)))
                raise ValueError(f"unknown config field(s): {fields}")
        return cls(**{name: sections[name](**values) for name, values in raw.items()})


def _what(annotation: Any) -> str:
    """An annotation in words, for a value of a union that fits none of its types."""
    if typing.get_origin(annotation) is Literal:
        return " or ".join(repr(choice) for choice in annotation.__args__)
    if annotation in _KINDS:
        return _KINDS[annotation][0]
    return f"a {annotation.__name__}"


def _check_choice(name: str, value: object, choices: Any) -> None:
    allowed = choices.__args__
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-08`` and ``1.0e3`` as numbers, as JSON and YAML 1.2 do.

    YAML 1.1 wants a dot and a signed exponent, so ``1e-08``, exactly what ``json.dumps`` writes
    for adam_eps in a run's config.json, would come back as text.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml_mapping(path: str | Path, what: str, contents: str) -> dict[str, Any]:
    """A YAML (or JSON) file that must hold a mapping; ValueError in one line otherwise."""
    try:
        loaded = yaml.load(Path(path).read_text(), Loader=_Loader)
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        why = getattr(err, "strerror", None) or reason(err)
        raise ValueError(f"cannot read {what} {path}: {why}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"cannot read {what} {path}: expected a mapping of {contents}")
    return loaded
