"""Tests of helpers.models: chi-square tests and the outcome regression.

Anchors: a hand-worked 3 x 2 table, scipy.stats.chi2_contingency, a brute-force permutation
distribution, numpy least squares, statsmodels on z-scored variables, the closed form of
standardised coefficients with two predictors and the HC3 formula by hand; the edge cases of
the regression (rank deficiency, leverage 1, nobody to fit) by what they must give, not by bits.
"""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from helpers import models


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------
def _tables_from_counts(counts, by="mdd"):
    """patterns + participants tables whose pattern x by crosstab equals ``counts``.

    counts: {pattern: (n_false, n_true)}.
    """
    pats, parts, i = [], [], 0
    for pattern, cells in counts.items():
        for level, k in zip((False, True), cells):
            for _ in range(k):
                pid = f"p{i:03d}"
                pats.append((pid, pattern))
                parts.append((pid, level))
                i += 1
    patterns = pd.DataFrame(pats, columns=["participant_id", "pattern"])
    participants = pd.DataFrame(parts, columns=["participant_id", by])
    return patterns, participants


@pytest.fixture
def hand_table():
    # rows: no_rupture 10/20, repaired 15/15, unrepaired 5/25 (mdd False/True).
    # row totals 30, 30, 30; column totals 30, 60; N = 90; expected (10, 20) in every row.
    # chi2 = 0 + (25/10 + 25/20) + (25/10 + 25/20) = 7.5, df = 2,
    # p = exp(-7.5 / 2) (chi-square with 2 df), Cramer's V = sqrt(7.5 / 90).
    return _tables_from_counts({"no_rupture": (10, 20), "repaired": (15, 15),
                                "unrepaired": (5, 25)})


def _regression_data(n=80, seed=1):
    rng = np.random.default_rng(seed)
    pattern = rng.choice(["no_rupture", "repaired", "unrepaired", "insufficient_data"], n,
                         p=[0.5, 0.25, 0.15, 0.1])
    pre = rng.normal(30, 8, n)
    post = 5 + 0.5 * pre + 6 * (pattern == "unrepaired") - 2 * (pattern == "repaired") \
        + rng.normal(0, 6, n)
    ids = [f"p{i:03d}" for i in range(n)]
    patterns = pd.DataFrame({"participant_id": ids, "pattern": pattern})
    participants = pd.DataFrame({
        "participant_id": ids, "pss_i_pre": pre, "pss_i_post": post,
        "pss_sr_pre": pre + rng.normal(0, 3, n), "pss_sr_post": post + rng.normal(0, 3, n),
    })
    return patterns, participants


# --------------------------------------------------------------------------------------------
# chi-square
# --------------------------------------------------------------------------------------------
def test_chi2_hand_worked_3x2(hand_table):
    res = models.pattern_chi2(*hand_table, by="mdd")
    assert len(res) == 1
    row = res.iloc[0]
    assert row["chi2"] == pytest.approx(7.5, rel=1e-12)
    assert row["dof"] == 2
    assert row["n"] == 90 and row["n_dropped"] == 0
    assert row["p"] == pytest.approx(math.exp(-3.75), rel=1e-10)
    assert row["cramers_v"] == pytest.approx(math.sqrt(7.5 / 90), rel=1e-12)
    assert row["min_expected"] == pytest.approx(10.0)
    assert np.isnan(row["p_exact"]) and row["p_exact_method"] == ""


def test_crosstab_observed_expected(hand_table):
    observed, expected = models.pattern_crosstab(*hand_table, by="mdd")
    assert list(observed.index) == ["no_rupture", "repaired", "unrepaired"]
    np.testing.assert_array_equal(observed.to_numpy(), [[10, 20], [15, 15], [5, 25]])
    np.testing.assert_allclose(expected.to_numpy(), [[10, 20]] * 3)


@pytest.mark.parametrize("seed", range(5))
def test_chi2_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    counts = {p: tuple(rng.integers(6, 30, 2)) for p in ("no_rupture", "repaired", "unrepaired")}
    patterns, participants = _tables_from_counts(counts)
    res = models.pattern_chi2(patterns, participants).iloc[0]
    table = np.array(list(counts.values()))
    chi2, p, dof, expected = stats.chi2_contingency(table, correction=False)
    assert res["chi2"] == pytest.approx(chi2, rel=1e-10)
    assert res["p"] == pytest.approx(p, rel=1e-10)
    assert res["dof"] == dof
    assert res["min_expected"] == pytest.approx(expected.min(), rel=1e-12)


