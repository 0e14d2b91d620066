"""Reading a trial's files into raw tables (private to :mod:`helpers.data`).

Each supported format (delimited text ``.csv``/``.txt``, Excel ``.xlsx``, SPSS ``.sav``) and
an in-memory DataFrame is read into a :class:`_Raw` table: object columns, indexed by where a
user finds a row in the file (CSV line, Excel row, SPSS case), with what was learnt while
reading (encoding, delimiter, sheet, ...) in ``info``. Nothing is converted here; every parser
failure becomes a :class:`~helpers.contract.DataValidationError` naming the file, and
:func:`_error` builds the errors that show the first offending rows.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.contract import DataValidationError

#: File suffix -> reader. ``.txt`` is read as delimited text like ``.csv``.
FORMATS = {".csv": "csv", ".txt": "csv", ".csv.gz": "csv", ".txt.gz": "csv", ".xlsx": "xlsx", ".sav": "sav"}


def _format_suffix(path: Path) -> str:
    """The suffix that names a file's format: ``.csv.gz`` for a gzip-compressed CSV (the
    processed tables of a large trial, :data:`helpers.table_io.COMPRESS_ABOVE`), else the last."""
    name = path.name.lower()
    return next((s for s in (".csv.gz", ".txt.gz") if name.endswith(s)), path.suffix.lower())

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



@dataclass
class _Raw:
    df: pd.DataFrame  # object columns; index = line / row / case number in the file
    file: str
    info: dict = field(default_factory=dict)
    ids: pd.Series | None = None  # participant_id as read (helpers.data._cells._ids), once


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
    kind = FORMATS.get(_format_suffix(path))
    if kind is None:
        raise DataValidationError(
            path, None,
            f"unsupported file format {path.suffix!r}: use .csv/.txt (or .csv.gz), .xlsx or .sav "
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
    head, size = text, 1 << 16
    while size < len(text):  # the header and 20 lines are enough: never split a whole registry
        head = text[:size]
        if sum(1 for ln in head.splitlines() if ln.strip()) > 22:
            break
        size *= 4
    else:
        head = text
    lines = [ln for ln in head.splitlines() if ln.strip()]
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
    data = path.read_bytes()
    if _format_suffix(path).endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataValidationError(path, None, f"not a readable gzip file: {exc}") from exc
    text, info = _decode(data, path, encoding)
    if not text.strip():
        raise DataValidationError(path, None, "empty file (only blank characters)")
    delimiter = _sniff_delimiter(text, path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        if '"' not in text:
            # no quoting: one record per line, so a record's line number is its position
            rows = list(reader)
            numbers = range(1, len(rows) + 1)
        else:  # a quoted field may span lines: count them as the reader goes
            rows, numbers, start = [], [], 1
            for fields in reader:
                rows.append(fields)
                numbers.append(start)
                start = reader.line_num + 1
    except csv.Error as exc:
        raise DataValidationError(
            path, None, f"unparseable file: line {max(reader.line_num, 1)}: {exc}"
        ) from exc
    info.update(format="csv", delimiter=delimiter, decimal=".")
    return _Raw(_frame_from_records(numbers, rows, path, "line", text=True), str(path), info)


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, float) and math.isnan(value)
    )


def _blank_rows(rows: list, text: bool) -> np.ndarray:
    """Which records are blank (every cell :func:`_blank`). All-text records (CSV) are blank
    when their cells joined hold nothing but spaces -- one string operation per record."""
    if text:
        return np.fromiter((not "".join(r).strip() for r in rows), dtype=bool, count=len(rows))
    return np.fromiter((all(_blank(v) for v in r) for r in rows), dtype=bool, count=len(rows))


def _frame_from_records(numbers, rows, path: Path, label: str, *, text: bool = False) -> pd.DataFrame:
    """The table of ``rows`` (lists of cells) found at ``numbers`` (line / row numbers).
    Header = first non-blank record; blank records (e.g. Excel's ';;;;') are skipped.
    ``text``: every cell is a string (a CSV file's records)."""
    blank = _blank_rows(rows, text)
    if blank.any():
        keep = np.flatnonzero(~blank)
        rows, numbers = [rows[i] for i in keep], [numbers[i] for i in keep]
    if not rows:
        raise DataValidationError(path, None, "empty file (no header and no rows)")
    header, body, numbers = rows[0], rows[1:], numbers[1:]
    width = len(header)
    widths = np.fromiter(map(len, body), dtype=np.int64, count=len(body))
    for i in np.flatnonzero(widths != width):  # the few records not as wide as the header
        n, row = numbers[i], list(body[i])
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
        body[i] = row
    names = ["" if _blank(h) else str(h).strip() for h in header]
    cells = np.empty((len(body), width), dtype=object)
    if len(body):
        cells[:] = body
    df = pd.DataFrame(cells, columns=range(width), dtype=object)
    df.index = pd.Index(np.asarray(numbers, dtype=np.int64), name=label)
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
    dup = _duplicate_names(df.columns)
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
        rows = [list(r) for r in wb[chosen].iter_rows(values_only=True)]
    finally:
        wb.close()
    info = {"format": "xlsx", "sheet": chosen, "decimal": "."}
    if sheet is None and len(sheets) > 1:
        info["other_sheets"] = sheets[1:]
    # messages name the sheet: a workbook's first sheet is often a codebook
    return _Raw(_frame_from_records(range(1, len(rows) + 1), rows, path, "row"), f"{path} (sheet {chosen!r})", info)


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


def _duplicate_names(names) -> list:
    """The names that occur more than once in ``names``, sorted."""
    names = list(names)
    return sorted({c for c in names if names.count(c) > 1})


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
    dup = _duplicate_names(out.columns)
    if dup:
        raise DataValidationError(file, dup[0], "duplicate column name")
    return _Raw(out, file, {"format": "DataFrame", "decimal": "."})


def _find_in_folder(folder: Path, stem: str, required=True):
    hits = sorted(p for p in folder.iterdir()
                  if p.is_file() and p.name.lower() == stem + _format_suffix(p) and _format_suffix(p) in FORMATS)
    if len(hits) > 1 or (required and not hits):
        raise DataValidationError(
            folder, None,
            f"the folder must hold exactly one {stem}.* file ({', '.join(FORMATS)}); "
            f"found {[p.name for p in hits] or 'none'}",
        )
    return hits[0] if hits else None

