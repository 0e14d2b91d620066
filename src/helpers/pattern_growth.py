"""The growth model's session x unrepaired interaction, pooled over imputed patterns.

:func:`unrepaired_slope` estimates the growth model's ``time:unrepaired`` interaction
(:mod:`helpers.growth`: the symptom score over sessions ~ time * pattern, random intercept
and slope per client) with the uncertainty of the model-based patterns
(:mod:`helpers.pattern_model`) carried into it by multiple imputation, as
:func:`helpers.pattern_model.unrepaired_effect` does for the paper's regression. The symptom
course is in the imputation model: drawing the patterns from P(pattern | alliance) alone would
bring back the attenuation of misclassification.

Imputation model
----------------
Per classifiable client ``i`` with at least :data:`MIN_COURSE` observed scores, the course
summary ``y_i`` is the client's least-squares slope of the score over its observed sessions,
and ``x_i = (1, first observed score)``. The categories are no rupture, repaired, and
unrepaired with the rupture that sets the pattern at session ``j``
(:attr:`helpers.pattern_model.PatternModel.unrepaired_at`: P(unrepaired, rupture at j | alliance)).
An unrepaired rupture at ``j`` is taken to bend the course from ``j`` on, so it moves the
client's slope by ``g_U + g_E h_i(j)``, ``h_i(j)`` the client's least-squares slope of
``max(session - j, 0)`` over its own observed sessions: a rupture late in a client's course,
or after its last score, changes its slope little or not at all. Then

    y_i = x_i' g + shift_c + e_i,   e_i ~ N(0, s_k^2),

shift 0 for no rupture, ``g_R`` for repaired, ``g_U + g_E h_i(j)`` for unrepaired at ``j``,
a residual variance per pattern ``k``; the draws come from the Gibbs sampler of
:func:`helpers.pattern_model.impute_patterns` (parameters drawn in every sweep), so each
client's pattern is drawn from P(pattern | alliance) x p(course | first score, pattern).
Clients with fewer scores are drawn from P(pattern | alliance) alone (their course says
nothing about the slope, and they carry almost no weight on it in the growth model).

Analysis and pooling
--------------------
Each completed data set is the growth model's design of the scores with the drawn patterns
(:func:`helpers.growth.growth_design`), all fitted at once (:func:`helpers.growth.fit_growth_lean`:
REML, random intercept and slope, a singular fit refitted with a random intercept); the
interaction's SE is CR2 with Bell-McCaffrey df (:func:`helpers.growth.term_cr2`), because the
model SE under-covers even with the true patterns (notebook 05). The completed-data results
are pooled by :func:`helpers.pooling.rubin_rules` with the Barnard-Rubin df, the complete-data
df being the mean Bell-McCaffrey df over the imputations.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from helpers import growth
from helpers.contract import INSUFFICIENT, PATTERN_LABELS, DataValidationError
from helpers.pattern_model import PatternModel, draw_categorical, impute_patterns, wide_scores
from helpers.pooling import rubin_rules

__all__ = ["SLOPE_COLUMNS", "MIN_COURSE", "unrepaired_slope"]

#: Columns of :func:`unrepaired_slope`'s one-row result, in their fixed order.
SLOPE_COLUMNS = ["b", "se", "ci_low", "ci_high", "df", "p", "fmi", "n", "expected_n_unrepaired",
                 "n_imputations", "n_not_estimable", "n_failed", "n_simplified"]
#: Fewest observed scores for a client's course to enter the imputation model.
MIN_COURSE = 3
#: The interaction estimated (:data:`helpers.growth.UNREPAIRED_SLOPE`).
TERM = growth.UNREPAIRED_SLOPE


def _ls_slopes(t, Y):
    """Least-squares slope of every column of ``Y`` (clients x sessions x k) on ``t`` (clients x
    sessions), over each client's observed sessions (NaN in ``t`` = not observed)."""
    obs = ~np.isnan(t)
    n_obs = obs.sum(axis=1)
    t0 = np.where(obs, t, 0.0)
    mean_t = t0.sum(axis=1, keepdims=True) / np.maximum(n_obs, 1)[:, None]
    tc = np.where(obs, t0 - mean_t, 0.0)
    sxx = (tc**2).sum(axis=1)
    # fewer than two observed sessions: no slope (NaN; such clients are not summarised)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("is,isk->ik", tc, np.where(obs[:, :, None], Y, 0.0)) / sxx[:, None], n_obs


def _course_summaries(scores, sessions):
    """Per client: the slope of its scores over its observed sessions, its first observed score,
    the number of them, and ``h[:, j]``, the slope of ``max(session - sessions[j], 0)`` (the
    bend of a rupture at session j) over the same sessions."""
    obs = ~np.isnan(scores)
    t = np.where(obs, sessions[None, :], np.nan)
    kink = np.maximum(sessions[None, :, None] - sessions[None, None, :], 0.0)  # (1, s, j)
    stacked = np.concatenate([np.nan_to_num(scores)[:, :, None],
                              np.broadcast_to(kink, (len(scores), *kink.shape[1:]))], axis=2)
    slopes, n_obs = _ls_slopes(t, stacked)
    first = np.array([row[o][0] if o.any() else np.nan for row, o in zip(scores, obs)])
    return slopes[:, 0], first, n_obs, slopes[:, 1:]


