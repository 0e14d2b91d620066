"""Cell conversion (private to :mod:`helpers.data`): one function per kind of column.

Missing-value tokens, numbers (with the decimal comma of European CSV exports chosen per
file), participant ids (stripped text, ``17.0`` read as ``"17"``), scores within their
ranges, session numbers and yes/no cells are converted here, each function raising a
:class:`~helpers.contract.DataValidationError` on the first broken rule with the offending
rows of the :class:`~helpers.data._readers._Raw` table it reads.

A registry's table has millions of cells, so every rule is applied to a whole column at once
(numpy and pandas), not by a Python function per cell. The rule for one cell is written once
(:func:`_cell_number`, :func:`_id_of`, :func:`_bool_of_text`); a column takes a shortcut only
for the cells where the shortcut provably gives the same answer, and the rule itself for the
rest:

* numbers: a text cell made only of ASCII digits, signs, point, exponent letters and spaces is
  a number exactly when Python's ``float`` reads it (both follow the grammar of
  ``_NUMBER_RE``), so such cells are read by ``float`` in bulk; every other cell (letters,
  missing-value tokens other than an empty cell, non-ASCII digits, long cells) by
  :func:`_cell_number`;
* cells are told apart by type once per distinct type (a CSV column is all text; Excel and
  SPSS columns mix numbers, text and empty cells), and yes/no text once per distinct value.

``tests/test_data_cells.py`` checks each column function against its rule applied cell by cell,
on random cells and on the test corpus of bad files.
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


def _cell_number(v, decimal: str) -> float | None:
    """The rule for one cell: the number in it; NaN when missing; ``None`` when not a number."""
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


# ----------------------------------------------------------------------------- kinds of cells
_NA, _BOOL, _STR, _NUM, _OTHER = "na", "bool", "str", "num", "other"


def _kind_of(t: type) -> str:
    if t is type(None) or t is type(pd.NA) or t is type(pd.NaT):
        return _NA
    if issubclass(t, (bool, np.bool_)):
        return _BOOL
    if issubclass(t, str):
        return _STR
    if issubclass(t, numbers.Real):
        return _NUM
    return _OTHER


class _Kinds:
    """The kind of every cell of a column (:func:`_kind_of` its type, decided once per
    distinct type); ``kinds.of(kind)`` is the mask of the cells of that kind. A column of one
    type (a CSV column: all text) costs one pass over its cells."""

    def __init__(self, values: np.ndarray):
        self.n = len(values)
        distinct = set(map(type, values))
        kind = {t: _kind_of(t) for t in distinct}
        self.only = next(iter(kind.values())) if len(set(kind.values())) == 1 else None
        self.kinds = None if self.only is not None or not distinct else \
            np.array([kind[type(v)] for v in values], dtype=object)

    def of(self, *kinds) -> np.ndarray:
        if self.kinds is None:
            return np.full(self.n, self.only in kinds, dtype=bool)
        return np.isin(self.kinds, kinds)


def _kinds(values: np.ndarray) -> _Kinds:
    return _Kinds(values)


# ----------------------------------------------------------------------------- numbers in bulk
#: Code points (below 128) of a plain number's characters, and of the spaces that both
#: ``str.strip`` and ``float`` remove (``float`` keeps the separators \x1c-\x1f, which
#: ``str.strip`` removes: cells with those take the cell rule); a cell longer than _LONG
#: characters takes the cell rule too (no number is that long).
_PLAIN = np.zeros(128, dtype=bool)
_PLAIN[[ord(c) for c in "0123456789+-.eE"]] = True
_DIGIT = np.zeros(128, dtype=bool)
_DIGIT[[ord(c) for c in "0123456789"]] = True
_SPACE = np.zeros(128, dtype=bool)
_SPACE[[ord(c) for c in " \t\n\r\x0b\x0c"]] = True
_LONG = 40
_CHUNK = 1 << 18


def _floats(texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``float`` of each text, in bulk; ``(values, unreadable)``. A batch that holds an
    unreadable text is halved until the unreadable ones are found."""
    try:
        return texts.astype(object).astype(np.float64), np.zeros(len(texts), dtype=bool)
    except ValueError:
        if len(texts) == 1:
            return np.full(1, np.nan), np.ones(1, dtype=bool)
    half = len(texts) // 2
    (a, bad_a), (b, bad_b) = _floats(texts[:half]), _floats(texts[half:])
    return np.concatenate([a, b]), np.concatenate([bad_a, bad_b])


