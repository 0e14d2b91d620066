"""Rupture-repair episodes of the therapeutic alliance (McLaughlin et al., 2014).

:func:`detect_episodes` finds every rupture -- a drop in alliance between consecutive observed
sessions of at least a threshold, chosen by a named criterion (:data:`CRITERIA`: absolute, SD,
reliable change, sudden change) -- and its repair; :func:`classify_participants` turns the
episodes into one pattern per client (no rupture, repaired, unrepaired, insufficient data);
:func:`detect_by_preset` does both under every preset (:func:`presets`).

Each rule has one implementation, on arrays of stacked trials (rows ``starts[g]:starts[g + 1]``
of a participants x sessions matrix are trial ``g``; a trial-level quantity -- the RCI's SD,
the between-client SD -- is computed per trial): :func:`find_ruptures` (criteria, repairs) and
:func:`pattern_codes` (the classification). The table functions are wrappers with one trial;
:func:`detect_grouped` runs many trials at once (the batched power study).

A criterion is one function registered with :func:`criterion`: from the matrix it returns
the rupture threshold of every row (:class:`Thresholds`). The rules and why ``"rci"`` is the
default are in ``docs/rupture_criteria.md``.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers.contract import INSUFFICIENT, DataValidationError
from helpers.instruments import CALPAS
from helpers.sudden import SUDDEN_DEFAULTS, SUDDEN_KEYS, changes_in_matrix, rci_threshold, row_stats

__all__ = [
    "DEFAULT_CRITERION",
    "CRITERIA",
    "SD_SCALES",
    "EPISODE_COLUMNS",
    "PATTERN_COLUMNS",
    "PATTERN_CODES",
    "REPAIR_PARAMETERS",
    "Criterion",
    "Thresholds",
    "Ruptures",
    "criterion",
    "criterion_arguments",
    "criterion_parameters",
    "needs_reliability",
    "threshold_summary",
    "find_ruptures",
    "pattern_codes",
    "detect_episodes",
    "classify_participants",
    "presets",
    "detect_by_preset",
    "detect_grouped",
]

#: The rupture criterion used unless the user names another (see the module docstring).
DEFAULT_CRITERION = "rci"
#: Which SD the ``"sd"`` criterion uses.
SD_SCALES = ("within", "between", "stricter")
#: Reliability of the CALPAS total (Gaston, 1991): the default of the RCI criterion.
CALPAS_RELIABILITY = CALPAS.reliability
#: Run parameters (``params/default.yaml``) of the repair rule, read under every criterion.
REPAIR_PARAMETERS = ("repair_window", "tolerance")
#: Columns of the episode table, in their fixed order.
EPISODE_COLUMNS = [
    "participant_id",
    "pre_session",
    "rupture_session",
    "pre_score",
    "rupture_score",
    "drop",
    "threshold",
    "repaired",
    "repair_session",
    "sessions_to_repair",
    "censored",
    "criterion",
    "params",
]

#: Columns of the per-participant pattern table, in their fixed order.
PATTERN_COLUMNS = [
    "participant_id",
    "n_sessions_observed",
    "n_ruptures",
    "n_repaired",
    "n_unrepaired",
    "first_rupture_session",
    "pattern",
    "criterion",
    "unrepaired_censored",
]
#: Patterns as :func:`pattern_codes` numbers them: the index in this tuple.
PATTERN_CODES = ("no_rupture", "repaired", "unrepaired", INSUFFICIENT)
#: Slack for floating-point rounding in the episode comparisons (drop >= threshold, repair).
_EPS = 1e-9


# --------------------------------------------------------------------------------------------
# Long -> wide
# --------------------------------------------------------------------------------------------
def _participant_codes(ids):
    """Integer code per row and the unique ids (code -1 = missing id).

    Tables are usually grouped by participant (the contract writes them sorted); then the
    runs of equal ids give the codes at a fraction of the cost of hashing every row.
    """
    arr = ids.to_numpy()
    if arr.size:
        brk = arr[1:] != arr[:-1]
        starts = np.concatenate(([0], np.flatnonzero(brk) + 1))
        # Worth checking only when rows come in runs (>= 2 rows per run on average).
        if 2 * starts.size <= arr.size:
            run_ids = pd.Index(arr[starts])
            if run_ids.is_unique and not run_ids.hasnans:
                lengths = np.diff(np.append(starts, arr.size))
                return np.repeat(np.arange(starts.size, dtype=np.int64), lengths), run_ids
    codes, uniques = pd.factorize(ids)
    return codes.astype(np.int64), pd.Index(uniques)


def _session_codes(s_int):
    """Codes 0..T-1 of whole-number session labels and the sorted labels."""
    if s_int.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    lo, hi = int(s_int.min()), int(s_int.max())
    if hi - lo < 100_000:
        present = np.bincount(s_int - lo, minlength=hi - lo + 1) > 0
        rank = np.cumsum(present) - 1
        return rank[s_int - lo], np.flatnonzero(present) + lo
    codes, uniques = pd.factorize(s_int, sort=True)
    return codes, np.asarray(uniques)


def _to_wide(sessions, id_col, session_col, score_col):
    """Validate the long table and return (ids, session labels, X participants x sessions)."""
    if not isinstance(sessions, pd.DataFrame):
        raise TypeError("sessions must be a DataFrame in the long format of the data contract")
    for col in (id_col, session_col, score_col):
        if col not in sessions.columns:
            raise DataValidationError("sessions", col, "required column is missing")
    ids = sessions[id_col]
    sess = sessions[session_col]
    score = sessions[score_col]
    if not pd.api.types.is_numeric_dtype(sess) or pd.api.types.is_bool_dtype(sess):
        raise DataValidationError("sessions", session_col, "session must be an integer number")
    s_val = sess.to_numpy(dtype=np.float64, na_value=np.nan)
    bad_s = ~np.isfinite(s_val) | (s_val != np.round(s_val))
    if bad_s.any():
        bad = sessions.loc[bad_s]
        raise DataValidationError("sessions", session_col,
                                  "session must be a whole number, not missing", bad.head(),
                                  n_bad=int(bad_s.sum()))
    if not pd.api.types.is_numeric_dtype(score) or pd.api.types.is_bool_dtype(score):
        raise DataValidationError("sessions", score_col, "scores must be numeric (NaN = missing)")
    pcode, puniq = _participant_codes(ids)
    if pcode.size and pcode.min() < 0:
        bad = sessions.loc[pcode < 0]
        raise DataValidationError("sessions", id_col, "participant id must not be missing",
                                  bad.head(), n_bad=len(bad))
    # Sort participants (pivot order) without sorting 10^7 rows: sort the uniques, remap codes.
    if not puniq.is_monotonic_increasing:
        porder = np.argsort(np.asarray(puniq), kind="stable")
        prank = np.empty_like(porder)
        prank[porder] = np.arange(porder.size)
        pcode = prank[pcode]
        puniq = puniq.take(porder)
    s_int = s_val.astype(np.int64)
    scode, suniq = _session_codes(s_int)
    n, T = puniq.size, suniq.size
    flat = pcode.astype(np.int64) * T + scode
    counts = np.bincount(flat, minlength=n * T)
    if counts.size and counts.max() > 1:
        dup_mask = counts[flat] > 1
        bad = sessions.loc[dup_mask]
        raise DataValidationError("sessions", f"{id_col} x {session_col}",
                                  "each participant x session must appear once", bad.head(),
                                  n_bad=int(dup_mask.sum()))
    X = np.full(n * T, np.nan)
    X[flat] = score.to_numpy(dtype=np.float64, na_value=np.nan)
    return puniq, np.asarray(suniq, dtype=np.int64), X.reshape(n, T)


# --------------------------------------------------------------------------------------------
# Episodes


# --------------------------------------------------------------------------------------------
# Criteria: one function each, registered by name
# --------------------------------------------------------------------------------------------
@dataclass
class Thresholds:
    """What a criterion decided on stacked trials (trial ``g`` = rows ``starts[g]:starts[g + 1]``).

    Attributes
    ----------
    per_row : ndarray
        The rupture threshold of each row, in the alliance instrument's points (NaN: no
        rupture can be found in that row).
    params : list of dict
        Per trial, the parameters applied, as the episode table records them.
    messages : list of list of str
        Per trial, what the criterion says about the data (:func:`detect_episodes` warns them).
    errors : dict
        Trial -> the exception :func:`detect_episodes` raises on that trial alone (its rows'
        thresholds are NaN).
    sd : ndarray or None
        Per row, the SD the threshold is a multiple of (None: no SD).
    sd_source : str
        Where that SD comes from.
    per_client : bool
        Whether the threshold may differ between the clients of a trial.
    """

    per_row: np.ndarray
    params: list
    messages: list
    errors: dict = field(default_factory=dict)
    sd: np.ndarray | None = None
    sd_source: str = ""
    per_client: bool = False


@dataclass(frozen=True)
class Criterion:
    """A registered rupture criterion (:data:`CRITERIA`).

    Attributes
    ----------
    name : str
    thresholds : callable
        ``thresholds(X, starts, drops, **arguments, **options) -> Thresholds``; ``drops`` is
        :func:`consecutive_drops` of ``X``.
    parameters : dict
        Keyword of :func:`detect_episodes` -> the run parameter (``params/default.yaml``) it
        comes from.
    options : tuple of str
        Further keywords only this criterion takes (they have no run parameter).
    find : callable or None
        ``find(X, per_row_threshold, drops, **options) -> (row, pre column, column)`` of every
        rupture; None: a drop between consecutive observed sessions of at least the threshold.
    """

    name: str
    thresholds: Callable
    parameters: dict
    options: tuple = ()
    find: Callable | None = None


#: Every rupture criterion :func:`detect_episodes` knows: name -> :class:`Criterion`.
CRITERIA: dict = {}

#: The check of each keyword a criterion may take: (holds, message with ``{}`` for the value).
ARGUMENT_CHECKS = {
    "cutoff": (lambda v: np.isfinite(v) and v > 0, "cutoff must be a positive number of scale points, got {}"),
    "k": (lambda v: np.isfinite(v) and v > 0, "k must be positive, got {}"),
    "scale": (lambda v: v in SD_SCALES, "unknown scale {!r}; choose one of " + str(list(SD_SCALES))),
    "reliability": (lambda v: 0.0 < v < 1.0, "reliability must lie strictly between 0 and 1, got {}"),
    "sd": (lambda v: v is None or (np.isfinite(v) and v > 0), "sd must be a positive number or None, got {}"),
}


def criterion(name, *, parameters, options=(), find=None):
    """Register the decorated thresholds function as the rupture criterion ``name``.

    Adding a criterion is this decorator on one function (plus its test): ``parameters``
    maps each keyword of :func:`detect_episodes` it reads to its run parameter (checked by
    :data:`ARGUMENT_CHECKS`); see :class:`Criterion` for ``options`` and ``find``.
    """
    def register(thresholds):
        CRITERIA[name] = Criterion(name, thresholds, dict(parameters), tuple(options), find)
        return thresholds
    return register


def _trials(starts):
    """``(g, first row, end row)`` of every stacked trial."""
    return [(g, int(starts[g]), int(starts[g + 1])) for g in range(starts.size - 1)]


def _no_messages(starts):
    return [[] for _ in range(starts.size - 1)]


def consecutive_drops(X):
    """Drop from the previous observed session to each session (NaN where there is none), and
    the column of that previous session (-1: none)."""
    n, T = X.shape
    obs = ~np.isnan(X)
    idx = np.where(obs, np.arange(T), -1)
    last = np.maximum.accumulate(idx, axis=1)
    prev = np.full((n, T), -1, dtype=np.int64)
    prev[:, 1:] = last[:, :-1]
    has = obs & (prev >= 0)
    prev_val = np.take_along_axis(X, np.maximum(prev, 0), axis=1)
    D = np.where(has, prev_val - X, np.nan)
    return D, prev


def _row_sd(X):
    """SD (ddof=1) of each row ignoring NaN; NaN with fewer than 2 values."""
    cnt, _, var = row_stats(X)
    with np.errstate(invalid="ignore"):
        return np.where(cnt >= 2, np.sqrt(var), np.nan)


def _first_observed(X):
    if X.size == 0:
        return np.empty(0)
    obs = ~np.isnan(X)
    anyobs = obs.any(axis=1)
    first = obs.argmax(axis=1)
    return X[np.flatnonzero(anyobs), first[anyobs]]


def _rci_from_data(X, reliability, sd):
    """RCI of one trial, the SD used and its source; ValueError when the SD is undefined."""
    if sd is None:
        first = _first_observed(X)
        if first.size < 2:
            raise ValueError("the RCI needs the SD of the first observed scores, but fewer than "
                             "2 participants have an observed score; pass sd=")
        sd_used = float(np.std(first, ddof=1))
        source = "first_observed"
        if not sd_used > 0:
            raise ValueError("the SD of the first observed scores is 0; pass sd=")
    else:
        sd_used, source = float(sd), "given"
    return rci_threshold(sd_used, reliability), sd_used, source


@criterion("absolute", parameters={"cutoff": "cutoff"})
def _absolute(X, starts, drops, *, cutoff):
    """A drop of at least ``cutoff`` points of the alliance instrument."""
    params = [{"cutoff": cutoff} for _ in range(starts.size - 1)]
    return Thresholds(np.full(X.shape[0], float(cutoff)), params, _no_messages(starts))


@criterion("sd", parameters={"k": "k", "scale": "sd_scale"})
def _sd(X, starts, drops, *, k, scale):
    """A drop of at least ``k`` SDs: the client's own SD of alliance (``"within"``), the SD of
    every session-to-session change in the trial (``"between"``) or the larger (``"stricter"``,
    Gumz et al., 2012; NaN if either is undefined)."""
    within = _row_sd(X)
    between = np.empty(X.shape[0])
    params, messages = [], _no_messages(starts)
    for g, a, b in _trials(starts):
        trial = drops[0][a:b]
        changes = trial[~np.isnan(trial)]
        between[a:b] = sd_g = float(np.std(changes, ddof=1)) if changes.size >= 2 else np.nan
        params.append({"k": k, "scale": scale})
        if scale in ("between", "stricter"):
            params[g]["between_sd"] = sd_g
            if not np.isfinite(sd_g):
                messages[g].append("fewer than 2 session-to-session changes in the sample: "
                                   "the between-client SD is undefined, no rupture detected")
    sd = {"within": within, "between": between, "stricter": np.maximum(within, between)}[scale]
    source = {"within": "the client's own SD of alliance",
              "between": "the SD of every session-to-session change in the sample",
              "stricter": "the larger of the client's own SD and the between-client SD"}[scale]
    return Thresholds(k * sd, params, messages, sd=sd, sd_source=source, per_client=scale != "between")


@criterion("rci", parameters={"reliability": "reliability", "sd": "rci_sd"})
def _rci(X, starts, drops, *, reliability, sd):
    """A drop of at least the reliable change index 1.96 SD sqrt(2 (1 - reliability)), SD the
    trial's SD of first observed scores unless ``sd`` is given (Jacobson & Truax, 1991)."""
    thr, sds = np.full(X.shape[0], np.nan), np.full(X.shape[0], np.nan)
    params, errors = [], {}
    for g, a, b in _trials(starts):
        try:
            rci, sd_used, source = _rci_from_data(X[a:b], reliability, sd)
        except ValueError as exc:
            params.append({})
            errors[g] = exc
            continue
        thr[a:b], sds[a:b] = rci, sd_used
        params.append({"reliability": reliability, "sd": sd_used, "sd_source": source, "rci": rci})
    return Thresholds(thr, params, _no_messages(starts), errors, sd=sds,
                      sd_source="first_observed" if sd is None else "given")


