"""Sudden changes (Tang & DeRubeis, 1999) as the R package *suddengains* 0.7.2 finds them.

:func:`sudden_changes` applies the three sudden-gain criteria (Wiedemann et al., 2020) to a wide
table of scores, vectorised over participants; :func:`byperson` keeps one change per person and
:func:`define_crit1_cutoff` / :func:`rci_threshold` give the reliable-change cutoff. The episode
detector (:mod:`helpers.episodes`) uses these criteria for its ``"sudden"`` rupture criterion.
Rules and references: ``docs/rupture_criteria.md``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import special  # the t quantile as scipy.stats.t computes it, without scipy.stats (0.5 s)

from helpers.contract import DataValidationError

__all__ = ["RCI_Z", "SUDDEN_COLUMNS", "SUDDEN_DEFAULTS", "SUDDEN_KEYS", "define_crit1_cutoff",
           "rci_threshold", "row_stats", "changes_in_matrix", "sudden_changes", "byperson"]

#: z of a two-sided 95% reliable change.
RCI_Z = 1.96

#: Columns of the sudden-change table, in their fixed order.
SUDDEN_COLUMNS = [
    "participant_id",
    "pre_session",
    "post_session",
    "pre_score",
    "post_score",
    "magnitude",
    "relative_change",
    "n_pre",
    "n_post",
    "mean_pre",
    "mean_post",
    "sd_pooled",
    "critical_value",
    "reversal_value",
    "reversed",
    "direction",
]


#: Options of the sudden-change criteria that :func:`helpers.episodes.detect_episodes` passes on.
SUDDEN_KEYS = ("pct", "crit3", "crit3_adjust", "crit3_alpha", "crit3_critical_value")
#: Their defaults (suddengains' defaults).
SUDDEN_DEFAULTS = {
    "pct": 0.25,
    "crit3": True,
    "crit3_adjust": True,
    "crit3_alpha": 0.05,
    "crit3_critical_value": 2.776,
}


# --------------------------------------------------------------------------------------------
# Reliable change
# --------------------------------------------------------------------------------------------
def define_crit1_cutoff(sd, reliability, *, z=RCI_Z):
    """Reliable change cutoff, as suddengains' ``define_crit1_cutoff``.

    Parameters
    ----------
    sd : float
        SD of the measure, usually the sample SD at baseline.
    reliability : float
        Reliability of the measure, strictly between 0 and 1.
    z : float, default 1.96
        z of the two-sided confidence level.

    Returns
    -------
    dict
        ``sd``, ``reliability``, ``standard_error_measurement`` (SD * sqrt(1 - r)),
        ``standard_error_difference`` (sqrt(2 SEM^2)) and ``reliable_change_value``
        (z * SE of the difference).

    References
    ----------
    Jacobson, N. S., & Truax, P. (1991). *J Consult Clin Psychol, 59*, 12-19.

    Examples
    --------
    >>> round(define_crit1_cutoff(10.5, 0.961)["reliable_change_value"], 6)
    5.747681
    """
    sd = float(sd)
    reliability = float(reliability)
    if not (0.0 < reliability < 1.0):
        raise ValueError(f"reliability must lie strictly between 0 and 1, got {reliability}")
    if not (sd > 0.0 and math.isfinite(sd)):
        raise ValueError(f"sd must be a positive finite number, got {sd}")
    sem = sd * math.sqrt(1.0 - reliability)
    sdiff = math.sqrt(2.0 * sem**2)
    return {
        "sd": sd,
        "reliability": reliability,
        "standard_error_measurement": sem,
        "standard_error_difference": sdiff,
        "reliable_change_value": z * sdiff,
    }


def rci_threshold(sd, reliability, *, z=RCI_Z):
    """The reliable change threshold ``z * sd * sqrt(2 * (1 - reliability))`` (a float)."""
    return define_crit1_cutoff(sd, reliability, z=z)["reliable_change_value"]


# --------------------------------------------------------------------------------------------
# Sudden changes (Tang & DeRubeis, 1999; suddengains)
# --------------------------------------------------------------------------------------------
def row_stats(W):
    """Count, mean and SD (ddof=1) of each row of ``W``, ignoring NaN (two-pass, as R's sd)."""
    m = ~np.isnan(W)
    cnt = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(m, W, 0.0).sum(axis=1) / cnt
        dev = np.where(m, W - mean[:, None], 0.0)
        var = (dev * dev).sum(axis=1) / (cnt - 1)
    return cnt, mean, var


def _validate_sudden(direction, cutoff, pct, crit3, crit3_alpha, crit3_critical_value):
    if direction not in ("decrease", "increase"):
        raise ValueError(f"direction must be 'decrease' or 'increase', got {direction!r}")
    if cutoff is None and pct is None and not crit3:
        raise ValueError("at least one of the three criteria must be applied (cutoff, pct, crit3)")
    if cutoff is not None and not (np.isfinite(cutoff) and cutoff > 0):
        raise ValueError(
            f"cutoff must be a positive number (the size of the change in the chosen direction), "
            f"got {cutoff}"
        )
    if pct is not None and not (np.isfinite(pct) and pct > 0):
        raise ValueError(f"pct must be a positive proportion, got {pct}")
    if crit3 and not (0.0 < crit3_alpha < 1.0):
        raise ValueError(f"crit3_alpha must lie strictly between 0 and 1, got {crit3_alpha}")
    if crit3 and not (crit3_critical_value > 0):
        raise ValueError(f"crit3_critical_value must be positive, got {crit3_critical_value}")


def changes_in_matrix(
    X,
    *,
    sign,
    cutoff,
    pct,
    crit3,
    crit3_adjust,
    crit3_alpha,
    crit3_critical_value,
):
    """Sudden changes in the score matrix ``X`` (participants x sessions, NaN = missing).

    The rules of :func:`sudden_changes` on arrays (the episode detector's ``"sudden"``
    criterion calls it on stacked trials).

    Parameters
    ----------
    X : ndarray, shape (n, T)
    sign : {1, -1}
        +1 for decreases (suddengains' gains), -1 for increases (its losses).
    cutoff : float, ndarray of shape (n,) or None
        Criterion 1's cutoff, one for all rows or one per row (NaN: no change in that row).
    pct, crit3, crit3_adjust, crit3_alpha, crit3_critical_value
        As in :func:`sudden_changes`.

    Returns
    -------
    dict
        1-d arrays, one entry per change, sorted by row then pre column: ``row``, ``col``
        (the pre-change column) and the columns of :data:`SUDDEN_COLUMNS` that describe it.
    """
    n, T = X.shape
    # suddengains only looks at intervals with >= 2 possible scores on each side:
    # pre column 1 .. T-3 (0-based), i.e. never the first or the last interval.
    intervals = range(1, T - 2)
    cv_table = {df: abs(special.stdtrit(df, crit3_alpha / 2.0)) for df in (2, 3, 4)}  # = stats.t.ppf
    rows, cols = [], []
    for i in intervals:
        pre, post = X[:, i], X[:, i + 1]
        change = sign * (pre - post)
        ok = np.ones(n, dtype=bool)
        # NaN compares False: an interval with a missing pre or post score is not a change
        # when criterion 1 or 2 is applied (R: NA * ... = NA, later set to 0).
        if cutoff is not None:
            ok &= change >= cutoff
        if pct is not None:
            ok &= change >= pct * pre
        cand = np.flatnonzero(ok)
        if crit3 and cand.size:
            npre, mpre, vpre = row_stats(X[cand, max(0, i - 2) : i + 1])
            npost, mpost, vpost = row_stats(X[cand, i + 1 : min(T, i + 4)])
            judge = (npre >= 2) & (npost >= 2)
            df = np.where(judge, npre + npost - 2, 4)
            if crit3_adjust:
                cv = np.select([df == 2, df == 3], [cv_table[2], cv_table[3]], cv_table[4])
            else:
                cv = np.full(cand.size, float(crit3_critical_value))
            with np.errstate(invalid="ignore"):
                sp = np.sqrt(((npre - 1) * vpre + (npost - 1) * vpost) / df)
                keep = judge & (sign * (mpre - mpost) > cv * sp)
            cand = cand[keep]
        rows.append(cand)
        cols.append(np.full(cand.size, i, dtype=np.int64))
    r = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.empty(0, dtype=np.int64)
    order = np.lexsort((c, r))
    r, c = r[order], c[order]
    return _sudden_details(X, r, c, sign=sign, crit3_adjust=crit3_adjust, cv_table=cv_table,
                           crit3=crit3, crit3_critical_value=crit3_critical_value)


def _sudden_details(X, r, c, *, sign, crit3, crit3_adjust, cv_table, crit3_critical_value):
    """Scores, criterion values and reversal flag of the changes at rows ``r``, pre cols ``c``."""
    n, T = X.shape
    pre = X[r, c]
    post = X[r, c + 1]
    # Windows n-2..n and n+1..n+3 as one (k, 6) block, NaN outside the series.
    offs = np.arange(-2, 4)
    idx = c[:, None] + offs[None, :]
    inside = (idx >= 0) & (idx < T)
    block = np.where(inside, X[r[:, None], np.clip(idx, 0, T - 1)], np.nan)
    npre, mpre, vpre = row_stats(block[:, :3])
    npost, mpost, vpost = row_stats(block[:, 3:])
    df = npre + npost - 2
    with np.errstate(invalid="ignore", divide="ignore"):
        sp = np.sqrt(((npre - 1) * vpre + (npost - 1) * vpost) / df)
    if not crit3:
        cv = np.full(r.size, np.nan)
    elif crit3_adjust:
        cv = np.select([df == 2, df == 3, df == 4], [cv_table[2], cv_table[3], cv_table[4]],
                       np.nan)
    else:
        cv = np.full(r.size, float(crit3_critical_value))
    magnitude = sign * (pre - post)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = magnitude / pre
    # suddengains: reversal value = post + (pre - post) / 2; a gain is reversed when a score
    # at sg_session_n + 2 or later on its 0-based renumbering -- i.e. from the second session
    # after the post-change session on -- lies beyond it (create_bysg: index >= 2).
    rv = post + (pre - post) / 2.0
    later = X[r]  # NaN compares False: a missing later score never reverses
    reversed_ = np.zeros(r.size, dtype=bool)
    for j in range(3, T):
        col_ok = j >= c + 3
        v = later[:, j]
        with np.errstate(invalid="ignore"):
            hit = (v > rv) if sign > 0 else (v < rv)
        reversed_ |= col_ok & hit
    return {
        "row": r,
        "col": c,
        "pre_score": pre,
        "post_score": post,
        "magnitude": magnitude,
        "relative_change": relative,
        "n_pre": npre.astype(np.int64),
        "n_post": npost.astype(np.int64),
        "mean_pre": mpre,
        "mean_post": mpost,
        "sd_pooled": sp,
        "critical_value": cv,
        "reversal_value": rv,
        "reversed": reversed_,
    }


def sudden_changes(
    scores_wide,
    *,
    direction="decrease",
    cutoff,
    pct=0.25,
    crit3=True,
    crit3_adjust=True,
    crit3_alpha=0.05,
    crit3_critical_value=2.776,
):
    """Sudden changes (Tang & DeRubeis, 1999) exactly as suddengains identifies them.

    Parameters
    ----------
    scores_wide : DataFrame
        Index = participant id, columns = session labels in session order, values = scores
        (NaN = missing).
    direction : {"decrease", "increase"}
        ``"decrease"`` is suddengains' sudden gain (scores fall), ``"increase"`` its sudden
        loss.
    cutoff : float or None
        Criterion 1: the change in ``direction`` is at least ``cutoff`` (positive in both
        directions; suddengains takes a negative cutoff for losses). ``None`` = not applied.
        :func:`define_crit1_cutoff` gives a reliable-change cutoff.
    pct : float or None, default 0.25
        Criterion 2: the change is at least ``pct`` times the pre-change score.
        ``None`` = not applied.
    crit3 : bool, default True
        Criterion 3: ``mean_pre - mean_post > cv * s_pooled`` (mirrored for increases) over the
        up to three scores before (sessions n-2..n) and after (n+1..n+3) the change, missing
        ones dropped; not judgeable (= no change) with fewer than 2 scores on either side.
    crit3_adjust : bool, default True
        ``cv = |t_{alpha/2, n_pre + n_post - 2}|`` (2.776, 3.182, 4.303 for 4, 3, 2 df at
        alpha .05); if False, ``cv = crit3_critical_value`` throughout.
    crit3_alpha : float, default 0.05
    crit3_critical_value : float, default 2.776

    Returns
    -------
    DataFrame
        One row per sudden change (:data:`SUDDEN_COLUMNS`), sorted by participant (input row
        order) then session: ``participant_id``, ``pre_session`` (label of the last session
        before the change), ``post_session``, ``pre_score``, ``post_score``, ``magnitude``
        (the change in ``direction``, positive), ``relative_change`` (magnitude / pre_score),
        ``n_pre``/``n_post``/``mean_pre``/``mean_post``/``sd_pooled`` (criterion 3's inputs),
        ``critical_value`` (NaN when criterion 3 is off), ``reversal_value`` and ``reversed``.

    Notes
    -----
    Rules taken from suddengains 0.7.2 (``identify_sg``, ``identify_sl``, ``create_bysg``):

    * Only intervals from the second to the next-to-last session are candidates (the pre
      column runs from the 2nd to the (T-2)-th column), whatever criteria are enabled.
    * An interval is a change when every enabled criterion holds; a criterion that cannot be
      evaluated (missing pre or post score, < 2 scores on a side) makes it not a change. As in
      suddengains, with *only* criterion 3 enabled a missing pre or post score does not block
      a change (its magnitude is then NaN).
    * Comparisons are exact (no rounding slack): ``>=`` for criteria 1 and 2, ``>`` for 3.
    * Reversal: the change is reversed when any score from the *second* session after the
      post-change session onwards lies beyond the midpoint ``(pre + post) / 2`` (above it for
      a decrease, below for an increase). This is what ``create_bysg`` computes (its index
      ``>= 2`` on a 0-based renumbering of the sessions); the session right after the
      post-change session is not looked at.

    Differences from suddengains for ``direction="increase"``: the relative criterion is the
    mirror image, ``post - pre >= pct * pre`` (``identify_sl`` tests ``pre - post <= pct * pre``
    with ``pct`` as given, which with a positive ``pct`` is met by almost any interval; it
    equals ours when given ``-pct``); ``cutoff`` is positive; ``magnitude`` is positive
    (suddengains' ``sg_magnitude`` of a loss is negative), so "largest" in :func:`byperson`
    means the largest loss.

    References
    ----------
    Tang, T. Z., & DeRubeis, R. J. (1999). *J Consult Clin Psychol, 67*, 894-904.
    Wiedemann, M., Thew, G. R., Stott, R., & Ehlers, A. (2020). *PLOS ONE, 15*, e0230276.

    Examples
    --------
    >>> import pandas as pd
    >>> wide = pd.DataFrame([[30, 31, 29, 18, 17, 18, 16]], index=["a"], columns=range(1, 8))
    >>> sudden_changes(wide, cutoff=7)[["participant_id", "pre_session", "magnitude"]]
      participant_id  pre_session  magnitude
    0              a            3       11.0
    """
    _validate_sudden(direction, cutoff, pct, crit3, crit3_alpha, crit3_critical_value)
    if not isinstance(scores_wide, pd.DataFrame):
        raise TypeError("scores_wide must be a DataFrame (index = participant, columns = sessions)")
    if scores_wide.index.has_duplicates:
        dup = scores_wide.index[scores_wide.index.duplicated()].unique()[:5].tolist()
        raise DataValidationError("scores_wide", "index", "participant ids must be unique",
                                  rows=dup)
    nonnum = [c for c in scores_wide.columns if not pd.api.types.is_numeric_dtype(scores_wide[c])]
    if nonnum:
        raise DataValidationError("scores_wide", nonnum[0], "scores must be numeric")
    X = scores_wide.to_numpy(dtype=np.float64, na_value=np.nan)
    if X.shape[1] < 4:
        warnings.warn(
            f"sudden_changes: {X.shape[1]} sessions; at least 4 are needed for any interval "
            "to be judged, so no sudden change can be found",
            stacklevel=2,
        )
    res = changes_in_matrix(
        X,
        sign=1 if direction == "decrease" else -1,
        cutoff=cutoff,
        pct=pct,
        crit3=crit3,
        crit3_adjust=crit3_adjust,
        crit3_alpha=crit3_alpha,
        crit3_critical_value=crit3_critical_value,
    )
    labels, pids = scores_wide.columns, scores_wide.index
    out = {
        "participant_id": pd.Series(pids.take(res["row"]), dtype=pids.dtype),
        "pre_session": pd.Series(labels.take(res["col"]), dtype=labels.dtype),
        "post_session": pd.Series(labels.take(res["col"] + 1), dtype=labels.dtype),
    }
    for key in SUDDEN_COLUMNS[3:-1]:
        out[key] = res[key]
    out["direction"] = pd.array([direction] * res["row"].size, dtype="str")
    return pd.DataFrame(out)[SUDDEN_COLUMNS]


def byperson(changes, participants=None, *, select="first"):
    """One sudden change per person, as suddengains' ``create_byperson``.

    Parameters
    ----------
    changes : DataFrame
        Output of :func:`sudden_changes`.
    participants : array-like, optional
        Every participant of the sample (e.g. ``scores_wide.index``). When given, participants
        without a change get a row with ``n_changes = 0`` and missing change columns, as
        suddengains' byperson data set does.
    select : {"first", "last", "largest", "smallest"}
        Which change to keep for a person with several: the earliest, the latest, the largest
        or the smallest magnitude (ties broken by the earliest session, as suddengains does).

    Returns
    -------
    DataFrame
        ``participant_id``, ``n_changes``, then the selected change's columns of
        :data:`SUDDEN_COLUMNS`. Rows in the order of ``participants`` when given, else of
        first appearance in ``changes``.

    Examples
    --------
    >>> import pandas as pd
    >>> wide = pd.DataFrame([[30, 31, 29, 18, 17, 18, 16], [20] * 7], index=["a", "b"],
    ...                     columns=range(1, 8))
    >>> byperson(sudden_changes(wide, cutoff=7), wide.index)[["participant_id", "n_changes"]]
      participant_id  n_changes
    0              a          1
    1              b          0
    """
    if select not in ("first", "last", "largest", "smallest"):
        raise ValueError(f"select must be first, last, largest or smallest, got {select!r}")
    missing = [c for c in SUDDEN_COLUMNS if c not in changes.columns]
    if missing:
        raise ValueError(f"changes lacks columns {missing}; pass the output of sudden_changes")
    df = changes.reset_index(drop=True)
    codes, uniques = pd.factorize(df["participant_id"])
    key = pd.DataFrame({"p": codes, "s": df["pre_session"].to_numpy()})
    if select in ("largest", "smallest"):
        mag = df["magnitude"].to_numpy(dtype=float)
        key["m"] = -mag if select == "largest" else mag
        order = np.lexsort((key["s"].to_numpy(), key["m"].to_numpy(), codes))
    else:
        s = key["s"].to_numpy()
        order = np.lexsort((s if select == "first" else -s.astype(float), codes))
    chosen = df.iloc[order].drop_duplicates("participant_id", keep="first")
    counts = df.groupby("participant_id", sort=False).size()
    chosen = chosen.set_index("participant_id")
    chosen.insert(0, "n_changes", counts.reindex(chosen.index).to_numpy())
    if participants is None:
        ids = pd.Index(uniques)
    else:
        ids = pd.Index(participants)
        extra = set(uniques) - set(ids)
        if extra:
            raise ValueError(f"changes has participants not in `participants`: {sorted(extra)[:5]}")
    out = chosen.reindex(ids)
    out["n_changes"] = out["n_changes"].fillna(0).astype(np.int64)
    for c in ("pre_session", "post_session", "n_pre", "n_post"):
        if pd.api.types.is_integer_dtype(changes[c]) and out[c].isna().any():
            out[c] = out[c].astype("Int64")
    if out["reversed"].isna().any():
        out["reversed"] = out["reversed"].astype("boolean")
    out.index.name = "participant_id"
    return out.reset_index()