def test_chi2_excludes_insufficient_and_drops_missing_by(hand_table):
    patterns, participants = hand_table
    extra_p = pd.DataFrame({"participant_id": ["x1", "x2", "x3"],
                            "pattern": ["insufficient_data", "repaired", "unrepaired"]})
    extra_q = pd.DataFrame({"participant_id": ["x1", "x2", "x3"], "mdd": [True, None, None]})
    patterns = pd.concat([patterns, extra_p], ignore_index=True)
    participants = pd.concat([participants.astype({"mdd": object}), extra_q],
                             ignore_index=True)
    with pytest.warns(UserWarning, match="2 classifiable participants with missing 'mdd'"):
        res = models.pattern_chi2(patterns, participants, by="mdd").iloc[0]
    assert res["n"] == 90 and res["n_dropped"] == 2
    assert res["chi2"] == pytest.approx(7.5)


def _permutation_p(counts):
    """Exact p by brute force over every assignment of the column labels (fixed margins)."""
    rows = np.repeat(np.arange(len(counts)), [sum(c) for c in counts])
    cols = np.concatenate([[0] * a + [1] * b for a, b in counts])
    obs = np.array(counts, float)
    expected = np.outer(obs.sum(1), obs.sum(0)) / obs.sum()

    def chi2(c):
        t = np.zeros_like(obs)
        np.add.at(t, (rows, c), 1)
        return ((t - expected) ** 2 / expected).sum()

    chi_obs = chi2(cols)
    n = len(cols)
    n1 = cols.sum()
    hits = total = 0
    for ones in itertools.combinations(range(n), int(n1)):  # every distinct assignment
        c = np.zeros(n, int)
        c[list(ones)] = 1
        total += 1
        hits += chi2(c) >= chi_obs - 1e-9
    return hits / total


def test_small_expected_gives_exact_p_equal_to_permutation_distribution():
    counts = [(4, 0), (1, 3), (2, 2)]  # N = 12, every expected count < 5
    patterns, participants = _tables_from_counts(dict(zip(
        ["no_rupture", "repaired", "unrepaired"], counts)))
    with pytest.warns(UserWarning, match="expected counts < 5"):
        res = models.pattern_chi2(patterns, participants).iloc[0]
    assert res["n_expected_lt5"] == 6
    assert res["p_exact_method"].startswith("exact")
    assert res["p_exact"] == pytest.approx(_permutation_p(counts), rel=1e-10)


def test_monte_carlo_p_close_to_exact():
    counts = [(5, 1), (2, 6), (3, 3)]
    x = np.repeat(["a", "b", "c"], [sum(c) for c in counts])
    y = np.concatenate([[0] * a + [1] * b for a, b in counts])
    exact = models.exact_p_rx2(np.array(counts))
    mc = models.monte_carlo_p(x, y, n_monte_carlo=4000, seed=7)
    se = math.sqrt(exact * (1 - exact) / 4000)
    assert abs(mc - exact) < 4 * se


def test_monte_carlo_used_for_wider_tables():
    counts = {"no_rupture": (3, 2, 1), "repaired": (1, 2, 3), "unrepaired": (2, 2, 2)}
    pats, parts, i = [], [], 0
    for pattern, cells in counts.items():
        for level, k in zip(("a", "b", "c"), cells):
            for _ in range(k):
                pats.append((f"p{i}", pattern))
                parts.append((f"p{i}", level))
                i += 1
    patterns = pd.DataFrame(pats, columns=["participant_id", "pattern"])
    participants = pd.DataFrame(parts, columns=["participant_id", "grp"])
    with pytest.warns(UserWarning, match="monte-carlo"):
        res = models.pattern_chi2(patterns, participants, by="grp", n_monte_carlo=500,
                                  seed=1).iloc[0]
    assert res["dof"] == 4
    assert res["p_exact_method"] == "monte-carlo (B=500, seed=1)"
    assert 0 < res["p_exact"] <= 1


# --------------------------------------------------------------------------------------------
# outcome regression
# --------------------------------------------------------------------------------------------
def _lstsq(y, x):
    """Hand OLS: b, se, t, p, r2."""
    xc = np.column_stack([np.ones(len(y)), x])
    b, *_ = np.linalg.lstsq(xc, y, rcond=None)
    resid = y - xc @ b
    df = len(y) - xc.shape[1]
    sigma2 = resid @ resid / df
    se = np.sqrt(np.diag(sigma2 * np.linalg.inv(xc.T @ xc)))
    t = b / se
    p = 2 * stats.t.sf(np.abs(t), df)
    r2 = 1 - resid @ resid / ((y - y.mean()) @ (y - y.mean()))
    return b, se, t, p, r2, df