def _impute(model, scores, sessions, n_imputations, rng, burn_in, thin):
    """Pattern codes (n_imputations x clients) of the classifiable clients (-1 elsewhere)."""
    probs = model.probabilities
    cls = probs["pattern"].to_numpy() != INSUFFICIENT
    slope, first, n_obs, h = _course_summaries(scores, sessions)
    course = cls & (n_obs >= MIN_COURSE)
    p3 = probs[["p_no_rupture", "p_repaired", "p_unrepaired"]].to_numpy(dtype=float)
    at = model.unrepaired_at
    used = np.flatnonzero(at[course].any(axis=0))  # rupture sessions that occur
    prior = np.column_stack([p3[course, :2], at[course][:, used]])
    seen = np.column_stack([np.zeros((course.sum(), 2)), h[course][:, used]])
    base = np.column_stack([np.ones(course.sum()), first[course]])
    z = np.full((n_imputations, len(cls)), -1, dtype=np.int64)
    if course.any():
        z[:, course] = impute_patterns(prior, seen, slope[course], base, n_imputations, rng, burn_in, thin)
    # no course to learn from: the alliance alone (normalised, as the three probabilities may
    # not sum to 1 exactly in floating point)
    rest = cls & ~course
    if rest.any():
        p = p3[rest] / p3[rest].sum(axis=1, keepdims=True)
        for k in range(n_imputations):
            z[k, rest] = draw_categorical(p, rng)
    return z


def _aligned_patterns(patterns, ids):
    """Labels of the hard ``patterns`` table (participant_id, pattern) for the rows ``ids``;
    a participant it lacks is insufficient_data."""
    missing = [c for c in ("participant_id", "pattern") if c not in patterns.columns]
    if missing:
        raise DataValidationError("patterns", missing[0], "required column is missing")
    lab = patterns.drop_duplicates("participant_id").set_index("participant_id")["pattern"]
    return lab.reindex(ids).fillna(INSUFFICIENT).to_numpy(dtype=object)


def _completed_fits(scores, sessions, labels, spec):
    """The interaction's CR2 result per completed data set (rows of ``labels``; each distinct
    one fitted once) and whether the fit kept the random slope. None where no client is
    unrepaired (the term is not in the model); the exception where the growth model cannot be
    fitted (warned: the pooled result is then NaN, as the trial's own fit would fail)."""
    uniq, which = np.unique(labels.astype(str), axis=0, return_inverse=True)
    designs = [growth.growth_design(scores, u.astype(object), sessions=sessions, spec=spec) for u in uniq]
    fits = growth.fit_growth_lean(designs)
    out = []
    for des, res in zip(designs, fits):
        if isinstance(res, Exception):
            warnings.warn(f"a completed data set's growth model failed ({type(res).__name__}: {res}); "
                          "the pooled interaction is NaN", UserWarning, stacklevel=3)
            out.append(res)
            continue
        cr2 = growth.term_cr2(des, res, TERM)
        out.append(None if cr2 is None else {**cr2, "simplified": res["simplified"]})
    return [out[i] for i in np.ravel(which)]


