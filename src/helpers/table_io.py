"""Deterministic, atomic writing and reading of the tables the notebooks hand to each other.

Design rules: fixed column order, sorted rows, fixed float format, so two runs produce
byte-identical files; a table is written to a temporary file in the same folder and then
renamed over the target, so a failed run never leaves a half-written table behind a good one.

A trial's processed tables (``data/processed``: one row per session, client or episode) are
plain CSV up to :data:`COMPRESS_ABOVE` participants and gzip-compressed CSV (``NAME.csv.gz``)
above it (:func:`write_processed`, :func:`read_processed`).
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import pandas as pd

#: Float format of every written table: 6 decimals is below the precision of any input score.
FLOAT_FORMAT = "%.6f"

#: A trial with more participants than this has its processed tables written gzip-compressed.
#: At 100,000 clients x 10 sessions they are 48 MB as CSV and 9 MB compressed (the issue's
#: budget for all outputs of such a run is 20 MB); a smaller trial keeps plain CSV, which any
#: editor opens and git diffs line by line. pandas (``read_csv``) and R (``read.csv``) read
#: either as they are.
COMPRESS_ABOVE = 10_000
#: The two forms of a processed table's file name, ``NAME`` + suffix.
PROCESSED_SUFFIXES = (".csv", ".csv.gz")


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

    A path ending in ``.gz`` is written gzip-compressed, with no time stamp in the header
    (so the same table gives the same bytes).
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
    if str(path).endswith(".gz"):
        return atomic_write_bytes(path, gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0))
    return atomic_write_text(path, text)


def read_table(path, **kwargs) -> pd.DataFrame:
    """Read a table written by :func:`write_table` (ids kept as strings)."""
    dtype = {"participant_id": str}
    dtype.update(kwargs.pop("dtype", {}))
    return pd.read_csv(path, dtype=dtype, keep_default_na=True, **kwargs)


def processed_path(folder, name: str, n_participants: int) -> Path:
    """Where the processed table ``name`` (e.g. ``"sessions"``) of a trial of
    ``n_participants`` is written: ``NAME.csv``, or ``NAME.csv.gz`` above :data:`COMPRESS_ABOVE`.

    >>> processed_path("p", "sessions", 116).as_posix(), processed_path("p", "sessions", 20_000).as_posix()
    ('p/sessions.csv', 'p/sessions.csv.gz')
    """
    return Path(folder) / (name + PROCESSED_SUFFIXES[int(n_participants > COMPRESS_ABOVE)])


def write_processed(df: pd.DataFrame, folder, name: str, *, n_participants: int, columns=None,
                    sort_by=None) -> Path:
    """:func:`write_table` of a processed table at :func:`processed_path`; a file of the same
    table in the other form (left by an earlier run of another size) is removed, so that
    :func:`read_processed` never has two to choose from."""
    path = write_table(df, processed_path(folder, name, n_participants), columns=columns, sort_by=sort_by)
    remove_processed(folder, name, keep=path)
    return path


def remove_processed(folder, name: str, keep=None) -> None:
    """Remove the processed table ``name`` in either form (but ``keep``)."""
    for suffix in PROCESSED_SUFFIXES:
        path = Path(folder) / (name + suffix)
        if keep is None or path != Path(keep):
            path.unlink(missing_ok=True)


def find_processed(folder, name: str) -> Path | None:
    """The file of the processed table ``name`` in ``folder`` (either form), None if absent.

    Raises
    ------
    ValueError
        When both forms exist: which one is current cannot be told (they are written only by
        :func:`write_processed`, which removes the other).
    """
    found = [Path(folder) / (name + s) for s in PROCESSED_SUFFIXES if (Path(folder) / (name + s)).is_file()]
    if len(found) > 1:
        raise ValueError(f"{folder}: both {found[0].name} and {found[1].name} exist; remove the stale one "
                         "(or run the pipeline again)")
    return found[0] if found else None


def read_processed(folder, name: str, **kwargs) -> pd.DataFrame | None:
    """:func:`read_table` of the processed table ``name`` in ``folder`` (either form), None if absent."""
    path = find_processed(folder, name)
    return None if path is None else read_table(path, **kwargs)
