"""Outcome analyses of McLaughlin et al. (2014): chi-square tests of pattern x MDD and x
childhood abuse, the outcome regression (the paper's beta) and the pre/post mixed ANOVA. The
growth model is in :mod:`helpers.growth`. statsmodels' OLS and pingouin's mixed_anova tables
are computed here with numpy and scipy.special (importing those libraries cost notebook 03 a
second; they remain the tests' cross-checks, ``tests/test_ols_fit.py``, ``tests/test_anova.py``).

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
from helpers.ols import beta_scale, f_sf, ols_fit

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
    """One model's rows of :func:`outcome_regression`: ``post ~ 1 + pre + terms`` by
    :func:`helpers.ols.ols_fit` (statsmodels' ``OLS(...).fit(cov_type, use_t=True)`` without
    importing statsmodels: 1 s of notebook 03 for a fit of a millisecond)."""
    names = ["const", "pre", *terms]
    # the design as statsmodels' add_constant(d[["pre", *terms]]) holds it: Fortran order, the
    # layout pandas hands over, so that BLAS sums X @ b in the same order (the same bits)
    x = np.asfortranarray(np.column_stack([np.ones(len(d)), d[["pre", *terms]].to_numpy(dtype=float)]))
    if len(d) == 0:  # statsmodels' failure on an empty design (np.max of a zero-size array)
        raise ValueError("zero-size array to reduction operation maximum which has no identity")
    # use_t: t on the residual df for robust SEs too (statsmodels would switch to z)
    res = ols_fit(d["post"].to_numpy(dtype=float), x, cov_type=cov_type)
    scale = np.array([beta_scale(d[c], d["post"]) if c != "const" else np.nan for c in names])
    with np.errstate(all="ignore"):  # silent, as pandas' Series arithmetic (0 x inf for a constant post)
        beta, beta_ci_low, beta_ci_high = (res[k] * scale for k in ("params", "ci_low", "ci_high"))
    out = pd.DataFrame({
        "outcome": outcome, "model": model, "contrast": MODEL_LABELS[model],
        "term": ["Intercept" if c == "const" else c for c in names],
        "b": res["params"], "se": res["bse"],
        "ci_low": res["ci_low"], "ci_high": res["ci_high"],
        "beta": beta, "beta_ci_low": beta_ci_low, "beta_ci_high": beta_ci_high,
        "se_type": cov_type,
        "t": res["tvalues"], "df": res["df_resid"], "p": res["pvalues"],
        "n": int(res["nobs"]), "n_dropped": n_dropped, "r2": res["rsquared"],
        "r2_adj": res["rsquared_adj"],
    })
    return out[REGRESSION_COLUMNS]


def outcome_regression(patterns, participants, *, outcome="pss_i", models=("A", "B"),
                       pattern_col="pattern", cov_type="nonrobust", warn=True) -> pd.DataFrame:
    """Post-treatment PTSD severity on alliance pattern, controlling for pre-treatment severity.

    Model A: ``post ~ pre + unrepaired`` (unrepaired vs every other classifiable participant,
    the paper's test). Model B: ``post ~ pre + repaired + unrepaired`` (reference: no_rupture).
    OLS (:func:`helpers.ols.ols_fit`: statsmodels' table without statsmodels) on the classifiable
    participants with both scores (listwise deletion).

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
        df either way (column ``se_type``).
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
def _group_means(values, labels, n_labels):
    """Mean of ``values`` per label 0..n_labels-1 (NaN for an empty label) by pandas'
    ``groupby(...).mean()``, as pingouin takes its means: pandas' compensated summation gives
    other last bits than numpy's, and the same bits make effects that are zero but for rounding
    (one group, no change) come out as in pingouin, warnings included.

    >>> _group_means(np.array([0.1, 0.2, 0.3, 5.0]), np.array([0, 0, 0, 1]), 2).tolist()
    [0.19999999999999998, 5.0]
    >>> float(np.array([0.1, 0.2, 0.3]).sum() / 3)  # numpy's sum: another last bit
    0.20000000000000004
    """
    means = pd.Series(values).groupby(labels, sort=True).mean()
    return means.reindex(range(n_labels)).to_numpy(dtype=float)


def mixed_anova_2x2_within(subject, group, first, second, *, between="pattern",
                           within="time", levels=("pre", "post")) -> pd.DataFrame:
    """Mixed (split-plot) ANOVA of a two-level within factor x a between factor, complete cases.

    The table of pingouin's ``mixed_anova(data, dv, within, subject, between)`` on the long
    table of these scores (pingouin 0.7: its sums of squares, degrees of freedom, F, p, partial
    eta-squared, epsilon and column handling), computed with numpy: importing pingouin (and
    scipy.stats, statsmodels with it) costs notebook 03 a second for an ANOVA of a millisecond.

    Parameters
    ----------
    subject : array-like, shape (n,)
        One id per subject (unique).
    group : array-like of str, shape (n,)
        Each subject's level of the between factor.
    first, second : array-like of float, shape (n,)
        The scores at ``levels[0]`` and ``levels[1]`` (no missing values: drop incomplete
        subjects first, listwise, as pingouin does).
    between, within : str
        Names of the factors in the table's ``Source`` column.
    levels : (str, str)
        Names of the within levels; as in pingouin, the levels are taken in sorted order.

    Returns
    -------
    DataFrame
        Rows ``between``, ``within``, "Interaction"; columns Source, SS, DF1, DF2 (int), MS, F,
        p_unc, np2 (partial eta-squared ``SS / (SS + SS_error)``) and eps (Greenhouse-Geisser
        epsilon: NaN for the between factor, 1 for the within factor and the interaction, since
        two repeated measures always meet sphericity; so pingouin adds no corrected p, W or
        sphericity columns). A column that is NaN in every row is dropped, as pingouin does.

    Notes
    -----
    pingouin's decomposition (type II for unbalanced groups; with two complete within levels
    every group is measured equally at both, so the effects are orthogonal). With ``y_sij``
    the score of subject i in group g at level j, ``N`` subjects, ``G`` groups, ``n_g`` per
    group, two levels, means written with dots:

    - ``SS_total = sum (y - y...)^2``; between ``SS_B = sum_g 2 n_g (y_g.. - y...)^2``;
      within ``SS_W = sum_j N (y_..j - y...)^2``;
      ``SS_resall = sum (y - y_g.j)^2`` (about the cell means);
    - interaction ``SS_BW = SS_total - (SS_resall + SS_W + SS_B)``;
    - subjects ``SS_S = 2 sum_i (y_i.. - y...)^2``; between-subjects error
      ``SS_S - SS_B`` on ``N - G`` df; within-subjects error
      ``SS_total - (SS_W + SS_S + SS_BW)`` on ``(2 - 1)(N - G)`` df;
    - ``F = (SS / DF1) / (SS_error / DF2)``, ``p = P(F_{DF1, DF2} > F)`` (``special.fdtrc``,
      with scipy.stats' handling of invalid df: :func:`helpers.ols.f_sf`).

    The same formulas in the same order as pingouin (the subtractions included) and its group
    means (pandas', :func:`_group_means`), so that the numbers are pingouin's to the bit on the
    project's data and on the designs of ``tests/test_anova.py``, even where an effect is zero
    but for rounding (pingouin's F and p are then rounding noise, and so are these).

    References
    ----------
    Maxwell, S. E., & Delaney, H. D. (2004). Designing experiments and analyzing data (2nd ed.),
    ch. 12: the split-plot design. Bakeman, R. (2005). Recommended effect size statistics for
    repeated measures designs. Behavior Research Methods, 37(3), 379-384 (partial eta-squared).
    Vallat, R. (2018). Pingouin: statistics in Python. Journal of Open Source Software, 3(31),
    1026 (``mixed_anova``).

    Examples
    --------
    >>> t = mixed_anova_2x2_within(list("abcdef"), ["x"] * 3 + ["y"] * 3,
    ...                            [1.0, 2, 3, 4, 5, 6], [2.0, 4, 3, 9, 8, 10])
    >>> t[["Source", "DF1", "DF2"]].values.tolist()
    [['pattern', 1, 4], ['time', 1, 4], ['Interaction', 1, 4]]
    >>> round(float(t["F"].iloc[2]), 4)  # = the one-way F of the changes (1, 2, 0 vs 5, 3, 4)
    13.5
    """
    subject = np.asarray(subject, dtype=object)
    order = np.argsort(subject.astype(str), kind="stable")  # pingouin's pivot table: sorted subjects
    groups, g = np.unique(np.asarray(group, dtype=str)[order], return_inverse=True)
    scores = {levels[0]: np.asarray(first, dtype=float)[order],
              levels[1]: np.asarray(second, dtype=float)[order]}
    time_levels = sorted(scores)  # pingouin's column order (e.g. "post" before "pre")
    n_subj, n_groups, n_rm = len(order), len(groups), 2
    if n_subj == 0:  # (pingouin fails too, with a ValueError about a zero-size array)
        raise ValueError("mixed ANOVA: no subject with scores at both levels")
    wide = np.column_stack([scores[t] for t in time_levels])
    # the long data as pingouin melts its pivot table: every subject at the first level, then
    # at the second
    y = wide.T.ravel()
    g_long = np.concatenate([g, g])
    t_long = np.repeat(np.arange(n_rm), n_subj)
    cell = g_long * n_rm + t_long
    grandmean = y.sum() / y.size  # (pandas' Series.mean: numpy's sum, then the division)
    count_g = np.bincount(g_long, minlength=n_groups)
    mean_g = _group_means(y, g_long, n_groups)
    mean_t = _group_means(y, t_long, n_rm)
    mean_cell = _group_means(y, cell, n_groups * n_rm)
    ss_total = ((y - grandmean) ** 2).sum()
    ss_betw = ((mean_g - grandmean) ** 2 * count_g).sum()
    ss_with = ((mean_t - grandmean) ** 2 * n_subj).sum()
    ss_resall = ((y - mean_cell[cell]) ** 2).sum()
    ss_inter = ss_total - (ss_resall + ss_with + ss_betw)
    # between-subject variability, split into the between factor and its error
    ss_subj = n_rm * ((wide.sum(axis=1) / n_rm - grandmean) ** 2).sum()
    ss_resbetw = ss_subj - ss_betw
    ss_reswith = ss_total - (ss_with + ss_subj + ss_inter)
    df_betw, df_with = n_groups - 1, n_rm - 1
    df_inter, df_resbetw = df_with * df_betw, n_subj - n_groups
    df_reswith = df_with * df_resbetw
    ss = np.array([ss_betw, ss_with, ss_inter])
    ddof1 = np.array([df_betw, df_with, df_inter])
    ss_err = np.array([ss_resbetw, ss_reswith, ss_reswith])
    ddof2 = np.array([df_resbetw, df_reswith, df_reswith])
    # numpy's division warnings (one group, a single subject per group) as pingouin shows them
    ms = ss / ddof1
    fval = ms / (ss_err / ddof2)
    table = pd.DataFrame({
        "Source": [between, within, "Interaction"], "SS": ss, "DF1": ddof1, "DF2": ddof2,
        "MS": ms, "F": fval, "p_unc": f_sf(fval, ddof1, ddof2), "np2": ss / (ss + ss_err),
        # Greenhouse-Geisser epsilon: 1 with one within df (pingouin's _gg_epsilon)
        "eps": [np.nan, 1.0, 1.0],
    })
    return table.dropna(how="all", axis=1)


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


def mixed_anova_prepost(patterns, participants, *, outcome="pss_sr", pattern_col="pattern",
                        warn=True) -> pd.DataFrame:
    """Mixed ANOVA: pre/post (within) x alliance pattern (between).

    Uses the classifiable participants with both ``{outcome}_pre`` and ``{outcome}_post``
    (listwise deletion, as a repeated-measures ANOVA must); the table is pingouin's
    ``mixed_anova`` (within "time", between "pattern"), computed without pingouin by
    :func:`mixed_anova_2x2_within`.

    Returns
    -------
    DataFrame
        Source (pattern, time, Interaction), SS, DF1, DF2, MS, F, p_unc, np2, eps, plus n
        (listwise N), n_dropped and outcome.

    References
    ----------
    McLaughlin et al. (2014): PTSD severity (PSS-SR) fell from pre- to post-treatment, and the
    fall differed by alliance pattern (the time x pattern interaction).
    """
    d, n_dropped = prepost_complete(patterns, participants, outcome=outcome, pattern_col=pattern_col,
                                    warn=warn)
    pre, post = f"{outcome}_pre", f"{outcome}_post"
    table = mixed_anova_2x2_within(d["participant_id"].to_numpy(), d["pattern"].to_numpy(),
                                   d[pre].to_numpy(dtype=float), d[post].to_numpy(dtype=float))
    table["n"] = len(d)
    table["n_dropped"] = n_dropped
    table["outcome"] = outcome
    return table
