"""The run-lifecycle manager: the one place a run's final status is decided."""

import pytest

from sae import errors, signals, tracking
from sae.names import TAG_ERROR


class Stop(Exception):
    """An early stop that ends the run FINISHED (like a pruned trial)."""


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lifecycle")
    settings = tracking.Settings(
        tracking_uri=f"sqlite:///{tmp}/mlflow.db", artifact_location=(tmp / "art").as_uri()
    )
    return tracking.client(settings)


def _run(client):
    experiment = client.get_experiment_by_name("e") or client.get_experiment(
        client.create_experiment("e")
    )
    return client.create_run(experiment.experiment_id).info.run_id


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (None, "FINISHED"),
        (KeyboardInterrupt(), "KILLED"),
        (signals.RunKilled("received signal 15"), "KILLED"),
        (Stop("pruned"), "FINISHED"),
        (RuntimeError("boom\nsecond line"), "FAILED"),
        (SystemExit(3), "FAILED"),
    ],
)
def test_run_lifecycle__status_from_how_the_block_ended(client, exc, status):
    run_id = _run(client)
    if exc is None:
        with tracking.run_lifecycle(client, run_id, finish_on=(Stop,)) as yielded:
            assert yielded == run_id
            assert client.get_run(run_id).info.status == "RUNNING"
    else:
        with (
            pytest.raises(type(exc)),
            tracking.run_lifecycle(client, run_id, finish_on=(Stop,)),
        ):
            raise exc
    run = client.get_run(run_id)
    assert run.info.status == status and run.info.end_time is not None
    expected = {"FAILED": errors.one_line(exc) if exc is not None else None}.get(status)
    assert run.data.tags.get(TAG_ERROR) == expected


def test_run_lifecycle__error_tag_is_one_line_and_redacted(client):
    run_id = _run(client)
    with pytest.raises(ValueError), tracking.run_lifecycle(client, run_id):
        raise ValueError("cannot reach postgresql://me:hunter2@db/runs\nTraceback ...")
    tag = client.get_run(run_id).data.tags[TAG_ERROR]
    assert tag == "ValueError: cannot reach postgresql://me:***@db/runs"