def _sudden_ruptures(X, per_row, drops, **options):
    """Sudden decreases of alliance (:func:`helpers.sudden.changes_in_matrix`), criterion 1's
    cutoff being the row's threshold."""
    res = changes_in_matrix(X, sign=1, cutoff=per_row, **{**SUDDEN_DEFAULTS, **options})
    return res["row"], res["col"], res["col"] + 1


@criterion("sudden", parameters={"reliability": "reliability", "sd": "rci_sd"}, options=SUDDEN_KEYS,
           find=_sudden_ruptures)
def _sudden(X, starts, drops, *, reliability, sd, **options):
    """Tang & DeRubeis' (1999) sudden-change criteria on alliance decreases as suddengains
    applies them (only adjacent sessions both observed), criterion 1's cutoff the RCI."""
    th = _rci(X, starts, drops, reliability=reliability, sd=sd)
    opts = {**SUDDEN_DEFAULTS, **options}
    th.params = [{**p, **opts} if p else p for p in th.params]
    T = X.shape[1]
    if T < 4:
        th.messages = [[f"criterion='sudden' needs at least 4 sessions; the data have {T}, so no rupture "
                        "can be detected"] for _ in th.messages]
    return th


def _above_threshold(X, per_row, drops):
    """Ruptures where the drop between consecutive observed sessions is >= the row's threshold."""
    D, prev = drops
    with np.errstate(invalid="ignore"):
        is_rup = (D > 0) & (D >= per_row[:, None] - _EPS)
    r, j = np.nonzero(is_rup)
    return r, prev[r, j], j


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------
def _criterion(name) -> Criterion:
    if name not in CRITERIA:
        raise ValueError(f"unknown criterion {name!r}; choose one of {list(CRITERIA)}")
    return CRITERIA[name]


