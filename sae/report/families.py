"""The report's families section: when the Optuna storage holds Pareto studies of more than one
family (l1, kl, topk) trained on the same setting, their fronts compared as
``experiments/frontiers.py`` compares them (``sae.bench.frontiers``): each family's hypervolume
and test MSE at L0 = 8, 16 and 32 over its studies, Welch's verdicts, the fronts overlaid."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd

from sae.bench import frontiers as F
from sae.names import STUDY_IDENTITY, STUDY_OBJECTIVE, param
from sae.report import files as FILES
from sae.report.document import Document, code, em
from sae.report.output import Output
from sae.sweep.identity import DIGEST
from sae.sweep.study import make_storage, study_family, study_samplers

SETTING_KEYS = {
    param("train", "epochs"): "epochs",
    param("data", "train_size"): "training images",
    param("data", "test_size"): "test images",
}
"""What a setting is: studies compare only when these, and the data's digest, are the same."""


def setting_of(study: optuna.study.StudySummary) -> tuple[str, str] | None:
    """A Pareto study's setting, as (words, the data's digest); None for another objective or a
    study that recorded no identity."""
    attrs = study.user_attrs
    identity = json.loads(attrs.get(STUDY_IDENTITY, "null") or "null")
    if not identity or attrs.get(STUDY_OBJECTIVE) == "constrained":  # one best trial, no front
        return None
    words = ", ".join(f"{identity.get(k)} {what}" for k, what in SETTING_KEYS.items())
    return words, str(identity.get(DIGEST))


def family_records(storage: str) -> dict[str, list[F.StudyRecord]]:
    """The storage's Pareto studies with a complete trial, by setting and samplers (a family
    searched by another sampler is another comparison), for those that hold studies of at least
    two families. Reads only: an absent journal is no study; an
    unusable storage is a ValueError in one line (``make_storage``)."""
    if "://" not in storage and not Path(storage).is_file():
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = make_storage(storage)
    by_setting: dict[tuple[str, str], list[F.StudyRecord]] = {}
    for summary in optuna.get_all_study_summaries(store, include_best_trial=False):
        setting = setting_of(summary)
        if setting is None or not summary.n_trials:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=store)
        samplers = ", ".join(study_samplers(summary))
        record = F.study_record(study, study_family(summary), samplers, None)
        if record.points:
            words, digest = setting
            by_setting.setdefault((f"{words}; sampler {samplers}", digest), []).append(record)
    out = {}
    for (words, _), records in sorted(by_setting.items()):
        if len({r.family for r in records}) > 1:
            records.sort(key=lambda r: (r.family, r.name))
            out[words] = records
    return out


def studies_frame(found: dict[str, list[F.StudyRecord]]) -> pd.DataFrame:
    """One row per study: its setting, family, trials and figures (the CSV table)."""
    rows = [
        {"setting": words, "study": r.name, "family": r.family, "trials": r.trials, **r.figures}
        for words, records in found.items()
        for r in records
    ]
    return pd.DataFrame(rows)


def families_section(out: Output, doc: Document, storage: str) -> None:
    """Section 2's families part, only when some setting holds studies of several families."""
    try:
        found = family_records(storage)
    except ValueError as err:  # an unreachable database: the rest of the report stands
        doc.text(em(f"Families: not compared, the Optuna storage could not be read ({err})."))
        return
    if not found:
        return
    doc.heading("Families: which sparse code is best at every sparsity", level=3)
    doc.text(
        "The Pareto studies in the Optuna storage, grouped by the setting they trained on and "
        "the sampler that searched them, and compared by family, each study one sample (as ",
        code("python experiments/frontiers.py"),
        f" compares them); {F.REFERENCE_WORDS}. Test MSE at an L0 is read off each study's "
        "front: linear between its points, its densest point's beyond it (that point dominates "
        "every denser code), and not reached below its sparsest point.",
    )
    out.table(FILES.TABLE_FAMILIES, studies_frame(found))
    for i, (words, records) in enumerate(found.items()):
        doc.text(f"Setting: {words}.")
        table, said = F.comparison(records, "family")
        doc.table(table)
        doc.text("Welch's test over the studies (a family is better only where p < 0.05):")
        doc.bullets([(line,) for line in said])
        if i == 0:  # one figure: the first setting's fronts
            out.figure(
                doc,
                FILES.FIG_FAMILIES,
                f"Fronts by family ({words}): each study's non-degenerate complete trials on "
                "the front in (code L0, test MSE)",
                lambda records=records, words=words: F.draw_fronts(records, "family", words),
            )
