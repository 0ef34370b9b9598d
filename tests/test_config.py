import pytest

from sae.config import Config, DataConfig, TrainConfig


def test_defaults__are_the_readme_baseline():
    t = TrainConfig()
    assert (t.batch_size, t.test_batch_size, t.lr, t.epochs, t.seed) == (100, 600, 1e-3, 10, 1)
    assert (t.adam_beta1, t.adam_beta2, t.adam_eps) == (0.9, 0.999, 1e-8)
    assert (t.penalty, t.penalty_layers, t.beta, t.rho) == ("l1", "all", 1e-4, 0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": -1}, "epochs must be >= 0"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"penalty": "l2"}, "unknown penalty 'l2'"),
        ({"penalty_layers": "decoder"}, "unknown penalty_layers 'decoder'"),
        ({"beta": -1.0}, "beta must be >= 0"),
        ({"beta": float("nan")}, "beta must be"),
        ({"rho": 1.0}, "rho must be in (0, 1)"),
        ({"batch_size": 0}, "batch_size must be > 0"),
    ],
)
def test_train_config__rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**kwargs)


def test_data_config__rejects_empty_subset():
    with pytest.raises(ValueError, match="train_size must be > 0"):
        DataConfig(train_size=0)


def test_config__round_trips_through_dict_and_flattens_by_section():
    cfg = Config(train=TrainConfig(beta=0.005, epochs=3))
    assert Config.from_dict(cfg.to_dict()) == cfg
    flat = cfg.flat()
    assert flat["train.beta"] == 0.005 and flat["model.output_activation"] == "relu"
    assert all("." in key for key in flat)
