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

import warnings
from pathlib import Path

from helpers.contract import (
    PARTICIPANT_COLUMNS,
    SCORE_RANGES,
    SESSION_COLUMNS,
    TRUTH_COLUMNS,
    DataValidationError,
    Trial,
)
from helpers.data._columns import (
    REQUIRED_PARTICIPANT_COLUMNS,
    REQUIRED_SESSION_COLUMNS,
    _apply_mapping,
)
from helpers.data._readers import FORMATS, _find_in_folder, _from_frame, _read_raw
from helpers.data._build import (
    DataWarning,
    _check_same_ids,
    _participants_table,
    _sessions_table,
    _truth_table,
    _warn_columns,
)
from helpers.table_io import remove_processed, write_processed

__all__ = [
    "DataValidationError",
    "DataWarning",
    "Trial",
    "load_trial",
    "save_trial",
    "validate_sessions",
    "validate_participants",
    "validate_trial",
    "read_table",
    "check_same_participants",
    "REQUIRED_SESSION_COLUMNS",
    "REQUIRED_PARTICIPANT_COLUMNS",
    "FORMATS",
]


def _from_frame_with_ranges(df, file, ranges):
    """:func:`_from_frame`, with the trial's score ranges (over the contract's) when given."""
    raw = _from_frame(df, str(file))
    if ranges is not None:
        raw.info["ranges"] = {**SCORE_RANGES, **ranges}
    return raw


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
    raw = _from_frame_with_ranges(df, file, ranges)
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
    raw = _from_frame_with_ranges(df, file, ranges)
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



def read_table(path, *, sheet=None) -> tuple:
    """Read one data file as it stands, every cell as read, with no contract rule applied.

    For a caller that renames or recodes the columns before the checks
    (:func:`helpers.descriptor.load_dataset`).

    Parameters
    ----------
    path : str or Path
        A file of one of :data:`FORMATS`.
    sheet : str, optional
        The sheet of an ``.xlsx`` workbook (default: the only one).

    Returns
    -------
    (DataFrame, str)
        The table (object columns, indexed by where a user finds each row: line, row or case
        number) and the label error messages use for the file (its path, and the sheet).

    Raises
    ------
    DataValidationError
        The file cannot be read (names it, and why): every parser error is wrapped.
    """
    raw = _read_raw(Path(path), sheet=sheet)
    return raw.df, raw.file


def check_same_participants(sessions, participants, sessions_file="<sessions>",
                            participants_file="<participants>") -> None:
    """Raise if the two tables do not hold the same participants.

    Parameters
    ----------
    sessions, participants : DataFrame
        Tables with a ``participant_id`` column (and, for the rows shown, ``session``).
    sessions_file, participants_file : str
        The labels of the files they came from, named in the message.

    Raises
    ------
    DataValidationError
        Names the file lacking some ids, how many, the first 10, what its ids look like, and
        the offending rows of the other file.
    """
    _check_same_ids(_from_frame(sessions, sessions_file), _from_frame(participants, participants_file))


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
        ``{contract column: your column}`` -- the direction of a dataset descriptor's
        ``columns`` -- applied before any check, e.g. ``{"participant_id": "ID", "alliance":
        "calpas"}``. A flat mapping applies to both tables (each of your columns must be found in
        at least one); ``{"sessions": {...}, "participants": {...}}`` applies per table (each
        found in its table). In the sessions table a per-session measure's column also renames
        its wide columns: ``{"alliance": "calpas"}`` turns ``calpas_s1`` into ``alliance_s1``.
        A mapping written the other way round is refused as reversed, naming the fix.
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
    ``load_trial("trial.sav", "trial.sav", mapping={"participant_id": "ID", "alliance": "calpas"})``.
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


def save_trial(trial: Trial, folder) -> list[Path]:
    """Write a trial as ``sessions.csv``, ``participants.csv`` (and ``truth.csv``) in ``folder``.

    The files use the contract's column order, sorted rows and the fixed float format of
    :func:`helpers.table_io.write_table`, so :func:`load_trial` on ``folder`` gives the trial
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
    n = len(trial.participants)
    out = [
        write_processed(trial.sessions, folder, "sessions", n_participants=n, columns=SESSION_COLUMNS),
        write_processed(trial.participants, folder, "participants", n_participants=n, columns=PARTICIPANT_COLUMNS),
    ]
    if trial.truth is not None:
        out.append(write_processed(trial.truth, folder, "truth", n_participants=n, columns=TRUTH_COLUMNS))
    else:
        # A truth table left by an earlier simulated run would label real data as simulated.
        remove_processed(folder, "truth")
    return out
