"""The contract's tables from raw tables (private to :mod:`helpers.data`).

Builds the ``sessions`` table (long, or wide reshaped to long), the ``participants`` table and
the light-checked ``truth`` table of simulated data, with the contract's columns, dtypes and
row order; checks uniqueness (duplicates shown next to each other) and that both tables hold
the same participants; warns (:class:`DataWarning`) about absent optional columns.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.contract import (
    BOOL_COLUMNS,
    PARTICIPANT_COLUMNS,
    PATTERN_LABELS,
    SCORE_RANGES,
    SESSION_COLUMNS,
    TRUTH_COLUMNS,
    DataValidationError,
)
from helpers.data._cells import (
    _bools,
    _choose_decimal,
    _ids,
    _missing,
    _numbers,
    _scores,
    _sessions_col,
)
from helpers.data._columns import (
    REQUIRED_PARTICIPANT_COLUMNS,
    REQUIRED_SESSION_COLUMNS,
    WIDE_MEASURES,
    _detect_layout,
    _hint,
    _require,
    _wide_columns,
)
from helpers.data._readers import _N_SHOW, _error, _Raw


class DataWarning(UserWarning):
    """Something a user should know about their data that does not break the contract."""



def _check_unique(raw: _Raw, keys: pd.DataFrame, column: str, rule: str) -> None:
    dup = keys.duplicated(keep=False).to_numpy()
    if dup.any():
        # Show the duplicates next to each other, in file order within a group.
        pos = np.flatnonzero(dup)
        order = keys.iloc[pos].assign(_pos=pos).sort_values([*keys.columns, "_pos"])
        pos = order["_pos"].to_numpy()
        show = [c for c in ("participant_id", "session") if c in raw.df.columns]
        raise DataValidationError(raw.file, column, rule, raw.df.iloc[pos[:_N_SHOW]][show],
                                  n_bad=int(dup.sum()))


def _sessions_long(raw: _Raw, n_sessions) -> tuple[pd.DataFrame, dict]:
    _require(raw, REQUIRED_SESSION_COLUMNS)
    measures = [m for m in WIDE_MEASURES if m in raw.df.columns]
    decimal = _choose_decimal(raw, ["session"] + measures)
    ids = _ids(raw)
    session = _sessions_col(raw, decimal, n_sessions)
    out = pd.DataFrame({"participant_id": ids, "session": session})
    for m in WIDE_MEASURES:
        out[m] = _scores(raw, m, m, decimal) if m in measures else np.nan
    _check_unique(raw, out[["participant_id", "session"]], "session",
                  "duplicate participant_id x session (one row per participant and session)")
    report = {
        "layout": "long",
        "missing": [m for m in WIDE_MEASURES if m not in measures],
        "extra": [c for c in raw.df.columns if c not in SESSION_COLUMNS],
    }
    return out, report


def _sessions_wide(raw: _Raw, n_sessions) -> tuple[pd.DataFrame, dict]:
    _require(raw, ["participant_id"])
    wide = _wide_columns(raw.df.columns)
    if not any(m == "alliance" for m, _ in wide.values()):
        raise DataValidationError(
            raw.file, "alliance_s1",
            "missing required column: no wide alliance columns (alliance_s1, alliance_s2, ...)"
            + _hint("alliance_s1", raw.df.columns),
        )
    seen = {}
    for col, (measure, s) in wide.items():
        if s < 1:
            raise DataValidationError(
                raw.file, col, f"session is not a positive integer (column name gives session {s})"
            )
        if n_sessions is not None and s > n_sessions:
            raise DataValidationError(raw.file, col, f"session beyond n_sessions={n_sessions}")
        if (measure, s) in seen:
            raise DataValidationError(
                raw.file, col,
                f"duplicate participant_id x session: columns {seen[(measure, s)]!r} and "
                f"{col!r} both hold {measure} of session {s}",
            )
        seen[(measure, s)] = col
    decimal = _choose_decimal(raw, list(wide))
    ids = _ids(raw)
    _check_unique(raw, ids.to_frame(), "participant_id",
                  "duplicate participant_id x session (wide layout: one row per participant)")
    scores = {col: _scores(raw, col, m, decimal) for col, (m, _) in wide.items()}
    sessions = sorted({s for _, s in wide.values()})
    parts = []
    for s in sessions:
        block = {"participant_id": ids.to_numpy(), "session": np.full(len(ids), s, "int64")}
        for m in WIDE_MEASURES:
            col = seen.get((m, s))
            block[m] = scores[col].to_numpy() if col else np.full(len(ids), np.nan)
        parts.append(pd.DataFrame(block))
    out = pd.concat(parts, ignore_index=True)
    report = {
        "layout": "wide",
        "missing": [m for m in WIDE_MEASURES if all(mm != m for mm, _ in wide.values())],
        "extra": [c for c in raw.df.columns if c != "participant_id" and c not in wide],
        "wide_columns": {c: list(v) for c, v in wide.items()},
    }
    return out, report


def _finish_sessions(out: pd.DataFrame) -> pd.DataFrame:
    out = out.sort_values(["participant_id", "session"], kind="mergesort")
    out = out.reset_index(drop=True)[SESSION_COLUMNS]
    return out.astype({"participant_id": "str", "session": "int64",
                       "alliance": "float64", "pss_sr": "float64"})


def _sessions_table(raw: _Raw, layout: str, n_sessions) -> tuple[pd.DataFrame, dict]:
    if n_sessions is not None and (int(n_sessions) != n_sessions or n_sessions < 1):
        raise ValueError(f"n_sessions must be a positive integer, got {n_sessions!r}")
    layout = _detect_layout(raw, layout)
    build = _sessions_long if layout == "long" else _sessions_wide
    out, report = build(raw, n_sessions)
    return _finish_sessions(out), report


def _participants_table(raw: _Raw) -> tuple[pd.DataFrame, dict]:
    _require(raw, REQUIRED_PARTICIPANT_COLUMNS)
    numeric = [c for c in PARTICIPANT_COLUMNS if c in SCORE_RANGES and c in raw.df.columns]
    decimal = _choose_decimal(raw, numeric)
    ids = _ids(raw)
    _check_unique(raw, ids.to_frame(), "participant_id",
                  "duplicate participant_id (one row per participant)")
    out = pd.DataFrame({"participant_id": ids})
    missing = []
    for col in PARTICIPANT_COLUMNS[1:]:
        present = col in raw.df.columns
        if not present:
            missing.append(col)
        if col in BOOL_COLUMNS:
            out[col] = _bools(raw, col) if present else pd.array([pd.NA] * len(ids), "boolean")
        else:
            out[col] = _scores(raw, col, col, decimal) if present else np.nan
    out = out.sort_values("participant_id", kind="mergesort").reset_index(drop=True)
    out = out.astype({"participant_id": "str"})
    report = {"missing": missing,
              "extra": [c for c in raw.df.columns if c not in PARTICIPANT_COLUMNS]}
    return out, report


def _check_same_ids(s_raw: _Raw, p_raw: _Raw) -> None:
    """Both tables hold the same participants; the error names the file lacking some."""
    s_ids, p_ids = _ids(s_raw), _ids(p_raw)
    for have_raw, have, lack_raw, lack in ((s_raw, s_ids, p_raw, p_ids),
                                           (p_raw, p_ids, s_raw, s_ids)):
        only = sorted(set(have.unique()) - set(lack.unique()))
        if only:
            listed = only[:10] + (["..."] if len(only) > 10 else [])
            raise _error(
                lack_raw.file, "participant_id",
                f"participant ids in {Path(have_raw.file).name} but not in "
                f"{Path(lack_raw.file).name} ({len(only)} participant"
                f"{'s' if len(only) != 1 else ''}): {listed}; ids in {Path(lack_raw.file).name} look like "
                f"{sorted(set(lack))[:5]} (the same ids must be spelled the same way in both files); "
                f"the rows below are from {Path(have_raw.file).name}",
                have_raw.df, have.isin(only).to_numpy(), ["participant_id", "session"],
            )


def _warn_columns(file: str, table: str, report: dict, messages: list) -> None:
    if not report["missing"]:
        return
    msg = (f"{file}: {table} columns not found, filled with missing values: "
           f"{report['missing']}")
    if report["extra"]:
        msg += (f"; the file also has columns outside the contract {report['extra']} -- "
                "if one of them is meant, pass mapping={'contract name': 'their name'}")
    messages.append(msg)
    warnings.warn(msg, DataWarning, stacklevel=3)


def _truth_table(raw: _Raw, participant_ids) -> pd.DataFrame:
    """Light checks of a ``truth`` table (simulated data written by :func:`save_trial`)."""
    _require(raw, TRUTH_COLUMNS)
    ids = _ids(raw)
    _check_unique(raw, ids.to_frame(), "participant_id", "duplicate participant_id")
    unknown = (~ids.isin(set(participant_ids))).to_numpy()
    if unknown.any():
        raise _error(raw.file, "participant_id", "participant ids not in the participants table",
                     raw.df, unknown, ["participant_id"])
    out = pd.DataFrame({"participant_id": ids})
    pattern = raw.df["true_pattern"].map(lambda v: "" if _missing(v) else str(v).strip())
    bad = (~pattern.isin(PATTERN_LABELS)).to_numpy()
    if bad.any():
        raise _error(raw.file, "true_pattern", f"pattern not one of {PATTERN_LABELS}",
                     raw.df, bad, ["participant_id", "true_pattern"])
    out["true_pattern"] = pattern
    for col in ("n_true_ruptures", "imaginal_start", "dropout_after"):
        values = _numbers(raw, col, ".", "not a number", ["participant_id", col])
        whole = values.notna().all() and (values == values.round()).all()
        out[col] = values.astype("int64") if whole else values
    for col in ("rupture_sessions", "repair_sessions"):
        out[col] = raw.df[col].map(lambda v: "" if _missing(v) else str(v).strip())
    out = out[TRUTH_COLUMNS].sort_values("participant_id", kind="mergesort")
    return out.reset_index(drop=True).astype({"participant_id": "str"})

