"""Where a report's sections put their files: CSV tables and PNG figures in the build folder,
each redacted, never through a symbolic link, and a figure that cannot be drawn said in the text
instead."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from sae.paths import owned
from sae.redact import redact
from sae.report import figures
from sae.report.document import Document, em, redact_frame


class Output:
    """The files a report has written so far, and the figures it could not draw."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.figure_files: list[Path] = []
        self.table_files: list[Path] = []
        self.skipped: dict[str, str] = {}
        """The figures not drawn, by path, and why."""

    def table(self, path: str, frame: pd.DataFrame) -> None:
        """Write ``frame`` as the CSV file ``path`` (one of OUTPUTS), every text cell redacted."""
        redact_frame(frame).to_csv(
            owned(self.folder, path),
            index=False,
            float_format="%.10g",
            date_format="%Y-%m-%dT%H:%M:%S.%fZ",
        )
        self.table_files.append(self.folder / path)

    def figure(self, doc: Document, path: str, caption: str, make: Callable[[], Figure]) -> None:
        try:
            fig = make()
        except figures.NothingToPlot as why:
            self.skipped[path] = redact(str(why))
            doc.text(em(f"{caption.split(':')[0]}: not drawn, {why}."))
            return
        figures.save_figure(fig, owned(self.folder, path))
        self.figure_files.append(self.folder / path)
        doc.figure(path, caption)
