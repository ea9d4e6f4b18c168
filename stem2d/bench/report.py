"""Markdown report of the benchmark: sections of text, tables and figures, and the page header.

A :class:`Section` is what every benchmark topic returns; :func:`write_report` turns a list of
them into ``results.md``. Numbers are formatted here, once (:func:`fmt`): a ratio that cannot be
computed (zero denominator, e.g. precision without any detection) is written ``n/a``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import stem2d
from stem2d.output.files import atomic_path

log = logging.getLogger(__name__)

#: Written for a value that a ratio with a zero denominator leaves undefined.
UNDEFINED = "n/a"
#: Written in place of numbers that need a checkpoint that is missing.
NOT_AVAILABLE = "not available"


def fmt(value, *, digits: int = 3) -> str:
    """One table cell: ``digits`` significant decimals for floats, ints as they are.

    None and non-finite floats (undefined ratios) become :data:`UNDEFINED`; strings pass.

    Examples
    --------
    >>> fmt(0.91234), fmt(12), fmt(None), fmt(1234.5, digits=1)
    ('0.912', '12', 'n/a', '1234.5')
    """
    if value is None:
        return UNDEFINED
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if not math.isfinite(value):
        return UNDEFINED
    return f"{value:.{digits}f}"


@dataclass
class Table:
    """A markdown table with a caption line giving the exact settings (and seed) it came from."""

    caption: str
    header: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells) -> None:
        """Append a row; cells are formatted with :func:`fmt` unless already strings."""
        if len(cells) != len(self.header):
            raise ValueError(f"table {self.caption!r}: row has {len(cells)} cells, header {len(self.header)}")
        self.rows.append([fmt(c) for c in cells])

    def to_markdown(self) -> str:
        def line(cells):
            return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

        out = [self.caption, "", line(self.header), "|" + "|".join("---" for _ in self.header) + "|"]
        out += [line(r) for r in self.rows]
        return "\n".join(out)


@dataclass
class Section:
    """One topic of the report: a heading, paragraphs, tables and PNGs (paths inside the output dir)."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file name, alt text)
    wall_s: float = 0.0

    def to_markdown(self) -> str:
        parts = [f"## {self.title}", ""]
        parts += [p + "\n" for p in self.paragraphs]
        for table in self.tables:
            parts += [table.to_markdown(), ""]
        for name, alt in self.figures:
            parts += [f"![{alt}]({name})", ""]
        parts.append(f"_Section wall time: {self.wall_s:.1f} s._\n")
        return "\n".join(parts)


def unavailable(title: str, reason: str) -> Section:
    """A section that could not be measured (a checkpoint is missing)."""
    return Section(title, [f"**{NOT_AVAILABLE}**: {reason}"])


def machine_line() -> str:
    """CPU count, load, torch version and accelerator of this machine."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"{os.cpu_count()} CPUs ({platform.machine()}, {platform.processor() or 'unknown cpu'}), "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), GPU: {gpu}, "
            f"Python {platform.python_version()}, load average at start {load:.2f}")


def _relative_paths(text: str) -> str:
    """Show files inside the checkout relative to it (results.md is committed; no machine paths)."""
    root = str(Path(stem2d.__file__).resolve().parents[1])
    return text.replace(root + os.sep, "").replace(root, ".")


def write_report(path: Path, sections: Sequence[Section], *, command: str, machine: str,
                 wall_s: float, started: _dt.datetime) -> Path:
    """Write ``results.md``: a header (date, machine, command, total wall time), then the sections."""
    head = [
        "# stem2d benchmark results",
        "",
        (f"Generated {started:%Y-%m-%d %H:%M} by `{command}` (stem2d {stem2d.__version__}); "
         f"total wall time {wall_s:.1f} s."),
        "",
        f"Machine: {machine}.",
        "",
        ("Every number below was measured by this run; each table states its settings and seeds. "
         f"`{UNDEFINED}` marks a ratio whose denominator is zero (e.g. precision without detections)."),
        "",
    ]
    text = "\n".join(head) + "\n" + "\n".join(s.to_markdown() for s in sections)
    text = _relative_paths(text)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    log.info("wrote %s", path)
    return path
