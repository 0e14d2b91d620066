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


#: A descriptor is a few lines: a larger file, or a document that YAML aliases expand beyond
#: this many values, is refused before it is expanded (a "billion laughs" document is a few
#: hundred bytes that expand to millions of values).
MAX_BYTES = 1 << 20
MAX_VALUES = 10_000


def _yaml_error_text(exc) -> str:
    """One line: what YAML found and where."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def _expanded_size(node, limit: int) -> int:
    """How many values the node graph holds once every alias is expanded (counted with one
    visit per distinct node, so an alias bomb is measured, never expanded); ``limit + 1`` as
    soon as it is larger, or when an alias refers to itself."""
    import yaml

    sizes, open_ = {}, set()

    def size(n) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in open_:
            return limit + 1  # a recursive alias: no finite expansion
        open_.add(key)
        total = 1
        if isinstance(n, yaml.SequenceNode):
            for child in n.value:
                total += size(child)
                if total > limit:
                    break
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k) + size(v)
                if total > limit:
                    break
        open_.discard(key)
        sizes[key] = min(total, limit + 1)
        return sizes[key]

    return size(node)


def _duplicate_key(loader, node, where=""):
    """``(key path, first line, line)`` of the first key given twice in one mapping of the
    composed document (YAML itself would keep the last silently), or None."""
    import yaml

    seen_nodes = set()

    def walk(n, where):
        if id(n) in seen_nodes:
            return None
        seen_nodes.add(id(n))
        if isinstance(n, yaml.SequenceNode):
            for i, child in enumerate(n.value):
                if found := walk(child, f"{where}[{i}]"):
                    return found
        elif isinstance(n, yaml.MappingNode):
            lines = {}
            for key_node, value_node in n.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = loader.construct_object(key_node)
                path = f"{where}.{key}" if where else str(key)
                if key in lines:
                    return path, lines[key], key_node.start_mark.line + 1
                lines[key] = key_node.start_mark.line + 1
                if found := walk(value_node, path):
                    return found
        return None

    return walk(node, where)


def load_yaml(path: Path):
    """The descriptor's YAML document, read strictly: UTF-8 text, at most :data:`MAX_BYTES`, at
    most :data:`MAX_VALUES` values once aliases are expanded (measured on the composed
    document, before anything is expanded), no key twice in a mapping. Every problem is a
    :class:`DescriptorError` naming the file (and the key or line)."""
    import yaml

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise DescriptorError(path, None, f"{size:,} bytes: a descriptor is a few lines of YAML (at most "
                                              f"{MAX_BYTES:,} bytes); is this the right file?")
        data = path.read_bytes()
    except OSError as exc:
        raise DescriptorError(path, None, f"cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DescriptorError(path, None, f"not UTF-8 text: byte 0x{data[exc.start]:02x} at byte position "
                                          f"{exc.start} (line {line}) cannot be decoded; save the descriptor as "
                                          "UTF-8 (most editors: Save As > Encoding: UTF-8)") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()  # composed, not yet constructed: aliases are shared nodes
        if node is None:
            return None
        if _expanded_size(node, MAX_VALUES) > MAX_VALUES:
            raise DescriptorError(path, None, f"its YAML aliases (*name) expand to more than {MAX_VALUES:,} values "
                                              "(or refer to themselves); write the values out instead of aliasing them")
        duplicate = _duplicate_key(loader, node)
        if duplicate:
            key, first, line = duplicate
            raise DescriptorError(path, key, f"given twice (lines {first} and {line}); YAML would silently keep the "
                                             "last: keep one")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise DescriptorError(path, None, f"not valid YAML: {_yaml_error_text(exc)}") from None
    finally:
        loader.dispose()


def _what(value) -> str:
    """A value's type in words, for messages (never the value itself, which may be huge)."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "text", list: "a list", dict: "a mapping",
             type(None): "empty (null)"}
    return names.get(type(value), type(value).__name__)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(path, key, value, *, required=False, one_line=False) -> str | None:
    """A key whose value must be text (None when absent and not required)."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        got = "nothing" if value is None or value == "" else f"{_what(value)} {_short(value)}"
        raise DescriptorError(path, key, f"expected text, got {got}" + ("; quote it if it is meant as text, e.g. "
                                                                         f"{key.rpartition('.')[2]}: '{value}'"
                                                                         if isinstance(value, (int, float)) else ""))
    if one_line and any(c in value for c in "\r\n\x00"):
        raise DescriptorError(path, key, "expected one line of text (it names folders and appears in messages)")
    return value


def _mapping(path, key, value) -> dict:
    if not isinstance(value, dict):
        raise DescriptorError(path, key, f"expected a mapping (key: value lines indented under {key}:), got "
                                         f"{_what(value)}")
    return value


def read_descriptor(path) -> Descriptor:
    """Parse and check a descriptor, every key's type before it is used; every problem is a
    :class:`DescriptorError` naming the file, the key and how to fix it."""
    path = Path(path)
    if not path.is_file():
        raise DescriptorError(path, None, "no such descriptor file (data_source should name a dataset.yaml or "
                                          "the folder holding it)")
    spec = load_yaml(path)
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise DescriptorError(path, None, f"expected a mapping of keys (name, files, columns, ...), got {_what(spec)}")
    unknown = sorted((k for k in spec if k not in KEYS), key=str)
    if unknown:
        raise DescriptorError(path, str(unknown[0]), f"unknown key; the keys are {list(KEYS)} (see data/README.md)")
    if spec.get("name") is None or (isinstance(spec["name"], str) and not spec["name"].strip()):
        raise DescriptorError(path, "name", "missing: give the dataset a name (it names the run folder and the report)")
    name = _text(path, "name", spec.get("name"), required=True, one_line=True)
    description = _text(path, "description", spec.get("description")) or ""
    simulated = spec.get("simulated", False)
    if not isinstance(simulated, bool):
        raise DescriptorError(path, "simulated", f"expected true or false, got {_what(simulated)} {_short(simulated)} "
                                                 "(unquoted: simulated: true / simulated: false)")
    layout = spec.get("layout", "auto")
    if layout not in ("auto", "long", "wide"):
        raise DescriptorError(path, "layout", f"{_short(layout)} is not one of auto, long, wide")
    n_sessions = spec.get("n_sessions")
    if n_sessions is not None and (isinstance(n_sessions, bool) or not isinstance(n_sessions, int) or n_sessions < 1):
        raise DescriptorError(path, "n_sessions", f"expected a positive whole number or no key (inferred), got "
                                                  f"{_short(n_sessions)}")
    columns = _columns(path, spec.get("columns") if spec.get("columns") is not None else {}, layout)
    session_labels = _session_labels(path, spec.get("session_labels"), layout)
    desc = Descriptor(path=path, name=name.strip(), files=_files(path, spec.get("files")), layout=layout,
                      n_sessions=n_sessions, columns=columns, session_labels=session_labels,
                      codes=_codes(path, spec.get("codes") if spec.get("codes") is not None else {}),
                      simulated=simulated, description=description)
    declared = spec.get("instruments") if spec.get("instruments") is not None else {}
    _mapping(path, "instruments", declared)
    try:
        desc.instruments = inst_mod.resolve(declared)
        desc.declared_roles = tuple(sorted(declared))
    except inst_mod.InstrumentError as exc:
        raise DescriptorError(path, exc.key or "instruments", exc.problem) from None
    return desc


def _files(path: Path, files) -> dict:
    if not isinstance(files, dict) or "sessions" not in files or "participants" not in files:
        raise DescriptorError(path, "files", "expected sessions: FILE and participants: FILE (paths relative to the "
                                             "descriptor; both may name one file)")
    extra = sorted((k for k in files if k not in ("sessions", "participants", "sheet")), key=str)
    if extra:
        raise DescriptorError(path, f"files.{extra[0]}", "unknown key; expected sessions, participants, sheet")
    out = {}
    folder = path.parent.resolve()
    for table in ("sessions", "participants"):
        key = f"files.{table}"
        spec = files[table]
        spec = {"path": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or "path" not in spec:
            raise DescriptorError(path, key, "expected a file name or {path: FILE, sheet: SHEET}")
        unknown = sorted((k for k in spec if k not in ("path", "sheet")), key=str)
        if unknown:
            raise DescriptorError(path, f"{key}.{unknown[0]}", "unknown key; expected path, sheet")
        name = _text(path, key if isinstance(files[table], str) else f"{key}.path", spec["path"], required=True,
                     one_line=True)
        out[table] = {"path": _inside(path, key, folder, name),
                      "sheet": _sheet(path, f"{key}.sheet" if "sheet" in spec else "files.sheet",
                                      spec.get("sheet", files.get("sheet")))}
    return out


def _inside(path: Path, key: str, folder: Path, name: str) -> Path:
    """The data file ``name`` (relative to the descriptor), which must lie inside the
    descriptor's folder once resolved (symbolic links followed): a descriptor from elsewhere
    must not make a run read (and put into its report) any file the user can read."""
    if Path(name).is_absolute():
        raise DescriptorError(path, key, f"{name} is an absolute path; name the file relative to the descriptor, "
                                         "inside its folder (put dataset.yaml beside the data: data_source may be any "
                                         "folder)")
    file = (path.parent / name).resolve()
    if not file.is_relative_to(folder):
        raise DescriptorError(path, key, f"{name} lies outside the descriptor's folder {folder} (resolved: {file}); "
                                         "keep the data files beside dataset.yaml (or put dataset.yaml beside the "
                                         "data: data_source may be any folder)")
    if not file.exists():
        raise DescriptorError(path, key, f"file not found: {file}")
    if not file.is_file():
        raise DescriptorError(path, key, f"{file} is not a regular file")
    return file


def _sheet(path: Path, key: str, sheet):
    if sheet is None:
        return None
    if not isinstance(sheet, str) or not sheet.strip():
        raise DescriptorError(path, key, f"expected a sheet name (text), got {_what(sheet)} {_short(sheet)}; a sheet "
                                         "named like a number must be quoted (sheet: '2024'), and sheets are named, "
                                         "not numbered")
    return sheet


def _columns(path: Path, columns, layout: str) -> dict:
    _mapping(path, "columns", columns)
    sources = {}
    for target, source in columns.items():
        if target not in MAPPABLE:
            if isinstance(source, str) and source in MAPPABLE:
                raise DescriptorError(path, f"columns.{target}", f"reversed: columns maps contract column: your "
                                                                f"column; write {source}: {target}")
            raise DescriptorError(path, f"columns.{target}", f"not a contract column; the contract's columns are "
                                                            f"{list(MAPPABLE)}")
        key = f"columns.{target}"
        _text(path, key, source, required=True, one_line=True)
        if _SESSION_FIELD in source:
            if target not in ("alliance", "pss_sr"):
                raise DescriptorError(path, key, "only the per-session columns (alliance, pss_sr) take a {session} "
                                                 "pattern")
            if source.count(_SESSION_FIELD) != 1:
                raise DescriptorError(path, key, f"{source!r}: a pattern holds {_SESSION_FIELD} once")
            if layout == "long":
                raise DescriptorError(path, key, f"{source!r} is a per-session pattern, which needs layout: wide (one "
                                                 "column per session); in the long layout name the one column")
        if source in sources:
            raise DescriptorError(path, key, f"{source!r} is already the column of columns.{sources[source]}: one of "
                                             "your columns can fill only one contract column (map each to its own)")
        sources[source] = target
    return dict(columns)


def _session_labels(path: Path, labels, layout: str):
    if labels is None:
        return None
    if not isinstance(labels, str) or labels.count(_SESSION_FIELD) != 1:
        raise DescriptorError(path, "session_labels", "expected a pattern with one {session}, e.g. 'S{session}'")
    if layout == "wide":
        raise DescriptorError(path, "session_labels", "applies to the long layout only (a session column holding "
                                                      "labels such as S1, S2); with layout: wide the session number "
                                                      "comes from the column pattern: remove session_labels")
    return labels


def _codes(path: Path, codes) -> dict:
    _mapping(path, "codes", codes)
    for column, table in codes.items():
        key = f"codes.{column}"
        if column not in MAPPABLE:
            raise DescriptorError(path, key, "not a contract column")
        if not isinstance(table, dict) or not table:
            raise DescriptorError(path, key, "expected {your value: contract value}, e.g. {1: false, 2: true}")
        for value, code in table.items():
            if isinstance(value, bool):
                raise DescriptorError(path, key, f"the value {str(value).lower()} (YAML reads yes/no/true/false/on/off "
                                                 "unquoted as a boolean): quote your value, e.g. 'yes': true")
            if not isinstance(value, (str, int, float)) or value is None:
                raise DescriptorError(path, key, f"your values must be text or numbers, got {_what(value)}")
            if column in BOOL_COLUMNS:
                if not (isinstance(code, bool) or code is None):
                    raise DescriptorError(path, key, "a yes/no column's codes must map to true, false or null")
            elif column == "participant_id":
                if not isinstance(code, str):
                    raise DescriptorError(path, key, f"an id's code must be text, got {_what(code)} for {_short(value)}")
            elif code is not None and (isinstance(code, bool) or not isinstance(code, (int, float))):
                raise DescriptorError(path, key, f"the codes of a score column map to numbers or null, got "
                                                 f"{_what(code)} {_short(code)} for {_short(value)}")
    return dict(codes)


# ----------------------------------------------------------------------------- renaming
def _pattern_regex(pattern: str) -> re.Pattern:
    head, _, tail = pattern.partition(_SESSION_FIELD)
    return re.compile(rf"^{re.escape(head)}(\d+){re.escape(tail)}$")


def rename_columns(df: pd.DataFrame, columns: dict, *, file: str, table: str) -> pd.DataFrame:
    """The researcher's columns renamed to contract names; wide patterns become
    ``alliance_s<k>`` / ``pss_sr_s<k>`` (what the loader's wide layout reads). A mapped column
    that the table lacks is an error naming the closest column names."""
    return df.rename(columns=column_renames(df, columns, file=file, table=table))


def column_renames(df: pd.DataFrame, columns: dict, *, file: str, table: str) -> dict:
    """``{your column: contract column}`` for :func:`rename_columns`."""
    renames, claimed = {}, {}
    for target, source in columns.items():
        if _SESSION_FIELD in source:
            rx = _pattern_regex(source)
            hits = {c: f"{target}_s{int(m.group(1))}" for c in df.columns if (m := rx.match(str(c)))}
            if table == "sessions" and not hits:
                raise DataValidationError(file, source, f"no column matches the pattern of columns.{target} "
                                                        f"(columns found: {list(df.columns)[:12]})")
        elif source in df.columns:
            hits = {source: target}
        else:
            hits = {}
        for column in hits:
            if column in claimed:  # e.g. alliance: WAI_{session} and age: WAI_1
                raise DataValidationError(file, column, f"named by both columns.{claimed[column]} and "
                                                        f"columns.{target}: one of your columns can fill only one "
                                                        "contract column")
            claimed[column] = target
        renames.update(hits)
        if not hits and _SESSION_FIELD not in source and _belongs(target, table):
            import difflib

            lower = {str(c).lower(): str(c) for c in df.columns}
            close = [lower[c] for c in difflib.get_close_matches(source.lower(), list(lower), n=3, cutoff=0.5)]
            raise DataValidationError(file, source, f"column named by columns.{target} not found"
                                                    + (f"; did you mean {close}?" if close else
                                                       f"; columns found: {list(df.columns)[:12]}"))
    return renames


def _in_your_terms(exc: DataValidationError, yours: dict) -> DataValidationError:
    """A contract rule broken in a renamed column, told with the researcher's column name
    (``WAI_3``, not ``alliance_s3``), which is what they find in their file."""
    import re as re_mod

    if exc.column not in yours:
        return exc
    rows = exc.rows.rename(columns=yours) if exc.rows is not None else None
    counted = re_mod.search(r"\((\d+) offending rows?\)", str(exc).split("\nfirst offending rows:")[0])
    return DataValidationError(exc.file, yours[exc.column], f"{exc.rule} (read as the contract's {exc.column})",
                               rows, n_bad=int(counted.group(1)) if counted else None)


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
    tables, labels, yours = {}, {}, {}
    for table in ("sessions", "participants"):
        f = desc.files[table]
        df, labels[table] = data.read_table(f["path"], sheet=f["sheet"])
        renames = column_renames(df, desc.columns, file=labels[table], table=table)
        yours.update({contract: own for own, contract in renames.items()})
        df = df.rename(columns=renames)
        try:
            df = apply_codes(df, desc.codes, file=labels[table])
        except DataValidationError as exc:
            raise _in_your_terms(exc, yours) from None
        tables[table] = _own_columns(df, table)
    try:
        return _checked(desc, tables, labels, ranges, warn=warn)
    except DataValidationError as exc:
        raise _in_your_terms(exc, yours) from None


def _checked(desc: Descriptor, tables: dict, labels: dict, ranges: dict, *, warn: bool):
    """The renamed tables checked against the contract: :func:`load_dataset`'s Trial."""
    import warnings

    from helpers import data
    from helpers.contract import Trial

    if desc.session_labels:
        if "session" not in tables["sessions"].columns:
            raise DescriptorError(desc.path, "session_labels", f"applies to the long layout only, but "
                                                               f"{labels['sessions']} has no session column (it is "
                                                               "read as wide): remove session_labels, or map the "
                                                               "session column under columns.session")
        tables["sessions"] = parse_session_labels(tables["sessions"], desc.session_labels, file=labels["sessions"])
    messages = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sessions = data.validate_sessions(tables["sessions"], labels["sessions"], layout=desc.layout,
                                          n_sessions=desc.n_sessions, ranges=ranges)
        participants = data.validate_participants(tables["participants"], labels["participants"], ranges=ranges)
    _check_plausible(desc, sessions, labels["sessions"])
    absent = sorted(c for c in PARTICIPANT_COLUMNS + SESSION_COLUMNS
                    if c != "session" and c not in _present(tables))
    messages += [str(w.message) for w in caught if "columns not found" not in str(w.message)]
    if absent:
        messages.append(f"{desc.name}: measures not in this dataset (not declared under columns): {absent}; "
                        "analyses that need them say so instead of running")
    if set(sessions["participant_id"].unique()) != set(participants["participant_id"]):
        # the ids differ: the loader's check names them, with the rows of the files
        data.check_same_participants(tables["sessions"], tables["participants"],
                                     labels["sessions"], labels["participants"])
    if warn:
        for msg in messages:
            warnings.warn(msg, data.DataWarning, stacklevel=2)
    meta = {"dataset": desc.name, "descriptor": str(desc.path), "simulated": desc.simulated,
            "n_sessions": int(desc.n_sessions or sessions["session"].max()),
            "instruments": inst_mod.as_dict(desc.instruments), "declared_roles": list(desc.declared_roles),
            "measures": sorted(_present(tables)),
            "absent": absent, "warnings": messages, "layout": desc.layout}
    return Trial(sessions, participants, None, desc.name, meta)


#: A declared n_sessions may exceed the largest session observed (sessions planned that no
#: client reached), but not by more than this factor: 10^9 against 12 observed is a typo that
#: would size every per-session table and figure.
N_SESSIONS_SLACK = 2
#: Clients with an alliance rating needed at least: every rupture criterion scales its
#: threshold by the spread of the ratings between clients.
MIN_RATED_CLIENTS = 2


def _check_plausible(desc: Descriptor, sessions: pd.DataFrame, file: str) -> None:
    """What the contract's rules cannot see: a declared number of sessions far beyond the
    data, and an alliance column with (next to) no ratings."""
    observed = int(sessions["session"].max())
    if desc.n_sessions is not None and desc.n_sessions > N_SESSIONS_SLACK * observed:
        raise DescriptorError(desc.path, "n_sessions", f"{desc.n_sessions} declared, but the largest session in "
                                                       f"{file} is {observed}; declare the number of sessions the "
                                                       f"trial planned (at most {N_SESSIONS_SLACK * observed} here), "
                                                       "or leave n_sessions out to infer it")
    _check_alliance(sessions, file, desc.columns.get("alliance", "alliance"))


def _check_alliance(sessions: pd.DataFrame, file: str, source: str = "alliance") -> None:
    """At least :data:`MIN_RATED_CLIENTS` clients with an observed alliance rating."""
    rated = sessions.loc[sessions["alliance"].notna(), "participant_id"].nunique()
    if rated < MIN_RATED_CLIENTS:
        where = f"your column {source!r}, mapped under columns.alliance" if source != "alliance" else "column 'alliance'"
        who = "no client has" if rated == 0 else f"only {rated} client has"
        raise DataValidationError(file, "alliance", f"{who} an observed alliance rating ({where}); the rupture analysis "
                                                    f"needs ratings of at least {MIN_RATED_CLIENTS} clients: check the "
                                                    "column and its missing-value codes")


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
    with warnings.catch_warnings():
        if not warn:
            warnings.simplefilter("ignore", data.DataWarning)  # the notebook shows them; a pre-check need not
        trial = data.load_trial(source, participants)
    _check_alliance(trial.sessions, trial.meta["files"]["sessions"])
    return trial
