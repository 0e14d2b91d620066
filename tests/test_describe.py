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
