"""Descriptive tables: intervals checked against statsmodels / scipy and hand-worked values."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from helpers import describe, instruments


@pytest.mark.parametrize("k,n", [(23, 82), (15, 82), (0, 10), (10, 10), (88, 116)])
def test_wilson_interval_matches_statsmodels(k, n):
    est, lo, hi = describe.proportion_ci(k, n)
    ref_lo, ref_hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert est == pytest.approx(100 * k / n)
    assert (lo, hi) == pytest.approx((100 * ref_lo, 100 * ref_hi), abs=1e-9)


def test_wilson_interval_hand_worked():
    # 23 of 82: p = .2805, z = 1.96; centre = (p + z^2/2n)/(1 + z^2/n) = .2903,
    # half = z sqrt(p(1-p)/n + z^2/4n^2)/(1 + z^2/n) = .0955 -> [19.48, 38.59] %
    est, lo, hi = describe.proportion_ci(23, 82)
    assert (round(est, 2), round(lo, 2), round(hi, 2)) == (28.05, 19.48, 38.59)


def test_proportion_of_nobody_is_nan():
    assert all(np.isnan(v) for v in describe.proportion_ci(0, 0))


def test_mean_ci_matches_scipy_t_interval():
    x = [3.0, 5.0, 8.0, np.nan, 13.0]
    m, lo, hi, sd, n = describe.mean_ci(x)
    ref = stats.t.interval(0.95, 3, loc=np.mean([3, 5, 8, 13]), scale=stats.sem([3, 5, 8, 13]))
    assert (m, n) == (7.25, 4)
    assert (lo, hi) == pytest.approx(ref)
    assert sd == pytest.approx(np.std([3, 5, 8, 13], ddof=1))


def _participants(n=10):
    return pd.DataFrame({
        "participant_id": [f"P{i}" for i in range(n)],
        "pss_sr_pre": np.arange(n, dtype=float), "pss_sr_post": np.nan,
        "pss_i_pre": 20.0, "pss_i_post": np.nan, "bdi_pre": 10.0, "bdi_post": np.nan,
        "mdd": [True] * 3 + [False] * (n - 3), "child_abuse": [True] * 5 + [None] * (n - 5),
        "female": [True] * 8 + [False] * (n - 8), "caucasian": True, "age": 30.0,
    })


def test_sample_table_rows_and_ns():
    t = describe.sample_table(_participants(), instruments.DEFAULTS).set_index("quantity")
    assert t.loc["female", "estimate"] == pytest.approx(80.0)
    assert t.loc["female", "paper"] == 76.1
    assert t.loc["co-occurring MDD", "estimate"] == pytest.approx(30.0)
    # missing childhood-abuse answers are left out of that row's N, not counted as "no"
    assert t.loc["childhood abuse history", ["estimate", "n"]].tolist() == [100.0, 5]
    assert t.loc["N (PE clients)", "estimate"] == 10
    assert np.isnan(t.loc["PSS-SR pre, mean", "paper"])
    assert t.loc["PSS-SR pre, mean", "unit"] == "points (0-51)"


def test_sample_table_names_the_runs_instruments_and_leaves_out_absent_scores():
    p = _participants().assign(pss_i_pre=np.nan)
    pcl5 = instruments.Instrument("PCL-5", 0, 80)
    t = describe.sample_table(p, {**instruments.DEFAULTS, "symptoms": pcl5}).set_index("quantity")
    assert t.loc["PCL-5 pre, mean", "unit"] == "points (0-80)"
    assert "PSS-I pre, mean" not in t.index and "PSS-SR pre, mean" not in t.index


def test_missingness_counts_per_session():
    s = pd.DataFrame({"participant_id": ["a", "a", "b", "b"], "session": [1, 2, 1, 2],
                      "alliance": [5.0, np.nan, 4.0, np.nan], "pss_sr": [30.0, 20.0, np.nan, np.nan]})
    m = describe.missingness(s).set_index(["measure", "session"])
    assert m.loc[("alliance", 1), "pct_missing"] == 0
    assert m.loc[("alliance", 2), "pct_missing"] == 100
    assert m.loc[("pss_sr", 1), "n_observed"] == 1


def test_prevalence_table_excludes_insufficient_data():
    pats = pd.DataFrame({"participant_id": list("abcdef"),
                         "pattern": ["no_rupture", "no_rupture", "repaired", "unrepaired",
                                     "insufficient_data", "unrepaired"]})
    t = describe.prevalence_table(pats).set_index("quantity")
    assert (t["n"] == 5).all()
    assert t.loc["any_rupture", "estimate"] == pytest.approx(60.0)
    assert t.loc["unrepaired", "paper"] == 18.0


# ----------------------------------------------------------------------------- prevalence from probabilities
def test_expected_proportion_with_certain_patterns_is_the_wilson_interval():
    probs = np.r_[np.ones(23), np.zeros(59)]  # 23 of 82, every pattern certain
    est, lo, hi, n_eff = describe.expected_proportion_ci(probs)
    assert n_eff == 82
    assert (est, lo, hi) == pytest.approx(describe.proportion_ci(23, 82), abs=1e-12)


def test_expected_proportion_total_variance_is_rubins_with_many_imputations():
    # Reference: multiple imputation by brute force -- draw every client's pattern from its
    # probability, 20,000 times, and pool each completed data set's proportion and its binomial
    # variance by Rubin's rules (helpers.pooling); the closed form is its limit.
    from helpers.pooling import rubin_rules

    rng = np.random.default_rng(3)
    probs = rng.beta(0.4, 0.8, size=81)
    est, lo, hi, n_eff = describe.expected_proportion_ci(probs, percent=False)
    draws = rng.random((20_000, probs.size)) < probs
    q = draws.mean(axis=1)
    pooled = rubin_rules(q, q * (1 - q) / probs.size)
    assert est == pytest.approx(probs.mean(), abs=1e-12)
    assert pooled["estimate"] == pytest.approx(est, abs=0.002)
    # the interval's binomial variance at the estimate is Rubin's total variance
    assert est * (1 - est) / n_eff == pytest.approx(pooled["total"], rel=0.03)
    # the interval is Wilson's at that size, and wider than Wilson's at the full n
    assert (lo, hi) == pytest.approx(describe.proportion_ci(est * n_eff, n_eff, percent=False)[1:], abs=1e-12)
    naive = describe.proportion_ci(est * probs.size, probs.size, percent=False)
    assert lo < naive[1] and hi > naive[2] and n_eff < probs.size


def test_expected_prevalence_table_uses_the_classifiable_and_sums_the_rupture_patterns():
    probs = pd.DataFrame({"participant_id": list("abcd"), "pattern": ["no_rupture", "repaired", "unrepaired",
                                                                      "insufficient_data"],
                          "p_no_rupture": [0.8, 0.1, 0.0, 1.0], "p_repaired": [0.1, 0.7, 0.2, 0.0],
                          "p_unrepaired": [0.1, 0.2, 0.8, 0.0]})
    t = describe.expected_prevalence_table(probs).set_index("quantity")
    assert (t["n"] == 3).all()
    assert t.loc["unrepaired", "estimate"] == pytest.approx(100 * 1.1 / 3)
    assert t.loc["any_rupture", "estimate"] == pytest.approx(100 * (0.2 + 0.9 + 1.0) / 3)
    assert t.loc["no_rupture", "paper"] == 54.0
