"""What both results pages say alike: the line that says when, where and by what command a
page was made, the command that makes it again, and where, when and how long runs ran, from
their tags and times."""

from __future__ import annotations

import datetime

import pandas as pd

from sae import names, tracking
from sae.redact import redact
from sae.report.document import Document, Inline, code
from sae.report.frames import column

SWEEP_PAGE = "results-sweep.md"
BASELINE_PAGE = "results-baseline.md"


class NoResults(ValueError):
    """The store holds nothing for a page; the message says what to run."""


def made_line(settings: tracking.Settings, command: str, now: datetime.datetime | None) -> str:
    """The page's first line: when, on which host and code, by what command, from which store."""
    now = now or datetime.datetime.now(datetime.UTC)
    env = tracking.environment_tags()
    return redact(
        f"Made {now:%Y-%m-%d %H:%M} UTC on `{env[names.TAG_HOST]}` at git commit "
        f"`{env[names.TAG_GIT_COMMIT]}` by `{command}`, from the runs in "
        f"`{settings.tracking_uri}`."
    )


def finish(made: str, doc: Document, again: str) -> str:
    """The page's text: the ``made`` line, the document, and the command that makes it again."""
    doc.text("Made again by ", code(again))
    return f"{made}\n\n{doc.markdown()}"


def counted(runs: pd.DataFrame, tag: str, missing: str = "not recorded") -> str:
    """The values of ``tag`` on ``runs`` as code spans, each with how many runs carry it when
    they differ (`` `cpu` (30 runs), `cuda` (6 runs) ``); ``missing`` when none carries it."""
    values = column(runs, names.tag_column(tag)).dropna().value_counts()
    if values.empty:
        return missing
    if len(values) == 1:
        return f"`{values.index[0]}`"
    return ", ".join(f"`{v}` ({n} runs)" for v, n in sorted(values.items()))


def machine(runs: pd.DataFrame) -> list[Inline]:
    """Where the runs ran and with what, from their tags, and on which days."""
    times = [*runs["start_time"].dropna(), *runs["end_time"].dropna()]
    days = sorted({f"{t:%Y-%m-%d}" for t in times})
    when = (days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}") if days else "not recorded"
    said = "; ".join(
        f"{what} {counted(runs, tag)}"
        for what, tag in (
            ("host", names.TAG_HOST),
            ("device", names.TAG_DEVICE),
            ("torch", names.TAG_TORCH),
            ("git commit", names.TAG_GIT_COMMIT),
        )
    )
    return [f"The machine and code, from the runs' tags: {said}. Dates (UTC): {when}."]


def span(runs: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first start and the last end of ``runs``; None when either is unknown."""
    starts, ends = runs["start_time"].dropna(), runs["end_time"].dropna()
    if starts.empty or ends.empty:
        return None
    return starts.min(), ends.max()


def minutes(first_last: tuple[pd.Timestamp, pd.Timestamp] | None) -> str:
    if first_last is None:
        return "an unknown time"
    first, last = first_last
    return f"{(last - first).total_seconds() / 60:.1f} minutes"


def many(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"
