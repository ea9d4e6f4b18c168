"""Read the CSV tables stem2d writes and reads back (detections, truth), verifying what is read.

A table that is empty, not CSV, lacks a column or holds a value that is not of its type (a
frame that is not a whole number >= 0, a position that is not finite, a score outside [0, 1])
is refused with one ``ValueError`` naming the file, the column, the row and the value. A
detections table with its header and no rows is valid: no defect was found.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DETECTION_COLUMNS", "TRUTH_COLUMNS", "read_detections", "read_truth", "truth_path"]



def truth_path(path: str | Path) -> Path:
    """``<stem>_truth.csv`` beside the movie file (where ``stem2d.sim.movie_cli`` writes the truth)."""
    path = Path(path)
    return path.with_name(f"{path.stem}_truth.csv")


#: Columns of ``detections.csv`` (row/col in input-frame pixels, score in [0, 1]).
DETECTION_COLUMNS = ("frame", "row", "col", "class", "score")
#: Columns a truth table must have (``track`` is optional).
TRUTH_COLUMNS = ("frame", "row", "col", "class")


def read_detections(path: str | Path) -> pd.DataFrame:
    """``detections.csv`` of an infer run as a DataFrame with :data:`DETECTION_COLUMNS` (and any other).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Empty, not a CSV table, a missing column or a bad value (the message names file, column,
        row and value).
    """
    return _read(Path(path), DETECTION_COLUMNS, what="detections table")


def read_truth(path: str | Path) -> pd.DataFrame:
    """A truth table (``<stem>_truth.csv`` of a synthetic movie): :data:`TRUTH_COLUMNS` at least."""
    return _read(Path(path), TRUTH_COLUMNS, what="truth table")


def _read(path: Path, columns: Sequence[str], *, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file ({what})")
    header = ",".join(columns)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)  # values as written, checked below
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the {what} is empty (not even the header {header})") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: not a CSV {what} with columns {header} ({first})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: the {what} lacks column(s) {missing}; it has {list(table.columns)[:8]} "
                         f"(expected the header {header})")
    _check_frame(table, path)
    for column in ("row", "col"):
        _check_numbers(table, column, path)
    if "score" in columns:
        _check_numbers(table, "score", path, low=0.0, high=1.0)
    bad = table["class"].str.strip() == ""
    if bad.any():
        raise ValueError(f"{path}: column 'class' is empty in line {_row(bad)}")
    return table


def _check_frame(table: pd.DataFrame, path: Path) -> None:
    values = pd.to_numeric(table["frame"], errors="coerce").astype(float)
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if bad.any():
        raise ValueError(f"{path}: column 'frame' must hold whole numbers >= 0; line {_row(bad)} has "
                         f"{table['frame'][bad].iloc[0]!r}")
    table["frame"] = values.astype(np.int64)


def _check_numbers(table: pd.DataFrame, column: str, path: Path, *, low: float | None = None,
                   high: float | None = None) -> None:
    values = pd.to_numeric(table[column], errors="coerce").astype(float)
    bad = ~np.isfinite(values)
    if low is not None:
        bad |= values < low
    if high is not None:
        bad |= values > high
    if bad.any():
        allowed = "finite numbers" + (f" in [{low:g}, {high:g}]" if low is not None and high is not None else "")
        raise ValueError(f"{path}: column {column!r} must hold {allowed}; line {_row(bad)} has "
                         f"{table[column][bad].iloc[0]!r}")
    table[column] = values


def _row(bad: pd.Series) -> int:
    """The first bad row as a spreadsheet would number it (header = line 1, first row = line 2)."""
    return int(np.argmax(bad.to_numpy())) + 2