def _check_repair_rule(repair_window, tolerance):
    if repair_window is not None:
        if isinstance(repair_window, bool) or not float(repair_window).is_integer() \
                or repair_window < 1:
            raise ValueError(f"repair_window must be a positive whole number of sessions or "
                             f"None, got {repair_window}")
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")


def _check_min_sessions(min_sessions):
    if isinstance(min_sessions, bool) or not float(min_sessions).is_integer() or min_sessions < 0:
        raise ValueError(f"min_sessions must be a non-negative whole number, got {min_sessions}")


def _check_options(spec, options):
    known = {key: c.name for c in CRITERIA.values() for key in c.options}
    unknown = set(options) - set(known)
    if unknown:
        takes = "; ".join(f"the {c.name} criterion takes {list(c.options)}" for c in CRITERIA.values() if c.options)
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}; {takes}")
    foreign = [key for key in options if key not in spec.options]
    if foreign:
        owner = known[foreign[0]]
        raise ValueError(f"{sorted(options)} only apply to criterion={owner!r}")


def _arguments(name, given: dict, options: dict, repair_window, tolerance):
    """The keywords criterion ``name`` reads from ``given`` (detect_episodes' keywords),
    checked in the order the criterion lists them, then the repair rule and ``options``."""
    spec = _criterion(name)
    arguments = {key: given[key] for key in spec.parameters}
    for key, value in arguments.items():
        holds, message = ARGUMENT_CHECKS[key]
        if not holds(value):
            raise ValueError(message.format(value))
    _check_repair_rule(repair_window, tolerance)
    _check_options(spec, options)
    return arguments


