"""Outcome analyses of McLaughlin et al. (2014): chi-square tests of pattern x MDD and x
childhood abuse, the outcome regression (the paper's beta) and the pre/post mixed ANOVA
(pingouin). The growth model is in :mod:`helpers.growth`.

Every function takes tidy tables plus column names and returns a tidy DataFrame with the
estimate, its uncertainty, the test statistic, df, p and N, in the style of pingouin.
Rows that cannot enter an analysis (a missing grouping variable, a missing pre/post score)
are dropped listwise; how many is reported in the output (``n_dropped``) and warned.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd

from helpers.contract import INSUFFICIENT, PATTERN_LABELS
from helpers.ols import beta_scale

#: Outcome measure -> (pre column, post column) of the participants table.
OUTCOMES = {"pss_i": ("pss_i_pre", "pss_i_post"), "pss_sr": ("pss_sr_pre", "pss_sr_post")}

#: Largest number of tables enumerated for an exact r x 2 test before falling back to
#: Monte-Carlo.
_MAX_EXACT_TABLES = 2_000_000


# --------------------------------------------------------------------------------------------
# chi-square: pattern x participant characteristic
# --------------------------------------------------------------------------------------------
def _pattern_by(patterns, participants, by, pattern_col, exclude):
    """Merged participant_id, pattern, by (classifiable, `by` possibly missing)."""
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
    d = _pattern_by(patterns, participants, by, pattern_col, exclude)
    return _crosstab(d[d[by].notna()], by)


def _crosstab(d, by):
    """:func:`pattern_crosstab` of the merged table of :func:`_pattern_by` (``by`` observed)."""
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


def _pearson_chi2(x, y) -> dict:
    """Pearson's chi-square test of independence of ``x`` and ``y`` (no continuity
    correction): ``chi2``, ``dof`` and ``pval`` of the "pearson" row of pingouin's
    ``chi2_independence(data, x, y, correction=False)``, to the bit, without importing
    pingouin (and scipy.stats, 0.7 s together).

    The same arithmetic: the table of counts with both labels sorted (``pd.crosstab``'s
    order), the expected counts of ``scipy.stats.contingency.expected_freq`` (row sum x column
    sum / N in floating point), the statistic summed over the table in row order (as
    ``scipy.stats.power_divergence``) and its chi-square survival function
    (``scipy.special.chdtrc``, what ``scipy.stats.chi2.sf`` computes).

    >>> r = _pearson_chi2(["a", "a", "b", "b"] * 3, ["u", "v", "v", "v"] * 3)
    >>> round(r["chi2"], 4), r["dof"], round(r["pval"], 4)
    (4.0, 1.0, 0.0455)
    """
    from scipy import special

    xs, xi = np.unique(np.asarray(x, dtype=str), return_inverse=True)
    ys, yi = np.unique(np.asarray(y, dtype=str), return_inverse=True)
    observed = np.zeros((len(xs), len(ys)), dtype=np.float64)
    np.add.at(observed, (xi.ravel(), yi.ravel()), 1.0)
    expected = observed.sum(axis=1, keepdims=True) * observed.sum(axis=0, keepdims=True) / observed.sum()
    dof = float(expected.size - sum(expected.shape) + expected.ndim - 1)
    if dof == 0:
        return {"chi2": 0.0, "dof": dof, "pval": 1.0}
    chi2 = ((observed - expected) ** 2 / expected).sum()
    return {"chi2": float(chi2), "dof": dof, "pval": float(special.chdtrc(dof, chi2))}


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
    The statistic is pingouin's ``chi2_independence`` (``correction=False``: Yates'
    correction only concerns 2 x 2 tables), computed the same way without importing pingouin
    (:func:`_pearson_chi2`). Cramer's V is ``sqrt(chi2 / (N (min(r, c) - 1)))``.
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
    d = _pattern_by(patterns, participants, by, pattern_col, exclude)
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
    pearson = _pearson_chi2(d["pattern"], d[by])
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
    chi2 = float(pearson["chi2"])
    k = min(observed.shape) - 1
    return pd.DataFrame([{
        "by": by, "n": n, "n_dropped": n_dropped, "dof": int(pearson["dof"]), "chi2": chi2,
        "p": float(pearson["pval"]), "cramers_v": math.sqrt(chi2 / (n * k)),
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
    # sm.OLS and sm.add_constant from their own modules: statsmodels.api would also load the
    # time-series, graphics and scipy.signal modules (0.25 s more)
    from statsmodels.regression.linear_model import OLS
    from statsmodels.tools.tools import add_constant

    x = add_constant(d[["pre", *terms]], has_constant="add")
    # use_t: t on the residual df for robust SEs too (statsmodels would switch to z)
    res = OLS(d["post"], x).fit(cov_type=cov_type, use_t=True)
    ci = res.conf_int(0.05)
    scale = pd.Series({c: (beta_scale(d[c], d["post"]) if c != "const" else np.nan) for c in x})
    out = pd.DataFrame({
        "outcome": outcome, "model": model, "contrast": MODEL_LABELS[model],
        "term": ["Intercept" if c == "const" else c for c in x.columns],
        "b": res.params.to_numpy(), "se": res.bse.to_numpy(),
        "ci_low": ci[0].to_numpy(), "ci_high": ci[1].to_numpy(),
        "beta": (res.params * scale).to_numpy(),
        "beta_ci_low": (ci[0] * scale).to_numpy(), "beta_ci_high": (ci[1] * scale).to_numpy(),
        "se_type": cov_type,
        "t": res.tvalues.to_numpy(), "df": res.df_resid, "p": res.pvalues.to_numpy(),
        "n": int(res.nobs), "n_dropped": n_dropped, "r2": res.rsquared,
        "r2_adj": res.rsquared_adj,
    })
    return out[REGRESSION_COLUMNS]


def outcome_regression(patterns, participants, *, outcome="pss_i", models=("A", "B"),
                       pattern_col="pattern", cov_type="nonrobust", warn=True) -> pd.DataFrame:
    """Post-treatment PTSD severity on alliance pattern, controlling for pre-treatment severity.

    Model A: ``post ~ pre + unrepaired`` (unrepaired vs every other classifiable participant,
    the paper's test). Model B: ``post ~ pre + repaired + unrepaired`` (reference: no_rupture).
    OLS (statsmodels) on the classifiable participants with both scores (listwise deletion).

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
    cov_type : {"nonrobust", "HC3", ...}
        Standard errors: "nonrobust" (classical OLS, the paper's test) or a statsmodels
        robust type such as "HC3" (MacKinnon & White, 1985), which does not assume equal
        residual variances; t tests on the residual df either way (column ``se_type``).
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
def mixed_anova_prepost(patterns, participants, *, outcome="pss_sr", pattern_col="pattern",
                        warn=True) -> pd.DataFrame:
    """Mixed ANOVA (pingouin): pre/post (within) x alliance pattern (between).

    Uses the classifiable participants with both ``{outcome}_pre`` and ``{outcome}_post``
    (listwise deletion, as a repeated-measures ANOVA must).

    Returns
    -------
    DataFrame
        pingouin's table (Source, SS, DF1, DF2, MS, F, p_unc, np2, ...) plus n (listwise N),
        n_dropped and outcome.
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
                      f"{pre} and {post} left out (listwise)", UserWarning, stacklevel=2)
    d = d[complete]
    long = d.melt(id_vars=["participant_id", "pattern"], value_vars=[pre, post],
                  var_name="time", value_name="score")
    long["time"] = long["time"].map({pre: "pre", post: "post"})
    long["score"] = long["score"].astype(float)
    with warnings.catch_warnings():
        # pingouin 0.7 calls DataFrame.dropna(inplace=True), deprecated in pandas 3.1: a
        # notice about pingouin's code, not about the analysis.
        warnings.filterwarnings("ignore", message="The inplace keyword", module="pingouin")
        import pingouin as pg
        table = pg.mixed_anova(data=long, dv="score", within="time", subject="participant_id",
                               between="pattern")
    table["n"] = int(complete.sum())
    table["n_dropped"] = n_dropped
    table["outcome"] = outcome
    return table
