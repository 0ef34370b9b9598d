import pytest


@pytest.fixture(autouse=True)
def _no_user_tracking_uri(monkeypatch):
    """Each test starts without MLFLOW_TRACKING_URI, whatever the shell or an earlier test set."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
