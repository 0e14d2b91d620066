"""Deterministic, atomic writing and reading of the tables the notebooks hand to each other.

Design rules: fixed column order, sorted rows, fixed float format, so two runs produce
byte-identical files; a table is written to a temporary file in the same folder and then
renamed over the target, so a failed run never leaves a half-written table behind a good one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

#: Float format of every written table: 6 decimals is below the precision of any input score.
FLOAT_FORMAT = "%.6f"


def _default_mode() -> int:
    """The permissions a plain open() would give (mkstemp's files are private, 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, then a
    rename over the target, so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    """:func:`atomic_write_bytes` of ``text`` as UTF-8 with ``\\n`` line endings."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_table(df: pd.DataFrame, path, *, columns=None, sort_by=None) -> Path:
    """Write ``df`` as CSV with fixed column order, sorted rows and fixed float format.

    Parameters
    ----------
    df : DataFrame
    path : path-like
    columns : list of str, optional
        Column order; every listed column must exist. Defaults to ``df``'s own order.
    sort_by : list of str, optional
        Row order (stable sort). Defaults to the listed columns that are ids
        (``participant_id``, ``session``) when present, else the current order.
    """
    out = df.copy()
    if columns is not None:
        missing = [c for c in columns if c not in out.columns]
        if missing:
            raise KeyError(f"write_table({path}): columns missing from the table: {missing}")
        out = out[list(columns)]
    if sort_by is None:
        sort_by = [c for c in ("participant_id", "session") if c in out.columns]
    if sort_by:
        out = out.sort_values(list(sort_by), kind="mergesort")
    text = out.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return atomic_write_text(path, text)


def read_table(path, **kwargs) -> pd.DataFrame:
    """Read a table written by :func:`write_table` (ids kept as strings)."""
    dtype = {"participant_id": str}
    dtype.update(kwargs.pop("dtype", {}))
    return pd.read_csv(path, dtype=dtype, keep_default_na=True, **kwargs)
