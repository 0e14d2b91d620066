"""Cell conversion (private to :mod:`helpers.data`): one function per kind of column.

Missing-value tokens, numbers (with the decimal comma of European CSV exports chosen per
file), participant ids (stripped text, ``17.0`` read as ``"17"``), scores within their
ranges, session numbers and yes/no cells are converted here, each function raising a
:class:`~helpers.contract.DataValidationError` on the first broken rule with the offending
rows of the :class:`~helpers.data._readers._Raw` table it reads.
"""

from __future__ import annotations

import math
import numbers
import re

import numpy as np
import pandas as pd

from helpers.contract import SCORE_RANGES
from helpers.data._readers import _blank, _error, _Raw

#: Cell texts read as missing (compared case-insensitively after stripping spaces):
#: pandas' defaults plus ``.`` (SPSS/SAS system-missing in text exports).
NA_TOKENS = frozenset(
    ["", "na", "n/a", "nan", "-nan", "null", "none", "<na>", "#n/a", "#na", "#n/a n/a", "."]
)
_TRUE = frozenset(["true", "yes", "y", "1"])
_FALSE = frozenset(["false", "no", "n", "0"])

_NUMBER_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_DOT_DECIMAL_RE = re.compile(r"^[+-]?(?:\d+\.\d+|\.\d+)$")
_COMMA_DECIMAL_RE = re.compile(r"^[+-]?(?:\d+,\d+|,\d+)$")


def _missing(v) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, str):
        return v.strip().lower() in NA_TOKENS
    return isinstance(v, (float, np.floating)) and math.isnan(v)


def _to_float(v, decimal: str) -> float | None:
    """The number in cell ``v``; NaN when missing; ``None`` when not a number."""
    if _missing(v):
        return math.nan
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        if decimal == ",":
            s = s.replace(",", ".", 1) if s.count(",") == 1 and "." not in s else s
        return float(s) if _NUMBER_RE.match(s) else None
    return None


def _choose_decimal(raw: _Raw, columns) -> str:
    """Decimal comma for a CSV whose numeric cells use ',' and never '.' (European export)."""
    if raw.info.get("format") != "csv":
        return "."
    comma, dot = {}, {}
    for col in columns:
        cells = raw.df[col].map(lambda v: v.strip() if isinstance(v, str) else "")
        comma[col] = cells.map(lambda s: bool(_COMMA_DECIMAL_RE.match(s))).to_numpy()
        dot[col] = cells.map(lambda s: bool(_DOT_DECIMAL_RE.match(s))).to_numpy()
    has_comma = [c for c in columns if comma[c].any()]
    has_dot = [c for c in columns if dot[c].any()]
    if has_comma and has_dot:
        col = has_comma[0]
        example = raw.df[has_dot[0]][dot[has_dot[0]]].iloc[0]
        raise _error(
            raw.file, col,
            "mixed decimal separators: the rows below write numbers with a decimal comma, "
            f"but column {has_dot[0]!r} also has numbers with a decimal point (e.g. "
            f"{example.strip()!r}); use one separator throughout",
            raw.df, comma[col], ["participant_id", "session", col],
        )
    decimal = "," if has_comma else "."
    raw.info["decimal"] = decimal
    return decimal


def _ids(raw: _Raw) -> pd.Series:
    """``participant_id`` as stripped text; whole numbers lose a trailing '.0'."""

    def norm(v):
        if _blank(v) or v is pd.NA:
            return ""
        if isinstance(v, (bool, np.bool_)):
            return str(v)
        if isinstance(v, numbers.Integral):
            return str(int(v))
        if isinstance(v, numbers.Real) and float(v).is_integer():
            return str(int(v))
        return str(v).strip()

    ids = raw.df["participant_id"].map(norm)
    bad = (ids == "").to_numpy()
    if bad.any():
        raise _error(raw.file, "participant_id", "empty participant_id (blank or missing)",
                     raw.df, bad, ["participant_id"] + [c for c in raw.df.columns[:4]])
    return ids


def _numbers(raw: _Raw, col: str, decimal: str, rule: str, show) -> pd.Series:
    """Column ``col`` as float64 (NaN = missing); raises ``rule`` on a cell that is not a number."""
    # A list, not Series.map: map would turn the "not a number" marker None into NaN.
    parsed = [_to_float(v, decimal) for v in raw.df[col]]
    bad = np.array([v is None for v in parsed], dtype=bool)
    if bad.any():
        raise _error(raw.file, col, rule, raw.df, bad, show)
    return pd.Series(parsed, index=raw.df.index, dtype="float64")


def _scores(raw: _Raw, col: str, measure: str, decimal: str) -> pd.Series:
    values = _numbers(raw, col, decimal, "non-numeric score (expected a number or an empty cell)",
                      ["participant_id", "session", col])
    # the instruments' ranges (a dataset descriptor's) or the contract's defaults
    lo, hi = raw.info.get("ranges", SCORE_RANGES)[measure]
    out = (values.notna() & ((values < lo) | (values > hi))).to_numpy()
    if out.any():
        raise _error(raw.file, col, f"score out of range [{lo:g}, {hi:g}]",
                     raw.df, out, ["participant_id", "session", col])
    return values


def _sessions_col(raw: _Raw, decimal: str, n_sessions) -> pd.Series:
    parsed = [_to_float(v, decimal) for v in raw.df["session"]]

    def ok(v):
        return v is not None and math.isfinite(v) and v >= 1 and float(v).is_integer()

    bad = np.array([not ok(v) for v in parsed], dtype=bool)
    if bad.any():
        labels = [str(v) for v in raw.df["session"][bad] if isinstance(v, str)]
        prefix = re.match(r"^\s*([A-Za-z_ -]+)\d+\s*$", labels[0]) if labels else None
        hint = (f"; labels like {labels[0]!r} can be read by declaring session_labels: "
                f"'{prefix.group(1)}{{session}}' in the dataset's dataset.yaml (see data/README.md)" if prefix else "")
        raise _error(raw.file, "session",
                     "session is not a positive integer (1, 2, ...; missing is not allowed)" + hint,
                     raw.df, bad, ["participant_id", "session"])
    values = pd.Series(parsed, index=raw.df.index, dtype="float64").astype("int64")
    if n_sessions is not None:
        beyond = (values > n_sessions).to_numpy()
        if beyond.any():
            raise _error(raw.file, "session", f"session beyond n_sessions={n_sessions} (if the trial has more "
                                              "sessions, declare n_sessions in dataset.yaml or leave it out to infer it)",
                         raw.df, beyond, ["participant_id", "session"])
    return values


def _bools(raw: _Raw, col: str) -> pd.Series:
    def conv(v):
        if _missing(v):
            return pd.NA
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, numbers.Real):
            return {0.0: False, 1.0: True}.get(float(v))
        if isinstance(v, str):
            s = v.strip().lower()
            if s in _TRUE:
                return True
            if s in _FALSE:
                return False
            num = _to_float(s, ".")
            return {0.0: False, 1.0: True}.get(num) if num is not None else None
        return None

    values = [conv(v) for v in raw.df[col]]
    bad = np.array([v is None for v in values], dtype=bool)
    if bad.any():
        raise _error(raw.file, col,
                     "not interpretable as yes/no (accepted: True/False, 1/0, yes/no, y/n, "
                     "any case, or empty)",
                     raw.df, bad, ["participant_id", col])
    return pd.Series(pd.array(values, dtype="boolean"), index=raw.df.index)
