"""A trial's own data, declared once: the dataset descriptor ``dataset.yaml``.

A descriptor sits beside the data files and says what they are: a name, the files (and Excel
sheet), the layout, which of the researcher's columns holds each contract column (wide
patterns such as ``WAI_{session}``), value codes (gender 1/2 -> ``female``), the number of
sessions, and the instruments (:mod:`helpers.instruments`). :func:`load_dataset` reads it and
returns a :class:`~helpers.contract.Trial` checked against the contract, with the declared
instruments' score ranges. Every key is documented in ``data/README.md``, with a worked
example in ``data/raw/example_other_trial/``; an unknown key, a missing file or a column that
is not there is an error that names the descriptor, the key and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from helpers import instruments as inst_mod
from helpers.contract import (
    BOOL_COLUMNS,
    PARTICIPANT_COLUMNS,
    SESSION_COLUMNS,
    DataValidationError,
)

DESCRIPTOR = "dataset.yaml"
#: Top-level keys of a descriptor.
KEYS = ("name", "description", "simulated", "files", "layout", "n_sessions", "columns", "session_labels",
        "codes", "instruments")
#: Contract columns that a descriptor may map (sessions and participants tables).
MAPPABLE = tuple(dict.fromkeys(SESSION_COLUMNS + PARTICIPANT_COLUMNS))
#: Columns a descriptor must provide one way or another.
REQUIRED = ("participant_id", "alliance", "pss_sr_pre")
_SESSION_FIELD = "{session}"


class DescriptorError(ValueError):
    """A dataset descriptor is wrong; the message names the file, the key and the fix."""

    def __init__(self, path, key, problem):
        self.path, self.key = str(path), key
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")


@dataclass
class Descriptor:
    """A parsed, checked ``dataset.yaml`` (see the module docstring and ``data/README.md``)."""

    path: Path
    name: str
    files: dict  # table -> {"path": Path, "sheet": str | None}
    layout: str = "auto"
    n_sessions: int | None = None
    columns: dict = field(default_factory=dict)
    session_labels: str | None = None
    codes: dict = field(default_factory=dict)
    instruments: dict = field(default_factory=dict)
    declared_roles: tuple = ()
    simulated: bool = False
    description: str = ""

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def slug(self) -> str:
        """The name as a folder name (``runs/<slug>/``)."""
        return re.sub(r"[^A-Za-z0-9]+", "-", self.name).strip("-").lower() or "dataset"


# ----------------------------------------------------------------------------- reading
def find_descriptor(source) -> Path | None:
    """The descriptor for a ``data_source``: the file itself, or ``dataset.yaml`` in a folder."""
    p = Path(source)
    if p.is_dir():
        return p / DESCRIPTOR if (p / DESCRIPTOR).is_file() else None
    return p if p.suffix in (".yaml", ".yml") else None


def read_descriptor(path) -> Descriptor:
    """Parse and check a descriptor; every problem names the key and how to fix it."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DescriptorError(path, None, "no such descriptor file (data_source should name a dataset.yaml or "
                                          "the folder holding it)")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DescriptorError(path, None, f"not valid YAML: {exc}") from None
    if not isinstance(spec, dict):
        raise DescriptorError(path, None, "expected a mapping of keys (name, files, columns, ...)")
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        raise DescriptorError(path, unknown[0], f"unknown key; the keys are {list(KEYS)} (see data/README.md)")
    if not str(spec.get("name", "")).strip():
        raise DescriptorError(path, "name", "missing: give the dataset a name (it names the run folder and the report)")
    layout = spec.get("layout", "auto")
    if layout not in ("auto", "long", "wide"):
        raise DescriptorError(path, "layout", f"{layout!r} is not one of auto, long, wide")
    n_sessions = spec.get("n_sessions")
    if n_sessions is not None and (isinstance(n_sessions, bool) or not isinstance(n_sessions, int) or n_sessions < 1):
        raise DescriptorError(path, "n_sessions", f"expected a positive whole number or no key (inferred), got {n_sessions!r}")
    desc = Descriptor(path=path, name=str(spec["name"]).strip(), files=_files(path, spec.get("files")), layout=layout,
                      n_sessions=n_sessions, columns=_columns(path, spec.get("columns") or {}),
                      session_labels=_session_labels(path, spec.get("session_labels")),
                      codes=_codes(path, spec.get("codes") or {}), simulated=bool(spec.get("simulated", False)),
                      description=str(spec.get("description", "")))
    try:
        desc.instruments = inst_mod.resolve(spec.get("instruments") or {})
        desc.declared_roles = tuple(sorted(spec.get("instruments") or {}))
    except inst_mod.InstrumentError as exc:
        raise DescriptorError(path, "instruments", str(exc)) from None
    return desc


