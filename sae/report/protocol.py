"""The protocol the runs followed (epochs, image counts, batch sizes, from their params) against
the README's, and the report's sentences and labels computed from it: how the README's testing
loss comes about with the runs' own test batches, and how far the exact reproduction is from the
README's figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from sae import baseline as B
from sae import metrics as M
from sae.config import TrainConfig

README = B.README_PROTOCOL
"""The README's protocol: epochs, train_size, test_size, batch_size."""


@dataclass(frozen=True, order=True)
class Protocol:
    """How a run was trained and tested; a size of None (all the images) is the README's."""

    epochs: int
    train_size: int
    test_size: int
    batch_size: int
    test_batch_size: int

    def differences(self, batch_size: bool = True) -> list[str]:
        """``baseline.protocol_differences``; ``batch_size=False`` for trials, whose batch size
        is a searched parameter rather than the protocol."""
        batch = self.batch_size if batch_size else README["batch_size"]
        return B.protocol_differences(self.epochs, self.train_size, self.test_size, batch)


def _known(value: object, default: int) -> int:
    return default if value is None or pd.isna(value) else int(value)


def protocol_of(run: pd.Series) -> Protocol:
    return Protocol(
        epochs=_known(run.get("epochs"), README["epochs"]),
        train_size=_known(run.get("train_size"), README["train_size"]),
        test_size=_known(run.get("test_size"), README["test_size"]),
        batch_size=_known(run.get("batch_size"), README["batch_size"]),
        test_batch_size=_known(run.get("test_batch_size"), TrainConfig().test_batch_size),
    )


def protocols(runs: pd.DataFrame) -> list[Protocol]:
    """The distinct protocols of ``runs``, sorted."""
    return sorted({protocol_of(run) for _, run in runs.iterrows()})


def differences(runs: pd.DataFrame, batch_size: bool = True) -> list[str]:
    """How the protocols of ``runs`` differ from the README's, each difference once."""
    said: dict[str, None] = {}
    for protocol in protocols(runs):
        said |= dict.fromkeys(protocol.differences(batch_size))
    return list(said)


def between(ours: pd.DataFrame, theirs: pd.DataFrame) -> list[str]:
    """The protocol fields in which ``ours`` and ``theirs`` differ (batch size aside)."""
    fields = ("epochs", "train_size", "test_size", "test_batch_size")
    a, b = protocols(ours), protocols(theirs)
    return [
        f.replace("_", " ")
        for f in fields
        if {getattr(p, f) for p in a} != {getattr(p, f) for p in b}
    ]


def test_batches(test_size: int, test_batch_size: int) -> tuple[int, int]:
    """How many test batches there are, and how many images the last one holds."""
    batches = math.ceil(test_size / test_batch_size)
    return batches, test_size - (batches - 1) * test_batch_size


def _test_groups(runs: pd.DataFrame) -> dict[tuple[int, int], pd.DataFrame]:
    """``runs`` by their (test size, test batch size)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, run in runs.iterrows():
        protocol = protocol_of(run)
        groups.setdefault((protocol.test_size, protocol.test_batch_size), []).append(index)
    return {key: runs.loc[groups[key]] for key in sorted(groups)}


def test_loss_explanations(trained: pd.DataFrame) -> list[str]:
    """``baseline.test_loss_explanation`` for each test protocol of the trained baseline runs,
    with their measured ratio of test MSE to the README's testing loss (mean over the runs)."""
    out = []
    for (size, batch), runs in _test_groups(trained).items():
        ratios = runs[M.TEST_MSE] / runs[M.README_TEST_LOSS].where(runs[M.README_TEST_LOSS] > 0)
        ratio = float(ratios.mean()) if ratios.notna().any() else None
        out.append(B.test_loss_explanation(size, batch, ratio))
    return out


def testing_loss_label(runs: pd.DataFrame) -> str:
    """The baseline figure's axis label for the README's testing loss, with the runs' batches."""
    groups = list(_test_groups(runs))
    if len(groups) != 1:
        return "2 x MSE(last test batch) / number of test batches"
    batches, last = test_batches(*groups[0])
    return f"2 x MSE(last batch of {last:,}) / {batches} batches"


def exact_gaps(base: pd.DataFrame) -> list[tuple[str, float, float, float]]:
    """For each README figure: (its metric key, the exact reproduction's value, the README's,
    the gap in percent of the README's); empty without ``baseline.exact_reproduction``."""
    exact = B.exact_reproduction(base)
    if exact is None:
        return []
    return [
        (key, float(exact[key]), readme, 100 * (float(exact[key]) / readme - 1))
        for key, readme in B.README_FIGURES.items()
        if key in exact and pd.notna(exact[key])
    ]