@pytest.mark.parametrize("outcome", ["pss_i", "pss_sr"])
def test_regression_matches_hand_ols(outcome):
    patterns, participants = _regression_data()
    res = models.outcome_regression(patterns, participants, outcome=outcome)
    keep = patterns["pattern"] != "insufficient_data"
    d = patterns[keep].merge(participants, on="participant_id")
    y = d[f"{outcome}_post"].to_numpy()
    pre = d[f"{outcome}_pre"].to_numpy()
    unr = (d["pattern"] == "unrepaired").to_numpy(float)
    rep = (d["pattern"] == "repaired").to_numpy(float)
    for model, x in (("A", np.column_stack([pre, unr])),
                     ("B", np.column_stack([pre, rep, unr]))):
        got = res[res["model"] == model]
        b, se, t, p, r2, df = _lstsq(y, x)
        np.testing.assert_allclose(got["b"], b, rtol=1e-10)
        np.testing.assert_allclose(got["se"], se, rtol=1e-10)
        np.testing.assert_allclose(got["t"], t, rtol=1e-10)
        np.testing.assert_allclose(got["p"], p, rtol=1e-8)
        assert got["r2"].iloc[0] == pytest.approx(r2, rel=1e-10)
        assert (got["df"] == df).all() and (got["n"] == len(y)).all()
        tq = stats.t.ppf(0.975, df)
        np.testing.assert_allclose(got["ci_low"], b - tq * se, rtol=1e-10)
        assert (got["outcome"] == outcome).all()
    assert list(res.loc[res["model"] == "A", "term"]) == ["Intercept", "pre", "unrepaired"]
    assert list(res.loc[res["model"] == "B", "term"]) == ["Intercept", "pre", "repaired",
                                                          "unrepaired"]


def test_standardised_beta_equals_zscored_regression():
    patterns, participants = _regression_data(seed=3)
    res = models.outcome_regression(patterns, participants, outcome="pss_i")
    d = patterns[patterns["pattern"] != "insufficient_data"].merge(participants)
    z = lambda v: (v - v.mean()) / v.std(ddof=1)  # noqa: E731
    xz = pd.DataFrame({"pre": z(d["pss_i_pre"]),
                       "repaired": z((d["pattern"] == "repaired").astype(float)),
                       "unrepaired": z((d["pattern"] == "unrepaired").astype(float))})
    yz = z(d["pss_i_post"])
    for model, cols in (("A", ["pre", "unrepaired"]), ("B", ["pre", "repaired", "unrepaired"])):
        fit = sm.OLS(yz, sm.add_constant(xz[cols])).fit()
        got = res[(res["model"] == model) & (res["term"] != "Intercept")]
        np.testing.assert_allclose(got["beta"], fit.params[cols], rtol=1e-9)
        ci = fit.conf_int()
        np.testing.assert_allclose(got["beta_ci_low"], ci.loc[cols, 0], rtol=1e-9)
        np.testing.assert_allclose(got["beta_ci_high"], ci.loc[cols, 1], rtol=1e-9)
        np.testing.assert_allclose(got["t"], fit.tvalues[cols], rtol=1e-9)
    assert res.loc[res["term"] == "Intercept", "beta"].isna().all()


def test_standardised_beta_closed_form_two_predictors():
    # beta_1 = (r_y1 - r_y2 r_12) / (1 - r_12^2), beta_2 = (r_y2 - r_y1 r_12) / (1 - r_12^2)
    patterns, participants = _regression_data(seed=5)
    res = models.outcome_regression(patterns, participants, models=("A",))
    d = patterns[patterns["pattern"] != "insufficient_data"].merge(participants)
    y, x1 = d["pss_i_post"], d["pss_i_pre"]
    x2 = (d["pattern"] == "unrepaired").astype(float)
    ry1, ry2, r12 = y.corr(x1), y.corr(x2), x1.corr(x2)
    b1 = (ry1 - ry2 * r12) / (1 - r12**2)
    b2 = (ry2 - ry1 * r12) / (1 - r12**2)
    got = res.set_index("term")["beta"]
    assert got["pre"] == pytest.approx(b1, rel=1e-10)
    assert got["unrepaired"] == pytest.approx(b2, rel=1e-10)
    # R^2 from the same correlations
    assert res["r2"].iloc[0] == pytest.approx(b1 * ry1 + b2 * ry2, rel=1e-10)


def test_regression_listwise_deletion_reported():
    patterns, participants = _regression_data()
    participants = participants.copy()
    classifiable = patterns.loc[patterns["pattern"] != "insufficient_data", "participant_id"]
    lost = list(classifiable[:3])
    participants.loc[participants["participant_id"] == lost[0], "pss_i_post"] = np.nan
    participants.loc[participants["participant_id"] == lost[1], "pss_i_pre"] = np.nan
    participants = participants[participants["participant_id"] != lost[2]]  # no row at all
    with pytest.warns(UserWarning, match="3 classifiable participants"):
        res = models.outcome_regression(patterns, participants)
    assert (res["n_dropped"] == 3).all()
    assert (res["n"] == len(classifiable) - 3).all()