def _split_preset(preset: dict):
    """A preset (keywords of :func:`detect_episodes`) as (criterion, the keywords a criterion
    may read, with detect_episodes' defaults, its options)."""
    given = {**_KEYWORD_DEFAULTS, **preset}
    name = given.pop("criterion")
    base = {key: given.pop(key) for key in ARGUMENT_CHECKS}
    return name, base, given


def criterion_arguments(params: dict) -> dict:
    """Keyword arguments of :func:`detect_episodes` from run parameters.

    ``params`` uses the names of ``params/default.yaml`` (criterion, cutoff, k, sd_scale,
    reliability, rci_sd, repair_window, tolerance). Only the ones the criterion uses (its
    :func:`criterion_parameters`) and the repair rule are passed, so the episode table records
    exactly what was applied.

    Raises
    ------
    ValueError
        Unknown criterion, or a parameter the criterion needs is None (e.g. the reliability of
        an alliance instrument that declares none).
    KeyError
        A parameter the criterion needs is absent.

    Examples
    --------
    >>> criterion_arguments({"criterion": "sd", "k": 1.0, "sd_scale": "within", "cutoff": 1.0})
    {'criterion': 'sd', 'repair_window': None, 'tolerance': 0.0, 'k': 1.0, 'scale': 'within'}
    """
    name = params.get("criterion", DEFAULT_CRITERION)
    spec = _criterion(name)
    kw = {"criterion": name, "repair_window": params.get("repair_window"),
          "tolerance": params.get("tolerance", 0.0)}
    for key, run_name in spec.parameters.items():
        optional = _KEYWORD_DEFAULTS[key] is None
        kw[key] = params.get(run_name) if optional else params[run_name]
        if kw[key] is None and not optional:
            raise ValueError(f"criterion {name!r} needs {run_name!r}, got None")
    return kw


def criterion_parameters(name) -> tuple:
    """The run parameters (``params/default.yaml`` names) criterion ``name`` reads, besides
    the repair rule (:data:`REPAIR_PARAMETERS`).

    >>> criterion_parameters("rci")
    ('reliability', 'rci_sd')
    """
    return tuple(_criterion(name).parameters.values())


def needs_reliability(name) -> bool:
    """Whether criterion ``name`` needs the reliability of the alliance instrument.

    >>> needs_reliability("rci"), needs_reliability("sd")
    (True, False)
    """
    return "reliability" in _criterion(name).parameters


# --------------------------------------------------------------------------------------------
# The rules, on stacked trials
# --------------------------------------------------------------------------------------------
@dataclass
class Ruptures:
    """Every rupture of stacked trials under one criterion (:func:`find_ruptures`).

    Attributes
    ----------
    row, pre_col, col : ndarray of int
        Participant row, column of the last observed session before the drop, column of the
        rupture session; sorted by row, then column.
    threshold : ndarray of float
        The threshold that applied to each rupture.
    repair_col : ndarray of int
        Column of the repair session (-1: not repaired).
    seen : ndarray of bool
        Whether any session after the rupture was observed inside the repair window.
    thresholds : Thresholds
        The criterion's decision (thresholds, parameters, messages and errors per trial).
    """

    row: np.ndarray
    pre_col: np.ndarray
    col: np.ndarray
    threshold: np.ndarray
    repair_col: np.ndarray
    seen: np.ndarray
    thresholds: Thresholds


def _repairs(X, labels, r, j, pre, repair_window, tolerance):
    """First later observed column within the window back at >= pre - tolerance (or -1)."""
    n, T = X.shape
    repair = np.full(r.size, -1, dtype=np.int64)
    seen = np.zeros(r.size, dtype=bool)
    need = pre - tolerance - _EPS
    for off in range(1, T):
        m = j + off
        active = (m < T) & (repair < 0)
        mm = np.minimum(m, T - 1)
        if repair_window is not None:
            active &= (labels[mm] - labels[j]) <= repair_window
        if not active.any():
            break
        val = X[r, mm]
        obs = active & ~np.isnan(val)
        seen |= obs
        hit = obs & (val >= need)
        repair[hit] = mm[hit]
    return repair, seen


