"""Rupture-repair episodes of the therapeutic alliance (McLaughlin et al., 2014).

:func:`detect_episodes` finds every rupture -- a drop in alliance between consecutive observed
sessions of at least a threshold, chosen by a named criterion (absolute, SD, reliable change,
sudden change; :func:`presets`) -- and its repair; :func:`classify_participants` turns the
episodes into one pattern per client (no rupture, repaired, unrepaired, insufficient data);
:func:`detect_by_preset` does both under every preset. The rules and why ``"rci"`` is the
default are in ``docs/rupture_criteria.md``.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd

from helpers.contract import INSUFFICIENT, DataValidationError
from helpers.sudden import SUDDEN_DEFAULTS, SUDDEN_KEYS, _sudden_core, rci_threshold, row_stats

__all__ = [
    "DEFAULT_CRITERION",
    "CRITERIA",
    "SD_SCALES",
    "EPISODE_COLUMNS",
    "PATTERN_COLUMNS",
    "detect_episodes",
    "classify_participants",
    "presets",
    "detect_by_preset",
]

#: The rupture criterion used unless the user names another (see the module docstring).
DEFAULT_CRITERION = "rci"
#: Every rupture criterion :func:`detect_episodes` knows.
CRITERIA = ("absolute", "sd", "rci", "sudden")
#: Which SD the ``"sd"`` criterion uses.
SD_SCALES = ("within", "between", "stricter")
#: Reliability of the CALPAS total (Gaston, 1991): the default of the RCI criterion.
CALPAS_RELIABILITY = 0.83
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
]
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


def _validate_episode_args(criterion, cutoff, k, scale, reliability, sd, repair_window,
                           tolerance, sudden_kwargs):
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {list(CRITERIA)}")
    if criterion == "absolute" and not (np.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff must be a positive number of scale points, got {cutoff}")
    if criterion == "sd":
        if not (np.isfinite(k) and k > 0):
            raise ValueError(f"k must be positive, got {k}")
        if scale not in SD_SCALES:
            raise ValueError(f"unknown scale {scale!r}; choose one of {list(SD_SCALES)}")
    if criterion in ("rci", "sudden"):
        if not (0.0 < reliability < 1.0):
            raise ValueError(f"reliability must lie strictly between 0 and 1, got {reliability}")
        if sd is not None and not (np.isfinite(sd) and sd > 0):
            raise ValueError(f"sd must be a positive number or None, got {sd}")
    if repair_window is not None:
        if isinstance(repair_window, bool) or not float(repair_window).is_integer() \
                or repair_window < 1:
            raise ValueError(f"repair_window must be a positive whole number of sessions or "
                             f"None, got {repair_window}")
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    unknown = set(sudden_kwargs) - set(SUDDEN_KEYS)
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}; the sudden criterion "
                        f"takes {list(SUDDEN_KEYS)}")
    if sudden_kwargs and criterion != "sudden":
        raise ValueError(f"{sorted(sudden_kwargs)} only apply to criterion='sudden'")


def _consecutive_drops(X):
    """Drop from the previous observed session to each session (NaN where there is none)."""
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


# One function per rupture criterion: (X, options) -> rupture rows, pre- and rupture columns,
# thresholds, the parameters applied and warnings. detect_episodes dispatches on the name.
def _above_threshold(X, thr, drops=None):
    """Ruptures where the drop between consecutive observed sessions is >= ``thr`` (per row).
    ``drops``: :func:`_consecutive_drops` of ``X`` when already computed."""
    D, prev = _consecutive_drops(X) if drops is None else drops
    with np.errstate(invalid="ignore"):
        is_rup = (D > 0) & (D >= thr[:, None] - _EPS)
    r, j = np.nonzero(is_rup)
    return r, prev[r, j], j, thr[r]


def _criterion_absolute(X, *, cutoff, **_):
    thr = np.full(X.shape[0], float(cutoff))
    return (*_above_threshold(X, thr), {"cutoff": cutoff}, [])


def _criterion_rci(X, *, reliability, sd, **_):
    rci, sd_used, source = _rci_from_data(X, reliability, sd)
    params = {"reliability": reliability, "sd": sd_used, "sd_source": source, "rci": rci}
    return (*_above_threshold(X, np.full(X.shape[0], rci)), params, [])


def _criterion_sd(X, *, k, scale, **_):
    params, msgs = {"k": k, "scale": scale}, []
    within = _row_sd(X)
    D, _ = _consecutive_drops(X)
    changes = D[~np.isnan(D)]
    between = float(np.std(changes, ddof=1)) if changes.size >= 2 else np.nan
    if scale in ("between", "stricter"):
        params.update(between_sd=between)
        if not np.isfinite(between):
            msgs.append("fewer than 2 session-to-session changes in the sample: "
                        "the between-client SD is undefined, no rupture detected")
    if scale == "within":
        thr = k * within
    elif scale == "between":
        thr = np.full(X.shape[0], k * between)
    else:
        thr = k * np.maximum(within, between)  # NaN if either is undefined
    return (*_above_threshold(X, thr), params, msgs)


def _criterion_sudden(X, *, reliability, sd, sudden_kwargs, **_):
    opts = {**SUDDEN_DEFAULTS, **sudden_kwargs}
    rci, sd_used, source = _rci_from_data(X, reliability, sd)
    params = {"reliability": reliability, "sd": sd_used, "sd_source": source, "rci": rci, **opts}
    T = X.shape[1]
    msgs = [] if T >= 4 else [f"criterion='sudden' needs at least 4 sessions; the data have {T}, "
                              "so no rupture can be detected"]
    res = _sudden_core(X, sign=1, cutoff=rci, pct=opts["pct"], crit3=opts["crit3"],
                       crit3_adjust=opts["crit3_adjust"], crit3_alpha=opts["crit3_alpha"],
                       crit3_critical_value=opts["crit3_critical_value"])
    r, jpre = res["row"], res["col"]
    return r, jpre, jpre + 1, np.full(r.size, rci), params, msgs


_CRITERIA = {"absolute": _criterion_absolute, "sd": _criterion_sd, "rci": _criterion_rci,
             "sudden": _criterion_sudden}


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
        What drop is a rupture (see the module docstring for why ``"rci"`` is the default):

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
    window) counts as not repaired and is flagged ``censored``.

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
    _validate_episode_args(criterion, cutoff, k, scale, reliability, sd, repair_window,
                           tolerance, sudden_kwargs)
    ids, labels, X = _to_wide(sessions, id_col, session_col, score_col)
    r, jpre, j, thr_r, params, warn_msgs = _CRITERIA[criterion](
        X, cutoff=cutoff, k=k, scale=scale, reliability=reliability, sd=sd, sudden_kwargs=sudden_kwargs)

    params.update(repair_window=repair_window, tolerance=tolerance)
    for msg in warn_msgs:
        warnings.warn(msg, stacklevel=2)

    pre = X[r, jpre]
    post = X[r, j]
    repair_col, seen = _repairs(X, labels, r, j, pre, repair_window, tolerance)
    repaired = repair_col >= 0
    rep_sess = pd.array(np.where(repaired, labels[np.maximum(repair_col, 0)], 0), dtype="Int64")
    rep_sess[~repaired] = pd.NA
    to_rep = rep_sess - pd.array(labels[j], dtype="Int64")
    params_str = ";".join(f"{key}={_fmt(val)}" for key, val in params.items())

    id_dtype = sessions[id_col].dtype
    if r.size == 0:
        out = _empty_like_episodes(id_dtype)
    else:
        out = pd.DataFrame({
            "participant_id": pd.Series(ids.take(r), dtype=id_dtype),
            "pre_session": labels[jpre],
            "rupture_session": labels[j],
            "pre_score": pre,
            "rupture_score": post,
            "drop": pre - post,
            "threshold": thr_r,
            "repaired": repaired,
            "repair_session": rep_sess,
            "sessions_to_repair": to_rep,
            "censored": ~repaired & ~seen,
            "criterion": pd.array([criterion] * r.size, dtype="str"),
            "params": pd.array([params_str] * r.size, dtype="str"),
        })
    out.attrs = {"criterion": criterion, "params": params, "warnings": warn_msgs}
    return out


def classify_participants(
    episodes,
    sessions,
    *,
    min_sessions=6,
    score_col="alliance",
    id_col="participant_id",
    session_col="session",
):
    """Alliance pattern per participant: no_rupture, repaired, unrepaired, insufficient_data.

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
        ``first_rupture_session`` (nullable Int64), ``pattern`` and ``criterion``.

    Notes
    -----
    ``insufficient_data`` when fewer than ``min_sessions`` alliance scores are observed
    (counts are still reported); else ``unrepaired`` when any rupture was not repaired
    (censored ruptures included), ``repaired`` when there was at least one rupture and all
    were repaired, ``no_rupture`` otherwise.

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
    if isinstance(min_sessions, bool) or not float(min_sessions).is_integer() or min_sessions < 0:
        raise ValueError(f"min_sessions must be a non-negative whole number, got {min_sessions}")
    for col in (id_col, session_col, score_col):
        if col not in sessions.columns:
            raise DataValidationError("sessions", col, "required column is missing")
    needed = ["participant_id", "rupture_session", "repaired", "criterion"]
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
    first = g["rupture_session"].min().reindex(pids).astype("Int64")
    n_obs_a = n_obs.to_numpy(dtype=np.int64)
    n_unrep = n_rup - n_rep
    pattern = np.select(
        [n_obs_a < min_sessions, n_unrep > 0, n_rup > 0],
        [INSUFFICIENT, "unrepaired", "repaired"],
        "no_rupture",
    )
    crit = episodes["criterion"].unique()
    if len(crit) > 1:
        raise ValueError(f"episodes mixes criteria {list(crit)}; classify one criterion at a time")
    criterion = crit[0] if len(crit) else episodes.attrs.get("criterion", pd.NA)
    return pd.DataFrame({
        "participant_id": pd.Series(pids, dtype=sessions[id_col].dtype),
        "n_sessions_observed": n_obs_a,
        "n_ruptures": n_rup,
        "n_repaired": n_rep,
        "n_unrepaired": n_unrep,
        "first_rupture_session": first.to_numpy(),
        "pattern": pd.array(pattern, dtype="str"),
        "criterion": pd.array([criterion] * len(pids), dtype="str"),
    })