def test_regression_rejects_unknown_outcome():
    patterns, participants = _regression_data()
    with pytest.raises(ValueError, match="outcome"):
        models.outcome_regression(patterns, participants, outcome="bdi")


def test_outcome_regression_hc3_standard_errors_match_the_formula():
    # HC3 (MacKinnon & White, 1985): (X'X)^-1 X' diag(e_i^2 / (1 - h_i)^2) X (X'X)^-1, by hand.
    rng = np.random.default_rng(11)
    n = 40
    ids = [f"P{i:02d}" for i in range(n)]
    g = (np.arange(n) % 4 == 0).astype(float)
    pre = rng.normal(30, 8, n)
    post = 5 + 0.5 * pre + 8 * g + rng.normal(0, 1 + 6 * g, n)  # unequal variances
    patterns = pd.DataFrame({"participant_id": ids, "pattern": np.where(g == 1, "unrepaired", "no_rupture")})
    parts = pd.DataFrame({"participant_id": ids, "pss_i_pre": pre, "pss_i_post": post})
    res = models.outcome_regression(patterns, parts, models=("A",), cov_type="HC3").set_index("term")
    X = np.column_stack([np.ones(n), pre, g])
    bread = np.linalg.inv(X.T @ X)
    b = bread @ X.T @ post
    e = post - X @ b
    h = np.einsum("ij,jk,ik->i", X, bread, X)
    cov = bread @ (X.T * (e**2 / (1 - h) ** 2)) @ X @ bread
    assert res.loc["unrepaired", "b"] == pytest.approx(b[2])
    assert res.loc["unrepaired", "se"] == pytest.approx(np.sqrt(cov[2, 2]), rel=1e-9)
    t = b[2] / np.sqrt(cov[2, 2])
    assert res.loc["unrepaired", "p"] == pytest.approx(2 * stats.t.sf(abs(t), n - 3), rel=1e-9)
    assert (res["se_type"] == "HC3").all()
    classical = models.outcome_regression(patterns, parts, models=("A",)).set_index("term")
    assert classical.loc["unrepaired", "se"] < res.loc["unrepaired", "se"]  # unequal variances


def _fixed(pattern, pre, post):
    ids = [f"q{i:02d}" for i in range(len(pattern))]
    return (pd.DataFrame({"participant_id": ids, "pattern": pattern}),
            pd.DataFrame({"participant_id": ids, "pss_i_pre": np.asarray(pre, float),
                          "pss_i_post": np.asarray(post, float)}))


def test_regression_without_a_repaired_client_is_rank_deficient_and_says_so():
    patterns, parts = _fixed(["no_rupture", "unrepaired"] * 5, np.arange(10.0) ** 1.3,
                             [3.0, 9, 4, 12, 6, 11, 5, 15, 8, 14])
    with pytest.warns(UserWarning, match="rank-deficient"):
        res = models.outcome_regression(patterns, parts, models=("B",)).set_index("term")
    # the pseudo-inverse gives the empty group's column no weight (zero up to rounding)
    assert abs(res.loc["repaired", "b"]) < 1e-10 and abs(res.loc["repaired", "se"]) < 1e-10
    model_a = models.outcome_regression(patterns, parts, models=("A",)).set_index("term")
    assert res.loc["unrepaired", "b"] == pytest.approx(model_a.loc["unrepaired", "b"], rel=1e-9)


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC3"])
def test_a_client_with_leverage_one_leaves_hc3_undefined(cov_type):
    # the only unrepaired client has leverage 1: HC3 divides by 1 - h, which is 0 (or a rounding
    # error of either sign, by BLAS): by the rule (helpers.ols.leverage_is_one) its SEs are NaN
    patterns, parts = _fixed(["no_rupture"] * 5 + ["repaired"] * 3 + ["unrepaired"], [1.0, 3, 2, 6, 4, 5, 2, 7, 3],
                             [2.0, 4, 2, 8, 5, 4, 3, 6, 12])
    if cov_type == "HC3":
        with pytest.warns(UserWarning, match="leverage 1"):
            res = models.outcome_regression(patterns, parts, cov_type=cov_type)
        assert res[["se", "ci_low", "ci_high", "t", "p", "beta_ci_low"]].isna().all().all()
    else:
        res = models.outcome_regression(patterns, parts, cov_type=cov_type)
        assert res["se"].notna().all()
    assert res["b"].notna().all() and (res["se_type"] == cov_type).all()


def test_regression_of_nobody_fails():
    patterns, parts = _fixed(["no_rupture", "unrepaired"], [1.0, np.nan], [np.nan, 2.0])
    with pytest.warns(UserWarning, match="left out"), pytest.raises(ValueError, match="zero-size"):
        models.outcome_regression(patterns, parts)