def find_ruptures(X, labels, starts, criterion, arguments, options=None, *, repair_window=None,
                  tolerance=0.0, drops=None) -> Ruptures:
    """Ruptures and repairs of stacked trials under one criterion: the detection's rules.

    Parameters
    ----------
    X : ndarray, shape (n, T)
        Alliance, participants x sessions (NaN = missing); trial ``g`` is rows
        ``starts[g]:starts[g + 1]``.
    labels : ndarray of int, shape (T,)
        Session numbers of the columns (the repair window counts in them).
    starts : ndarray of int
        First row of every trial, then ``n``.
    criterion : str
        A key of :data:`CRITERIA`.
    arguments, options : dict
        The criterion's keywords (checked already: :func:`detect_episodes` checks them).
    repair_window, tolerance
        The repair rule, as in :func:`detect_episodes`.
    drops : tuple, optional
        :func:`consecutive_drops` of ``X`` when already computed.

    Returns
    -------
    Ruptures
    """
    spec = CRITERIA[criterion]
    options = options or {}
    drops = consecutive_drops(X) if drops is None else drops
    th = spec.thresholds(X, starts, drops, **arguments, **options)
    r, jpre, j = (spec.find or _above_threshold)(X, th.per_row, drops, **options)
    repair_col, seen = _repairs(X, labels, r, j, X[r, jpre], repair_window, tolerance)
    return Ruptures(r, jpre, j, th.per_row[r], repair_col, seen, th)


def pattern_codes(n_observed, n_ruptures, n_repaired, min_sessions):
    """The alliance pattern of each participant, as an index into :data:`PATTERN_CODES`.

    ``insufficient_data`` with fewer than ``min_sessions`` observed alliance scores; else
    ``unrepaired`` when any rupture was not repaired (censored ones included), ``repaired``
    when there was at least one rupture and all were repaired, ``no_rupture`` otherwise.

    >>> [PATTERN_CODES[c] for c in pattern_codes([6, 6, 6, 3], [0, 2, 2, 0], [0, 2, 1, 0], 6)]
    ['no_rupture', 'repaired', 'unrepaired', 'insufficient_data']
    """
    n_observed, n_ruptures, n_repaired = (np.asarray(v) for v in (n_observed, n_ruptures, n_repaired))
    return np.select([n_observed < min_sessions, n_ruptures - n_repaired > 0, n_ruptures > 0],
                     [3, 2, 1], 0)


# --------------------------------------------------------------------------------------------
# Tables: one trial
# --------------------------------------------------------------------------------------------
def _fmt(x):
    if x is None:
        return "None"
    if isinstance(x, bool | np.bool_):
        return str(bool(x))
    if isinstance(x, int | np.integer):
        return str(int(x))
    if isinstance(x, float | np.floating):
        return format(float(x), ".6g")
    return str(x)


def _empty_like_episodes(id_dtype):
    return pd.DataFrame({
        "participant_id": pd.Series([], dtype=id_dtype),
        "pre_session": pd.Series([], dtype=np.int64),
        "rupture_session": pd.Series([], dtype=np.int64),
        "pre_score": pd.Series([], dtype=np.float64),
        "rupture_score": pd.Series([], dtype=np.float64),
        "drop": pd.Series([], dtype=np.float64),
        "threshold": pd.Series([], dtype=np.float64),
        "repaired": pd.Series([], dtype=bool),
        "repair_session": pd.Series([], dtype="Int64"),
        "sessions_to_repair": pd.Series([], dtype="Int64"),
        "censored": pd.Series([], dtype=bool),
        "criterion": pd.Series([], dtype="str"),
        "params": pd.Series([], dtype="str"),
    })


def _one_trial(X) -> np.ndarray:
    return np.array([0, X.shape[0]], dtype=np.int64)


def detect_episodes(
    sessions,
    *,
    criterion=DEFAULT_CRITERION,
    cutoff=1.0,
    k=2.0,
    scale="stricter",
    reliability=CALPAS_RELIABILITY,
    sd=None,
    repair_window=None,
    tolerance=0.0,
    id_col="participant_id",
    session_col="session",
    score_col="alliance",
    **sudden_kwargs,
):
    """Rupture-repair episodes: one row per rupture (a drop in alliance) and its repair.

    Parameters
    ----------
    sessions : DataFrame
        Long format, one row per participant x session (the data contract's ``sessions``).
        Missing scores are allowed; each participant x session may appear once.
    criterion : {"rci", "absolute", "sd", "sudden"}, default "rci"
        What drop is a rupture (:data:`CRITERIA`; see the module docstring for why ``"rci"``
        is the default):

        * ``"absolute"``: drop >= ``cutoff`` scale points;
        * ``"sd"``: drop >= ``k`` x SD, ``scale`` = ``"within"`` (the participant's own SD of
          alliance over observed sessions), ``"between"`` (SD of all session-to-session
          changes between consecutive observed sessions in the sample) or ``"stricter"``
          (the larger of the two; Gumz et al., 2012); k = 1 (Strauss et al., 2006) or 2
          (Stiles et al., 2004);
        * ``"rci"``: drop >= 1.96 x SD x sqrt(2 (1 - ``reliability``));
        * ``"sudden"``: the sudden-change criteria of :func:`sudden_changes` applied to
          alliance decreases, criterion 1's cutoff being the RCI above; ``pct``, ``crit3``,
          ``crit3_adjust``, ``crit3_alpha`` and ``crit3_critical_value`` may be passed as
          keywords (defaults .25, True, True, .05, 2.776).
    cutoff : float, default 1.0
        ``"absolute"`` only: drop in scale points.
    k : float, default 2.0
        ``"sd"`` only: multiples of the SD.
    scale : {"within", "between", "stricter"}, default "stricter"
        ``"sd"`` only.
    reliability : float, default 0.83
        ``"rci"`` and ``"sudden"``: reliability of the alliance measure (CALPAS total,
        Gaston, 1991 -- check it against your own sample).
    sd : float, optional
        ``"rci"`` and ``"sudden"``: SD in the RCI; default the sample SD (ddof = 1) of every
        participant's first observed score.
    repair_window : int, optional
        A repair must come at most this many sessions after the rupture session; ``None`` =
        until the end of treatment.
    tolerance : float, default 0
        A repair brings alliance back to at least ``pre_score - tolerance``.
    id_col, session_col, score_col : str
        Column names in ``sessions``.

    Returns
    -------
    DataFrame
        :data:`EPISODE_COLUMNS`, one row per rupture sorted by participant and session:
        ``participant_id``, ``pre_session`` (last observed session before the drop),
        ``rupture_session``, ``pre_score``, ``rupture_score``, ``drop`` (pre - rupture),
        ``threshold`` (the rupture threshold that applied), ``repaired``, ``repair_session``
        and ``sessions_to_repair`` (nullable Int64, missing when not repaired), ``censored``
        (no observed session after the rupture inside the repair window), ``criterion`` and
        ``params`` (every parameter of the run as ``name=value;...``). An empty result has
        the same columns and dtypes. ``.attrs`` holds ``criterion``, ``params`` (a dict) and
        ``warnings`` (a list of the messages also emitted with :func:`warnings.warn`).

    Raises
    ------
    ValueError
        Unknown criterion or scale, non-positive cutoff/k/sd, reliability outside (0, 1).
    DataValidationError
        Missing columns, non-numeric scores or sessions, duplicate participant x session.

    Notes
    -----
    Rules: a drop is measured between consecutive *observed* sessions; consecutive drops are
    separate ruptures; a drop must be > 0 and >= threshold (1e-9 slack for rounding); repair =
    the first later observed session within the window with alliance >= pre_score -
    tolerance; a rupture that cannot be followed (no observed session after it within the
    window) counts as not repaired and is flagged ``censored``. The rules themselves are
    :func:`find_ruptures`, on this one trial.

    Examples
    --------
    >>> import pandas as pd
    >>> s = pd.DataFrame({"participant_id": "a", "session": range(1, 7),
    ...                   "alliance": [6.0, 6.0, 4.5, 5.0, 6.0, 6.0]})
    >>> e = detect_episodes(s, criterion="absolute", cutoff=1.0)
    >>> e[["rupture_session", "drop", "repaired", "repair_session"]]
       rupture_session  drop  repaired  repair_session
    0                3   1.5      True               5
    """
    given = dict(cutoff=cutoff, k=k, scale=scale, reliability=reliability, sd=sd)
    return _episode_table(sessions, criterion, given, sudden_kwargs, repair_window, tolerance,
                          (id_col, session_col, score_col), warn=True, stacklevel=3)


