"""The pieces of the benchmark's markdown tables: a benchmark JSON file read back (``BenchFile``,
``load``), figures as text (``fill`` a template, ``significant`` digits), a markdown table, and
the line that says where a table's figures came from (``provenance``)."""

from __future__ import annotations

import dataclasses
import json
import math
import string
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sae.bench.targets import TARGETS, meets


@dataclasses.dataclass(frozen=True)
class BenchFile:
    """One benchmark JSON file: its figures, its machine, and where they came from."""

    name: str
    """the file as given"""
    machine: dict[str, str]
    """the machine and the settings (``machine`` in the JSON)"""
    results: dict[str, float]
    """the figures by key"""
    date: str | None = None
    """when the benchmark started, ISO 8601 in UTC; None in files written before it was kept"""
    command: str | None = None
    """the command line that wrote the file; None in files written before it was kept"""

    @property
    def cuda(self) -> bool:
        """Whether the figures were measured on a CUDA device."""
        return str(self.machine.get("device", "")).startswith("cuda")

    @property
    def amp(self) -> bool:
        """Whether the core trained with ``--amp``."""
        return self.machine.get("amp") == "True"


def load(path: str | Path) -> BenchFile:
    """The benchmark JSON file at ``path``; ValueError in one line when it cannot be read or is
    not one (a ``machine`` and a ``results`` object, every figure a number)."""
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} cannot be read ({err})") from None
    except ValueError as err:
        raise ValueError(f"{path} is not a benchmark JSON file ({err})") from None
    machine = saved.get("machine") if isinstance(saved, dict) else None
    results = saved.get("results") if isinstance(saved, dict) else None
    numbers = isinstance(results, dict) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in results.values()
    )
    if not isinstance(machine, dict) or not numbers:
        raise ValueError(
            f"{path} is not a benchmark JSON file (it needs a 'machine' object and a 'results' "
            "object of numbers, as experiments/bench.py writes)"
        )
    text = {k: saved.get(k) if isinstance(saved.get(k), str) else None for k in ("date", "command")}
    return BenchFile(str(path), {k: str(v) for k, v in machine.items()}, results, **text)


# The figures as text.


class _Figures(string.Formatter):
    """``str.format`` with three more specs: ``sig`` (three significant digits, thousands
    separated from 100 up), ``pct`` (a fraction as a percentage, so) and ``flops`` (GFLOP/s, or
    TFLOP/s from 1,000 GFLOP/s)."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec == "sig":
            return significant(value)
        if format_spec == "pct":
            return f"{significant(100 * value)}%"
        if format_spec == "flops":
            if value >= 1000:
                return f"{significant(value / 1000)} TFLOP/s"
            return f"{significant(value)} GFLOP/s"
        return super().format_field(value, format_spec)


def significant(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, or as a whole number with thousands
    separators once it has that many digits before the point."""
    if not math.isfinite(value) or abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:#.{digits}g}".rstrip(".")


def fill(template: str, fields: Mapping[str, Any]) -> str | None:
    """``template`` formatted with ``fields`` (the specs of ``_Figures``); None when a field it
    names is not there, so that a figure the JSON lacks is left out."""
    try:
        return _Figures().vformat(template, (), fields)
    except KeyError:
        return None


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table; a column empty in every row is left out."""
    rows = [list(row) for row in rows]
    keep = [i for i in range(len(header)) if i == 0 or any(row[i] for row in rows)]
    lines = [
        [header[i] for i in keep],
        ["---"] * len(keep),
        *([row[i] for i in keep] for row in rows),
    ]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def whole(text: Any) -> int | None:
    """A setting of the machine's (a string) as a whole number; None when it is not one."""
    return int(text) if isinstance(text, str) and text.isdigit() else None


def images_text(setting: Any) -> str:
    """A training-set size setting in words: ``all 60,000`` (None) or the number."""
    if setting in (None, "None"):
        return "all 60,000"
    return f"{whole(setting):,}" if whole(setting) else str(setting)


def plural(count: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def count(setting: str | None, noun: str) -> str | None:
    """``2 cores`` from the setting "2"; None when there is none."""
    if not setting:
        return None
    return plural(whole(setting), noun) if whole(setting) is not None else f"{setting} {noun}s"


def when(bench: BenchFile) -> str:
    """The date and time the benchmark started, to the minute in UTC, or "date unknown"."""
    if not bench.date:
        return "date unknown"
    return bench.date.replace("T", " ")[:16] + " UTC"


def machine_line(bench: BenchFile) -> str:
    """The machine in words: CPU, cores, threads, versions, device, mixed precision."""
    m = bench.machine
    words = [
        m.get("cpu"),
        count(m.get("cores"), "core"),
        count(m.get("torch_threads"), "torch thread"),
        m.get("torch") and f"torch {m['torch']}",
        m.get("python") and f"Python {m['python']}",
        m.get("device") and f"device {m['device']}",
        "--amp" if bench.amp else None,
    ]
    return ", ".join(w for w in words if w) or "machine unknown"


def provenance(bench: BenchFile) -> str:
    """Where a table's figures came from: the command, the date and the machine, one line."""
    if bench.command:
        tick = "``" if "`" in bench.command else "`"
        command = f"{tick}{bench.command}{tick}"
    else:
        parts = bench.machine.get("parts")
        command = "a command not recorded" + (f" (parts {parts})" if parts else "")
    return f"From {command}, {when(bench)}; {machine_line(bench)}."


def target_note(key: str, unit: str, values: Sequence[float | None]) -> str:
    """``at least 2x: met`` for one figure's values (a table's columns; None: not measured)."""
    op, bound = TARGETS[key]
    verdicts = ["" if v is None else "met" if meets(key, v) else "not met" for v in values]
    word = "at least" if op == ">=" else "at most"
    return f"{word} {bound:g}{unit}: {' / '.join(verdicts)}"
