"""Outcome analyses of McLaughlin et al. (2014), on the field's libraries: chi-square tests of
pattern x MDD and x childhood abuse (pingouin's ``chi2_independence``, with an exact or
Monte-Carlo p where an expected count is below 5), the outcome regression of the paper's beta
(statsmodels' formula API, classical and HC3 standard errors) and the pre/post mixed ANOVA
(pingouin's ``mixed_anova``). The growth model is in :mod:`helpers.growth`.

Every function takes tidy tables plus column names and returns a tidy DataFrame with the
estimate, its uncertainty, the test statistic, df, p and N, in the style of pingouin.
Rows that cannot enter an analysis (a missing grouping variable, a missing pre/post score)
are dropped listwise; how many is reported in the output (``n_dropped``) and warned.

statsmodels (0.6 s) and pingouin (0.5 s) are imported by the functions that fit: notebook 04
and the power study import this module's neighbours without fitting anything.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd

from helpers.contract import INSUFFICIENT, PATTERN_LABELS
from helpers.ols import beta_scale, leverage_is_one

#: Outcome measure -> (pre column, post column) of the participants table.
OUTCOMES = {"pss_i": ("pss_i_pre", "pss_i_post"), "pss_sr": ("pss_sr_pre", "pss_sr_post")}

#: Largest number of tables enumerated for an exact r x 2 test before falling back to
#: Monte-Carlo.
_MAX_EXACT_TABLES = 2_000_000


# --------------------------------------------------------------------------------------------
# chi-square: pattern x participant characteristic
# --------------------------------------------------------------------------------------------
def pattern_by(patterns, participants, by, pattern_col="pattern", exclude=(INSUFFICIENT,)):
    """One row per classifiable participant: participant_id and pattern (as text) and ``by``
    (possibly missing): the table :func:`pattern_chi2` tests."""
    pats = patterns[["participant_id", pattern_col]].rename(columns={pattern_col: "pattern"})
    pats = pats.assign(participant_id=pats["participant_id"].astype(str),
                       pattern=pats["pattern"].astype(str))
    pats = pats[~pats["pattern"].isin(list(exclude))]
    parts = participants[["participant_id", by]].assign(
        participant_id=participants["participant_id"].astype(str))
    return pats.merge(parts, on="participant_id", how="left", validate="one_to_one")


def pattern_crosstab(patterns, participants, by="mdd", *, pattern_col="pattern",
                     exclude=(INSUFFICIENT,)):
    """Observed and expected counts of alliance pattern x ``by``.

    Parameters
    ----------
    patterns : DataFrame
        participant_id and ``pattern_col`` (one row per participant).
    participants : DataFrame
        participant_id and ``by``.
    by : str
        Characteristic to cross with the pattern (e.g. "mdd", "child_abuse").
    pattern_col : str
    exclude : sequence of str
        Patterns left out (by default the participants with too few alliance ratings).

    Returns
    -------
    observed, expected : DataFrame
        Rows: patterns (display order), columns: the levels of ``by``; expected counts are
        ``row total * column total / N``. Participants with a missing ``by`` are not counted.
    """
    d = pattern_by(patterns, participants, by, pattern_col, exclude)
    return _crosstab(d[d[by].notna()], by)


def _crosstab(d, by):
    """:func:`pattern_crosstab` of the merged table of :func:`pattern_by` (``by`` observed)."""
    order = [p for p in PATTERN_LABELS if p in set(d["pattern"])]
    order += sorted(set(d["pattern"]) - set(order))
    observed = pd.crosstab(pd.Categorical(d["pattern"], categories=order),
                           d[by].to_numpy(dtype=object))
    observed.index = pd.Index(order, name="pattern")
    observed.columns = pd.Index(list(observed.columns), name=by)
    n = observed.to_numpy().sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / n
    expected = pd.DataFrame(expected, index=observed.index, columns=observed.columns)
    return observed, expected


def _chi2_stat(obs, expected):
    return float(((obs - expected) ** 2 / expected).sum())


def exact_p_rx2(observed):
    """Exact p of Pearson's chi-square for an r x 2 table with fixed margins.

    Enumerates every table with the observed margins (multivariate hypergeometric
    probabilities) and sums the probability of those whose chi-square is at least the
    observed one (Freeman-Halton style, ordered by the chi-square statistic).

    Returns
    -------
    float, or NaN when the enumeration would exceed ``_MAX_EXACT_TABLES`` tables.
    """
    obs = np.asarray(observed, dtype=int)
    if obs.shape[1] != 2:
        obs = obs.T
    rows = obs.sum(axis=1)
    c1, n = int(obs[:, 0].sum()), int(obs.sum())
    if math.prod(int(r) + 1 for r in rows) > _MAX_EXACT_TABLES:
        return np.nan
    cols = obs.sum(axis=0)
    expected = np.outer(rows, cols) / n
    chi_obs = _chi2_stat(obs, expected)
    log_denom = _log_comb(n, c1)
    p = 0.0
    for a in itertools.product(*(range(int(r) + 1) for r in rows[:-1])):
        last = c1 - sum(a)
        if last < 0 or last > rows[-1]:
            continue
        col0 = np.array([*a, last])
        table = np.column_stack([col0, rows - col0])
        if _chi2_stat(table, expected) >= chi_obs - 1e-9 * max(1.0, chi_obs):
            p += math.exp(sum(_log_comb(int(r), int(k)) for r, k in zip(rows, col0)) - log_denom)
    return min(p, 1.0)


def _log_comb(n, k):
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def monte_carlo_p(x, y, *, n_monte_carlo=10_000, seed=None):
    """Monte-Carlo p of Pearson's chi-square (fixed margins, as R's ``simulate.p.value``).

    Permuting ``y`` against ``x`` draws tables from the hypergeometric distribution with both
    margins fixed. ``p = (1 + #{chi2_sim >= chi2_obs}) / (B + 1)``.
    """
    rng = np.random.default_rng(seed)
    xc = pd.factorize(np.asarray(x, dtype=object))[0]
    yc = pd.factorize(np.asarray(y, dtype=object))[0]
    r, c = xc.max() + 1, yc.max() + 1
    obs = np.zeros((r, c))
    np.add.at(obs, (xc, yc), 1)
    expected = np.outer(obs.sum(1), obs.sum(0)) / obs.sum()
    chi_obs = _chi2_stat(obs, expected)
    hits = 0
    for _ in range(n_monte_carlo):
        sim = np.zeros((r, c))
        np.add.at(sim, (xc, rng.permutation(yc)), 1)
        hits += _chi2_stat(sim, expected) >= chi_obs - 1e-9 * max(1.0, chi_obs)
    return (1 + hits) / (n_monte_carlo + 1)


def _pearson(d, by) -> pd.Series:
    """The "pearson" row of pingouin's ``chi2_independence`` of pattern x ``by`` (no
    continuity correction: Yates' only concerns 2 x 2 tables): chi2, dof, pval, cramer."""
    import pingouin as pg  # 0.5 s to import (see the module docstring)

    with warnings.catch_warnings():
        # pingouin's "Low count on observed/expected frequencies": pattern_chi2 reports the
        # expected counts below 5 itself (n_expected_lt5) and warns with the exact p it gives
        warnings.filterwarnings("ignore", message="Low count on (observed|expected) frequencies",
                                category=UserWarning, module="pingouin")
        # an empty cell makes scipy divide by zero in the log-likelihood and Neyman statistics
        # pingouin computes beside Pearson's (whose expected counts are never 0); unused here
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="scipy.stats")
        _, _, stats = pg.chi2_independence(d, x="pattern", y=by, correction=False)
    return stats.set_index("test").loc["pearson"]


