"""Building a report: read the selected runs, write every section into a hidden build folder
beside ``reports/<name>/``, then move the finished files in, so a failure or an interrupt leaves
the previous report as it was and a user's own files in the folder stay.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from sae import tracking
from sae.paths import PLAIN_NAME, check_plain_name, owned
from sae.report import files as F
from sae.report.document import Document
from sae.report.families import families_section
from sae.report.figures import style
from sae.report.frames import Frames, Selection, load_frames
from sae.report.gallery import figures_section
from sae.report.provenance import reproducibility
from sae.report.sections import Writer

TITLE = "Comparison report: the sparse autoencoder against the README baseline"
NAME_PATTERN = PLAIN_NAME
"""A report name: one plain folder name, never a path, never hidden (the build folders are)."""
_BUILDING = ".building-"
"""A report's build folder is ``.<name>.building-<32 hex digits>`` in the output folder."""


@dataclass
class Report:
    folder: Path
    markdown: Path
    html: Path
    figures: list[Path]
    tables: list[Path]
    frames: Frames
    skipped: dict[str, str]
    """The figures not drawn, by path, and why."""
    run_id: str | None = None
    """The report's own MLflow run, when it was logged."""


def check_name(name: str) -> str:
    """``name`` when it is a plain folder name (NAME_PATTERN); else ValueError, in one line."""
    return check_plain_name(name, "report name")


def build_report(
    settings: tracking.Settings,
    selection: Selection | None = None,
    name: str = "latest",
    *,
    output_dir: str | Path = "reports",
    storage: str | None = None,
    command: str = "",
    log: bool = False,
) -> Report:
    """Read the selected runs and write ``<output_dir>/<name>/``: report.md, report.html,
    figures/*.png and tables/*.csv (the OUTPUTS); with ``log``, log them as a report run.

    The report is built in a fresh folder beside its own (``<output_dir>/.<name>.building-*``)
    and moved in file by file only once it is complete and logged, so a failure or an interrupt
    leaves the previous report as it was. A rebuild replaces the OUTPUTS and nothing else: files
    a user put in the folder stay.

    ``storage`` is the Optuna storage of the study (default: the settings'); ``command`` is the
    command line shown under Reproducibility. Raises ValueError, in one line and before writing
    anything, when the name is not a plain name, the output folder or anything of the report's
    in it is a symbolic link (``sae.paths.owned``), there is no store, or the selection matches
    nothing (``load_frames``).
    """
    check_name(name)
    output_dir = Path(output_dir)
    target = _check_target(output_dir, name)
    selection = selection or Selection()
    frames = load_frames(settings, selection)
    output_dir.mkdir(parents=True, exist_ok=True)
    _remove_unfinished_builds(output_dir, name)
    building = output_dir / f".{name}{_BUILDING}{uuid.uuid4().hex}"
    building.mkdir()
    try:
        writer = _write(settings, selection, frames, building, storage, command)
        run_id = tracking.log_report(settings, name, building) if log else None
        _move_in(building, target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return Report(
        folder=target,
        markdown=target / F.REPORT_MD,
        html=target / F.REPORT_HTML,
        figures=sorted(target / p.relative_to(building) for p in writer.figure_files),
        tables=sorted(target / p.relative_to(building) for p in writer.table_files),
        frames=frames,
        skipped=writer.skipped,
        run_id=run_id,
    )


def _check_target(output_dir: Path, name: str) -> Path:
    """``output_dir / name`` when a report may be moved in there: neither the output folder nor
    the report's folder, nor any of the OUTPUTS or their folders in it, is a symbolic link
    (``owned``), and each is of the kind the report writes (a folder, a file)."""
    target = owned(output_dir, name)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file, not a report folder: move it or choose --name")
    for folder in (F.FIGURES_DIR, F.TABLES_DIR):
        path = owned(output_dir, name, folder)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} is a file, not the report's folder: move it away")
    for path in sorted(F.OUTPUTS):
        if owned(output_dir, name, path).is_dir():
            raise ValueError(f"{target / path} is a folder, not the report's file: move it away")
    return target


def _write(
    settings: tracking.Settings,
    selection: Selection,
    frames: Frames,
    folder: Path,
    storage: str | None,
    command: str,
) -> Writer:
    """The whole report, into the empty ``folder``."""
    (folder / F.FIGURES_DIR).mkdir()
    (folder / F.TABLES_DIR).mkdir()
    writer = Writer(settings, frames, folder, storage or settings.optuna_storage)
    doc = Document(TITLE)
    with style():
        writer.overview(doc, selection)
        writer.baseline_section(doc)
        writer.sweep_section(doc)
        families_section(writer, doc, writer.storage)
        figures_section(writer, doc)
    reproducibility(writer, doc, frames.runs, command)
    writer.table(F.TABLE_RUNS, frames.runs)
    writer.table(F.TABLE_CURVES, frames.curves)
    owned(folder, F.REPORT_MD).write_text(doc.markdown(), encoding="utf-8")
    owned(folder, F.REPORT_HTML).write_text(doc.html(folder), encoding="utf-8")
    return writer


def _remove_unfinished_builds(output_dir: Path, name: str) -> None:
    """Remove the build folders of ``name`` that a killed build left, those holding nothing but
    what a build writes: a user's file is never moved into one, so nothing of theirs is lost."""
    pattern = re.compile(re.escape(f".{name}{_BUILDING}") + "[0-9a-f]{32}")
    for entry in output_dir.iterdir():
        if pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            files = {p.relative_to(entry).as_posix() for p in entry.rglob("*") if not p.is_dir()}
            if all(f in F.OUTPUTS or f.startswith(F.DOWNLOADS) for f in files):
                shutil.rmtree(entry, ignore_errors=True)


def _move_in(building: Path, target: Path) -> None:
    """Move the finished report into ``target``, each file by one atomic rename and the two
    pages last; then remove the OUTPUTS of an earlier build that this one did not write. Any
    other file in ``target`` is left where it is."""
    written = {p.relative_to(building).as_posix() for p in building.rglob("*") if p.is_file()}
    pages = [p for p in (F.REPORT_MD, F.REPORT_HTML) if p in written]
    root, name = target.parent, target.name
    for folder in (F.FIGURES_DIR, F.TABLES_DIR):
        owned(root, name, folder).mkdir(parents=True, exist_ok=True)
    for path in [*sorted(written - set(pages)), *pages]:
        os.replace(building / path, owned(root, name, path))
    for path in sorted(F.OUTPUTS - written):
        owned(root, name, path).unlink(missing_ok=True)