def _files(path: Path, files) -> dict:
    if not isinstance(files, dict) or "sessions" not in files or "participants" not in files:
        raise DescriptorError(path, "files", "expected sessions: FILE and participants: FILE (paths relative to the "
                                             "descriptor; both may name one file)")
    out = {}
    for table in ("sessions", "participants"):
        spec = files[table]
        spec = {"path": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or "path" not in spec:
            raise DescriptorError(path, f"files.{table}", "expected a file name or {path: FILE, sheet: SHEET}")
        file = (path.parent / spec["path"]).resolve()
        if not file.is_file():
            raise DescriptorError(path, f"files.{table}", f"file not found: {file}")
        sheet = spec.get("sheet", files.get("sheet"))
        out[table] = {"path": file, "sheet": None if sheet is None else str(sheet)}
    extra = sorted(set(files) - {"sessions", "participants", "sheet"})
    if extra:
        raise DescriptorError(path, f"files.{extra[0]}", "unknown key; expected sessions, participants, sheet")
    return out


def _columns(path: Path, columns) -> dict:
    if not isinstance(columns, dict):
        raise DescriptorError(path, "columns", "expected contract column: your column")
    for target, source in columns.items():
        if target not in MAPPABLE:
            raise DescriptorError(path, f"columns.{target}", f"not a contract column; the contract's columns are "
                                                            f"{list(MAPPABLE)}")
        if not isinstance(source, str) or not source.strip():
            raise DescriptorError(path, f"columns.{target}", f"expected a column name, got {source!r}")
        if _SESSION_FIELD in source and target not in ("alliance", "pss_sr"):
            raise DescriptorError(path, f"columns.{target}", "only the per-session columns (alliance, pss_sr) take a "
                                                            "{session} pattern")
    return dict(columns)


def _session_labels(path: Path, labels):
    if labels is not None and (not isinstance(labels, str) or labels.count(_SESSION_FIELD) != 1):
        raise DescriptorError(path, "session_labels", "expected a pattern with one {session}, e.g. 'S{session}'")
    return labels


def _codes(path: Path, codes) -> dict:
    if not isinstance(codes, dict):
        raise DescriptorError(path, "codes", "expected column: {your value: contract value}")
    for column, table in codes.items():
        if column not in MAPPABLE:
            raise DescriptorError(path, f"codes.{column}", "not a contract column")
        if not isinstance(table, dict) or not table:
            raise DescriptorError(path, f"codes.{column}", "expected {your value: contract value}, e.g. {1: false, 2: true}")
        if column in BOOL_COLUMNS and not all(isinstance(v, bool) or v is None for v in table.values()):
            raise DescriptorError(path, f"codes.{column}", "a yes/no column's codes must map to true, false or null")
    return dict(codes)


# ----------------------------------------------------------------------------- renaming
def _pattern_regex(pattern: str) -> re.Pattern:
    head, _, tail = pattern.partition(_SESSION_FIELD)
    return re.compile(rf"^{re.escape(head)}(\d+){re.escape(tail)}$")


def rename_columns(df: pd.DataFrame, columns: dict, *, file: str, table: str) -> pd.DataFrame:
    """The researcher's columns renamed to contract names; wide patterns become
    ``alliance_s<k>`` / ``pss_sr_s<k>`` (what the loader's wide layout reads). A mapped column
    that the table lacks is an error naming the closest column names."""
    renames = {}
    for target, source in columns.items():
        if _SESSION_FIELD in source:
            rx = _pattern_regex(source)
            hits = {c: f"{target}_s{int(m.group(1))}" for c in df.columns if (m := rx.match(str(c)))}
            if table == "sessions" and not hits:
                raise DataValidationError(file, source, f"no column matches the pattern of columns.{target} "
                                                        f"(columns found: {list(df.columns)[:12]})")
            renames.update(hits)
        elif source in df.columns:
            renames[source] = target
        elif _belongs(target, table):
            import difflib

            lower = {str(c).lower(): str(c) for c in df.columns}
            close = [lower[c] for c in difflib.get_close_matches(source.lower(), list(lower), n=3, cutoff=0.5)]
            raise DataValidationError(file, source, f"column named by columns.{target} not found"
                                                    + (f"; did you mean {close}?" if close else
                                                       f"; columns found: {list(df.columns)[:12]}"))
    return df.rename(columns=renames)


def _belongs(target: str, table: str) -> bool:
    if target == "participant_id":
        return True
    return target in (SESSION_COLUMNS if table == "sessions" else PARTICIPANT_COLUMNS)


def apply_codes(df: pd.DataFrame, codes: dict, *, file: str) -> pd.DataFrame:
    """Values recoded by the descriptor's ``codes`` (after renaming). A value without a code
    is an error naming the column, the value and the declared codes."""
    out = df.copy()
    for column, table in codes.items():
        if column not in out.columns:
            continue
        lookup = {_key(k): v for k, v in table.items()}
        keys = out[column].map(_key)
        unknown = out[column].notna() & ~keys.isin(list(lookup))
        if unknown.any():
            bad = out.loc[unknown, column].astype(str).unique()[:5].tolist()
            raise DataValidationError(file, column, f"value(s) {bad} have no code in codes.{column} "
                                                    f"(declared: {table})", n_bad=int(unknown.sum()))
        out[column] = keys.map(lookup).where(out[column].notna(), None)
    return out


def _key(value) -> str:
    """One spelling per value: 1, 1.0 and "1" are the same code."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    try:
        f = float(value)
        return str(int(f)) if f.is_integer() else str(f)
    except (TypeError, ValueError):
        return str(value).strip().lower()


def parse_session_labels(df: pd.DataFrame, pattern: str, *, file: str) -> pd.DataFrame:
    """Session labels such as ``S1`` read as numbers with the descriptor's pattern."""
    rx = _pattern_regex(pattern)
    out = df.copy()
    labels = out["session"].astype(str).str.strip()
    numbers = labels.str.extract(rx.pattern, expand=False)
    bad = out["session"].notna() & numbers.isna()
    if bad.any():
        raise DataValidationError(file, "session", f"label(s) {labels[bad].unique()[:5].tolist()} do not match "
                                                   f"session_labels {pattern!r}", n_bad=int(bad.sum()))
    out["session"] = pd.to_numeric(numbers)
    return out


# ----------------------------------------------------------------------------- loading
def load_dataset(source, *, warn=True):
    """Load the trial a descriptor declares into the data contract.

    Parameters
    ----------
    source : path-like or Descriptor
        A ``dataset.yaml``, the folder holding one, or a parsed :class:`Descriptor`.
    warn : bool
        Issue the data warnings (they are recorded in ``trial.meta["warnings"]`` either way).

    Returns
    -------
    Trial
        ``source`` is the dataset's name; ``meta`` holds ``dataset`` (name), ``descriptor``,
        ``n_sessions`` (declared or inferred), ``instruments`` (by role), ``measures`` (the
        contract columns the dataset has), ``absent`` (those it has not) and ``warnings``.

    Raises
    ------
    DescriptorError
        The descriptor is wrong (names the key).
    DataValidationError
        The data break a rule (names the file and sheet, the column, the rule, the rows).
    """
    import warnings

    from helpers import data
    from helpers.contract import Trial

    desc = source if isinstance(source, Descriptor) else read_descriptor(find_descriptor(source) or source)
    ranges = inst_mod.score_ranges(desc.instruments)
    tables, labels = {}, {}
    for table in ("sessions", "participants"):
        f = desc.files[table]
        raw = data._read_raw(f["path"], sheet=f["sheet"])
        labels[table] = raw.file
        df = rename_columns(raw.df, desc.columns, file=raw.file, table=table)
        df = apply_codes(df, desc.codes, file=raw.file)
        tables[table] = _own_columns(df, table)
    if desc.session_labels and "session" in tables["sessions"].columns:
        tables["sessions"] = parse_session_labels(tables["sessions"], desc.session_labels, file=labels["sessions"])
    messages = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sessions = data.validate_sessions(tables["sessions"], labels["sessions"], layout=desc.layout,
                                          n_sessions=desc.n_sessions, ranges=ranges)
        participants = data.validate_participants(tables["participants"], labels["participants"], ranges=ranges)
    absent = sorted(c for c in PARTICIPANT_COLUMNS + SESSION_COLUMNS
                    if c != "session" and c not in _present(tables))
    messages += [str(w.message) for w in caught if "columns not found" not in str(w.message)]
    if absent:
        messages.append(f"{desc.name}: measures not in this dataset (not declared under columns): {absent}; "
                        "analyses that need them say so instead of running")
    data._check_same_ids(data._from_frame(tables["sessions"], labels["sessions"]),
                         data._from_frame(tables["participants"], labels["participants"]))
    if warn:
        for msg in messages:
            warnings.warn(msg, data.DataWarning, stacklevel=2)
    meta = {"dataset": desc.name, "descriptor": str(desc.path), "simulated": desc.simulated,
            "n_sessions": int(desc.n_sessions or sessions["session"].max()),
            "instruments": inst_mod.as_dict(desc.instruments), "declared_roles": list(desc.declared_roles),
            "measures": sorted(_present(tables)),
            "absent": absent, "warnings": messages, "layout": desc.layout}
    return Trial(sessions, participants, None, desc.name, meta)


def _own_columns(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """The columns of one table (a wide file may hold both tables' columns)."""
    wide = re.compile(r"^(alliance|pss_sr)_s\d+$")
    keep = SESSION_COLUMNS if table == "sessions" else PARTICIPANT_COLUMNS
    cols = [c for c in df.columns if c in keep or (table == "sessions" and wide.match(str(c)))]
    return df[cols]


def _present(tables: dict) -> set:
    cols = set(tables["participants"].columns) | set(tables["sessions"].columns)
    wide = {c for c in cols if re.search(r"_s\d+$", c)}
    return (cols - wide | {re.sub(r"_s\d+$", "", c) for c in wide}) - {"session"}


def load(source, participants=None, *, warn=True):
    """A trial from a run's ``data_source``: a descriptor (or the folder holding one) through
    :func:`load_dataset`, otherwise files in the contract's own names through
    :func:`helpers.data.load_trial` (``participants`` = the participants file, if separate)."""
    import warnings

    from helpers import data

    descriptor = find_descriptor(source)
    if descriptor is not None:
        return load_dataset(descriptor, warn=warn)
    if warn:
        return data.load_trial(source, participants)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.DataWarning)  # the notebook shows them; a pre-check need not
        return data.load_trial(source, participants)