def _pool(results, expected_unrep, n, level):
    """The row of :data:`SLOPE_COLUMNS` from the completed-data results."""
    m = len(results)
    failed = sum(isinstance(r, Exception) for r in results)
    ok = [r for r in results if isinstance(r, dict)]
    row = {"n": n, "expected_n_unrepaired": expected_unrep, "n_imputations": m,
           "n_not_estimable": m - len(ok) - failed, "n_failed": failed,
           "n_simplified": sum(r["simplified"] for r in ok)}
    if len(ok) < m:  # leaving those data sets out would pool a selection of the imputations
        return {**dict.fromkeys(["b", "se", "ci_low", "ci_high", "df", "p", "fmi"], np.nan), **row}
    b, se, df = (np.array([r[k] for r in ok]) for k in ("estimate", "se", "df"))
    if m == 1:  # hard patterns: the one CR2 test
        r = ok[0]
        return {"b": r["estimate"], "se": r["se"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                "df": r["df"], "p": r["p"], "fmi": 0.0, **row}
    pooled = rubin_rules(b, se**2, df_complete=float(df.mean()), level=level)
    return {"b": pooled["estimate"], "se": pooled["se"], "ci_low": pooled["ci_low"],
            "ci_high": pooled["ci_high"], "df": pooled["df"], "p": pooled["p"], "fmi": pooled["fmi"], **row}


def unrepaired_slope(model: PatternModel | None, sessions, patterns=None, *, outcome="pss_sr",
                     n_imputations=20, seed=None, level=0.95, burn_in=200, thin=10) -> pd.DataFrame:
    """The growth model's session x unrepaired interaction with the patterns' uncertainty
    carried (multiple imputation, the symptom course in the imputation model), CR2 SEs.

    Parameters
    ----------
    model : PatternModel or None
        From :func:`helpers.pattern_model.fit_pattern_model` on the same ``sessions``; its
        ``probabilities`` and ``unrepaired_at`` give P(pattern | alliance). None when
        ``patterns`` is given.
    sessions : DataFrame
        Long sessions table (``participant_id``, ``session``, ``outcome``).
    patterns : DataFrame, optional
        Hard patterns (``participant_id``, ``pattern``; e.g. a threshold criterion's or the
        true ones): then no imputation -- the one CR2 test of the growth model on them
        (``fmi`` 0, ``n_imputations`` 1), the same columns.
    outcome : str, default "pss_sr"
        Session-level symptom score.
    n_imputations : int, default 20
        Completed data sets (m >= 2).
    seed : int, optional
        Seed of :func:`numpy.random.default_rng`: the same seed gives the same result.
    level : float, default 0.95
    burn_in, thin : int
        Gibbs sweeps before the first kept draw, and between kept draws.

    Returns
    -------
    DataFrame
        One row (:data:`SLOPE_COLUMNS`): ``b`` (the interaction, score points per session),
        ``se``, ``ci_low``, ``ci_high``, ``df`` (Barnard-Rubin over the mean Bell-McCaffrey
        df), ``p``, ``fmi`` (0 when every imputation gives the same estimate), ``n``
        (classifiable clients), ``expected_n_unrepaired`` (mean over the completed data
        sets), ``n_imputations``, ``n_not_estimable`` (completed data sets without an
        unrepaired client), ``n_failed`` (completed data sets whose growth model could not be
        fitted, warned) -- with either, the estimates are NaN: leaving those data sets out
        would pool a selection of the imputations -- and ``n_simplified`` (fits refitted with
        a random intercept only).

    Notes
    -----
    What it assumes (the imputation model is in the module docstring): the pattern model's
    hyperparameters are known (their uncertainty is not propagated); a client's course speaks
    to its pattern only through its least-squares slope, given its first observed score, with
    an unrepaired rupture bending the course at its session and no effect of a repaired one
    beyond a constant shift; the first observed score does not depend on the pattern (a
    rupture needs a session before it); within each pattern the slopes are normal with their
    own variance; and the growth model's GLS estimate with CR2 SEs is the analysis of a
    completed data set (the estimand is the interaction of the growth model fitted with the
    true patterns, not a parameter of a correct model of the course).

    Examples
    --------
    >>> from helpers.simulate import simulate_trial
    >>> from helpers.pattern_model import fit_pattern_model
    >>> trial = simulate_trial(seed=1)
    >>> model = fit_pattern_model(trial.sessions, reliability=0.83)
    >>> r = unrepaired_slope(model, trial.sessions, n_imputations=3, seed=1, burn_in=20, thin=2)
    >>> list(r.columns[:4]), bool(r["ci_low"].iloc[0] < r["b"].iloc[0] < r["ci_high"].iloc[0])
    (['b', 'se', 'ci_low', 'ci_high'], True)
    """
    ids, sessions_, scores = wide_scores(sessions, "participant_id", "session", outcome)
    sessions_ = sessions_.astype(float)
    spec = growth.GrowthSpec(outcome=outcome)
    labels_of = np.asarray(PATTERN_LABELS, dtype=object)
    if patterns is not None:
        labels = _aligned_patterns(patterns, ids)[None, :]
    else:
        if model is None:
            raise ValueError("give a pattern model or hard patterns")
        if isinstance(n_imputations, bool) or int(n_imputations) != n_imputations or n_imputations < 2:
            raise ValueError(f"n_imputations must be a whole number >= 2, got {n_imputations!r}")
        if model.unrepaired_at is None:
            raise ValueError("the pattern model has no unrepaired_at (fit it with this version)")
        model_ids = model.probabilities["participant_id"].to_numpy()
        if len(model_ids) != len(ids) or not np.array_equal(model_ids, ids):
            raise ValueError("the pattern model was not fitted to these sessions' participants")
        rng = np.random.default_rng(seed)
        z = _impute(model, scores, sessions_, int(n_imputations), rng, int(burn_in), int(thin))
        labels = np.where(z >= 0, labels_of[np.maximum(z, 0)], INSUFFICIENT)
    n = int(np.isin(labels[0], PATTERN_LABELS).sum())
    if n == 0:
        warnings.warn("no classifiable client: the interaction is not estimable", UserWarning, stacklevel=2)
    expected = float((labels == "unrepaired").sum(axis=1).mean())
    results = _completed_fits(scores, sessions_, labels, spec) if n else [None] * len(labels)
    return pd.DataFrame([_pool(results, expected, n, level)], columns=SLOPE_COLUMNS)
