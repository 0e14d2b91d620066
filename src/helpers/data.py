"""Loading and validating a user's own trial data into the data contract.

:func:`load_trial` reads a ``sessions`` table and a ``participants`` table (CSV, Excel
``.xlsx`` or SPSS ``.sav``; sessions in long or wide layout), renames columns with an optional
``mapping``, checks every rule of the data contract (:mod:`helpers.contract`) and returns a
:class:`~helpers.contract.Trial` whose tables have the contract's columns, dtypes and row
order. Input files are only read, never written.

Every broken rule raises :class:`DataValidationError` (re-exported from
:mod:`helpers.contract`), whose message names the file, the column, the rule and the first
(up to 5) offending rows, labelled by where a user finds them in the file: ``line`` (CSV line
number, header = line 1 when it is the first line), ``row`` (Excel row number) or ``case``
(SPSS case number). Parser failures are wrapped, never shown as a bare pandas / openpyxl /
pyreadstat traceback.

Rules (documented for users in ``data/README.md``)
--------------------------------------------------
sessions
    required columns ``participant_id``, ``session``, ``alliance`` (wide: ``participant_id``
    and at least one ``alliance_s<k>`` column); ``pss_sr`` may be absent (filled with missing
    values, with a warning). ``session`` is a positive integer (``3`` and ``3.0`` are fine,
    ``0``, ``-1``, ``2.5``, ``x`` or missing are not), at most ``n_sessions`` when that is given,
    and unique per participant. Scores are numbers within
    :data:`~helpers.contract.SCORE_RANGES` or missing. Rows need not form a full grid: a
    missing row and a row whose scores are all missing both mean "session not observed".
participants
    required columns ``participant_id`` and ``pss_sr_pre``; every other contract column may be
    absent (filled with missing values, recorded in ``meta["missing_columns"]``, and warned
    about). ``participant_id`` is unique. Yes/no columns (:data:`~helpers.contract.BOOL_COLUMNS`)
    accept True/False, 1/0, yes/no, y/n (any case) or missing.
both
    ``participant_id`` is non-blank text (surrounding spaces are removed; whole numbers from
    Excel/SPSS cells become ``"17"``, not ``"17.0"``); the two tables hold the same
    participants. Columns outside the contract are dropped and listed in
    ``meta["extra_columns"]``.

Output dtypes: ``participant_id`` pandas ``str``; ``session`` ``int64``; scores and ``age``
``float64`` (``NaN`` = missing); yes/no columns pandas nullable ``"boolean"`` (``<NA>`` =
missing). Rows are sorted by ``participant_id`` (as text) and ``session``.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import math
import numbers
import re
import warnings
from dataclasses import dataclass, field
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
    Trial,
)
from helpers.tables import write_table

__all__ = [
    "DataValidationError",
    "DataWarning",
    "Trial",
    "load_trial",
    "save_trial",
    "validate_sessions",
    "validate_participants",
    "validate_trial",
    "REQUIRED_SESSION_COLUMNS",
    "REQUIRED_PARTICIPANT_COLUMNS",
    "FORMATS",
]

#: File suffix -> reader. ``.txt`` is read as delimited text like ``.csv``.
FORMATS = {".csv": "csv", ".txt": "csv", ".xlsx": "xlsx", ".sav": "sav"}

#: Columns without which a table cannot be analysed at all.
REQUIRED_SESSION_COLUMNS = ["participant_id", "session", "alliance"]
#: ``pss_sr_pre`` is the covariate of every outcome model, so it is required.
REQUIRED_PARTICIPANT_COLUMNS = ["participant_id", "pss_sr_pre"]

#: Per-session measures that may come in wide layout (``alliance_s1`` ...).
WIDE_MEASURES = ("alliance", "pss_sr")

#: Cell texts read as missing (compared case-insensitively after stripping spaces):
#: pandas' defaults plus ``.`` (SPSS/SAS system-missing in text exports).
NA_TOKENS = frozenset(
    ["", "na", "n/a", "nan", "-nan", "null", "none", "<na>", "#n/a", "#na", "#n/a n/a", "."]
)
_TRUE = frozenset(["true", "yes", "y", "1"])
_FALSE = frozenset(["false", "no", "n", "0"])

#: Wide column names: ``alliance_s3``, ``alliance_3`` and ``alliance3`` all mean session 3.
_WIDE_RE = re.compile(r"^(?P<measure>alliance|pss_sr)(?:_s|_|s)?(?P<session>\d+)$")
_NUMBER_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_DOT_DECIMAL_RE = re.compile(r"^[+-]?(?:\d+\.\d+|\.\d+)$")
_COMMA_DECIMAL_RE = re.compile(r"^[+-]?(?:\d+,\d+|,\d+)$")

_N_SHOW = 5
_DELIMITERS = (",", ";", "\t")
# Leading bytes of files that are not text, to say what a mis-named file probably is.
_MAGIC = {
    b"PK\x03\x04": "a zip archive (an .xlsx workbook?)",
    b"\xd0\xcf\x11\xe0": "an old binary Excel .xls workbook",
    b"$FL2": "an SPSS .sav file",
    b"$FL3": "an SPSS .sav file",
    b"%PDF": "a PDF document",
}


class DataWarning(UserWarning):
    """Something a user should know about their data that does not break the contract."""


# --------------------------------------------------------------------------------------
# Raw tables: what a file holds, as object columns indexed by the user's row labels
# --------------------------------------------------------------------------------------
@dataclass
class _Raw:
    df: pd.DataFrame  # object columns; index = line / row / case number in the file
    file: str
    info: dict = field(default_factory=dict)


def _error(file, column, rule, df=None, mask=None, cols=None):
    """Build a DataValidationError showing the first offending rows of ``df[mask]``."""
    if df is None or mask is None:
        return DataValidationError(file, column, rule)
    mask = np.asarray(mask, dtype=bool)
    show = list(dict.fromkeys(c for c in (cols or []) if c in df.columns))
    rows = df.loc[mask, show].head(_N_SHOW) if show else df.loc[mask].head(_N_SHOW)
    return DataValidationError(file, column, rule, rows, n_bad=int(mask.sum()))


def _read_raw(path: Path, encoding=None, sheet=None) -> _Raw:
    """Read any supported file into a :class:`_Raw` table, wrapping every parser error."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataValidationError(
            path, None,
            f"unsupported file format {path.suffix!r}: use .csv/.txt, .xlsx or .sav "
            "(save old .xls workbooks as .xlsx)",
        )
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise DataValidationError(path, None, "empty file (0 bytes)")
    reader = {"csv": _read_csv, "xlsx": _read_xlsx, "sav": _read_sav}[kind]
    if sheet is not None and kind != "xlsx":
        raise DataValidationError(path, None, f"a sheet ({sheet!r}) was named, but only Excel workbooks have sheets")
    raw = reader(path, encoding) if kind == "csv" else reader(path, sheet) if kind == "xlsx" else reader(path)
    if raw.df.shape[0] == 0:
        raise DataValidationError(path, None, "empty file (a header but no data rows)")
    return raw