def presets():
    """The named criteria of the sensitivity table: name -> keyword arguments.

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
    >>> sorted(presets())[:3]
    ['absolute_1', 'rci', 'sd_k1_between']
    """
    out = {"absolute_1": {"criterion": "absolute", "cutoff": 1.0}}
    for k in (1, 2):
        for scale in SD_SCALES:
            out[f"sd_k{k}_{scale}"] = {"criterion": "sd", "k": float(k), "scale": scale}
    out["rci"] = {"criterion": "rci", "reliability": CALPAS_RELIABILITY}
    out["sudden"] = {
        "criterion": "sudden",
        "reliability": CALPAS_RELIABILITY,
        "pct": 0.25,
        "crit3": True,
        "crit3_adjust": True,
        "crit3_alpha": 0.05,
    }
    return copy.deepcopy(out)


def detect_by_preset(sessions, presets=None, *, min_sessions=6, repair_window=None, tolerance=0.0,
                     record=None) -> dict:
    """Episodes and patterns of the same sessions under every criterion preset.

    Parameters
    ----------
    sessions : DataFrame
        The contract's long ``sessions`` table.
    presets : dict, optional
        Name -> keyword arguments of :func:`detect_episodes`; default :func:`presets`.
    min_sessions, repair_window, tolerance
        As in :func:`detect_episodes` and :func:`classify_participants`; the same under every preset.
    record : list, optional
        When given, the warnings of each preset's detection are caught and appended to it as
        ``"<preset>: <message>"`` (the power study counts them per row) instead of shown.

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
    for name, kw in (presets or globals()["presets"]()).items():
        with warnings.catch_warnings(record=record is not None) as caught:
            if record is not None:
                warnings.simplefilter("always")
            episodes = detect_episodes(sessions, repair_window=repair_window, tolerance=tolerance, **kw)
            patterns = classify_participants(episodes, sessions, min_sessions=min_sessions)
        if record is not None:
            record += [f"{name}: {w.message}" for w in own_warnings(caught)]
        out[name] = (episodes, patterns)
    return out


def own_warnings(caught) -> list:
    """The detection's own warnings among ``caught`` (UserWarnings: what it says about the
    data). Anything else caught meanwhile -- a ResourceWarning of the garbage collector, a
    library's DeprecationWarning, a warning from another thread -- is not the detection's:
    it is issued again (not swallowed) and not counted."""
    own = []
    for w in caught:
        if issubclass(w.category, UserWarning):
            own.append(w)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return own


# --------------------------------------------------------------------------------------------
# Stacked trials (the batched power study)
# --------------------------------------------------------------------------------------------
#: Pattern codes of :func:`detect_grouped`: the index in this tuple.
PATTERN_CODES = ("no_rupture", "repaired", "unrepaired", INSUFFICIENT)
_DETECT_DEFAULTS = dict(criterion=DEFAULT_CRITERION, cutoff=1.0, k=2.0, scale="stricter",
                        reliability=CALPAS_RELIABILITY, sd=None)


def _group_rci(X, starts, reliability, sd):
    """Per-row RCI of stacked trials (the SD of each trial's own first observed scores)."""
    thr = np.full(X.shape[0], np.nan)
    failed = set()
    for g in range(starts.size - 1):
        a, b = starts[g], starts[g + 1]
        try:
            thr[a:b] = _rci_from_data(X[a:b], reliability, sd)[0]
        except ValueError:
            failed.add(g)
    return thr, failed


def detect_grouped(X, labels, starts, presets, *, min_sessions=6, repair_window=None,
                   tolerance=0.0):
    """Patterns of several trials stacked in one wide matrix, under every preset.

    Rows ``starts[g]:starts[g + 1]`` of ``X`` (participants x sessions, as built by
    :func:`detect_episodes` from one trial's long table, participants sorted) are trial ``g``;
    every trial-level quantity (the RCI's SD of first observed scores, the between-client SD
    of the ``"sd"`` criterion) is computed per trial, so that each trial's patterns are those
    of :func:`detect_by_preset` on that trial alone.

    Returns
    -------
    codes : dict
        preset -> int array (one per row) indexing :data:`PATTERN_CODES`.
    messages : list of list of str
        Per trial, the ``"<preset>: <message>"`` warnings :func:`detect_by_preset` would record.
    failed : set of int
        Trials on which a preset raises (e.g. the RCI's SD is undefined); their codes are
        meaningless -- run them one at a time for the error.

    Raises
    ------
    ValueError, TypeError
        Invalid preset arguments or ``min_sessions`` (as :func:`detect_episodes`).
    """
    X = np.asarray(X, dtype=float)
    labels = np.asarray(labels, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    if isinstance(min_sessions, bool) or not float(min_sessions).is_integer() or min_sessions < 0:
        raise ValueError(f"min_sessions must be a non-negative whole number, got {min_sessions}")
    n, T = X.shape
    G = starts.size - 1
    n_obs = (~np.isnan(X)).sum(axis=1)
    drops = _consecutive_drops(X)  # the same for every preset: computed once
    messages = [[] for _ in range(G)]
    failed = set()
    codes = {}
    for name, kw in presets.items():
        opts = {**_DETECT_DEFAULTS, **kw}
        criterion = opts.pop("criterion")
        base = {key: opts.pop(key) for key in ("cutoff", "k", "scale", "reliability", "sd")}
        sudden_kwargs = opts
        _validate_episode_args(criterion, base["cutoff"], base["k"], base["scale"],
                               base["reliability"], base["sd"], repair_window, tolerance,
                               sudden_kwargs)
        msgs = [[] for _ in range(G)]
        if criterion == "absolute":
            r, jpre, j, _ = _above_threshold(X, np.full(n, float(base["cutoff"])), drops)
        elif criterion == "rci":
            thr, bad = _group_rci(X, starts, base["reliability"], base["sd"])
            failed |= bad
            r, jpre, j, _ = _above_threshold(X, thr, drops)
        elif criterion == "sd":
            k, scale = base["k"], base["scale"]
            within = _row_sd(X)
            D = drops[0]
            between = np.empty(n)
            for g in range(G):
                a, b = starts[g], starts[g + 1]
                Dg = D[a:b]
                changes = Dg[~np.isnan(Dg)]
                bg = float(np.std(changes, ddof=1)) if changes.size >= 2 else np.nan
                between[a:b] = bg
                if scale in ("between", "stricter") and not np.isfinite(bg):
                    msgs[g].append("fewer than 2 session-to-session changes in the sample: "
                                   "the between-client SD is undefined, no rupture detected")
            if scale == "within":
                thr = k * within
            elif scale == "between":
                thr = k * between
            else:
                thr = k * np.maximum(within, between)
            r, jpre, j, _ = _above_threshold(X, thr, drops)
        else:  # sudden
            sopts = {**SUDDEN_DEFAULTS, **sudden_kwargs}
            thr, bad = _group_rci(X, starts, base["reliability"], base["sd"])
            failed |= bad
            if T < 4:
                for m in msgs:
                    m.append(f"criterion='sudden' needs at least 4 sessions; the data have {T}, "
                             "so no rupture can be detected")
            res = _sudden_core(X, sign=1, cutoff=thr, pct=sopts["pct"], crit3=sopts["crit3"],
                               crit3_adjust=sopts["crit3_adjust"], crit3_alpha=sopts["crit3_alpha"],
                               crit3_critical_value=sopts["crit3_critical_value"])
            r, jpre = res["row"], res["col"]
            j = jpre + 1
        pre = X[r, jpre]
        repair_col, _ = _repairs(X, labels, r, j, pre, repair_window, tolerance)
        n_rup = np.bincount(r, minlength=n)
        n_rep = np.bincount(r[repair_col >= 0], minlength=n)
        codes[name] = np.select([n_obs < min_sessions, n_rup - n_rep > 0, n_rup > 0], [3, 2, 1], 0)
        for g in range(G):
            messages[g] += [f"{name}: {m}" for m in msgs[g]]
    return codes, messages, failed