def _episode_table(sessions, criterion, given, options, repair_window, tolerance, columns, *, warn,
                   stacklevel):
    """:func:`detect_episodes`; its messages warned (``warn``, attributed ``stacklevel`` frames
    up) or only kept in ``.attrs``."""
    arguments = _arguments(criterion, given, options, repair_window, tolerance)
    ids, labels, X = _to_wide(sessions, *columns)
    rup = find_ruptures(X, labels, _one_trial(X), criterion, arguments, options,
                        repair_window=repair_window, tolerance=tolerance)
    if 0 in rup.thresholds.errors:
        raise rup.thresholds.errors[0]
    params = {**rup.thresholds.params[0], "repair_window": repair_window, "tolerance": tolerance}
    messages = rup.thresholds.messages[0]
    for msg in messages if warn else ():
        warnings.warn(msg, stacklevel=stacklevel)
    out = _episode_frame(rup, ids, labels, X, sessions[columns[0]].dtype, criterion, params)
    out.attrs = {"criterion": criterion, "params": params, "warnings": messages}
    return out


def _episode_frame(rup, ids, labels, X, id_dtype, criterion, params):
    r, jpre, j = rup.row, rup.pre_col, rup.col
    if r.size == 0:
        return _empty_like_episodes(id_dtype)
    pre, post = X[r, jpre], X[r, j]
    repaired = rup.repair_col >= 0
    rep_sess = pd.array(np.where(repaired, labels[np.maximum(rup.repair_col, 0)], 0), dtype="Int64")
    rep_sess[~repaired] = pd.NA
    params_str = ";".join(f"{key}={_fmt(val)}" for key, val in params.items())
    return pd.DataFrame({
        "participant_id": pd.Series(ids.take(r), dtype=id_dtype),
        "pre_session": labels[jpre],
        "rupture_session": labels[j],
        "pre_score": pre,
        "rupture_score": post,
        "drop": pre - post,
        "threshold": rup.threshold,
        "repaired": repaired,
        "repair_session": rep_sess,
        "sessions_to_repair": rep_sess - pd.array(labels[j], dtype="Int64"),
        "censored": ~repaired & ~rup.seen,
        "criterion": pd.array([criterion] * r.size, dtype="str"),
        "params": pd.array([params_str] * r.size, dtype="str"),
    })


#: detect_episodes' defaults of the criterion and of the keywords a criterion may read.
_KEYWORD_DEFAULTS = {name: p.default for name, p in inspect.signature(detect_episodes).parameters.items()
                     if name == "criterion" or name in ARGUMENT_CHECKS}


