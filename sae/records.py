"""The part of an epoch's record the engine (``sae.train``) takes after training: the evaluation
of K models on the whole test split in one pass and, at the last epoch, their linear probes."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sae import metrics as M
from sae.config import TrainConfig
from sae.order import ScriptOrder, SeededOrder
from sae.probe import Encoder, encode_many, probe_accuracy
from sae.splits import Splits


def evaluation_records(
    forward: M.Forward,
    encoder: Encoder,
    splits: Splits,
    cfgs: Sequence[TrainConfig],
    orders: Sequence[SeededOrder | ScriptOrder],
    epoch: int,
    code: bool = True,
) -> list[dict[str, float]]:
    """The rest of epoch ``epoch``'s record for K models, in one pass for all: the evaluation on
    the whole test split (model k in ``orders[k]``'s test order, with its ``cfgs[k]``) and, at
    the last epoch, the probe. ``epochs`` and ``probe`` are common to the ``cfgs``; ``code=False``
    leaves the code out of the penalty (a TopK code)."""
    n_test = splits.test.shape[0]
    records = M.evaluate_many(
        forward, splits.test, cfgs, [o.test(n_test) for o in orders], code=code
    )
    if epoch == cfgs[0].epochs and cfgs[0].probe and splits.train_labels is not None:
        for record, probe in zip(records, probe_metrics(encoder, splits), strict=True):
            record.update(probe)
    return records


def probe_metrics(encoder: Encoder, splits: Splits) -> list[dict[str, float]]:
    """Each of K models' linear probe test accuracy from its codes, and its wall time: an equal
    share of encoding both splits for all K at once, plus fitting its own probe."""
    started = time.perf_counter()
    train_codes = encode_many(encoder, splits.train)  # (K, N, 64)
    test_codes = encode_many(encoder, splits.test)
    share = (time.perf_counter() - started) / len(train_codes)
    out = []
    for train_code, test_code in zip(train_codes, test_codes, strict=True):
        started = time.perf_counter()
        accuracy = probe_accuracy(train_code, splits.train_labels, test_code, splits.test_labels)
        out.append(
            {M.PROBE_ACCURACY: accuracy, M.PROBE_SECONDS: share + time.perf_counter() - started}
        )
    return out
