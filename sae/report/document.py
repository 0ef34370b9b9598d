"""The report as a document: headings, paragraphs of inline spans, tables, figures and code,
rendered as Markdown and as one self-contained HTML page from the Jinja2 templates in
``templates/``. Every text is redacted as it is added, so neither rendering can show a secret.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import jinja2
import numpy as np
import pandas as pd

from sae.redact import redact

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("sae.report", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Span:
    """A run of text in a paragraph, plain or marked up."""

    text: str
    style: Literal["plain", "code", "strong", "em"] = "plain"


def code(text: str) -> Span:
    """An inline code span: a command, a name, a URI."""
    return Span(text, "code")


def strong(text: str) -> Span:
    return Span(text, "strong")


def em(text: str) -> Span:
    return Span(text, "em")


Inline = str | Span
"""A paragraph's part: a plain string or a marked-up span."""


def _spans(parts: tuple[Inline, ...]) -> tuple[Span, ...]:
    spans = (p if isinstance(p, Span) else Span(p) for p in parts)
    return tuple(Span(redact(s.text), s.style) for s in spans)


@dataclass(frozen=True)
class Heading:
    kind: ClassVar[str] = "heading"
    text: str
    level: int


@dataclass(frozen=True)
class Paragraph:
    kind: ClassVar[str] = "paragraph"
    spans: tuple[Span, ...]


@dataclass(frozen=True)
class Bullets:
    kind: ClassVar[str] = "bullets"
    items: tuple[tuple[Span, ...], ...]


@dataclass(frozen=True)
class Table:
    """Text cells under their column names."""

    kind: ClassVar[str] = "table"
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    @property
    def widths(self) -> list[int]:
        """Each column's width in Markdown: its longest cell, and two more than its name."""
        return [
            max([len(name) + 2, *(len(row[i]) for row in self.rows)])
            for i, name in enumerate(self.columns)
        ]


@dataclass(frozen=True)
class Image:
    kind: ClassVar[str] = "figure"
    path: str
    """Relative to the report's folder."""
    caption: str


@dataclass(frozen=True)
class Code:
    kind: ClassVar[str] = "code"
    text: str


@dataclass
class Document:
    """The report's blocks in order, each redacted as it is added."""

    title: str
    blocks: list[Heading | Paragraph | Bullets | Table | Image | Code] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(Heading(redact(text), level))

    def text(self, *parts: Inline) -> None:
        """A paragraph of plain strings and spans (``code``, ``strong``, ``em``)."""
        self.blocks.append(Paragraph(_spans(parts)))

    def bullets(self, items: list[tuple[Inline, ...]]) -> None:
        if items:
            self.blocks.append(Bullets(tuple(_spans(item) for item in items)))

    def table(self, frame: pd.DataFrame) -> None:
        cells = redact_frame(frame.map(_cell).astype(str))
        rows = tuple(tuple(row) for row in cells.itertuples(index=False))
        self.blocks.append(Table(tuple(str(c) for c in cells.columns), rows))

    def figure(self, path: str, caption: str) -> None:
        self.blocks.append(Image(path, redact(caption)))

    def code(self, text: str) -> None:
        self.blocks.append(Code(redact(text)))

    def markdown(self) -> str:
        template = _TEMPLATES.get_template("report.md.j2")
        return template.render(title=redact(self.title), blocks=self.blocks)

    def html(self, folder: Path) -> str:
        """One page, the figures embedded as data URIs: nothing else to fetch."""
        images = {
            block.path: base64.b64encode((folder / block.path).read_bytes()).decode("ascii")
            for block in self.blocks
            if isinstance(block, Image)
        }
        template = _TEMPLATES.get_template("report.html.j2")
        return template.render(title=redact(self.title), blocks=self.blocks, images=images)


def redact_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell and column name redacted; numbers and times untouched."""
    out = frame.rename(columns=lambda name: redact(name) if isinstance(name, str) else name)
    for name in out.columns:
        if out[name].dtype == object or pd.api.types.is_string_dtype(out[name].dtype):
            out[name] = out[name].map(lambda v: redact(v) if isinstance(v, str) else v)
    return out


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return str(value)
