"""Tests of helpers.simulate.

Expected values come from the paper (76.1 % female, 66 % Caucasian, age 36.7 / 11.3, about 82
of 116 classifiable, beta ~ .45), from the knob values and hand-worked consequences of the
generative model (module docstring of helpers.simulate), never from the simulator's own output.
Tolerances are multiples of a standard error computed in the test.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import simulate
from helpers.contract import (
    BOOL_COLUMNS,
    PARTICIPANT_COLUMNS,
    PATTERN_LABELS,
    SCORE_RANGES,
    SESSION_COLUMNS,
    TRUTH_COLUMNS,
    Trial,
)
from helpers.simulate import Knobs, default_knobs, simulate_trial

MIN_SESSIONS = 6  # params/default.yaml: min_sessions
Z = 4.0  # tolerance in standard errors for single sampling checks (two-sided p ~ 6e-5)


@pytest.fixture(scope="module")
def big():
    """One large trial for distributional checks (20,000 participants)."""
    return simulate_trial(n_participants=20_000, seed=2014)


@pytest.fixture(scope="module")
def many():
    """100 default-size trials on seeds not used for the calibration in the docstring."""
    return [simulate_trial(seed=s) for s in range(5000, 5100)]


def _split(text):
    return [int(x) for x in text.split(";")] if text else []


def _n_observed(trial):
    return trial.sessions.groupby("participant_id", sort=False)["alliance"].count()


# --- reproducibility and API ----------------------------------------------------------------


def test_same_seed_gives_identical_tables():
    a, b = simulate_trial(seed=7), simulate_trial(seed=7)
    for name in ("sessions", "participants", "truth"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert a.meta == b.meta
    assert a.source == b.source == "simulated (seed=7)"


def test_different_seeds_give_different_tables():
    a, b = simulate_trial(seed=7), simulate_trial(seed=8)
    assert not a.sessions["alliance"].equals(b.sessions["alliance"])
    assert not a.participants["pss_i_post"].equals(b.participants["pss_i_post"])
    assert not a.truth["true_pattern"].equals(b.truth["true_pattern"])


def test_meta_records_seed_sessions_and_knobs():
    t = simulate_trial(n_participants=30, n_sessions=8, seed=3, p_unrepaired=0.3)
    assert isinstance(t, Trial) and t.simulated
    assert t.meta["seed"] == 3 and t.meta["n_sessions"] == 8 and t.n_sessions == 8
    assert t.meta["knobs"]["p_unrepaired"] == 0.3
    expected = dataclasses.asdict(Knobs()) | {"p_unrepaired": 0.3}
    assert t.meta["knobs"] == expected


def test_default_knobs_is_the_dataclass_default_and_frozen():
    k = default_knobs()
    assert k == Knobs()
    assert (k.p_female, k.p_caucasian, k.age_mean, k.age_sd) == (0.761, 0.66, 36.7, 11.3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        k.p_female = 0.5


def test_unknown_knob_raises_type_error_naming_it():
    with pytest.raises(TypeError, match="p_unrepiared"):
        simulate_trial(seed=1, p_unrepiared=0.2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"p_female": 1.5},
        {"dropout_hazard": -0.1},
        {"p_repaired": 0.7, "p_unrepaired": 0.4},
        {"alliance_noise_sd": -1.0},
        {"n_sessions": 2},
        {"n_participants": 0},
        {"alliance_noise_df": 2.0},
        {"alliance_noise_df": -1.0},
        {"alliance_noise_ar": 1.0},
        {"alliance_drift_sd": -0.1},
        {"p_gradual_drop": 1.2},
        {"dropout_rupture_hr": -1.0},
    ],
)
def test_impossible_values_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        simulate_trial(seed=1, **kwargs)


def test_knob_changes_the_simulation():
    t = simulate_trial(n_participants=500, seed=1, p_unrepaired=0.0, p_repaired=0.0)
    assert set(t.truth["true_pattern"]) == {"no_rupture"}
    assert (t.truth["n_true_ruptures"] == 0).all()


# --- shape, dtypes and ranges -------------------------------------------------------------------


def test_columns_and_dtypes_follow_the_contract():
    t = simulate_trial(seed=11)
    assert list(t.sessions.columns) == SESSION_COLUMNS
    assert list(t.participants.columns) == PARTICIPANT_COLUMNS
    assert list(t.truth.columns) == TRUTH_COLUMNS
    for df in (t.sessions, t.participants, t.truth):
        assert pd.api.types.is_string_dtype(df["participant_id"])
    assert t.sessions["session"].dtype == np.int64
    assert t.sessions["alliance"].dtype == np.float64
    assert t.sessions["pss_sr"].dtype == np.float64
    for col in PARTICIPANT_COLUMNS[1:]:
        expected = pd.BooleanDtype() if col in BOOL_COLUMNS else np.float64
        assert t.participants[col].dtype == expected, col
    for col in ("n_true_ruptures", "imaginal_start", "dropout_after"):
        assert t.truth[col].dtype == np.int64, col
    for col in ("true_pattern", "rupture_sessions", "repair_sessions"):
        assert pd.api.types.is_string_dtype(t.truth[col]), col
    assert t.participants["participant_id"].tolist()[:3] == ["P001", "P002", "P003"]
    assert set(t.truth["true_pattern"]) <= set(PATTERN_LABELS)


def test_every_participant_has_every_session_row():
    for n, S in ((116, 10), (40, 12), (1000, 3)):
        t = simulate_trial(n_participants=n, n_sessions=S, seed=5)
        ids = t.participants["participant_id"]
        assert ids.is_unique and ids.is_monotonic_increasing and len(ids) == n
        assert ids.tolist() == t.truth["participant_id"].tolist()
        assert len(t.sessions) == n * S
        counts = t.sessions.groupby("participant_id")["session"].agg(["count", "min", "max", "nunique"])
        assert (counts["count"] == S).all() and (counts["nunique"] == S).all()
        assert (counts["min"] == 1).all() and (counts["max"] == S).all()
        assert set(t.sessions["participant_id"]) == set(ids)


def test_scores_within_contract_ranges_and_rounded_like_the_instruments(big):
    extreme = simulate_trial(n_participants=3000, seed=9, alliance_mean=6.8, alliance_sd=1.5,
                             pss_pre_mean=45, pss_pre_sd=15, bdi_pre_sd=25)
    for t in (big, extreme):
        for df in (t.sessions, t.participants):
            for col, (lo, hi) in SCORE_RANGES.items():
                if col in df:
                    v = df[col].dropna()
                    assert v.between(lo, hi).all(), col
    # the extreme run reaches the bounds, so the clipping is really exercised
    assert extreme.sessions["alliance"].max() == 7.0
    assert extreme.participants["pss_sr_pre"].max() == 51.0
    for col in ("pss_sr_pre", "pss_sr_post", "pss_i_pre", "pss_i_post", "bdi_pre", "bdi_post"):
        v = big.participants[col].dropna()
        assert (v == np.round(v)).all(), col
    v = big.sessions["pss_sr"].dropna()
    assert (v == np.round(v)).all()
    a = big.sessions["alliance"].dropna()
    assert np.allclose(a, np.round(a, 2), atol=1e-12, rtol=0)


# --- missing data ------------------------------------------------------------------------------


def test_nothing_observed_after_dropout(big):
    s = big.sessions.merge(big.truth[["participant_id", "dropout_after"]], on="participant_id")
    after = s["session"] > s["dropout_after"]
    assert s.loc[after, ["alliance", "pss_sr"]].isna().all().all()
    # dropout_after is the last attended session: observed, and session 1 always is
    at = s["session"] == s["dropout_after"]
    assert s.loc[at, "alliance"].notna().all()
    assert s.loc[s["session"] == 1, "alliance"].notna().all()
    # a missed session loses both session measures
    assert (s["alliance"].isna() == s["pss_sr"].isna()).all()
    # post assessments are missing together, pre ones never
    p = big.participants
    post = p[["pss_sr_post", "pss_i_post", "bdi_post"]].isna()
    assert post.nunique(axis=1).eq(1).all()
    assert p[["pss_sr_pre", "pss_i_pre", "bdi_pre"]].notna().all().all()


def test_dropout_hazard_matches_its_knob(big):
    # Hand-worked: P(still in treatment at the last session) = (1 - h) ** (S - 1); a
    # completer misses session S with probability p_missed, so
    # P(dropout_after == S) = (1 - h) ** 9 * (1 - p_missed).
    k = default_knobs()
    p = (1 - k.dropout_hazard) ** 9 * (1 - k.p_missed_session)
    n = len(big.truth)
    observed = (big.truth["dropout_after"] == 10).mean()
    assert abs(observed - p) < Z * np.sqrt(p * (1 - p) / n)


def test_classifiable_count_near_82_of_116(many):
    n_ok = np.array([(_n_observed(t) >= MIN_SESSIONS).sum() for t in many])
    assert abs(n_ok.mean() - 82) <= 3


def test_true_prevalence_among_classifiable_matches_the_knobs(many):
    # Missingness is independent of the pattern, so among the classifiable the true pattern
    # shares are the knob probabilities (the paper's 54/28/18 targets the DETECTED shares:
    # tests/test_calibration.py).
    kn = simulate.default_knobs()
    patterns = pd.concat(
        [t.truth["true_pattern"][(_n_observed(t) >= MIN_SESSIONS).to_numpy()] for t in many]
    )
    n = len(patterns)
    targets = {"no_rupture": 1 - kn.p_repaired - kn.p_unrepaired, "repaired": kn.p_repaired,
               "unrepaired": kn.p_unrepaired}
    for name, target in targets.items():
        share = (patterns == name).mean()
        assert abs(share - target) < Z * np.sqrt(target * (1 - target) / n), name


# --- demographics and symptoms ----------------------------------------------------------------


@pytest.mark.parametrize(
    "column, p", [("female", 0.761), ("caucasian", 0.66), ("mdd", 0.5), ("child_abuse", 0.45)]
)
def test_binary_demographics_within_sampling_error(big, column, p):
    n = len(big.participants)
    share = big.participants[column].mean()
    assert abs(share - p) < Z * np.sqrt(p * (1 - p) / n)


def test_age_within_sampling_error(big):
    age = big.participants["age"]
    n = len(age)
    assert age.between(18, 65).all()
    assert (age == np.round(age)).all()
    assert abs(age.mean() - 36.7) < Z * 11.3 / np.sqrt(n)
    # SE of an SD under normality, sd / sqrt(2(n - 1)); a truncated normal has lighter tails,
    # so this is conservative. Rounding to whole years adds 1/12 to the variance.
    sd_expected = np.sqrt(11.3**2 + 1 / 12)
    assert abs(age.std() - sd_expected) < Z * 11.3 / np.sqrt(2 * (n - 1))


def test_pre_treatment_symptoms_match_hand_worked_moments(big):
    # PSS-SR pre = T + e with T ~ N(30, 8), e ~ N(0, 4): SD sqrt(64 + 16); r(PSS-SR, PSS-I) =
    # 64 / 80 = .8 (rounding and the rare clip at 51 move these by < 0.05 points / .005).
    p = big.participants
    n = len(p)
    sd = np.sqrt(8**2 + 4**2)
    for col in ("pss_sr_pre", "pss_i_pre"):
        assert abs(p[col].mean() - 30) < Z * sd / np.sqrt(n) + 0.05, col
        assert abs(p[col].std() - sd) < Z * sd / np.sqrt(2 * (n - 1)) + 0.05, col
    r = np.corrcoef(p["pss_sr_pre"], p["pss_i_pre"])[0, 1]
    assert abs(r - 0.8) < Z * (1 - 0.8**2) / np.sqrt(n) + 0.005


def test_symptoms_improve_and_unrepaired_improve_less(big):
    p = big.participants.merge(big.truth[["participant_id", "true_pattern"]])
    change = p["pss_i_post"] - p["pss_i_pre"]
    assert change.mean() < -5
    by = change.groupby(p["true_pattern"]).mean()
    assert by["unrepaired"] > by["no_rupture"] + 3
    assert by["unrepaired"] > by["repaired"] + 3
    sessions = big.sessions.groupby("session")["pss_sr"].mean()
    assert sessions.iloc[-1] < sessions.iloc[0] - 5


def test_mdd_and_child_abuse_independent_of_pattern(big):
    data = big.participants.merge(big.truth[["participant_id", "true_pattern"]])
    for col in ("mdd", "child_abuse"):
        table = pd.crosstab(data["true_pattern"], data[col])
        assert table.shape == (3, 2)
        assert stats.chi2_contingency(table)[1] > 0.001, col


def _std_beta(y, x, g):
    """Standardised coefficient of g in z(y) ~ z(x) + z(g), by least squares (test's own)."""
    zs = [(v - v.mean()) / v.std() for v in (y, x, g)]
    design = np.column_stack([np.ones(len(y)), zs[1], zs[2]])
    coef, *_ = np.linalg.lstsq(design, zs[0], rcond=None)
    return coef[2]


def test_true_unrepaired_beta_is_positive_and_at_least_the_papers(many):
    # The knobs are calibrated so that the DETECTED beta averages .45 (tests/test_calibration.py);
    # detection errors attenuate, so the TRUE pattern's beta must be at least that large.
    betas = []
    for t in many:
        ok = (_n_observed(t) >= MIN_SESSIONS).to_numpy()
        p = t.participants[ok]
        g = (t.truth["true_pattern"][ok] == "unrepaired").to_numpy(float)
        cc = p[["pss_i_pre", "pss_i_post"]].notna().all(axis=1).to_numpy()
        betas.append(_std_beta(p["pss_i_post"].to_numpy()[cc], p["pss_i_pre"].to_numpy()[cc], g[cc]))
    assert np.mean(betas) >= 0.45


# --- truth consistent with the model, by construction -------------------------------------------


@pytest.fixture(scope="module")
def two_episodes():
    return simulate_trial(n_participants=5000, seed=21, p_second_rupture=0.5)


def test_truth_fields_consistent(two_episodes, big):
    kmax = default_knobs().repair_sessions_max
    for t in (big, two_episodes):
        tr = t.truth
        assert tr["imaginal_start"].isin([2, 3]).all()
        assert tr["dropout_after"].between(1, 10).all()
        last = t.sessions.dropna(subset=["alliance"]).groupby("participant_id")["session"].max()
        assert (last.reindex(tr["participant_id"]).to_numpy() == tr["dropout_after"]).all()
        for row in tr.itertuples():
            ruptures, repairs = _split(row.rupture_sessions), _split(row.repair_sessions)
            assert len(ruptures) == row.n_true_ruptures
            assert ruptures == sorted(ruptures) and all(2 <= r <= 10 for r in ruptures)
            if row.true_pattern == "no_rupture":
                assert ruptures == [] and repairs == []
            elif row.true_pattern == "repaired":
                assert len(repairs) == len(ruptures) >= 1
            else:
                assert len(repairs) == len(ruptures) - 1 and len(ruptures) >= 1
            for r, rep in zip(ruptures, repairs):  # a repair follows its rupture in 1..kmax
                assert 1 <= rep - r <= kmax and rep <= 10
            if len(ruptures) == 2:  # a second rupture starts after the first repair
                assert ruptures[1] > repairs[0]
    assert (two_episodes.truth["n_true_ruptures"] == 2).sum() > 500


def test_rupture_timing_weighted_from_imaginal_start(big):
    # Hand-worked: an unrepaired single rupture is drawn over sessions 2..10 with weight 1
    # before imaginal start and w = 2 from it on; with imaginal_start = 3,
    # P(r = 2) = 1 / (1 + 8 w) = 1/17; with imaginal_start = 2 no session has weight 1.
    tr = big.truth
    sel = (tr["true_pattern"] == "unrepaired") & (tr["imaginal_start"] == 3)
    r = tr.loc[sel, "rupture_sessions"].astype(int)
    p = 1 / 17
    assert abs((r == 2).mean() - p) < Z * np.sqrt(p * (1 - p) / len(r))
    # and every later session is equally likely: P(r = 3) = 2/17
    assert abs((r == 3).mean() - 2 / 17) < Z * np.sqrt(2 / 17 * 15 / 17 / len(r))


def test_noise_free_alliance_shows_the_episodes_exactly():
    # With alliance noise switched off and levels far from the bounds, the observed alliance
    # is the latent one rounded to 2 decimals, so the model's construction must show:
    # a drop of at least rupture_drop_min at the rupture session (minus the slope, which is
    # fixed at 0 here), a repaired episode back to >= the pre-rupture level at its repair
    # session, an unrepaired one below the pre-rupture level for every later session.
    k = default_knobs()
    t = simulate_trial(n_participants=3000, seed=4, alliance_noise_sd=0.0, alliance_mean=4.0,
                       alliance_sd=0.3, alliance_slope_sd=0.0, alliance_slope_mean=0.0,
                       p_second_rupture=0.3, p_missed_session=0.0, dropout_hazard=0.0)
    wide = t.sessions.pivot(index="participant_id", columns="session", values="alliance")
    eps = 0.0051  # two roundings to 2 decimals
    checked = {"drop": 0, "repaired": 0, "unrepaired": 0}
    for row in t.truth.itertuples():
        a = wide.loc[row.participant_id]
        ruptures, repairs = _split(row.rupture_sessions), _split(row.repair_sessions)
        for i, r in enumerate(ruptures):
            pre = a[r - 1]
            assert pre - a[r] >= k.rupture_drop_min - eps
            checked["drop"] += 1
            if i < len(repairs):
                assert a[repairs[i]] >= pre - eps
                checked["repaired"] += 1
            else:
                later = a.loc[r:]
                assert (later < pre - k.rupture_drop_min * (1 - k.unrepaired_max_recovery) + eps).all()
                checked["unrepaired"] += 1
        if not ruptures:  # without a rupture the course is flat (slope 0, no noise)
            assert a.max() - a.min() < eps
    assert min(checked.values()) > 300


@pytest.mark.parametrize("mu, sigma", [(30.0, 10.0), (50.0, 20.0), (10.0, 5.0), (70.0, 3.0), (41.5, 0.5)])
def test_truncated_normal_moments_equal_scipys(mu, sigma):
    from scipy import stats

    m, v = stats.truncnorm.stats((18 - mu) / sigma, (65 - mu) / sigma, mu, sigma, "mv")
    got = simulate._truncated_moments(mu, sigma, 18.0, 65.0)
    assert got == pytest.approx((float(m), float(np.sqrt(v))), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("mean, sd", [(36.7, 11.3), (30.0, 5.0), (45.0, 10.0), (25.0, 6.0), (55.0, 6.0), (42.0, 12.5)])
def test_untruncated_normal_solves_what_scipy_solves(mean, sd):
    from scipy import optimize, stats

    def gap(params):
        mu, log_sigma = params
        sigma = np.exp(log_sigma)
        m, v = stats.truncnorm.stats((18 - mu) / sigma, (65 - mu) / sigma, mu, sigma, "mv")
        return [m - mean, np.sqrt(v) - sd]

    ref = optimize.fsolve(gap, [mean, np.log(sd)], xtol=1e-13)
    mu, sigma = simulate._untruncated_normal(mean, sd, 18.0, 65.0)
    assert (mu, sigma) == pytest.approx((ref[0], np.exp(ref[1])), rel=1e-9)


@pytest.mark.parametrize("mean, sd", [(60.0, 8.0), (40.0, 14.0), (19.0, 10.0), (50.0, 12.0)])
def test_impossible_truncated_moments_raise(mean, sd):
    with pytest.raises(ValueError, match="no normal truncated"):
        simulate._untruncated_normal(mean, sd, 18.0, 65.0)


def test_simulating_imports_neither_scipy_stats_nor_optimize():
    """Notebooks 01 and 05 simulate: 0.5 s of imports they do not need (a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import sys; from helpers import simulate; simulate.simulate_trial(seed=1); "
            "print(sorted(m for m in ('scipy.stats', 'scipy.optimize') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- harder settings: knobs that are off by default ---------------------------------------------

HARDER = {
    "alliance_noise_df": 3.0,
    "alliance_noise_ar": 0.5,
    "alliance_drift_sd": 0.15,
    "p_gradual_drop": 1.0,
    "p_second_rupture": 0.5,
    "dropout_rupture_hr": 3.0,
}


def test_default_trial_is_byte_identical_to_the_committed_default_run(tmp_path):
    """The harder settings' knobs draw nothing when off: the default trial is still the one
    of the committed default run (data/processed, written by notebook 01)."""
    from helpers import paths
    from helpers.data import save_trial

    trial = simulate_trial(116, 10, seed=20131106)
    for path in save_trial(trial, tmp_path):
        assert path.read_bytes() == (paths.ROOT / "data" / "processed" / path.name).read_bytes(), path.name


def test_knobs_off_draw_no_random_numbers():
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    assert simulate._extra_draws(rng, 10, 10, default_knobs()) == {}
    assert rng.bit_generator.state == state
    # ... and when on they draw after every default draw: the rest of the trial is unchanged
    base = simulate.simulate_arrays(300, 10, seed=8)
    for knob, value in HARDER.items():
        arr = simulate.simulate_arrays(300, 10, seed=8, **{knob: value})
        # (a second episode moves the pattern's episode later: r_b differs by design)
        same = ("female", "age", "pattern", "k_b", "d_b", "pss_i_pre") + (("r_b",) if knob != "p_second_rupture" else ())
        for key in same:
            assert np.array_equal(arr[key], base[key]), (knob, key)


def test_heavy_tailed_noise_keeps_its_sd_and_has_heavy_tails():
    k = default_knobs()
    arr = simulate.simulate_arrays(20_000, 10, seed=5, alliance_noise_df=3.0, alliance_mean=4.0,
                                   alliance_sd=0.2, dropout_hazard=0.0, p_missed_session=0.0)
    e = ((arr["alliance"] - arr["latent_alliance"]) / k.alliance_noise_sd).ravel()
    e = e[np.abs(e) < 8]  # (a t(3) has 0.2 % beyond 8 SDs of the scaled noise: the bounds clip them)
    assert abs(e.std() - 1) < 0.1  # the SD of t(3) itself converges slowly: a loose check
    # P(|t_3| > 3 sd) with sd = sqrt(3): P(|t_3| > 5.196) = 0.0138, against 0.0027 for a normal
    assert (np.abs(e) > 3).mean() > 0.008


def test_ar1_noise_has_the_lag_one_correlation_of_its_knob():
    arr = simulate.simulate_arrays(20_000, 10, seed=6, alliance_noise_ar=0.5, alliance_mean=4.0,
                                   alliance_sd=0.2, dropout_hazard=0.0, p_missed_session=0.0)
    e = arr["alliance"] - arr["latent_alliance"]
    r = np.corrcoef(e[:, :-1].ravel(), e[:, 1:].ravel())[0, 1]
    assert abs(r - 0.5) < 0.03
    assert abs(e.std() / default_knobs().alliance_noise_sd - 1) < 0.03


def test_random_walk_drift_has_the_step_sd_of_its_knob():
    # second differences of a no-rupture client's latent course are step_s - step_{s-1}:
    # variance 2 drift^2 (the linear trend cancels)
    arr = simulate.simulate_arrays(20_000, 10, seed=7, alliance_drift_sd=0.15)
    flat = arr["pattern"] == 0
    d2 = np.diff(arr["latent_alliance"][flat], n=2, axis=1).ravel()
    assert abs(d2.std() / (np.sqrt(2) * 0.15) - 1) < 0.03


def test_gradual_drop_is_half_down_at_the_rupture_session_and_shifts_the_repair():
    k = default_knobs()
    t = simulate_trial(2000, 10, seed=9, p_gradual_drop=1.0, alliance_noise_sd=0.0,
                       alliance_mean=4.0, alliance_sd=0.3, alliance_slope_sd=0.0,
                       alliance_slope_mean=0.0, repair_overshoot=0.0)
    arr = simulate.simulate_arrays(2000, 10, seed=9, p_gradual_drop=1.0, alliance_noise_sd=0.0,
                                   alliance_mean=4.0, alliance_sd=0.3, alliance_slope_sd=0.0,
                                   alliance_slope_mean=0.0, repair_overshoot=0.0)
    lat = arr["latent_alliance"]
    rows = np.flatnonzero((arr["g_b"] == 1) & (arr["r_a"] == 0))
    assert rows.size > 300
    r = arr["r_b"][rows]
    pre, at, nxt = (lat[rows, r - 2 + j] for j in range(3))
    assert np.allclose(pre - at, arr["d_b"][rows] / 2) and np.allclose(pre - nxt, arr["d_b"][rows])
    rep = rows[arr["repaired_b"][rows]]
    truth = t.truth.iloc[rep]
    repair = np.array([int(x) for x in truth["repair_sessions"]])
    assert np.array_equal(repair, arr["r_b"][rep] + arr["k_b"][rep] + 1)
    assert np.all(repair - arr["r_b"][rep] <= k.repair_sessions_max + 1)
    assert np.allclose(lat[rep, repair - 1], lat[rep, arr["r_b"][rep] - 2])  # back at the pre level


def test_truth_consistent_under_two_episodes_and_gradual_drops():
    t = simulate_trial(3000, 10, seed=10, p_second_rupture=0.5, p_gradual_drop=0.5)
    kmax = default_knobs().repair_sessions_max
    tr = t.truth
    for row in tr.itertuples():
        ruptures, repairs = _split(row.rupture_sessions), _split(row.repair_sessions)
        assert len(ruptures) == row.n_true_ruptures
        assert len(repairs) == len(ruptures) - (row.true_pattern == "unrepaired")
        for r, rep in zip(ruptures, repairs):
            assert 1 <= rep - r <= kmax + 1 and rep <= 10
        if len(ruptures) == 2:
            assert ruptures[1] > repairs[0]
    assert (tr["n_true_ruptures"] == 2).sum() > 300


def test_rupture_dependent_dropout_changes_only_clients_in_a_rupture():
    base = simulate.simulate_arrays(5000, 10, seed=12)
    arr = simulate.simulate_arrays(5000, 10, seed=12, dropout_rupture_hr=3.0)
    inside = simulate._in_rupture({**base}, 10)[:, :9].any(axis=1)
    # the same uniforms decide: a client never in a rupture before session 10 attends as before
    assert np.array_equal(arr["attended"][~inside], base["attended"][~inside])
    # ... and one in a rupture leaves at least as early, more often earlier
    assert np.all(arr["dropout_after"][inside] <= base["dropout_after"][inside])
    assert (arr["dropout_after"][inside] < base["dropout_after"][inside]).mean() > 0.1
