"""Rupture-repair episodes of the therapeutic alliance, and sudden changes.

Two families of analyses live here:

* :func:`sudden_changes` (+ :func:`byperson`, :func:`define_crit1_cutoff`) -- the sudden-gain
  criteria of Tang & DeRubeis (1999) exactly as the R package *suddengains* 0.7.2 implements
  them (Wiedemann et al., 2020), vectorised over participants.
* :func:`detect_episodes` + :func:`classify_participants` -- rupture-repair episodes of the
  alliance (McLaughlin et al., 2014): a session-to-session *drop* in alliance larger than a
  threshold (a rupture), followed or not by a return to the pre-rupture level (a repair).

The default rupture criterion: reliable change (``"rci"``)
-----------------------------------------------------------
The paper's exact thresholds are not public, so the criterion is an explicit, named choice
(``criterion=``), with every published alternative available (:func:`presets`). The default,
:data:`DEFAULT_CRITERION` = ``"rci"``, calls a drop a rupture when it is at least the reliable
change index (Jacobson & Truax, 1991)::

    RCI = 1.96 * SD * sqrt(2 * (1 - reliability))

with ``reliability`` = 0.83, the internal consistency of the CALPAS total reported by Gaston
(1991) -- an assumption a user should check against their own sample -- and ``SD`` the sample
SD (ddof = 1) of every participant's *first observed* alliance score (the baseline SD, as
suddengains' ``define_crit1_cutoff`` uses), unless ``sd=`` is given.

Why this default:

1. It anchors the threshold in *measurement error*, not in the same data's fluctuation: a drop
   of at least the RCI is one that pure measurement noise produces in fewer than 5% of
   intervals, so noise alone rarely yields a rupture, whatever the person's trajectory.
2. It detects a drop that *persists* (an unrepaired rupture) as well as a V-shape. The
   within-client SD criterion (Stiles et al., 2004, k = 2) cannot: a clean step of size d in
   the middle of a 10-session series has a within-person SD of about 0.53 d, so 2 SD ~ 1.05 d
   is larger than the step itself and the rupture that never repairs -- the pattern that
   predicted poor outcome in McLaughlin et al. (2014) -- goes undetected. The within SD is also
   inflated by the very rupture it should detect, and is undefined or tiny for flat series.
3. It is one number for the whole sample, stated in the scale's units, so results are
   comparable across samples and with the SD criteria of Stiles et al. (2004; 2 SD),
   Strauss et al. (2006; 1 SD) and Gumz et al. (2012; the stricter of within- and
   between-client SD), which remain available as ``criterion="sd"``.

Rules shared by all episode criteria
------------------------------------
* A drop is measured between consecutive *observed* sessions: missing sessions are skipped, so
  ``6, NA, 4`` is one drop of 2 from the first to the third session.
* Consecutive drops are separate ruptures: ``6 -> 5 -> 4`` with threshold 1 gives two
  ruptures (pre-scores 6 and 5), each with its own repair.
* A rupture needs a strictly positive drop of at least the threshold. Comparisons allow 1e-9
  for floating-point rounding, so a drop of exactly the threshold (5.3 -> 4.3 with cutoff 1)
  counts.
* Repair: a later observed session, at most ``repair_window`` sessions after the rupture
  session (``None`` = until the end of treatment), whose alliance is at least
  ``pre_score - tolerance``. The first such session is the ``repair_session``.
* A rupture with no later observed session inside the window cannot show a repair: it is
  counted as not repaired (so its participant is ``unrepaired``) and flagged
  ``censored=True`` so users can see and, if they wish, exclude it.
* ``criterion="sudden"`` keeps suddengains' own rules instead: only adjacent session columns
  whose two scores are both observed, and only intervals with at least two scores on each
  side (so never the first or the last interval).

References
----------
Gaston, L. (1991). Reliability and criterion-related validity of the California
Psychotherapy Alliance Scales - patient version. *Psychological Assessment, 3*, 68-74.

Gumz, A., Brähler, E., Geyer, M., & Erices, R. (2012). *BMC Medical Research Methodology,
12*, 10.

Jacobson, N. S., & Truax, P. (1991). Clinical significance: A statistical approach to defining
meaningful change in psychotherapy research. *Journal of Consulting and Clinical Psychology,
59*, 12-19.

McLaughlin, A. A., Keller, S. M., Feeny, N. C., Youngstrom, E. A., & Zoellner, L. A. (2014).
Patterns of therapeutic alliance: Rupture-repair episodes in prolonged exposure for PTSD.
*Journal of Consulting and Clinical Psychology, 82*, 112-121.

Stiles, W. B., Glick, M. J., Osatuke, K., Hardy, G. E., Shapiro, D. A., Agnew-Davies, R.,
Rees, A., & Barkham, M. (2004). Patterns of alliance development and the rupture-repair
hypothesis. *Journal of Counseling Psychology, 51*, 81-92.

Strauss, J. L., Hayes, A. M., Johnson, S. L., Newman, C. F., Brown, G. K., Barber, J. P.,
Laurenceau, J.-P., & Beck, A. T. (2006). Early alliance, alliance ruptures, and symptom change
in a nonrandomized trial of cognitive therapy for avoidant and obsessive-compulsive
personality disorders. *Journal of Consulting and Clinical Psychology, 74*, 337-345.

Tang, T. Z., & DeRubeis, R. J. (1999). Sudden gains and critical sessions in
cognitive-behavioral therapy for depression. *Journal of Consulting and Clinical Psychology,
67*, 894-904.

Wiedemann, M., Thew, G. R., Stott, R., & Ehlers, A. (2020). suddengains: An R package to
identify sudden gains in longitudinal data. *PLOS ONE, 15*, e0230276.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from helpers.contract import DataValidationError

__all__ = [
    "DEFAULT_CRITERION",
    "CRITERIA",
    "SD_SCALES",
    "EPISODE_COLUMNS",
    "PATTERN_COLUMNS",
    "SUDDEN_COLUMNS",
    "define_crit1_cutoff",
    "rci_threshold",
    "sudden_changes",
    "byperson",
    "detect_episodes",
    "classify_participants",
    "presets",
]

#: The rupture criterion used unless the user names another (see the module docstring).
DEFAULT_CRITERION = "rci"
#: Every rupture criterion :func:`detect_episodes` knows.
CRITERIA = ("absolute", "sd", "rci", "sudden")
#: Which SD the ``"sd"`` criterion uses.
SD_SCALES = ("within", "between", "stricter")
#: Reliability of the CALPAS total (Gaston, 1991): the default of the RCI criterion.
CALPAS_RELIABILITY = 0.83
#: z of a two-sided 95% reliable change.
RCI_Z = 1.96

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

#: Slack for floating-point rounding in the episode comparisons (drop >= threshold, repair).
_EPS = 1e-9

_SUDDEN_KEYS = ("pct", "crit3", "crit3_adjust", "crit3_alpha", "crit3_critical_value")
_SUDDEN_DEFAULTS = {
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
def _window_stats(W):
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


def _sudden_core(
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

    ``sign`` is +1 for decreases (suddengains' gains) and -1 for increases (its losses).
    Returns a dict of 1-d arrays, one entry per change, sorted by row then pre column.
    """
    n, T = X.shape
    # suddengains only looks at intervals with >= 2 possible scores on each side:
    # pre column 1 .. T-3 (0-based), i.e. never the first or the last interval.
    intervals = range(1, T - 2)
    cv_table = {df: abs(stats.t.ppf(crit3_alpha / 2.0, df)) for df in (2, 3, 4)}
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
            npre, mpre, vpre = _window_stats(X[cand, max(0, i - 2) : i + 1])
            npost, mpost, vpost = _window_stats(X[cand, i + 1 : min(T, i + 4)])
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
    npre, mpre, vpre = _window_stats(block[:, :3])
    npost, mpost, vpost = _window_stats(block[:, 3:])
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
    res = _sudden_core(
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
    unknown = set(sudden_kwargs) - set(_SUDDEN_KEYS)
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}; the sudden criterion "
                        f"takes {list(_SUDDEN_KEYS)}")
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
    cnt, _, var = _window_stats(X)
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
    n, T = X.shape
    warn_msgs = []
    params = {}

    if criterion == "sudden":
        opts = {**_SUDDEN_DEFAULTS, **sudden_kwargs}
        rci, sd_used, source = _rci_from_data(X, reliability, sd)
        params.update(reliability=reliability, sd=sd_used, sd_source=source, rci=rci, **opts)
        if T < 4:
            warn_msgs.append(f"criterion='sudden' needs at least 4 sessions; the data have {T}, "
                             "so no rupture can be detected")
        res = _sudden_core(X, sign=1, cutoff=rci, pct=opts["pct"], crit3=opts["crit3"],
                           crit3_adjust=opts["crit3_adjust"], crit3_alpha=opts["crit3_alpha"],
                           crit3_critical_value=opts["crit3_critical_value"])
        r, jpre = res["row"], res["col"]
        j = jpre + 1
        thr_r = np.full(r.size, rci)
    else:
        D, prev = _consecutive_drops(X)
        if criterion == "absolute":
            thr = np.full(n, float(cutoff))
            params.update(cutoff=cutoff)
        elif criterion == "rci":
            rci, sd_used, source = _rci_from_data(X, reliability, sd)
            thr = np.full(n, rci)
            params.update(reliability=reliability, sd=sd_used, sd_source=source, rci=rci)
        else:  # sd
            params.update(k=k, scale=scale)
            within = _row_sd(X)
            changes = D[~np.isnan(D)]
            between = float(np.std(changes, ddof=1)) if changes.size >= 2 else np.nan
            if scale in ("between", "stricter"):
                params.update(between_sd=between)
                if not np.isfinite(between):
                    warn_msgs.append("fewer than 2 session-to-session changes in the sample: "
                                     "the between-client SD is undefined, no rupture detected")
            if scale == "within":
                thr = k * within
            elif scale == "between":
                thr = np.full(n, k * between)
            else:
                thr = k * np.maximum(within, between)  # NaN if either is undefined
        with np.errstate(invalid="ignore"):
            is_rup = (D > 0) & (D >= thr[:, None] - _EPS)
        r, j = np.nonzero(is_rup)
        jpre = prev[r, j]
        thr_r = thr[r]

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
    alliance="alliance",
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
    alliance : str, default "alliance"
        Alliance column in ``sessions``.
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
    for col in (id_col, session_col, alliance):
        if col not in sessions.columns:
            raise DataValidationError("sessions", col, "required column is missing")
    needed = ["participant_id", "rupture_session", "repaired", "criterion"]
    missing = [c for c in needed if c not in episodes.columns]
    if missing:
        raise ValueError(f"episodes lacks columns {missing}; pass the output of detect_episodes")
    n_obs = sessions.groupby(id_col, sort=True)[alliance].count()
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
        ["insufficient_data", "unrepaired", "repaired"],
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