def pattern_chi2(patterns, participants, by="mdd", *, pattern_col="pattern",
                 exclude=(INSUFFICIENT,), n_monte_carlo=10_000, seed=20131106,
                 warn=True) -> pd.DataFrame:
    """Pearson chi-square test of independence: alliance pattern x ``by``.

    Parameters
    ----------
    patterns : DataFrame
        participant_id and ``pattern_col``.
    participants : DataFrame
        participant_id and ``by``.
    by : str
        e.g. "mdd" (co-occurring major depression) or "child_abuse".
    pattern_col : str
    exclude : sequence of str
        Patterns left out before testing.
    n_monte_carlo : int
        Replicates of the Monte-Carlo p, used when an expected count is below 5 and the
        table is not r x 2 (r x 2 tables get an exact p by enumeration).
    seed : int or None
        Seed of ``numpy.random.default_rng`` for the Monte-Carlo p.
    warn : bool
        Warn about dropped participants and small expected counts (always reported in the
        output).

    Returns
    -------
    DataFrame
        One row: by, n, n_dropped, dof, chi2, p, cramers_v, min_expected, n_expected_lt5,
        p_exact, p_exact_method. ``p_exact`` is NaN (method "") when every expected count is
        at least 5.

    Notes
    -----
    The statistic, its p and Cramer's V (``sqrt(chi2 / (N (min(r, c) - 1)))``) are pingouin's
    ``chi2_independence`` (``correction=False``: Yates' correction only concerns 2 x 2 tables).
    Get the tables with :func:`pattern_crosstab`.

    References
    ----------
    McLaughlin et al. (2014): pattern x MDD chi2(2, N = 82) = 2.69, p = .26; pattern x
    childhood abuse chi2(2, N = 81) = 0.57, p = .75.

    Examples
    --------
    >>> import pandas as pd
    >>> patterns = pd.DataFrame({"participant_id": list("abcdefghijkl"),
    ...     "pattern": ["no_rupture"] * 6 + ["repaired"] * 3 + ["unrepaired"] * 3})
    >>> participants = pd.DataFrame({"participant_id": list("abcdefghijkl"),
    ...     "mdd": [True, False] * 6})
    >>> res = pattern_chi2(patterns, participants, by="mdd", warn=False)
    >>> res[["n", "dof"]].values.tolist(), round(float(res["chi2"].iloc[0]), 4)
    ([[12, 2]], 0.6667)

    (By hand: MDD yes/no is 3/3, 2/1, 1/2 by pattern, expected 3/3, 1.5/1.5, 1.5/1.5, so
    chi2 = 4 x 0.5^2 / 1.5 = 0.6667.)
    """
    d = pattern_by(patterns, participants, by, pattern_col, exclude)
    missing = d[by].isna()
    n_dropped = int(missing.sum())
    if n_dropped and warn:
        warnings.warn(f"pattern_chi2: {n_dropped} classifiable participants with missing "
                      f"{by!r} left out", UserWarning, stacklevel=2)
    d = d[~missing]
    observed, expected = _crosstab(d, by)  # = pattern_crosstab(patterns, participants, by, ...)
    d = d.assign(**{by: d[by].astype(str)})
    if observed.shape[0] < 2 or observed.shape[1] < 2:
        raise ValueError(f"pattern_chi2: need at least 2 patterns and 2 levels of {by!r}, "
                         f"got table\n{observed}")
    pearson = _pearson(d, by)
    n = int(observed.to_numpy().sum())
    min_exp = float(expected.to_numpy().min())
    n_low = int((expected.to_numpy() < 5).sum())
    p_exact, method = np.nan, ""
    if n_low:
        p_exact = exact_p_rx2(observed) if 2 in observed.shape else np.nan
        if np.isfinite(p_exact):
            method = "exact (enumeration, chi2 ordering)"
        else:
            p_exact = monte_carlo_p(d["pattern"], d[by], n_monte_carlo=n_monte_carlo,
                                    seed=seed)
            method = f"monte-carlo (B={n_monte_carlo}, seed={seed})"
        if warn:
            warnings.warn(f"pattern_chi2 ({by}): {n_low} expected counts < 5 (min "
                          f"{min_exp:.2f}); p_exact ({method}) = {p_exact:.4f} reported",
                          UserWarning, stacklevel=2)
    return pd.DataFrame([{
        "by": by, "n": n, "n_dropped": n_dropped, "dof": int(pearson["dof"]), "chi2": float(pearson["chi2"]),
        "p": float(pearson["pval"]), "cramers_v": float(pearson["cramer"]),
        "min_expected": min_exp, "n_expected_lt5": n_low, "p_exact": p_exact,
        "p_exact_method": method,
    }])


