"""The population trainer: each member trains as fit() trains it alone, and leaves alone."""

import dataclasses

import pytest
import torch
from helpers import build_config

from sae import population as population_module
from sae.metrics import (
    EPOCH_METRICS,
    EVAL_METRICS,
    FINAL_METRICS,
    PERF_EPOCH_SECONDS,
    PERF_IMAGES_PER_S,
    PROBE_SECONDS,
)
from sae.population import Member, fastest_size, fit_population
from sae.splits import load_splits
from sae.train import Callback, NonFiniteLossError, fit

MEMBERS = (
    {"lr": 1e-3, "beta": 1e-4, "seed": 1},
    {"lr": 3e-3, "beta": 1e-2, "seed": 4},
    {"lr": 5e-4, "beta": 1e-3, "seed": 5, "data_order": "script"},
)
LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-3
"""Float32 on the CPU: the batched kernels add in another order than fit()'s, so the trajectories
agree to rounding, amplified over the 50 steps (Adam divides by the square root of small second
moments, ReLUs switch): the logged losses to 1e-4 relative; the weights (of order 0.1) to 2e-6
for the two seeded members and to 2e-4 for the script-order one, measured; bounded here by 1e-3.
Two members' weights differ by about 0.1: a member that trained on another's batches, learning
rate or penalty fails by far. Every figure of a member's epoch records (evaluation and probe) is
held to LOSS_RTOL too (within 2e-6 relative, measured)."""
TIMINGS = {PERF_IMAGES_PER_S, PERF_EPOCH_SECONDS, PROBE_SECONDS}
"""Wall times, which no two runs share."""


class Record(Callback):
    def __init__(self):
        self.logged, self.epochs = [], []

    def on_log(self, step, metrics):
        self.logged.append((step, metrics))

    def on_epoch_end(self, epoch, step, metrics, model):
        self.epochs.append((epoch, step, dict(metrics)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("population")
    # 50 steps: 2 epochs of 25 batches of 8 on the 200 tiny training images; the probe at the end
    base = build_config(tmp, epochs=2, batch_size=8, log_every=5, probe=True)
    splits = load_splits(base.data, torch.device("cpu"))
    cfgs = [dataclasses.replace(base, train=dataclasses.replace(base.train, **m)) for m in MEMBERS]
    return splits, cfgs


def _solo(cfg, splits):
    record = Record()
    return fit(cfg, splits, [record]), record


def test_population__each_member_trains_as_fit_trains_it_alone(setup):
    splits, cfgs = setup
    records = [Record() for _ in cfgs]
    outcomes = fit_population([Member(c, [r]) for c, r in zip(cfgs, records, strict=True)], splits)
    assert [o.error for o in outcomes] == [None] * 3 and [o.step for o in outcomes] == [50] * 3
    for cfg, record, outcome in zip(cfgs, records, outcomes, strict=True):
        solo, alone = _solo(cfg, splits)
        assert (
            [s for s, _ in record.logged] == [s for s, _ in alone.logged] == list(range(5, 51, 5))
        )
        for (_, got), (_, want) in zip(record.logged, alone.logged, strict=True):
            for key in want:
                assert got[key] == pytest.approx(want[key], rel=LOSS_RTOL), key
        # every figure of every epoch's record, the evaluation and the probe included
        assert len(outcome.result.history) == len(solo.history) == 2
        for mine, theirs in zip(outcome.result.history, solo.history, strict=True):
            assert set(mine) == set(theirs)
            for key in set(theirs) - TIMINGS:
                assert mine[key] == pytest.approx(theirs[key], rel=LOSS_RTOL, abs=1e-6), key
        assert set(solo.final) == set(EPOCH_METRICS) | set(EVAL_METRICS) | set(FINAL_METRICS)
        for (name, got), want in zip(
            outcome.result.model.named_parameters(), solo.model.parameters(), strict=True
        ):
            assert torch.allclose(got, want, rtol=0, atol=WEIGHT_ATOL), name
    # the members really differ: another member's weights are far outside the tolerance
    a, b = outcomes[0].result.model.enc1.weight, outcomes[1].result.model.enc1.weight
    assert (a - b).abs().max() > 20 * WEIGHT_ATOL


def test_population__a_diverging_member_leaves_alone_and_the_others_go_on_unchanged(setup):
    splits, cfgs = setup
    wild = dataclasses.replace(cfgs[1], train=dataclasses.replace(cfgs[1].train, lr=1e6))
    records = [Record() for _ in cfgs]
    members = [Member(c, [r]) for c, r in zip((cfgs[0], wild, cfgs[2]), records, strict=True)]
    outcomes = fit_population(members, splits)
    assert isinstance(outcomes[1].error, NonFiniteLossError) and outcomes[1].step < 50
    assert "lower lr or beta" in str(outcomes[1].error)
    for k in (0, 2):
        solo, _ = _solo(cfgs[k], splits)
        assert outcomes[k].error is None
        assert outcomes[k].result.final["test/mse"] == pytest.approx(
            solo.final["test/mse"], rel=LOSS_RTOL
        )


def test_population__a_callback_that_raises_ends_its_member_only(setup):
    splits, cfgs = setup

    class Prune(Callback):
        def on_epoch_end(self, epoch, step, metrics, model):
            raise RuntimeError("pruned at epoch 1")

    outcomes = fit_population([Member(cfgs[0], [Prune()]), Member(cfgs[1])], splits)
    assert str(outcomes[0].error) == "pruned at epoch 1" and len(outcomes[0].result.history) == 1
    assert outcomes[1].error is None and len(outcomes[1].result.history) == 2


def test_population__members_must_share_the_loop(setup):
    _, cfgs = setup
    other = dataclasses.replace(cfgs[1], train=dataclasses.replace(cfgs[1].train, batch_size=16))
    with pytest.raises(ValueError, match="the same batch_size"):
        fit_population([Member(cfgs[0]), Member(other)], None)


def test_fastest_size__times_each_size_and_stops_at_the_first_that_runs_out_of_memory(
    setup, monkeypatch
):
    splits, cfgs = setup
    size, rates = fastest_size(cfgs[0], splits, sizes=(1, 2), steps=3)
    assert size in (1, 2) and set(rates) == {1, 2}
    assert all(rate > 0 for rate in rates.values())
    assert rates[size] == max(rates.values())

    real = population_module.fit_population

    def out_of_memory_beyond_two(members, splits):
        if len(members) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(members, splits)

    monkeypatch.setattr(population_module, "fit_population", out_of_memory_beyond_two)
    # rates can be equal by chance on a busy machine; growing stops at the first no faster
    size, rates = fastest_size(cfgs[0], splits, sizes=(1, 2, 4, 8), steps=3)
    assert set(rates) <= {1, 2} and 4 not in rates and size in rates