def _text_numbers(texts: np.ndarray, decimal: str, values, missing, bad) -> list:
    """Fill ``values``/``missing``/``bad`` for the text cells that the bulk rule decides;
    return the positions left to the cell rule."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    rest = list(np.flatnonzero(lengths > _LONG))
    short = np.flatnonzero(lengths <= _LONG)
    for start in range(0, len(short), _CHUNK):
        at = short[start:start + _CHUNK]
        width = max(int(lengths[at].max()), 1)
        codes = texts[at].astype(f"<U{width}").view(np.uint32).reshape(len(at), width)
        inside = np.arange(width) < lengths[at][:, None]
        # a NUL inside a cell is indistinguishable from numpy's padding: the cell rule decides
        simple = (codes < 128).all(1) & ~((codes == 0) & inside).any(1)
        fix = np.zeros(len(at), dtype=bool)
        if decimal == ",":  # one comma and no point: a decimal comma
            fix = ((codes == ord(",")).sum(1) == 1) & ~(codes == ord(".")).any(1)
            codes = np.where(fix[:, None] & (codes == ord(",")), ord("."), codes).astype(np.uint32)
        c = np.where(codes < 128, codes, 0)
        space = _SPACE[c] | ~inside
        empty = simple & space.all(1)
        plain = simple & ~empty & (_PLAIN[c] | space).all(1) & _DIGIT[c].any(1)
        missing[at[empty]] = True
        if plain.any():
            # the cells themselves (float strips the spaces), or the rewritten text of a decimal comma
            as_is, rewritten = plain & ~fix, plain & fix
            for which, texts_of in ((as_is, lambda w: texts[at[w]]),
                                    (rewritten, lambda w: np.ascontiguousarray(codes[w]).view(f"<U{width}").ravel())):
                if which.any():
                    got, unreadable = _floats(texts_of(which))
                    values[at[which]] = got
                    bad[at[which][unreadable]] = True
        rest.extend(at[~empty & ~plain])
    return rest


def _parse_numbers(values, decimal: str) -> tuple[np.ndarray, np.ndarray]:
    """``(numbers, bad)`` of a column: float64 with NaN for a missing cell, and a mask of the
    cells that are neither a number nor missing -- :func:`_cell_number` of every cell."""
    values = np.asarray(values, dtype=object)
    n = len(values)
    out, missing, bad = np.full(n, np.nan), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    kinds = _kinds(values)
    num = kinds.of(_NUM)
    if num.any():
        out[num] = values[num].astype(np.float64)  # float(v) per cell, in C
    text = np.flatnonzero(kinds.of(_STR))
    rest = np.flatnonzero(kinds.of(_NA, _BOOL, _OTHER))
    if len(text):
        t_out, t_missing, t_bad = np.full(len(text), np.nan), np.zeros(len(text), bool), np.zeros(len(text), bool)
        t_rest = _text_numbers(values[text], decimal, t_out, t_missing, t_bad)
        out[text], missing[text], bad[text] = t_out, t_missing, t_bad
        rest = np.concatenate([rest, text[np.asarray(t_rest, dtype=np.int64)]])
    for i in rest:
        got = _cell_number(values[i], decimal)
        if got is None:
            bad[i] = True
        else:
            out[i] = got
    return out, bad


def _to_float(v, decimal: str) -> float | None:
    """The number in one cell; NaN when missing; ``None`` when not a number."""
    return _cell_number(v, decimal)


def _matching(values: np.ndarray, rx: re.Pattern, needle: str) -> np.ndarray:
    """Which cells, stripped, match ``rx`` -- tried only on the text cells that hold ``needle``,
    which every match holds."""
    text = np.flatnonzero(_kinds(values).of(_STR))
    out = np.zeros(len(values), dtype=bool)
    if needle not in "".join(values[text]):  # one search of the column instead of one per cell
        return out
    holds = text[np.fromiter((needle in v for v in values[text]), dtype=bool, count=len(text))]
    out[holds] = [bool(rx.match(v.strip())) for v in values[holds]]
    return out


def _choose_decimal(raw: _Raw, columns) -> str:
    """Decimal comma for a CSV whose numeric cells use ',' and never '.' (European export)."""
    if raw.info.get("format") != "csv":
        return "."
    cells = {col: raw.df[col].to_numpy(dtype=object) for col in columns}
    comma = {col: _matching(cells[col], _COMMA_DECIMAL_RE, ",") for col in columns}
    has_comma = [c for c in columns if comma[c].any()]
    if has_comma:  # only then do points matter: a file without decimal commas needs no look at them
        dot = {col: _matching(cells[col], _DOT_DECIMAL_RE, ".") for col in columns}
        has_dot = [c for c in columns if dot[c].any()]
        if has_dot:
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


# ----------------------------------------------------------------------------- ids
def _id_of(v) -> str:
    """The rule for one id cell: stripped text; a whole number without a trailing '.0'; ""
    when blank."""
    if _blank(v) or v is pd.NA:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def _ids(raw: _Raw) -> pd.Series:
    """``participant_id`` as stripped text; whole numbers lose a trailing '.0'."""
    if raw.ids is None:
        values = raw.df["participant_id"].to_numpy(dtype=object)
        text = _kinds(values).of(_STR)
        out = np.empty(len(values), dtype=object)
        out[text] = [v.strip() for v in values[text]]
        out[~text] = [_id_of(v) for v in values[~text]]
        raw.ids = pd.Series(out, index=raw.df.index, dtype=object)
    ids = raw.ids
    bad = (ids == "").to_numpy()
    if bad.any():
        raise _error(raw.file, "participant_id", "empty participant_id (blank or missing)",
                     raw.df, bad, ["participant_id"] + [c for c in raw.df.columns[:4]])
    return ids


def _numbers(raw: _Raw, col: str, decimal: str, rule: str, show) -> pd.Series:
    """Column ``col`` as float64 (NaN = missing); raises ``rule`` on a cell that is not a number."""
    values, bad = _parse_numbers(raw.df[col].to_numpy(dtype=object), decimal)
    if bad.any():
        raise _error(raw.file, col, rule, raw.df, bad, show)
    return pd.Series(values, index=raw.df.index, dtype="float64")


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
    parsed, unreadable = _parse_numbers(raw.df["session"].to_numpy(dtype=object), decimal)
    with np.errstate(invalid="ignore"):
        ok = ~unreadable & np.isfinite(parsed) & (parsed >= 1) & (parsed == np.floor(parsed))
    bad = ~ok
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


def _bool_of_text(s: str):
    """One text cell (stripped, lower case, not missing) as yes/no; None when it is neither."""
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    num = _to_float(s, ".")
    return {0.0: False, 1.0: True}.get(num) if num is not None else None


def _bools(raw: _Raw, col: str) -> pd.Series:
    """A yes/no column: True/False, 1/0, yes/no, y/n (any case) or missing; anything else is an
    error. Text is decided once per distinct value (a yes/no column has a handful)."""
    values = raw.df[col].to_numpy(dtype=object)
    kinds = _kinds(values)
    # the answer per cell: 1 yes, 0 no, 2 missing, -1 neither (an error)
    out = np.full(len(values), -1, dtype=np.int8)
    out[kinds.of(_NA)] = 2
    flags = kinds.of(_BOOL)
    out[flags] = [int(bool(v)) for v in values[flags]]
    num = kinds.of(_NUM)
    if num.any():
        x = values[num].astype(np.float64)
        out[num] = np.select([np.isnan(x), x == 0.0, x == 1.0], [2, 0, 1], -1)
    text = np.flatnonzero(kinds.of(_STR))
    if len(text):
        codes, uniques = pd.factorize(np.array([v.strip().lower() for v in values[text]], dtype=object))
        decided = {None: -1, True: 1, False: 0}
        answer = np.array([2 if u in NA_TOKENS else decided[_bool_of_text(u)] for u in uniques], dtype=np.int8)
        out[text] = answer[codes]
    bad = out == -1
    if bad.any():
        raise _error(raw.file, col,
                     "not interpretable as yes/no (accepted: True/False, 1/0, yes/no, y/n, "
                     "any case, or empty)",
                     raw.df, bad, ["participant_id", col])
    return pd.Series(pd.arrays.BooleanArray(out == 1, out == 2), index=raw.df.index)
