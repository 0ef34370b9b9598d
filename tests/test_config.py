import dataclasses
import json
import math
import typing

import pytest

from sae.config import (
    Config,
    DataConfig,
    ModelConfig,
    TrackingConfig,
    TrainConfig,
    read_yaml_mapping,
)

SECTIONS = (DataConfig, ModelConfig, TrainConfig, TrackingConfig)


def test_defaults__are_the_readme_baseline():
    t = TrainConfig()
    assert (t.batch_size, t.test_batch_size, t.lr, t.epochs, t.seed) == (100, 600, 1e-3, 10, 1)
    assert (t.adam_beta1, t.adam_beta2, t.adam_eps) == (0.9, 0.999, 1e-8)
    assert (t.penalty, t.penalty_layers, t.beta, t.rho) == ("l1", "all", 1e-4, 0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": -1}, "epochs must be >= 1, got -1"),
        ({"epochs": 0}, "epochs must be >= 1, got 0"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"penalty": "l2"}, "unknown penalty 'l2'"),
        ({"penalty_layers": "decoder"}, "unknown penalty_layers 'decoder'"),
        ({"beta": -1.0}, "beta must be >= 0"),
        ({"beta": float("nan")}, "beta must be a finite number, got nan"),
        ({"rho": 1.0}, "rho must be in (0, 1)"),
        ({"batch_size": 0}, "batch_size must be > 0"),
    ],
)
def test_train_config__rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**kwargs)


def _float_fields():
    """(section class, field name) for every float field, ``float | None`` included."""
    out = []
    for cls in SECTIONS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if float in (hints[f.name], *typing.get_args(hints[f.name])):
                out.append((cls, f.name))
    return out


def test_float_fields__are_the_ones_the_non_finite_test_covers():
    assert {name for _, name in _float_fields()} == {
        "lr",
        "adam_beta1",
        "adam_beta2",
        "adam_eps",
        "beta",
        "rho",
    }


@pytest.mark.parametrize(("cls", "name"), _float_fields())
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_every_float_field__refuses_inf_and_nan_naming_the_field(cls, name, value):
    """Regression: only beta was checked for finiteness; lr=inf and adam_eps=inf passed their
    range check (inf > 0), and the others were refused only by chance, as out of range."""
    with pytest.raises(ValueError, match=rf"^{name} must be a finite number, got {value}$"):
        cls(**{name: value})


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (TrainConfig, {"batch_size": 12.7}, "batch_size must be a whole number, got 12.7"),
        (TrainConfig, {"batch_size": 100.0}, "batch_size must be a whole number, got 100.0"),
        (TrainConfig, {"batch_size": True}, "batch_size must be a whole number, got True"),
        (TrainConfig, {"epochs": "3"}, "epochs must be a whole number, got '3'"),
        (TrainConfig, {"lr": "1e-3"}, "lr must be a finite number, got '1e-3'"),
        (TrainConfig, {"lr": True}, "lr must be a finite number, got True"),
        (TrainConfig, {"threads": 2.5}, "threads must be a whole number, got 2.5"),
        (TrainConfig, {"amp": 1}, "amp must be true or false, got 1"),
        (TrainConfig, {"device": None}, "unknown device None"),
        (DataConfig, {"train_size": "500"}, "train_size must be a whole number, got '500'"),
        (DataConfig, {"root": 5}, "root must be text, got 5"),
        (ModelConfig, {"output_activation": "tanh"}, "unknown output_activation 'tanh'"),
        (TrackingConfig, {"track": "no"}, "track must be true or false, got 'no'"),
        (TrackingConfig, {"experiment": 7}, "experiment must be text, got 7"),
    ],
)
def test_sections__refuse_a_value_of_the_wrong_type_naming_the_field(cls, kwargs, message):
    """Regression: a config file's values reached the dataclasses as YAML typed them, unchecked:
    batch_size 12.7 failed inside fit() with a traceback, amp 1 was taken as --amp, and a
    string lr ended as "bad config: '>' not supported between instances of 'str' and 'int'"."""
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        cls(**kwargs)


def test_sections__accept_ints_for_floats_and_keep_them_as_given():
    t = TrainConfig(lr=1, beta=0)
    assert (t.lr, t.beta) == (1, 0)
    assert DataConfig(train_size=None).train_size is None


def test_data_config__rejects_empty_subset():
    with pytest.raises(ValueError, match="train_size must be > 0"):
        DataConfig(train_size=0)


def test_config__round_trips_through_dict_and_flattens_by_section():
    cfg = Config(train=TrainConfig(beta=0.005, epochs=3))
    assert Config.from_dict(cfg.to_dict()) == cfg
    flat = cfg.flat()
    assert flat["train.beta"] == 0.005 and flat["model.output_activation"] == "relu"
    assert all("." in key for key in flat)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"optim": {}}, "unknown config section(s): optim"),
        ({"train": {"lrr": 1.0, "bogus": 2}}, "unknown config field(s): train.bogus, train.lrr"),
        ({"train": [1, 2]}, "config section 'train' must map fields to values"),
    ],
)
def test_config_from_dict__unknown_names_are_a_value_error(raw, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        Config.from_dict(raw)


def test_read_yaml_mapping__reads_exponents_without_a_dot_as_numbers(tmp_path):
    """Regression: YAML 1.1 reads 1e-08 as text, so a run's own config.json (json.dumps writes
    adam_eps as 1e-08) failed to load with --config."""
    path = tmp_path / "c.yaml"
    path.write_text("a: 1e-08\nb: 1.0e3\nc: -2E+5\nd: 5e3\ne: '1e-3'\nf: 12\ng: .inf\nh: 1.5\n")
    assert read_yaml_mapping(path, "config", "sections") == {
        "a": 1e-08,
        "b": 1000.0,
        "c": -200000.0,
        "d": 5000.0,
        "e": "1e-3",
        "f": 12,
        "g": math.inf,
        "h": 1.5,
    }
    saved = tmp_path / "config.json"
    cfg = Config(train=TrainConfig(adam_eps=1e-8, beta=1e-5, lr=2e-4))
    saved.write_text(json.dumps(cfg.to_dict()))
    assert "1e-08" in saved.read_text()
    assert Config.from_dict(read_yaml_mapping(saved, "config", "sections")) == cfg