# --------------------------------------------------------------------------------------------
# outcome regression: post ~ pre + pattern indicators
# --------------------------------------------------------------------------------------------
MODEL_TERMS = {"A": ("unrepaired",), "B": ("repaired", "unrepaired")}
MODEL_LABELS = {"A": "unrepaired vs all other classifiable",
                "B": "repaired and unrepaired vs no_rupture"}


def regression_data(patterns, participants, *, outcome="pss_i", pattern_col="pattern"):
    """Classifiable participants with pre, post and 0/1 pattern indicators.

    Returns
    -------
    data : DataFrame
        participant_id, pattern, pre, post, repaired, unrepaired (complete cases).
    n_dropped : int
        Classifiable participants left out for a missing pre or post score (or a missing row
        in ``participants``).
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}")
    pre, post = OUTCOMES[outcome]
    pats = patterns[["participant_id", pattern_col]].rename(columns={pattern_col: "pattern"})
    pats = pats.assign(participant_id=pats["participant_id"].astype(str),
                       pattern=pats["pattern"].astype(str))
    pats = pats[pats["pattern"].isin(PATTERN_LABELS)]
    parts = participants[["participant_id", pre, post]].rename(columns={pre: "pre", post: "post"})
    parts = parts.assign(participant_id=parts["participant_id"].astype(str))
    d = pats.merge(parts, on="participant_id", how="left", validate="one_to_one")
    complete = d["pre"].notna() & d["post"].notna()
    d = d[complete].copy()
    d[["pre", "post"]] = d[["pre", "post"]].astype(float)
    d["repaired"] = (d["pattern"] == "repaired").astype(float)
    d["unrepaired"] = (d["pattern"] == "unrepaired").astype(float)
    d = d.sort_values("participant_id", kind="mergesort").reset_index(drop=True)
    return d, int((~complete).sum())


#: Columns of :func:`outcome_regression`'s table, in order.
REGRESSION_COLUMNS = ["outcome", "model", "contrast", "term", "b", "se", "ci_low", "ci_high", "beta", "beta_ci_low",
                      "beta_ci_high", "se_type", "t", "df", "p", "n", "n_dropped", "r2", "r2_adj"]


def _ols_table(d, terms, model, outcome, n_dropped, cov_type="nonrobust"):
    """One model's rows of :func:`outcome_regression`: statsmodels'
    ``smf.ols("post ~ pre + <terms>", data=d).fit(cov_type, use_t=True)`` (t tests on the
    residual df for HC3 too), standardised with :func:`helpers.ols.beta_scale`."""
    import statsmodels.formula.api as smf  # 0.6 s to import (see the module docstring)

    ols = smf.ols(f"post ~ pre + {' + '.join(terms)}", data=d)
    fit = ols.fit(use_t=True)
    hc3_undefined = cov_type == "HC3" and _has_leverage_one(ols)
    if cov_type != "nonrobust" and not hc3_undefined:
        fit = ols.fit(cov_type=cov_type, use_t=True)
    names = list(fit.params.index)
    ci = fit.conf_int(0.05)
    table = {"b": fit.params.to_numpy(), "se": fit.bse.to_numpy(), "ci_low": ci[0].to_numpy(),
             "ci_high": ci[1].to_numpy(), "t": fit.tvalues.to_numpy(), "p": fit.pvalues.to_numpy()}
    if hc3_undefined:
        warnings.warn(f"outcome_regression ({outcome}, model {model}): a client has leverage 1 (alone in its "
                      "pattern): the HC3 standard errors are undefined (NaN)", UserWarning, stacklevel=3)
        table.update({key: np.full(len(names), np.nan) for key in ("se", "ci_low", "ci_high", "t", "p")})
    scale = np.array([beta_scale(d[c], d["post"]) if c != "Intercept" else np.nan for c in names])
    with np.errstate(all="ignore"):  # silent, as pandas' Series arithmetic (0 x inf for a constant post)
        beta, beta_ci_low, beta_ci_high = (table[k] * scale for k in ("b", "ci_low", "ci_high"))
    out = pd.DataFrame({
        "outcome": outcome, "model": model, "contrast": MODEL_LABELS[model], "term": names,
        "b": table["b"], "se": table["se"], "ci_low": table["ci_low"], "ci_high": table["ci_high"],
        "beta": beta, "beta_ci_low": beta_ci_low, "beta_ci_high": beta_ci_high, "se_type": cov_type,
        "t": table["t"], "df": fit.df_resid, "p": table["p"], "n": int(fit.nobs), "n_dropped": n_dropped,
        "r2": fit.rsquared, "r2_adj": fit.rsquared_adj,
    })
    return out[REGRESSION_COLUMNS]


def _has_leverage_one(ols) -> bool:
    """Whether a client of the fitted regression has leverage 1
    (:func:`helpers.ols.leverage_is_one`), the leverages ``diag(X pinv(X))`` from statsmodels'
    own pseudo-inverse."""
    return bool(leverage_is_one((ols.exog * ols.pinv_wexog.T).sum(axis=1)).any())


def outcome_regression(patterns, participants, *, outcome="pss_i", models=("A", "B"),
                       pattern_col="pattern", cov_type="nonrobust", warn=True) -> pd.DataFrame:
    """Post-treatment PTSD severity on alliance pattern, controlling for pre-treatment severity.

    Model A: ``post ~ pre + unrepaired`` (unrepaired vs every other classifiable participant,
    the paper's test). Model B: ``post ~ pre + repaired + unrepaired`` (reference: no_rupture).
    OLS by statsmodels' formula API (``smf.ols(...).fit()``, ``.fit(cov_type="HC3")``) on the
    classifiable participants with both scores (listwise deletion).

    Parameters
    ----------
    patterns : DataFrame
        participant_id and ``pattern_col``.
    participants : DataFrame
        participant_id and the pre/post columns of ``outcome``.
    outcome : {"pss_i", "pss_sr"}
        PSS-I (``pss_i_pre``/``pss_i_post``) or PSS-SR (``pss_sr_pre``/``pss_sr_post``).
    models : sequence of {"A", "B"}
    pattern_col : str
    cov_type : {"nonrobust", "HC3"}
        Standard errors: "nonrobust" (classical OLS, the paper's test) or "HC3" (MacKinnon &
        White, 1985), which does not assume equal residual variances; t tests on the residual
        df either way (column ``se_type``). HC3 is undefined when a client has leverage 1 (the
        only client of a pattern; :func:`helpers.ols.leverage_is_one`): its SEs, CIs, t and p
        are then NaN, with a warning.
    warn : bool
        Warn when participants are dropped (always reported in ``n_dropped``).

    Returns
    -------
    DataFrame
        One row per model x term: outcome, model, contrast, term, b, se, ci_low, ci_high
        (95% CI of b), beta, beta_ci_low, beta_ci_high, t, df, p, n, n_dropped, r2, r2_adj.

    Notes
    -----
    ``beta = b * sd(x) / sd(post)`` (sample SDs in the analysis sample), i.e. the coefficient
    of the regression on z-scored variables; its CI is the CI of b scaled the same way (the
    t statistic is unchanged by the scaling). The intercept has no beta.

    References
    ----------
    McLaughlin et al. (2014): unrepaired rupture, standardised beta = .45, p = .001.
    """
    d, n_dropped = regression_data(patterns, participants, outcome=outcome,
                                   pattern_col=pattern_col)
    if n_dropped and warn:
        warnings.warn(f"outcome_regression ({outcome}): {n_dropped} classifiable participants "
                      "without both pre and post scores left out (listwise)", UserWarning,
                      stacklevel=2)
    unknown = set(models) - set(MODEL_TERMS)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; use 'A' and/or 'B'")
    tables = [_ols_table(d, MODEL_TERMS[m], m, outcome, n_dropped, cov_type) for m in models]
    return pd.concat(tables, ignore_index=True)


# --------------------------------------------------------------------------------------------
# pre/post mixed ANOVA
# --------------------------------------------------------------------------------------------
def prepost_complete(patterns, participants, *, outcome="pss_sr", pattern_col="pattern",
                     warn=True) -> tuple[pd.DataFrame, int]:
    """Classifiable participants with both ``{outcome}_pre`` and ``{outcome}_post`` (listwise),
    and how many classifiable participants were left out (warned about, as the analysis of
    :func:`mixed_anova_prepost`).

    Returns
    -------
    data : DataFrame
        participant_id (str), pattern, ``{outcome}_pre``, ``{outcome}_post``.
    n_dropped : int
    """
    pre, post = f"{outcome}_pre", f"{outcome}_post"
    pats = patterns[["participant_id", pattern_col]].rename(columns={pattern_col: "pattern"})
    pats = pats.assign(participant_id=pats["participant_id"].astype(str),
                       pattern=pats["pattern"].astype(str))
    pats = pats[pats["pattern"].isin(PATTERN_LABELS)]
    parts = participants[["participant_id", pre, post]].assign(
        participant_id=participants["participant_id"].astype(str))
    d = pats.merge(parts, on="participant_id", how="left", validate="one_to_one")
    complete = d[pre].notna() & d[post].notna()
    n_dropped = int((~complete).sum())
    if n_dropped and warn:
        warnings.warn(f"mixed_anova_prepost: {n_dropped} classifiable participants without both "
                      f"{pre} and {post} left out (listwise)", UserWarning, stacklevel=3)
    return d[complete], n_dropped


def prepost_long(patterns, participants, *, outcome="pss_sr", pattern_col="pattern",
                 warn=True) -> tuple[pd.DataFrame, int]:
    """:func:`prepost_complete` in the long layout a mixed ANOVA takes: participant_id, pattern,
    time ("pre" / "post"), score; and the number left out.

    Raises
    ------
    ValueError
        No classifiable participant has both scores.
    """
    d, n_dropped = prepost_complete(patterns, participants, outcome=outcome, pattern_col=pattern_col,
                                    warn=warn)
    if d.empty:
        raise ValueError("mixed ANOVA: no subject with scores at both levels")
    pre, post = f"{outcome}_pre", f"{outcome}_post"
    long = d.melt(id_vars=["participant_id", "pattern"], value_vars=[pre, post], var_name="time",
                  value_name="score")
    long["time"] = long["time"].map({pre: "pre", post: "post"})
    long["score"] = long["score"].astype(float)
    return long, n_dropped


def mixed_anova_prepost(patterns, participants, *, outcome="pss_sr", pattern_col="pattern",
                        warn=True) -> pd.DataFrame:
    """Mixed ANOVA: pre/post (within) x alliance pattern (between), by pingouin.

    Uses the classifiable participants with both ``{outcome}_pre`` and ``{outcome}_post``
    (listwise deletion, as a repeated-measures ANOVA must), in the long layout pingouin's
    ``mixed_anova(data, dv="score", within="time", subject="participant_id",
    between="pattern")`` takes.

    Returns
    -------
    DataFrame
        pingouin's table -- Source (pattern, time, Interaction), SS, DF1, DF2, MS, F, p_unc,
        np2 (partial eta-squared), eps (Greenhouse-Geisser epsilon; 1 with two repeated
        measures) -- plus n (listwise N), n_dropped and outcome.

    Raises
    ------
    ValueError
        No classifiable participant has both scores.

    References
    ----------
    McLaughlin et al. (2014): PTSD severity (PSS-SR) fell from pre- to post-treatment, and the
    fall differed by alliance pattern (the time x pattern interaction). Vallat, R. (2018).
    Pingouin: statistics in Python. Journal of Open Source Software, 3(31), 1026.
    """
    import pingouin as pg  # 0.5 s to import (see the module docstring)

    long, n_dropped = prepost_long(patterns, participants, outcome=outcome, pattern_col=pattern_col, warn=warn)
    with warnings.catch_warnings():
        # pingouin 0.7 calls DataFrame.dropna(inplace=True), which pandas 3.1 deprecates: a
        # note to pingouin's authors, not about these data
        warnings.filterwarnings("ignore", message="The inplace keyword", module="pingouin")
        table = pg.mixed_anova(data=long, dv="score", within="time", subject="participant_id",
                               between="pattern")
    return table.assign(n=long["participant_id"].nunique(), n_dropped=n_dropped, outcome=outcome)