def threshold_summary(sessions, *, criterion=DEFAULT_CRITERION, repair_window=None, tolerance=0.0,
                      id_col="participant_id", session_col="session", score_col="alliance",
                      **arguments) -> dict:
    """The rupture threshold the detection applies to ``sessions``, in the alliance
    instrument's points, for a report ("threshold 0.43 points").

    Takes the keywords of :func:`detect_episodes` (e.g. :func:`criterion_arguments` of the
    run's parameters) and checks them as it does.

    Returns
    -------
    dict
        ``criterion``; ``per_client`` (False: one threshold for the trial -- absolute, rci,
        sudden, sd with the between-client SD; True: the client's own SD enters);
        ``threshold`` (the fixed value, or the median over clients), ``min``, ``max`` and
        ``n_clients`` (clients with a defined threshold); ``sd`` (the SD the threshold is a
        multiple of -- the median over clients when per client -- or None) and
        ``sd_source``; ``params`` (what the episode table records, without the repair rule).

    Raises
    ------
    As :func:`detect_episodes` (e.g. ValueError when the RCI's SD is undefined).

    Examples
    --------
    >>> s = pd.DataFrame({"participant_id": list("aabb"), "session": [1, 2, 1, 2],
    ...                   "alliance": [5.0, 4.0, 6.0, 6.0]})
    >>> t = threshold_summary(s, criterion="rci", reliability=0.83)
    >>> round(t["threshold"], 4), t["per_client"], round(t["sd"], 4), t["sd_source"]
    (0.8081, False, 0.7071, 'first_observed')
    """
    given = {**{key: _KEYWORD_DEFAULTS[key] for key in ARGUMENT_CHECKS},
             **{key: arguments.pop(key) for key in list(arguments) if key in ARGUMENT_CHECKS}}
    checked = _arguments(criterion, given, arguments, repair_window, tolerance)
    _, _, X = _to_wide(sessions, id_col, session_col, score_col)
    th = CRITERIA[criterion].thresholds(X, _one_trial(X), consecutive_drops(X), **checked, **arguments)
    if 0 in th.errors:
        raise th.errors[0]
    defined = np.isfinite(th.per_row)
    thr = th.per_row[defined]
    sd = None if th.sd is None else th.sd[defined]
    return {"criterion": criterion, "per_client": th.per_client,
            "threshold": float(np.median(thr)) if thr.size else np.nan,
            "min": float(thr.min()) if thr.size else np.nan, "max": float(thr.max()) if thr.size else np.nan,
            "n_clients": int(thr.size),
            "sd": None if sd is None else (float(np.median(sd)) if sd.size else np.nan),
            "sd_source": th.sd_source, "params": th.params[0]}


def classify_participants(
    episodes,
    sessions,
    *,
    min_sessions=6,
    score_col="alliance",
    id_col="participant_id",
    session_col="session",
):
    """Alliance pattern per participant: no_rupture, repaired, unrepaired, insufficient_data,
    and whether an unrepaired pattern rests on censored ruptures only.

    Parameters
    ----------
    episodes : DataFrame
        Output of :func:`detect_episodes` on ``sessions``.
    sessions : DataFrame
        The long table the episodes came from; every participant in it gets a row.
    min_sessions : int, default 6
        Participants with fewer observed alliance scores are ``insufficient_data``.
    score_col : str, default "alliance"
        Alliance column in ``sessions`` (as in :func:`detect_episodes`).
    id_col, session_col : str

    Returns
    -------
    DataFrame
        :data:`PATTERN_COLUMNS`, sorted by participant: ``n_sessions_observed`` (observed
        alliance scores), ``n_ruptures``, ``n_repaired``, ``n_unrepaired``,
        ``first_rupture_session`` (nullable Int64), ``pattern``, ``criterion`` and
        ``unrepaired_censored``: True for an ``unrepaired`` client every one of whose
        unrepaired ruptures is censored (no observed rating after it inside the repair
        window), so that a repair could not have been seen.

    Notes
    -----
    The rule is :func:`pattern_codes`: ``insufficient_data`` when fewer than
    ``min_sessions`` alliance scores are observed (counts are still reported); else
    ``unrepaired`` when any rupture was not repaired (censored ruptures included, as the
    paper would class them), ``repaired`` when there was at least one rupture and all were
    repaired, ``no_rupture`` otherwise. ``unrepaired_censored`` marks the unrepaired clients
    whose pattern is an assumption rather than an observation (the censoring rule and why
    one later rating is enough to see a repair: ``docs/rupture_criteria.md``); the pattern
    itself is not changed, so the paper's classification stays the default.

    Examples
    --------
    >>> import pandas as pd
    >>> s = pd.DataFrame({"participant_id": "a", "session": range(1, 7),
    ...                   "alliance": [6.0, 6.0, 4.5, 5.0, 6.0, 6.0]})
    >>> e = detect_episodes(s, criterion="absolute", cutoff=1.0)
    >>> classify_participants(e, s)[["participant_id", "n_ruptures", "pattern"]]
      participant_id  n_ruptures   pattern
    0              a           1  repaired
    """
    _check_min_sessions(min_sessions)
    for col in (id_col, session_col, score_col):
        if col not in sessions.columns:
            raise DataValidationError("sessions", col, "required column is missing")
    needed = ["participant_id", "rupture_session", "repaired", "censored", "criterion"]
    missing = [c for c in needed if c not in episodes.columns]
    if missing:
        raise ValueError(f"episodes lacks columns {missing}; pass the output of detect_episodes")
    n_obs = sessions.groupby(id_col, sort=True)[score_col].count()
    pids = n_obs.index
    unknown = pd.Index(episodes["participant_id"].unique()).difference(pids)
    if len(unknown):
        raise ValueError(f"episodes has participants that are not in sessions: "
                         f"{list(unknown[:5])}")
    g = episodes.groupby("participant_id", sort=False)
    n_rup = g.size().reindex(pids, fill_value=0).to_numpy(dtype=np.int64)
    n_rep = g["repaired"].sum().reindex(pids, fill_value=0).to_numpy(dtype=np.int64)
    n_cens = g["censored"].sum().reindex(pids, fill_value=0).to_numpy(dtype=np.int64)
    first = g["rupture_session"].min().reindex(pids).astype("Int64")
    n_obs_a = n_obs.to_numpy(dtype=np.int64)
    codes = pattern_codes(n_obs_a, n_rup, n_rep, min_sessions)
    crit = episodes["criterion"].unique()
    if len(crit) > 1:
        raise ValueError(f"episodes mixes criteria {list(crit)}; classify one criterion at a time")
    criterion = crit[0] if len(crit) else episodes.attrs.get("criterion", pd.NA)
    return pd.DataFrame({
        "participant_id": pd.Series(pids, dtype=sessions[id_col].dtype),
        "n_sessions_observed": n_obs_a,
        "n_ruptures": n_rup,
        "n_repaired": n_rep,
        "n_unrepaired": n_rup - n_rep,
        "first_rupture_session": first.to_numpy(),
        "pattern": pd.array(np.asarray(PATTERN_CODES, dtype=object)[codes], dtype="str"),
        "criterion": pd.array([criterion] * len(pids), dtype="str"),
        # a censored rupture is never repaired, so n_cens <= n_rup - n_rep: equal means none was seen unrepaired
        "unrepaired_censored": (codes == 2) & (n_rup - n_rep == n_cens),
    })


