import pandas as pd
import pytest

from sae import baseline, names
from sae import metrics as M

SCRIPT = "beta 0.0001 (script), 2 of 3 runs trained, not degenerate"
README = "beta 0.005 (readme), 2 of 2 runs trained, not degenerate"


def _run(beta, source, seed, loss, output_active=0.9):
    return {
        "beta": beta,
        "beta_source": source,
        "seed": seed,
        "run_id": f"r{beta}-{seed}",
        M.EPOCH_LOSS: loss,
        M.README_TEST_LOSS: loss / 10,
        M.TEST_MSE: loss,
        M.TEST_PENALTY: beta,
        M.EPOCH_MSE: loss,
        M.TEST_EXPLAINED_VARIANCE: 0.9,
        M.CODE_ACTIVE_FRAC: 0.5,
        M.sparsity_key("enc3", M.DEAD_FRAC): 0.4,
        baseline.OUTPUT_ACTIVE: output_active,
    }


def _runs():
    return pd.DataFrame(
        [
            _run(1e-4, "script", 1, 0.0049),
            _run(1e-4, "script", 2, 0.112, output_active=0.0),  # never trained
            _run(1e-4, "script", 3, 0.0051),
            _run(0.005, "readme", 1, 0.02),
            _run(0.005, "readme", 2, 0.03),
        ]
    )


def test_comparison_table__readme_figures_beside_mean_and_spread_of_trained_runs():
    table = baseline.comparison_table(_runs()).set_index("quantity")
    assert list(table.columns) == ["definition", "README", SCRIPT, README]
    assert table.loc["training loss", "README"] == "0.00487120"
    assert table.loc["testing loss", "README"] == "0.00054854"
    assert table.loc["training loss", "definition"] == "README"
    assert table.loc["test MSE, whole test set", "definition"] == "correct"
    # mean of (0.0049, 0.0051), the dead run left out; sample sd = 0.000141...
    assert table.loc["training loss", SCRIPT] == "0.00500000 ± 0.00014"
    assert table.loc["testing loss", README] == "0.00250000 ± 0.00071"


def test_comparison_table__single_run_has_no_spread_and_all_dead_says_so():
    runs = _runs()
    table = baseline.comparison_table(runs[runs["seed"] <= 2]).set_index("quantity")
    assert (
        table.loc["training loss", "beta 0.0001 (script), 1 of 2 runs trained, not degenerate"]
        == "0.00490000"
    )
    dead = baseline.comparison_table(runs[runs["seed"] == 2].iloc[:1]).set_index("quantity")
    assert dead.loc[
        "training loss", "beta 0.0001 (script), 0 of 1 runs trained, not degenerate"
    ] == ("every run degenerate")
    assert baseline.reproducing_beta(runs[runs["seed"] == 2].iloc[:1]) is None


def test_reproducing_beta__is_the_one_closest_to_the_readme_training_loss():
    assert baseline.reproducing_beta(_runs()) == pytest.approx(1e-4)


def test_summarize__mean_std_and_count_per_beta_over_trained_runs():
    summary = baseline.summarize(_runs())
    assert summary.loc[("mean", 0.005), M.EPOCH_LOSS] == pytest.approx(0.025)
    assert summary.loc[("n", 1e-4), M.EPOCH_LOSS] == 2


def test_dead_seeds__are_those_with_a_layer_zero_on_every_image():
    import torch

    from sae.config import ModelConfig
    from sae.model import SparseAutoencoder

    images = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)
    dead = baseline.dead_seeds(range(1, 11), images, ModelConfig())
    for seed in range(1, 11):
        torch.manual_seed(seed)
        acts = SparseAutoencoder()(images.unsqueeze(1).float() / 255)[1]
        assert (seed in dead) == any(bool((a <= 0).all()) for a in acts)
    assert dead  # the seed's architecture leaves some seeds dead


def test_run_baseline__trains_n_seeds_alive_at_init_and_lists_the_skipped(tmp_path):
    from helpers import build_config

    cfg = build_config(tmp_path, epochs=1)
    runs = baseline.run_baseline(cfg, 2, betas={"script": 1e-4})
    skipped = runs.attrs["skipped"]
    assert len(runs) == 2 and skipped  # seed 2 is dead on the tiny data
    assert set(runs["seed"]).isdisjoint(skipped)
    assert sorted([*runs["seed"], *skipped]) == list(range(1, max(runs["seed"]) + 1))
    assert all("zero on every one of the 200 training images" in w for w in skipped.values())


def test_comparison_table__the_exact_reproduction_gets_its_own_column():
    runs = _runs().assign(data_order="script")
    table = baseline.comparison_table(runs).set_index("quantity")
    assert table.loc["training loss", baseline.EXACT_COLUMN] == "0.00490000"
    assert table.loc["linear probe accuracy (digit from code)", SCRIPT] == "not logged"
    seeded = baseline.comparison_table(runs.assign(data_order="seeded"))
    assert baseline.EXACT_COLUMN not in seeded.columns


def test_test_loss_explanation__computes_batches_last_batch_and_ratio():
    readme = baseline.test_loss_explanation()
    assert "last (400-image) batch" in readme and "number of batches (17," in readme
    assert "that is the true mean test MSE divided by 8.5" in readme
    small = baseline.test_loss_explanation(2000, 600, ratio=2.05)
    assert "last (200-image) batch" in small and "(4, for 2,000 test images" in small
    assert "the true mean test MSE divided by 2.05" in small


def test_protocol_differences__name_each_departure_from_the_readme():
    assert baseline.protocol_differences(10, None, None, 100) == []
    assert baseline.protocol_differences(10, 60000, 10000, 100) == []
    assert baseline.protocol_differences(2, 5000, None, 64) == [
        "2 epochs, not the README's 10",
        "5,000 training images, not the README's 60,000",
        "64 as the training batch size, not the README's 100",
    ]


def test_tracked_reference__mean_of_the_finished_script_runs_that_trained(tmp_path):
    from mlflow.entities import Metric, Param

    from sae import tracking

    settings = tracking.Settings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=(tmp_path / "a").as_uri()
    )
    assert baseline.tracked_reference(settings) is None  # no baseline experiment yet
    client = tracking.client(settings)
    experiment = tracking.ensure_experiment(settings, settings.experiment("baseline"))
    runs = [  # (beta source, test MSE, output active, final status)
        ("script", 0.004, 0.9, "FINISHED"),
        ("script", 0.006, 0.8, "FINISHED"),
        ("script", 0.001, 0.9, "FAILED"),  # not finished: left out
        ("script", 0.112, 0.0, "FINISHED"),  # never trained: left out
        ("readme", 0.02, 0.9, "FINISHED"),  # the README's beta: left out
    ]
    for source, mse, active, status in runs:
        tags = {names.TAG_BASELINE: "true", names.TAG_BETA_SOURCE: source}
        run_id = client.create_run(experiment, tags=tags).info.run_id
        values = {M.TEST_MSE: mse, M.CODE_ACTIVE_FRAC: 0.5, baseline.OUTPUT_ACTIVE: active}
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, 0, 2) for k, v in values.items()],
            params=[Param("train.beta", str(baseline.BETAS[source]))],
        )
        client.set_terminated(run_id, status)
    reference = baseline.tracked_reference(settings)
    assert reference == pytest.approx(
        {M.TEST_MSE: 0.005, M.CODE_ACTIVE_FRAC: 0.5, "runs": 2.0, "beta": 1e-4}
    )