def _line_of(data: bytes, pos: int) -> int:
    return data.count(b"\n", 0, pos) + 1


def _decode(data: bytes, path: Path, encoding):
    """Decode CSV bytes; UTF-8 (with or without BOM) unless ``encoding`` says otherwise."""
    if encoding is not None and codecs.lookup(encoding).name not in ("utf-8", "utf-8-sig"):
        try:
            return data.decode(encoding), {"encoding": encoding, "bom": False}
        except UnicodeDecodeError as exc:
            raise DataValidationError(
                path, None,
                f"not valid {encoding} text: byte 0x{data[exc.start]:02x} at byte position "
                f"{exc.start} (line {_line_of(data, exc.start)}) cannot be decoded",
            ) from exc
    # A byte-order mark says unambiguously what the encoding is (Excel's "Unicode text" is
    # UTF-16), so following it is not a guess.
    for bom, name in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                      (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                      (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            skip = len(bom) if name == "utf-8-sig" else 0
            body, enc = data[skip:], ("utf-8" if name == "utf-8-sig" else name)
            break
    else:
        bom, skip, body, enc, name = b"", 0, data, "utf-8", "utf-8"
        for magic, what in _MAGIC.items():
            if data.startswith(magic):
                raise DataValidationError(
                    path, None,
                    f"unparseable file: this is not delimited text but looks like {what}; "
                    "give the file its real extension",
                )
        nul = data.find(b"\x00", 0, 65536)
        if nul >= 0:
            raise DataValidationError(
                path, None,
                f"unparseable file: binary content (NUL byte at byte position {nul}), "
                "not delimited text",
            )
    try:
        text = body.decode(enc)
    except UnicodeDecodeError as exc:
        pos = exc.start + skip
        line = _line_of(data, pos)
        context = data[max(0, pos - 20):pos + 20].decode(enc, errors="replace")
        raise DataValidationError(
            path, None,
            f"not valid UTF-8 text: byte 0x{data[pos]:02x} at byte position {pos} (line {line}, "
            f"near {context!r}) cannot be decoded. Re-save the file as UTF-8 (Excel: Save As > "
            "'CSV UTF-8'), or pass encoding='cp1252' (or the file's real encoding) if you "
            "know it",
        ) from exc
    return text, {"encoding": name, "bom": bool(bom)}


def _count_fields(line: str, delimiter: str) -> int:
    try:
        return len(next(csv.reader([line], delimiter=delimiter)))
    except (csv.Error, StopIteration):
        return 0


def _sniff_delimiter(text: str, path: Path) -> str:
    """Pick the delimiter from the header line; refuse to guess when it is ambiguous."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header, body = lines[0], lines[1:21]
    counts = {d: _count_fields(header, d) for d in _DELIMITERS}
    best = max(counts.values())
    if best <= 1:
        return ","  # a single column: any delimiter reads it the same way
    tied = [d for d in _DELIMITERS if counts[d] == best]
    if len(tied) > 1:
        # Prefer the delimiter under which the data lines have the header's field count.
        tied = [d for d in tied if all(_count_fields(ln, d) == best for ln in body)]
    if len(tied) != 1:
        raise DataValidationError(
            path, None,
            "unparseable file: cannot tell the delimiter (the header splits equally well on "
            f"{' and '.join(repr(d) for d in tied or _DELIMITERS)}); re-save with commas",
        )
    return tied[0]


def _read_csv(path: Path, encoding=None) -> _Raw:
    text, info = _decode(path.read_bytes(), path, encoding)
    if not text.strip():
        raise DataValidationError(path, None, "empty file (only blank characters)")
    delimiter = _sniff_delimiter(text, path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records, start = [], 1
    try:
        for fields in reader:
            records.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataValidationError(
            path, None, f"unparseable file: line {max(reader.line_num, 1)}: {exc}"
        ) from exc
    info.update(format="csv", delimiter=delimiter, decimal=".")
    return _Raw(_frame_from_records(records, path, "line"), str(path), info)


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, float) and math.isnan(value)
    )


def _frame_from_records(records, path: Path, label: str) -> pd.DataFrame:
    """Header = first non-blank record; blank records (e.g. Excel's ';;;;') are skipped."""
    records = [(n, list(r)) for n, r in records if not all(_blank(v) for v in r)]
    if not records:
        raise DataValidationError(path, None, "empty file (no header and no rows)")
    (_, header), body = records[0], records[1:]
    width = len(header)
    for n, row in body:
        # Trailing empty cells beyond the header (a trailing delimiter) carry nothing.
        while len(row) > width and _blank(row[-1]):
            row.pop()
        if len(row) < width and label == "row":
            row.extend([None] * (width - len(row)))  # Excel stores no trailing empty cells
        if len(row) != width:
            raise DataValidationError(
                path, None,
                f"unparseable file: {label} {n} has {len(row)} fields but the header has "
                f"{width}",
            )
    names = ["" if _blank(h) else str(h).strip() for h in header]
    df = pd.DataFrame([r for _, r in body], columns=range(width), dtype=object)
    df.index = pd.Index([n for n, _ in body], name=label)
    keep = []
    for i, name in enumerate(names):
        if name:
            keep.append(i)
        elif not df[i].map(_blank).all():
            raise _error(
                path, f"<column {i + 1}>",
                "column without a name holds data: give it a header", df,
                ~df[i].map(_blank).to_numpy(), [i],
            )
    df = df[keep]
    df.columns = [names[i] for i in keep]
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise DataValidationError(path, dup[0], "duplicate column name in the header")
    return df


def _read_xlsx(path: Path, sheet=None) -> _Raw:
    import openpyxl  # imported here: only Excel users pay for it

    try:
        wb = openpyxl.load_workbook(path, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile/KeyError/XML errors on bad files
        raise DataValidationError(
            path, None,
            f"unparseable file: not a readable .xlsx workbook ({type(exc).__name__}: {exc})",
        ) from exc
    try:
        sheets = list(wb.sheetnames)
        if sheet is not None and sheet not in sheets:
            raise DataValidationError(path, None, f"no sheet named {sheet!r}; the workbook's sheets are {sheets}")
        chosen = sheets[0] if sheet is None else sheet
        records = list(enumerate(wb[chosen].iter_rows(values_only=True), start=1))
    finally:
        wb.close()
    info = {"format": "xlsx", "sheet": chosen, "decimal": "."}
    if sheet is None and len(sheets) > 1:
        info["other_sheets"] = sheets[1:]
    # messages name the sheet: a workbook's first sheet is often a codebook
    return _Raw(_frame_from_records(records, path, "row"), f"{path} (sheet {chosen!r})", info)


def _read_sav(path: Path) -> _Raw:
    import pyreadstat

    try:
        # Value labels are not applied: the numeric codes are the data (yes/no as 1/0).
        # SPSS user-missing codes become NaN.
        df, meta = pyreadstat.read_sav(str(path), apply_value_formats=False, user_missing=False)
    except Exception as exc:  # ReadstatError / PyreadstatError and OS errors
        raise DataValidationError(
            path, None,
            f"unparseable file: not a readable SPSS .sav file ({type(exc).__name__}: {exc})",
        ) from exc
    df = df.astype(object)
    df.index = pd.Index(range(1, len(df) + 1), name="case")
    df = df.loc[~df.apply(lambda r: all(_blank(v) for v in r), axis=1)] if len(df) else df
    info = {"format": "sav", "decimal": "."}
    labelled = sorted(meta.variable_value_labels)
    if labelled:
        info["value_labels_ignored"] = labelled
    return _Raw(df, str(path), info)


def _from_frame(df: pd.DataFrame, file: str) -> _Raw:
    """Wrap an in-memory table so it goes through the same rules as a file."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    out = df.astype(object).copy()
    out.columns = [str(c).strip() for c in out.columns]
    if not out.index.is_unique:  # error messages label rows by index: it must identify them
        out = out.reset_index(drop=True)
    out.index = out.index.rename(df.index.name or "index")
    if out.shape[0] == 0:
        raise DataValidationError(file, None, "empty table (no rows)")
    dup = sorted({c for c in out.columns if list(out.columns).count(c) > 1})
    if dup:
        raise DataValidationError(file, dup[0], "duplicate column name")
    return _Raw(out, file, {"format": "DataFrame", "decimal": "."})


# --------------------------------------------------------------------------------------
# Cell conversion: one function per kind of column, each raising on the first broken rule
# --------------------------------------------------------------------------------------
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


def _scores(raw: _Raw, col: str, measure: str, decimal: str) -> pd.Series:
    # A list, not Series.map: map would turn the "not a number" marker None into NaN.
    parsed = [_to_float(v, decimal) for v in raw.df[col]]
    bad = np.array([v is None for v in parsed], dtype=bool)
    if bad.any():
        raise _error(raw.file, col, "non-numeric score (expected a number or an empty cell)",
                     raw.df, bad, ["participant_id", "session", col])
    values = pd.Series(parsed, index=raw.df.index, dtype="float64")
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
        raise _error(raw.file, "session",
                     "session is not a positive integer (1, 2, ...; missing is not allowed)",
                     raw.df, bad, ["participant_id", "session"])
    values = pd.Series(parsed, index=raw.df.index, dtype="float64").astype("int64")
    if n_sessions is not None:
        beyond = (values > n_sessions).to_numpy()
        if beyond.any():
            raise _error(raw.file, "session", f"session beyond n_sessions={n_sessions}",
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


# --------------------------------------------------------------------------------------
# Columns: mapping, required / missing / extra, layout
# --------------------------------------------------------------------------------------
def _wide_columns(columns) -> dict:
    """``{column: (measure, session)}`` of every wide-layout column."""
    out = {}
    for c in columns:
        m = _WIDE_RE.match(str(c))
        if m:
            out[c] = (m["measure"], int(m["session"]))
    return out


def _split_mapping(mapping):
    if mapping is None:
        return None, None, False
    if not isinstance(mapping, dict):
        raise TypeError(f"mapping must be a dict, got {type(mapping).__name__}")
    if mapping and set(mapping) <= {"sessions", "participants"} and all(
        isinstance(v, dict) for v in mapping.values()
    ):
        return dict(mapping.get("sessions", {})), dict(mapping.get("participants", {})), True
    return dict(mapping), dict(mapping), False


def _check_targets(mapping: dict, file: str):
    allowed = set(SESSION_COLUMNS) | set(PARTICIPANT_COLUMNS) | set(WIDE_MEASURES)
    for key, target in mapping.items():
        if not isinstance(key, str) or not isinstance(target, str):
            raise TypeError(f"mapping must map column names to column names: {key!r}: {target!r}")
        if target not in allowed and not _WIDE_RE.match(target):
            raise DataValidationError(
                file, key,
                f"mapping target {target!r} is not a column of the data contract "
                f"(sessions: {SESSION_COLUMNS}; participants: {PARTICIPANT_COLUMNS}; "
                "wide: alliance_s<k>, pss_sr_s<k>)",
            )


def _mapping_renames(columns, mapping: dict, wide_stems: bool) -> tuple[dict, set]:
    """Renames for ``columns``; a key also renames wide columns ``<key>_s<k>`` (sessions)."""
    renames, found = {}, set()
    for key, target in mapping.items():
        if key in columns:
            renames[key] = target
            found.add(key)
        elif wide_stems and target in WIDE_MEASURES:
            stem = re.compile(rf"^{re.escape(key)}(?P<sep>_s|_|s)?(?P<session>\d+)$")
            for c in columns:
                m = stem.match(str(c))
                if m:
                    renames[c] = f"{target}{m['sep'] or ''}{m['session']}"
                    found.add(key)
    return renames, found


def _rename(raw: _Raw, renames: dict) -> None:
    new = [renames.get(c, c) for c in raw.df.columns]
    dup = sorted({c for c in new if new.count(c) > 1})
    if dup:
        src = [c for c in raw.df.columns if renames.get(c, c) == dup[0]]
        raise DataValidationError(
            raw.file, dup[0],
            f"duplicate column name after applying the mapping: {src} all become {dup[0]!r}",
        )
    raw.df.columns = new


def _apply_mapping(s_raw: _Raw, p_raw: _Raw, mapping) -> dict:
    s_map, p_map, nested = _split_mapping(mapping)
    if s_map is None:
        return {}
    _check_targets(s_map, s_raw.file)
    _check_targets(p_map, p_raw.file)
    s_ren, s_found = _mapping_renames(list(s_raw.df.columns), s_map, True)
    p_ren, p_found = _mapping_renames(list(p_raw.df.columns), p_map, False)
    if nested:
        for keys, found, raw in ((s_map, s_found, s_raw), (p_map, p_found, p_raw)):
            missing = [k for k in keys if k not in found]
            if missing:
                raise DataValidationError(
                    raw.file, missing[0],
                    f"mapping key not found in the file (columns: {list(raw.df.columns)})",
                )
    else:
        missing = [k for k in s_map if k not in s_found | p_found]
        if missing:
            raise DataValidationError(
                f"{s_raw.file} and {p_raw.file}" if s_raw.file != p_raw.file else s_raw.file,
                missing[0],
                "mapping key not found in the file (sessions columns: "
                f"{list(s_raw.df.columns)}; participants columns: {list(p_raw.df.columns)})",
            )
    _rename(s_raw, s_ren)
    _rename(p_raw, p_ren)
    return {"sessions": s_ren, "participants": p_ren}


def _hint(name: str, columns) -> str:
    close = difflib.get_close_matches(name, [str(c) for c in columns], n=1, cutoff=0.5)
    close = close or [c for c in columns if str(c).strip().lower() == name]
    if close:
        return f"; did you mean {close[0]!r}? pass mapping={{{close[0]!r}: {name!r}}}"
    return f"; columns found: {list(columns)}"


def _require(raw: _Raw, columns, what="") -> None:
    for col in columns:
        if col not in raw.df.columns:
            raise DataValidationError(
                raw.file, col, f"missing required column{what}" + _hint(col, raw.df.columns)
            )


def _detect_layout(raw: _Raw, layout: str) -> str:
    if layout not in ("auto", "long", "wide"):
        raise ValueError(f"layout must be 'auto', 'long' or 'wide', got {layout!r}")
    wide = _wide_columns(raw.df.columns)
    if layout != "auto":
        return layout
    if "session" in raw.df.columns and wide:
        raise DataValidationError(
            raw.file, "session",
            "ambiguous layout: a 'session' column (long) and wide columns "
            f"{sorted(wide)[:3]} both exist; pass layout='long' or layout='wide'",
        )
    if "session" in raw.df.columns:
        return "long"
    if wide:
        return "wide"
    raise DataValidationError(
        raw.file, "session",
        "missing required column: neither a 'session' column (long layout) nor wide columns "
        "such as 'alliance_s1' were found" + _hint("session", raw.df.columns),
    )


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------
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
        only = sorted(set(have) - set(lack))
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
                "if one of them is meant, pass mapping={'their name': 'contract name'}")
    messages.append(msg)
    warnings.warn(msg, DataWarning, stacklevel=3)


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------
def validate_sessions(df, file="<DataFrame>", *, layout="auto", n_sessions=None, ranges=None):
    """Check an in-memory sessions table against the data contract.

    Parameters
    ----------
    df : DataFrame
        Sessions in long (``participant_id``, ``session``, ``alliance``, ``pss_sr``) or wide
        (``participant_id``, ``alliance_s1`` ...) layout.
    file : str
        Name used in error messages.
    layout : {"auto", "long", "wide"}
    n_sessions : int, optional
        Largest allowed session number.
    ranges : dict, optional
        ``{column: (low, high)}`` of the scores (:func:`helpers.instruments.score_ranges` of
        the trial's instruments); default :data:`~helpers.contract.SCORE_RANGES`.

    Returns
    -------
    DataFrame
        A new table with ``SESSION_COLUMNS``, contract dtypes, sorted rows; ``df`` is not
        changed.

    Raises
    ------
    DataValidationError
        On the first broken rule (see the module docstring).

    Examples
    --------
    >>> import pandas as pd
    >>> from helpers.data import validate_sessions
    >>> df = pd.DataFrame({"participant_id": ["b", "a"], "session": [1, 1],
    ...                    "alliance": [5.5, 6.0], "pss_sr": [30, 25]})
    >>> validate_sessions(df)["participant_id"].tolist()
    ['a', 'b']
    """
    raw = _from_frame(df, str(file))
    if ranges is not None:
        raw.info["ranges"] = {**SCORE_RANGES, **ranges}
    out, report = _sessions_table(raw, layout, n_sessions)
    _warn_columns(str(file), "sessions", report, [])
    return out


def validate_participants(df, file="<DataFrame>", *, ranges=None):
    """Check an in-memory participants table against the data contract.

    Parameters
    ----------
    df : DataFrame
        One row per participant; ``participant_id`` and ``pss_sr_pre`` required, the other
        ``PARTICIPANT_COLUMNS`` filled with missing values (and warned about) when absent.
    file : str
        Name used in error messages.
    ranges : dict, optional
        As in :func:`validate_sessions`.

    Returns
    -------
    DataFrame
        A new table with ``PARTICIPANT_COLUMNS`` in order, contract dtypes (yes/no columns
        as nullable ``"boolean"``), sorted by ``participant_id``.

    Raises
    ------
    DataValidationError
        On the first broken rule.

    Examples
    --------
    >>> import pandas as pd
    >>> from helpers.data import validate_participants
    >>> df = pd.DataFrame({"participant_id": [1, 2], "pss_sr_pre": [30, 41],
    ...                    "female": ["yes", "no"]})
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     out = validate_participants(df)
    >>> out["female"].tolist()
    [True, False]
    """
    raw = _from_frame(df, str(file))
    if ranges is not None:
        raw.info["ranges"] = {**SCORE_RANGES, **ranges}
    out, report = _participants_table(raw)
    _warn_columns(str(file), "participants", report, [])
    return out


def validate_trial(trial: Trial, *, n_sessions=None) -> Trial:
    """Validate both tables of a :class:`Trial` (e.g. a simulated one) and their agreement.

    Parameters
    ----------
    trial : Trial
    n_sessions : int, optional
        Defaults to ``trial.meta["n_sessions"]`` when recorded.

    Returns
    -------
    Trial
        A new Trial with validated tables (contract dtypes, sorted rows); ``truth``,
        ``source`` and ``meta`` are carried over.
    """
    if n_sessions is None:
        n_sessions = trial.meta.get("n_sessions")
    s_raw = _from_frame(trial.sessions, "<Trial.sessions>")
    p_raw = _from_frame(trial.participants, "<Trial.participants>")
    sessions, s_report = _sessions_table(s_raw, "long", n_sessions)
    participants, p_report = _participants_table(p_raw)
    _check_same_ids(s_raw, p_raw)
    _warn_columns(s_raw.file, "sessions", s_report, [])
    _warn_columns(p_raw.file, "participants", p_report, [])
    return Trial(sessions, participants, trial.truth, trial.source, dict(trial.meta))


def _find_in_folder(folder: Path, stem: str, required=True):
    hits = sorted(p for p in folder.iterdir()
                  if p.is_file() and p.stem.lower() == stem and p.suffix.lower() in FORMATS)
    if len(hits) > 1 or (required and not hits):
        raise DataValidationError(
            folder, None,
            f"the folder must hold exactly one {stem}.* file ({', '.join(FORMATS)}); "
            f"found {[p.name for p in hits] or 'none'}",
        )
    return hits[0] if hits else None


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
        parsed = [_to_float(v, ".") for v in raw.df[col]]
        bad = np.array([v is None for v in parsed], dtype=bool)
        if bad.any():
            raise _error(raw.file, col, "not a number", raw.df, bad, ["participant_id", col])
        values = pd.Series(parsed, index=raw.df.index, dtype="float64")
        whole = values.notna().all() and (values == values.round()).all()
        out[col] = values.astype("int64") if whole else values
    for col in ("rupture_sessions", "repair_sessions"):
        out[col] = raw.df[col].map(lambda v: "" if _missing(v) else str(v).strip())
    out = out[TRUTH_COLUMNS].sort_values("participant_id", kind="mergesort")
    return out.reset_index(drop=True).astype({"participant_id": "str"})


def load_trial(sessions, participants=None, *, layout="auto", mapping=None, n_sessions=None,
               encoding=None) -> Trial:
    """Load a trial's own data into the data contract, checking every rule.

    Parameters
    ----------
    sessions : path-like
        The sessions file (``.csv``/``.txt``, ``.xlsx``, ``.sav``), or a folder holding
        exactly one ``sessions.*`` and one ``participants.*`` file (and optionally a
        ``truth.*`` file, as written by :func:`save_trial` for simulated data).
    participants : path-like, optional
        The participants file. Required when ``sessions`` is a file; it may be the same file
        as ``sessions`` (one wide file holding both). Overrides the folder's
        ``participants.*`` when given with a folder.
    layout : {"auto", "long", "wide"}
        Layout of the sessions table. ``"auto"``: long if there is a ``session`` column, wide
        if there are columns such as ``alliance_s1`` / ``alliance_1`` / ``alliance1``.
    mapping : dict, optional
        Renames the user's columns to contract names before any check, e.g.
        ``{"ID": "participant_id", "calpas": "alliance"}``. A flat mapping applies to both
        tables (each key must be found in at least one); ``{"sessions": {...},
        "participants": {...}}`` applies per table (each key must be found in its table). In
        the sessions table a key also renames wide columns: ``{"calpas": "alliance"}`` turns
        ``calpas_s1`` into ``alliance_s1``.
    n_sessions : int, optional
        Number of planned sessions; a session number above it is an error. Recorded in
        ``meta["n_sessions"]`` (default: the largest session observed).
    encoding : str, optional
        Text encoding of CSV files. Default: UTF-8, with or without a byte-order mark
        (UTF-16/32 files with a byte-order mark are recognised too). Other encodings are
        never guessed: a non-UTF-8 file raises an error suggesting to re-save it as UTF-8 or
        to pass e.g. ``encoding="cp1252"``.

    Returns
    -------
    Trial
        ``sessions`` (``SESSION_COLUMNS``), ``participants`` (``PARTICIPANT_COLUMNS``),
        ``truth`` (``None`` unless a folder holds ``truth.*``), ``source`` (the input paths)
        and ``meta``: ``files``, ``layout``, ``n_sessions``, ``mapping`` (the renames done),
        ``read`` (per file: format, encoding, BOM, delimiter, decimal separator, sheet),
        ``missing_columns``, ``extra_columns`` and ``warnings``.

    Raises
    ------
    DataValidationError
        On the first broken rule; the message names the file, the column, the rule and the
        first offending rows.
    FileNotFoundError
        When a path does not exist.

    Warns
    -----
    DataWarning
        When optional contract columns are absent (they are filled with missing values) and
        when an Excel workbook has more than one sheet (the first one is read).

    Notes
    -----
    Files are opened read-only and never written. Rows need not form a full participant x
    session grid; a wide file gives one row per participant and session column, so its
    all-missing sessions appear as rows of missing scores, which analyses treat exactly
    like absent rows.

    Examples
    --------
    >>> from helpers import paths
    >>> trial = load_trial(paths.EXAMPLE)          # a folder with sessions.* and participants.*
    >>> trial.participants.shape, trial.truth is None
    ((116, 12), True)

    A wide SPSS file with other column names would be read with, e.g.,
    ``load_trial("trial.sav", "trial.sav", mapping={"ID": "participant_id", "calpas": "alliance"})``.
    """
    s_path = Path(sessions)
    truth_path = None
    if s_path.is_dir():
        folder = s_path
        s_path = _find_in_folder(folder, "sessions")
        p_path = Path(participants) if participants is not None else _find_in_folder(
            folder, "participants")
        truth_path = _find_in_folder(folder, "truth", required=False)
    elif participants is None:
        raise DataValidationError(
            s_path, None,
            "no participants table given: pass participants=<file> (the rupture and outcome "
            "analyses need pre/post scores), or pass a folder holding sessions.* and "
            "participants.*",
        )
    else:
        p_path = Path(participants)

    s_raw = _read_raw(s_path, encoding)
    p_raw = _read_raw(p_path, encoding)
    renames = _apply_mapping(s_raw, p_raw, mapping)

    s_table, s_report = _sessions_table(s_raw, layout, n_sessions)
    p_table, p_report = _participants_table(p_raw)
    _check_same_ids(s_raw, p_raw)

    messages = []
    for raw in (s_raw, p_raw):
        if raw.info.get("other_sheets"):
            msg = (f"{raw.file}: workbook has several sheets; read the first one "
                   f"({raw.info['sheet']!r}), ignored {raw.info['other_sheets']}")
            messages.append(msg)
            warnings.warn(msg, DataWarning, stacklevel=2)
    _warn_columns(s_raw.file, "sessions", s_report, messages)
    _warn_columns(p_raw.file, "participants", p_report, messages)

    truth = None
    if truth_path is not None:
        truth = _truth_table(_read_raw(truth_path, encoding), p_table["participant_id"])

    files = {"sessions": str(s_path), "participants": str(p_path)}
    if truth_path is not None:
        files["truth"] = str(truth_path)
    meta = {
        "files": files,
        "layout": s_report["layout"],
        "n_sessions": int(n_sessions) if n_sessions is not None
        else int(s_table["session"].max()),
        "mapping": renames,
        "read": {str(s_path): s_raw.info, str(p_path): p_raw.info},
        "missing_columns": {"sessions": s_report["missing"],
                            "participants": p_report["missing"]},
        "extra_columns": {"sessions": s_report["extra"], "participants": p_report["extra"]},
        "warnings": messages,
    }
    source = f"sessions: {s_path}; participants: {p_path}"
    return Trial(s_table, p_table, truth, source, meta)


def save_trial(trial: Trial, folder) -> dict:
    """Write a trial as ``sessions.csv``, ``participants.csv`` (and ``truth.csv``) in ``folder``.

    The files use the contract's column order, sorted rows and the fixed float format of
    :func:`helpers.tables.write_table`, so :func:`load_trial` on ``folder`` gives the trial
    back (scores to 6 decimals). Missing values are empty cells; yes/no as True/False.

    Parameters
    ----------
    trial : Trial
    folder : path-like
        Created if needed; existing files of these names are replaced atomically, and a
        stale ``truth.csv`` is removed when the trial has no truth (real data).

    Returns
    -------
    list of Path
        The files written: sessions, participants (and truth).

    Examples
    --------
    >>> import tempfile
    >>> from helpers import paths
    >>> folder = tempfile.mkdtemp()
    >>> [p.name for p in save_trial(load_trial(paths.EXAMPLE), folder)]
    ['sessions.csv', 'participants.csv']
    """
    folder = Path(folder)
    out = [
        write_table(trial.sessions, folder / "sessions.csv", columns=SESSION_COLUMNS),
        write_table(trial.participants, folder / "participants.csv", columns=PARTICIPANT_COLUMNS),
    ]
    if trial.truth is not None:
        out.append(write_table(trial.truth, folder / "truth.csv", columns=TRUTH_COLUMNS))
    else:
        # A truth table left by an earlier simulated run would label real data as simulated.
        (folder / "truth.csv").unlink(missing_ok=True)
    return out