def presets(reliability):
    """The named criteria of the sensitivity table: name -> keyword arguments.

    Parameters
    ----------
    reliability : float
        Reliability of the run's alliance instrument, used by ``rci`` and ``sudden`` (the
        multiverse's ``rci`` row must be the headline's).

    Returns
    -------
    dict
        ``absolute_1`` (1 point); ``sd_k{1,2}_{within,between,stricter}`` (Strauss et al.,
        2006: k = 1; Stiles et al., 2004: k = 2; Gumz et al., 2012: stricter); ``rci`` (the
        default); ``sudden`` (Tang & DeRubeis, 1999, on alliance decreases with criterion 1 =
        the RCI, 25% relative change and the mean-difference test adjusted for missing
        sessions at alpha .05). A fresh copy on every call.

    Examples
    --------
    >>> sorted(presets(0.9))[:3], presets(0.9)["rci"]
    (['absolute_1', 'rci', 'sd_k1_between'], {'criterion': 'rci', 'reliability': 0.9})
    """
    out = {"absolute_1": {"criterion": "absolute", "cutoff": 1.0}}
    for k in (1, 2):
        for scale in SD_SCALES:
            out[f"sd_k{k}_{scale}"] = {"criterion": "sd", "k": float(k), "scale": scale}
    out["rci"] = {"criterion": "rci", "reliability": reliability}
    out["sudden"] = {
        "criterion": "sudden",
        "reliability": reliability,
        "pct": 0.25,
        "crit3": True,
        "crit3_adjust": True,
        "crit3_alpha": 0.05,
    }
    return copy.deepcopy(out)


def detect_by_preset(sessions, presets, *, min_sessions=6, repair_window=None, tolerance=0.0,
                     record=None) -> dict:
    """Episodes and patterns of the same sessions under every criterion preset.

    Parameters
    ----------
    sessions : DataFrame
        The contract's long ``sessions`` table.
    presets : dict
        Name -> keyword arguments of :func:`detect_episodes` (:func:`presets` with the run's
        reliability).
    min_sessions, repair_window, tolerance
        As in :func:`detect_episodes` and :func:`classify_participants`; the same under every preset.
    record : list, optional
        When given, each preset's messages about the data are appended to it as
        ``"<preset>: <message>"`` (the power study counts them per row) instead of warned.

    Returns
    -------
    dict
        ``{preset name: (episodes, patterns)}`` in the presets' order.

    Examples
    --------
    >>> s = pd.DataFrame({"participant_id": "a", "session": range(1, 7),
    ...                   "alliance": [6.0, 6.0, 4.5, 5.0, 6.0, 6.0]})
    >>> out = detect_by_preset(s, {"abs": {"criterion": "absolute", "cutoff": 1.0}})
    >>> out["abs"][1]["pattern"].tolist()
    ['repaired']
    """
    out = {}
    for name, kw in presets.items():
        criterion, given, options = _split_preset(kw)
        episodes = _episode_table(sessions, criterion, given, options, repair_window, tolerance,
                                  ("participant_id", "session", "alliance"), warn=record is None,
                                  stacklevel=2)
        patterns = classify_participants(episodes, sessions, min_sessions=min_sessions)
        if record is not None:
            record += [f"{name}: {msg}" for msg in episodes.attrs["warnings"]]
        out[name] = (episodes, patterns)
    return out


# --------------------------------------------------------------------------------------------
# Stacked trials (the batched power study)
# --------------------------------------------------------------------------------------------
def detect_grouped(X, labels, starts, presets, *, min_sessions=6, repair_window=None,
                   tolerance=0.0):
    """Patterns of several trials stacked in one wide matrix, under every preset.

    Rows ``starts[g]:starts[g + 1]`` of ``X`` (participants x sessions, participants sorted)
    are trial ``g``; every trial-level quantity (the RCI's SD of first observed scores, the
    between-client SD of the ``"sd"`` criterion) is computed per trial, so that each trial's
    patterns are those of :func:`detect_by_preset` on that trial alone: the same rules
    (:func:`find_ruptures`, :func:`pattern_codes`).

    Returns
    -------
    codes : dict
        preset -> int array (one per row) indexing :data:`PATTERN_CODES`.
    messages : list of list of str
        Per trial, the ``"<preset>: <message>"`` messages :func:`detect_by_preset` would record.
    errors : dict
        Trial -> the exception :func:`detect_by_preset` raises on it alone (the first preset
        that fails, e.g. when the RCI's SD is undefined); its codes are meaningless.

    Raises
    ------
    ValueError, TypeError
        Invalid preset arguments or ``min_sessions`` (as :func:`detect_episodes`).
    """
    X = np.asarray(X, dtype=float)
    labels = np.asarray(labels, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    _check_min_sessions(min_sessions)
    n = X.shape[0]
    n_obs = (~np.isnan(X)).sum(axis=1)
    drops = consecutive_drops(X)  # the same for every preset: computed once
    messages = _no_messages(starts)
    errors, codes = {}, {}
    for name, kw in presets.items():
        criterion, given, options = _split_preset(kw)
        arguments = _arguments(criterion, given, options, repair_window, tolerance)
        rup = find_ruptures(X, labels, starts, criterion, arguments, options, repair_window=repair_window,
                            tolerance=tolerance, drops=drops)
        n_rup = np.bincount(rup.row, minlength=n)
        n_rep = np.bincount(rup.row[rup.repair_col >= 0], minlength=n)
        codes[name] = pattern_codes(n_obs, n_rup, n_rep, min_sessions)
        for g, msgs in enumerate(rup.thresholds.messages):
            messages[g] += [f"{name}: {m}" for m in msgs]
        for g, exc in rup.thresholds.errors.items():
            errors.setdefault(g, exc)
    return codes, messages, errors
