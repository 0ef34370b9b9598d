"""What optuna-dashboard shows beside the numbers: each trial's link to its MLflow run (a user
attribute and a note), a degenerate trial's reason first in its note, and the study's description
as its note."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import optuna

from sae.names import ATTR_RUN_URL
from sae.tracking import views


def served(tracking_uri: str) -> bool:
    """Whether the runs are on a tracking server, which serves its own UI."""
    return tracking_uri.startswith(("http://", "https://"))


def ui_address(tracking_uri: str) -> str:
    """Where the MLflow UI of these runs is: a tracking server serves its own (its address, any
    user or password left out); a local store is shown by ``python experiments/ui.py``, at its
    default address unless that port is taken."""
    if not served(tracking_uri):
        return views.DEFAULT_UI_URL
    parts = urlsplit(tracking_uri)
    return urlunsplit(
        (parts.scheme, parts.netloc.rpartition("@")[2], parts.path.rstrip("/"), "", "")
    )


def ui_hint(tracking_uri: str) -> str:
    """One line saying which MLflow UI a link at ``ui_address(tracking_uri)`` assumes."""
    address = ui_address(tracking_uri)
    if served(tracking_uri):
        return f"The link opens the UI of the tracking server at {address}."
    return (
        f"The link assumes the MLflow UI that `python experiments/ui.py` serves at {address} "
        "(its default port); if it printed another address, use that one."
    )


def trial_note(number: int, run_name: str, url: str, tracking_uri: str) -> str:
    """The trial's note (Markdown): its MLflow run as a link, and the UI the link assumes."""
    return f"### Trial {number}\n\nMLflow run: [{run_name}]({url})\n\n{ui_hint(tracking_uri)}\n"


def link_trial(
    trial: optuna.Trial, tracking_uri: str, experiment_id: str, run_id: str, run_name: str
) -> str:
    """Link the running ``trial`` to its MLflow run: the run's page as a user attribute and in
    the trial's optuna-dashboard note. A finished trial takes neither, so this is called as the
    trial's run starts. Returns the page's URL."""
    import optuna_dashboard  # it imports scikit-learn (a second): only once a trial runs

    url = views.run_url(ui_address(tracking_uri), experiment_id, run_id)
    trial.set_user_attr(ATTR_RUN_URL, url)
    optuna_dashboard.save_note(trial, trial_note(trial.number, run_name, url, tracking_uri))
    return url


def degenerate_note(note: str, reason: str) -> str:
    """A trial's note with the line that says it is degenerate, and why, first."""
    return f"**Degenerate:** {reason}. Kept off the front (drawn infeasible).\n\n{note}"


def note_degenerate(trial: optuna.Trial, reason: str) -> None:
    """Say first in the running ``trial``'s note that it is degenerate, and why (a finished
    trial takes no note, so this is called as its values are set)."""
    import optuna_dashboard

    optuna_dashboard.save_note(trial, degenerate_note(optuna_dashboard.get_note(trial), reason))


def note_study(study: optuna.Study, description: str) -> bool:
    """Save ``description`` as the study's optuna-dashboard note unless it already has one (a
    note written by hand in the dashboard stays). Returns whether it wrote."""
    import optuna_dashboard

    if not description or optuna_dashboard.get_note(study):
        return False
    optuna_dashboard.save_note(study, description)
    return True
