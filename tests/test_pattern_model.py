"""Tests of helpers.pattern_model and helpers.pooling (the batched OLS is tested in test_ols.py).

References are independent of the code under test: scipy.stats (multivariate normal
densities and CDFs, truncated normals), scipy.integrate (the integrals over the drops),
statsmodels (OLS with HC3), hand-worked numbers (Rubin's rules) and series built by hand with
an unmistakable pattern. Statistical checks use seeded simulated trials and tolerances far
from the values seen, so that a test fails only when the behaviour changes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import episodes, pattern_model as pm
from helpers.pooling import rubin_rules
from helpers.simulate import simulate_arrays, simulate_trial

RELIABILITY = 0.83


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------
def _series(pid, values):
    return pd.DataFrame({"participant_id": pid, "session": np.arange(1, len(values) + 1),
                         "alliance": np.asarray(values, dtype=float)})


@pytest.fixture(scope="module")
def trial():
    return simulate_trial(116, 10, seed=101)


@pytest.fixture(scope="module")
def hand_made(trial):
    """The simulated trial plus clients whose pattern is unmistakable (or unknowable)."""
    rng = np.random.default_rng(5)
    noise = lambda: 0.2 * rng.standard_normal(10)  # noqa: E731 -- a one-line helper
    level = 5.5
    extra = {
        "X_noise": level + noise(),
        "X_step": level + noise() - 2.0 * (np.arange(1, 11) >= 5),
        "X_vshape": level + noise() - 2.0 * (np.arange(1, 11) == 4),
        # the drop at the last rating before dropout: nothing after it can show a repair
        "X_dropout": np.r_[level + noise()[:5], level - 2.0, [np.nan] * 4],
        # a repaired episode, then a drop that stays
        "X_two": level + noise() - 2.0 * (np.arange(1, 11) == 3) - 2.0 * (np.arange(1, 11) >= 7),
    }
    sessions = pd.concat([trial.sessions[["participant_id", "session", "alliance"]]]
                         + [_series(k, np.round(v, 2)) for k, v in extra.items()], ignore_index=True)
    return sessions, pm.fit_pattern_model(sessions, reliability=RELIABILITY)


def _probs(model, pid):
    return model.probabilities.set_index("participant_id").loc[pid]


# --------------------------------------------------------------------------------------------
# templates and the likelihood
# --------------------------------------------------------------------------------------------
def test_template_counts_and_shapes():
    t = pm.template_table(10, 3)
    assert (t["kind"] == "none").sum() == 1
    assert (t["kind"] == "U1").sum() == 9  # rupture at 2..10
    assert (t["kind"] == "R1").sum() == 21  # (r, k): r + k <= 10
    assert t.loc[t["kind"] == "RU", "rupture_sessions"].str.split(";").map(lambda x: int(x[1]) - int(x[0])).min() >= 2
    tpl = pm._make_templates(10, 3, True)
    shape = tpl.shapes[(tpl.shape_session == 4) & (tpl.shape_k == 3)][0]
    assert np.allclose(shape, [0, 0, 0, 1, 2 / 3, 1 / 3, 0, 0, 0, 0])
    assert np.allclose(tpl.shapes[(tpl.shape_session == 6) & (tpl.shape_k == 0)][0], [0] * 5 + [1] * 5)
    assert len(pm.template_table(10, 3, two_episodes=False)) == 31


def _theta(rng):
    cov = np.array([[0.5, -0.01], [-0.01, 0.002]])
    return pm._Theta(mu=np.array([[5.3, 0.05]]), cov=cov[None], sigma2=np.array([0.07]),
                     drop_mean=np.array([1.2]), drop_sd=np.array([0.4]), min_drop=np.array([0.6]),
                     prevalence=np.array([[0.5, 0.3, 0.2]]), p_second=np.array([0.3]))


@pytest.fixture(scope="module")
def small_case():
    rng = np.random.default_rng(11)
    X = 5 + 0.3 * rng.standard_normal((6, 8))
    X[1, [2, 6]] = np.nan
    X[2, 5:] = np.nan
    X[3, 3] -= 1.5
    X[4, 4:] -= 1.0
    tpl = pm._make_templates(8, 3, True)
    D = pm._prepare(X, np.arange(1, 9), np.zeros(6, int), tpl)
    th = _theta(rng)
    saved, pm._PRUNE = pm._PRUNE, np.inf  # every template evaluated, however unlikely
    try:
        E = pm._e_step(D, tpl, th, np.arange(6), pm._log_prior(th, tpl))
    finally:
        pm._PRUNE = saved
    return X, tpl, th, E


def _mvn_logpdf(x_row, th, drops_shapes):
    """log N(y_O; Z_O mu - sum d h_O, sigma^2 I + Z_O Sigma Z_O') by scipy."""
    obs = ~np.isnan(x_row)
    t = np.arange(len(x_row), dtype=float)
    Z = np.column_stack([np.ones_like(t), t])[obs]
    mean = Z @ th.mu[0] - sum(d * h[obs] for d, h in drops_shapes)
    cov = th.sigma2[0] * np.eye(obs.sum()) + Z @ th.cov[0] @ Z.T
    return stats.multivariate_normal(mean, cov).logpdf(x_row[obs])


def test_template_likelihood_given_the_drops_equals_scipys_multivariate_normal(small_case):
    # The E-step's per-client quadratic forms (Woodbury, masked rows): log p(y | t, d) =
    # ll0 - d'u - d'G d / 2 for one and two episodes, against the dense density by scipy.
    X, tpl, th, E = small_case
    ll0 = -0.5 * (E["q0"] + E["logdet"] + E["n_obs"] * np.log(2 * np.pi))
    rng = np.random.default_rng(3)
    for i in range(len(X)):
        assert ll0[i] == pytest.approx(_mvn_logpdf(X[i], th, []), rel=1e-10)
        for b in rng.choice(tpl.n_shapes, 4, replace=False):
            d = rng.uniform(0.6, 2.0)
            mine = ll0[i] - d * E["u"][i, b] - 0.5 * d * d * E["gd"][i, b]
            assert mine == pytest.approx(_mvn_logpdf(X[i], th, [(d, tpl.shapes[b])]), rel=1e-10)
        for p in rng.choice(len(tpl.pair_first), 4, replace=False):
            b1, b2 = tpl.pair_first[p], tpl.pair_second[p]
            d1, d2 = rng.uniform(0.6, 2.0, 2)
            mine = (ll0[i] - d1 * E["u"][i, b1] - d2 * E["u"][i, b2] - 0.5 * d1 * d1 * E["gd"][i, b1]
                    - 0.5 * d2 * d2 * E["gd"][i, b2] - d1 * d2 * E["gp"][i, p])
            ref = _mvn_logpdf(X[i], th, [(d1, tpl.shapes[b1]), (d2, tpl.shapes[b2])])
            assert mine == pytest.approx(ref, rel=1e-10)


def _gauss_legendre(lo, hi, n):
    x, w = np.polynomial.legendre.leggauss(n)
    return lo + (hi - lo) * (x + 1) / 2, w * (hi - lo) / 2


def test_template_likelihood_integrated_over_the_drops_equals_numerical_integration(small_case):
    # The integral over d >= min_drop of N(y; Z mu - H d, C) x the truncated normal prior, by
    # Gauss-Legendre quadrature (160 nodes per drop over [0.6, 6]: the prior beyond 6 is
    # below 1e-25) of scipy's density, shifting y instead of the mean.
    X, tpl, th, E = small_case
    prior = stats.truncnorm((0.6 - 1.2) / 0.4, np.inf, loc=1.2, scale=0.4)
    d, w = _gauss_legendre(0.6, 6.0, 160)
    t = np.arange(X.shape[1], dtype=float)
    Z = np.column_stack([np.ones_like(t), t])

    def log_integral(i, shapes):
        obs = ~np.isnan(X[i])
        dist = stats.multivariate_normal(Z[obs] @ th.mu[0], th.sigma2[0] * np.eye(obs.sum())
                                         + Z[obs] @ th.cov[0] @ Z[obs].T)
        grids = np.meshgrid(*[d] * len(shapes), indexing="ij")
        weights = np.prod(np.meshgrid(*[w * prior.pdf(d)] * len(shapes), indexing="ij"), axis=0)
        shift = sum(g.ravel()[:, None] * h[obs][None, :] for g, h in zip(grids, shapes))
        logp = dist.logpdf(X[i][obs][None, :] + shift)
        top = logp.max()
        return top + np.log((weights.ravel() * np.exp(logp - top)).sum())

    for i, b in [(0, 3), (3, 12), (4, 5), (2, 20)]:
        assert E["ll"][i, 1 + b] == pytest.approx(log_integral(i, [tpl.shapes[b]]), abs=1e-8)
    for i, p in [(0, 7), (3, 40), (4, 55), (1, 63)]:
        shapes = [tpl.shapes[tpl.pair_first[p]], tpl.shapes[tpl.pair_second[p]]]
        assert E["ll"][i, tpl.n_one + p] == pytest.approx(log_integral(i, shapes), abs=1e-7)


def test_bivariate_orthant_and_truncated_moments_equal_scipy_and_integration():
    rng = np.random.default_rng(2)
    a1, a2 = rng.normal(0, 1.5, 40), rng.normal(0, 1.5, 40)
    a1[:3] = 0.0
    rho = rng.uniform(-0.9, 0.9, 40)
    got = pm._bvn_upper(a1, a2, rho)
    ref = [stats.multivariate_normal([0, 0], [[1, r], [r, 1]]).cdf([-x, -y]) for x, y, r in zip(a1, a2, rho)]
    assert np.allclose(got, ref, atol=1e-7)  # (scipy's own CDF is accurate to about 1e-8)
    nu1, nu2, v11, v22, v12, lo = 0.4, 0.9, 0.05, 0.08, -0.02, 0.5
    e1, e2, e11, e22, e12, log_l = pm._truncated_moments_2d(*map(np.array, (nu1, nu2, v11, v22, v12)), lo)
    # the moments by Gauss-Legendre quadrature of scipy's density over [lo, 4]^2
    x, wx = _gauss_legendre(lo, 4.0, 200)
    gx, gy = np.meshgrid(x, x, indexing="ij")
    weight = np.outer(wx, wx) * stats.multivariate_normal([nu1, nu2], [[v11, v12], [v12, v22]]).pdf(
        np.stack([gx, gy], axis=-1))

    def moment(fn):
        return float((weight * fn(gx, gy)).sum())

    mass = moment(lambda x, y: np.ones_like(x))
    assert float(log_l) == pytest.approx(np.log(mass), abs=1e-8)
    for got_m, fn in [(e1, lambda x, y: x), (e2, lambda x, y: y), (e11, lambda x, y: x * x),
                      (e22, lambda x, y: y * y), (e12, lambda x, y: x * y)]:
        assert float(got_m) == pytest.approx(moment(fn) / mass, rel=1e-7)
    m1, m2, lt = pm._truncated_moments_1d(np.array(0.3), np.array(0.04), 0.5)
    tn = stats.truncnorm((0.5 - 0.3) / 0.2, np.inf, loc=0.3, scale=0.2)
    expected = (tn.mean(), tn.moment(2), stats.norm.logsf((0.5 - 0.3) / 0.2))
    assert (float(m1), float(m2), float(lt)) == pytest.approx(expected, rel=1e-10)


def test_em_never_lowers_its_objective(trial):
    ids, labels, X = pm.wide_scores(trial.sessions, "participant_id", "session", "alliance")
    tpl = pm._make_templates(10, 3, True)
    D = pm._prepare(X, labels, np.zeros(len(X), int), tpl)
    fit = D.n_obs >= 6
    th = pm._initial_theta(D, fit, np.array([0]), np.array([pm.default_min_drop(X, RELIABILITY)]))
    th.p_second[:] = 0.2
    idx = np.flatnonzero(fit)
    lls = []
    for _ in range(40):  # from far away to near the maximum, where a wrong M-step shows
        E = pm._e_step(D, tpl, th, idx, pm._log_prior(th, tpl))
        # EM's objective: the log-likelihood plus the log prior of the prevalences
        lls.append(E["loglik"].sum() + pm._PREVALENCE_PSEUDO * np.log(th.prevalence).sum())
        th.put(np.array([0]), pm._m_step(E, tpl, th, np.array([0])))
    assert np.all(np.diff(lls) >= -1e-9)
    assert lls[-1] - lls[0] > 1.0  # it did move


# --------------------------------------------------------------------------------------------
# what the model says about series built by hand
# --------------------------------------------------------------------------------------------
def test_noise_only_gives_a_high_probability_of_no_rupture(hand_made, trial):
    _, model = hand_made
    assert _probs(model, "X_noise")["p_no_rupture"] > 0.9
    # and over the simulated clients without a rupture
    p = model.probabilities.merge(trial.truth, on="participant_id")
    flat = p[(p["true_pattern"] == "no_rupture") & (p["pattern"] != "insufficient_data")]
    assert flat["p_no_rupture"].mean() > 0.85


def test_one_big_persistent_step_is_unrepaired(hand_made):
    _, model = hand_made
    row = _probs(model, "X_step")
    assert row["p_unrepaired"] > 0.95 and row["pattern"] == "unrepaired"
    assert row["rupture_session_mean"] == pytest.approx(5, abs=0.05)
    assert row["n_observed_after"] == 5


def test_a_v_shape_is_repaired(hand_made):
    _, model = hand_made
    row = _probs(model, "X_vshape")
    assert row["p_repaired"] > 0.95 and row["pattern"] == "repaired"


def test_a_rupture_right_before_dropout_is_uncertain_not_unrepaired(hand_made):
    sessions, model = hand_made
    row = _probs(model, "X_dropout")
    assert row["n_sessions_observed"] == 6 and row["n_observed_after"] == 0
    assert row["p_no_rupture"] < 0.01  # a rupture it is ...
    assert 0.15 < row["p_unrepaired"] < 0.85  # ... but repaired or not, the data cannot say
    assert row["p_pattern"] < 0.85
    # the threshold criterion calls it unrepaired (censored)
    sub = sessions[sessions["participant_id"] == "X_dropout"]
    pats = episodes.classify_participants(episodes.detect_episodes(sub, sd=0.65), sub)
    assert pats["pattern"].iloc[0] == "unrepaired"


def test_an_earlier_repaired_episode_does_not_hide_a_later_unrepaired_one(hand_made):
    sessions, model = hand_made
    row = _probs(model, "X_two")
    assert row["p_unrepaired"] > 0.95
    assert row["rupture_session_mean"] == pytest.approx(7, abs=0.1)


def test_probabilities_table_follows_its_contract(hand_made, trial):
    _, model = hand_made
    p = model.probabilities
    assert list(p.columns) == pm.PROBABILITY_COLUMNS
    assert p["participant_id"].is_monotonic_increasing
    assert np.allclose(p[["p_no_rupture", "p_repaired", "p_unrepaired"]].sum(axis=1), 1)
    few = p["n_sessions_observed"] < 6
    assert (p.loc[few, "pattern"] == "insufficient_data").all() and p.loc[few, "p_pattern"].isna().all()
    assert not (p.loc[~few, "pattern"] == "insufficient_data").any()
    assert np.allclose(model.unrepaired_seen.sum(axis=1), p["p_unrepaired"])
    assert model.converged and model.n_fitted == int((~few).sum())


def test_default_min_drop_is_the_rci_over_sqrt2(trial):
    e = episodes.detect_episodes(trial.sessions, criterion="rci", reliability=RELIABILITY)
    _, _, X = pm.wide_scores(trial.sessions, "participant_id", "session", "alliance")
    assert pm.default_min_drop(X, RELIABILITY) == pytest.approx(e.attrs["params"]["rci"] / np.sqrt(2), rel=1e-12)


def test_fitted_hyperparameters_recover_the_simulators():
    # 1,000 clients of the default world: noise SD .25, slope .04, drop mean 1.5 (SD .3),
    # true prevalence .487 / .38 / .133 -- among all clients; ruptures after dropout included
    arr = simulate_arrays(1000, 10, seed=3)
    m = pm.fit_pattern_arrays(arr["alliance"], reliability=RELIABILITY)[0]
    assert m.noise_sd == pytest.approx(0.25, abs=0.02)
    assert m.trend_mean[1] == pytest.approx(0.04, abs=0.015)
    assert m.drop_mean == pytest.approx(1.5, abs=0.15)
    assert m.prevalence["unrepaired"] == pytest.approx(0.133, abs=0.04)
    assert m.p_second < 0.05


# --------------------------------------------------------------------------------------------
# the array route: batched = one at a time
# --------------------------------------------------------------------------------------------
def test_batched_fit_equals_one_trial_at_a_time():
    arrays = [simulate_arrays(n, 10, seed=s, **kn)["alliance"]
              for n, s, kn in [(80, 1, {}), (116, 2, {"p_second_rupture": 0.5}), (60, 3, {})]]
    starts = np.cumsum([0] + [len(a) for a in arrays[:-1]])
    together = pm.fit_pattern_arrays(np.vstack(arrays), starts=starts, reliability=RELIABILITY)
    for a, m in zip(arrays, together):
        alone = pm.fit_pattern_arrays(a, reliability=RELIABILITY)[0]
        assert m.n_iter == alone.n_iter and m.converged == alone.converged
        assert m.loglik == pytest.approx(alone.loglik, rel=1e-10)
        for key in ("noise_sd", "drop_mean", "drop_sd", "p_second", "min_drop"):
            assert getattr(m, key) == pytest.approx(getattr(alone, key), rel=1e-7, abs=1e-10)
        cols = ["p_no_rupture", "p_repaired", "p_unrepaired", "rupture_session_mean"]
        assert np.allclose(m.probabilities[cols], alone.probabilities[cols], atol=1e-8, equal_nan=True)
        assert (m.probabilities["pattern"] == alone.probabilities["pattern"]).all()
    assert together[1].p_second > 0.1  # the second trial has second episodes, the others not


def test_table_route_equals_array_route(trial):
    m = pm.fit_pattern_model(trial.sessions, reliability=RELIABILITY)
    arr = simulate_arrays(116, 10, seed=101)
    a = pm.fit_pattern_arrays(arr["alliance"], reliability=RELIABILITY)[0]
    assert m.loglik == a.loglik
    assert np.array_equal(m.probabilities["p_unrepaired"], a.probabilities["p_unrepaired"])


def test_one_episode_templates_only():
    arr = simulate_arrays(116, 10, seed=4)
    m = pm.fit_pattern_arrays(arr["alliance"], reliability=RELIABILITY, two_episodes=False)[0]
    assert m.p_second == 0 and m.converged


@pytest.mark.parametrize("kwargs, match", [
    ({"min_sessions": 2}, "min_sessions"),
    ({"repair_max": 0}, "repair_max"),
    ({"reliability": None}, "reliability"),
    ({"min_drop": -1.0}, "min_drop"),
])
def test_bad_arguments_raise(trial, kwargs, match):
    kw = {"reliability": RELIABILITY, **kwargs}
    with pytest.raises(ValueError, match=match):
        pm.fit_pattern_model(trial.sessions, **kw)


def test_too_few_classifiable_clients_raise():
    s = pd.concat([_series(f"p{i}", 5 + 0.1 * np.arange(8)) for i in range(4)])
    with pytest.raises(ValueError, match="at least 5"):
        pm.fit_pattern_model(s, reliability=RELIABILITY)


# --------------------------------------------------------------------------------------------
# Rubin's rules, the batched OLS and the imputation
# --------------------------------------------------------------------------------------------
def test_rubins_rules_hand_worked():
    # m = 4: estimates 2, 4, 4, 6 (mean 4, B = 8/3), variances 1, 1, 2, 2 (U-bar 1.5);
    # T = 1.5 + 1.25 * 8/3 = 4.8333..., gamma = (10/3) / T = 0.689655...,
    # df_m = 3 / gamma^2 = 6.3075, nu_com = 20: nu_obs = 21/23 * 20 * (1 - gamma) = 5.66717...,
    # df = 1 / (1 / df_m + 1 / nu_obs) = 2.98511...
    r = rubin_rules([2.0, 4.0, 4.0, 6.0], [1.0, 1.0, 2.0, 2.0], df_complete=20)
    T = 1.5 + 1.25 * 8 / 3
    gamma = (1.25 * 8 / 3) / T
    df_m, nu_obs = 3 / gamma**2, 21 / 23 * 20 * (1 - gamma)
    df = 1 / (1 / df_m + 1 / nu_obs)
    assert r["estimate"] == 4.0 and r["total"] == pytest.approx(T) and r["fmi"] == pytest.approx(gamma)
    assert r["df"] == pytest.approx(df, rel=1e-12)
    half = stats.t.ppf(0.975, df) * np.sqrt(T)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((4 - half, 4 + half), rel=1e-12)
    assert r["p"] == pytest.approx(2 * stats.t.sf(4 / np.sqrt(T), df), rel=1e-10)


def test_rubins_rules_with_identical_imputations_are_the_complete_data_analysis():
    r = rubin_rules([1.5] * 5, [0.25] * 5, df_complete=30)
    assert r["fmi"] == 0 and r["between"] == 0 and r["se"] == pytest.approx(0.5)
    assert r["df"] == pytest.approx(30 * 31 / 33)


def test_certain_patterns_give_fmi_zero_and_the_plain_regression(trial):
    import statsmodels.api as sm

    m = pm.fit_pattern_model(trial.sessions, reliability=RELIABILITY)
    truth = trial.truth.set_index("participant_id")["true_pattern"]
    p = m.probabilities.copy()
    code = truth.reindex(p["participant_id"]).map({"no_rupture": 0, "repaired": 1, "unrepaired": 2}).to_numpy()
    p[["p_no_rupture", "p_repaired", "p_unrepaired"]] = np.eye(3)[code]
    m.probabilities = p
    m.unrepaired_seen = np.zeros_like(m.unrepaired_seen)
    m.unrepaired_seen[code == 2, 3] = 1.0
    res = pm.unrepaired_effect(m, trial.participants, seed=1).iloc[0]
    assert res["fmi"] == 0
    d = p[p["pattern"] != "insufficient_data"].merge(trial.participants, on="participant_id")
    d = d.dropna(subset=["pss_i_pre", "pss_i_post"])
    flag = (truth.reindex(d["participant_id"]) == "unrepaired").to_numpy(float)
    ref = sm.OLS(d["pss_i_post"].to_numpy(), sm.add_constant(np.column_stack([d["pss_i_pre"], flag]))).fit(cov_type="HC3")
    assert res["b"] == pytest.approx(ref.params[2], rel=1e-10)
    assert res["se"] == pytest.approx(ref.bse[2], rel=1e-10)
    nu = len(d) - 3
    assert res["df"] == pytest.approx(nu * (nu + 1) / (nu + 3))
    assert res["n"] == len(d) and res["expected_n_unrepaired"] == flag.sum()


def test_unrepaired_effect_is_reproducible_by_seed(hand_made, trial):
    _, model = hand_made
    a = pm.unrepaired_effect(model, trial.participants, seed=7, n_imputations=5, burn_in=20, thin=2)
    b = pm.unrepaired_effect(model, trial.participants, seed=7, n_imputations=5, burn_in=20, thin=2)
    c = pm.unrepaired_effect(model, trial.participants, seed=8, n_imputations=5, burn_in=20, thin=2)
    pd.testing.assert_frame_equal(a, b)
    assert a["b"].iloc[0] != c["b"].iloc[0]
    assert list(a.columns) == pm.EFFECT_COLUMNS and a["fmi"].iloc[0] > 0


def test_unrepaired_effect_with_covariates_and_missing_columns(hand_made, trial):
    _, model = hand_made
    r = pm.unrepaired_effect(model, trial.participants, covariates=("mdd", "age"), seed=1,
                             n_imputations=4, burn_in=20, thin=2)
    assert np.isfinite(r["b"].iloc[0]) and r["n"].iloc[0] > 50
    with pytest.raises(ValueError, match="nonexistent"):
        pm.unrepaired_effect(model, trial.participants, covariates=("nonexistent",))


def test_min_drop_sensitivity_refits_at_each_multiple(trial):
    t = pm.min_drop_sensitivity(trial.sessions, reliability=RELIABILITY, multiples=(1.0, 3.0),
                                participants=trial.participants, seed=2, n_imputations=3)
    _, _, X = pm.wide_scores(trial.sessions, "participant_id", "session", "alliance")
    assert t["min_drop"].tolist() == pytest.approx([pm.default_min_drop(X, RELIABILITY) * k for k in (1, 3)])
    assert np.allclose(t[["pct_no_rupture", "pct_repaired", "pct_unrepaired"]].sum(axis=1), 100)
    # three times the default admits fewer ruptures
    assert t["pct_no_rupture"].iloc[1] > t["pct_no_rupture"].iloc[0]
    assert {"b", "ci_low", "ci_high", "beta", "fmi"} <= set(t.columns)


def test_min_drop_sensitivity_reuses_the_runs_model_and_effect(trial):
    kw = dict(reliability=RELIABILITY, multiples=(1, 2), participants=trial.participants, seed=2, n_imputations=3)
    refit = pm.min_drop_sensitivity(trial.sessions, **kw)
    model = pm.fit_pattern_model(trial.sessions, reliability=RELIABILITY)
    effect = pm.unrepaired_effect(model, trial.participants, seed=2, n_imputations=3)
    reused = pm.min_drop_sensitivity(trial.sessions, model=model, effect=effect, **kw)
    pd.testing.assert_frame_equal(reused, refit)  # the same fit and the same imputations: the same rows
    # a changed effect shows up in row 1 only: it is used, not recomputed
    shifted = pm.min_drop_sensitivity(trial.sessions, model=model, effect=effect.assign(b=effect["b"] + 1), **kw)
    assert shifted["b"].tolist() == pytest.approx([refit["b"].iloc[0] + 1, refit["b"].iloc[1]])
    other = pm.fit_pattern_model(trial.sessions, reliability=RELIABILITY, min_drop=2 * model.min_drop)
    with pytest.raises(ValueError, match="cannot stand for multiple 1"):
        pm.min_drop_sensitivity(trial.sessions, model=other, **kw)
    with pytest.raises(ValueError, match="pass model="):
        pm.min_drop_sensitivity(trial.sessions, effect=effect, **kw)


def test_unrepaired_effect_of_many_trials_equals_one_at_a_time():
    # each trial draws from its own seed exactly what unrepaired_effect draws alone; the
    # stacked arithmetic may differ in the last bits only
    arr = [simulate_arrays(n, 10, seed=s, **kn) for n, s, kn in [(90, 21, {}), (70, 22, {"p_second_rupture": 0.5})]]
    starts = np.cumsum([0] + [len(a["alliance"]) for a in arr[:-1]])
    models = pm.fit_pattern_arrays(np.vstack([a["alliance"] for a in arr]), starts=starts, reliability=RELIABILITY)
    many = pm.unrepaired_effect_arrays(models, [a["pss_i_pre"] for a in arr], [a["pss_i_post"] for a in arr],
                                       seeds=[5, 6], n_imputations=4, burn_in=20, thin=3)
    for k, (mod, a) in enumerate(zip(models, arr)):
        part = pd.DataFrame({"participant_id": mod.probabilities["participant_id"],
                             "pss_i_pre": a["pss_i_pre"], "pss_i_post": a["pss_i_post"]})
        one = pm.unrepaired_effect(mod, part, seed=5 + k, n_imputations=4, burn_in=20, thin=3).iloc[0]
        got = many.iloc[k]
        for col in pm.EFFECT_COLUMNS:
            assert got[col] == pytest.approx(one[col], rel=1e-9, abs=1e-12), col
    assert np.isfinite(many["beta_se"]).all()
    with pytest.raises(ValueError, match="one entry per trial"):
        pm.unrepaired_effect_arrays(models, [arr[0]["pss_i_pre"]], [arr[0]["pss_i_post"]], seeds=[1, 2])


# ----------------------------------------------------------------------------- registry-sized trials
def test_the_imputation_sampler_draws_what_the_row_per_client_sampler_draws():
    """The sweeps on the (categories x clients) layout against the sampler as its docstring
    reads (oracles.imputation), one seed each: the same random numbers in the same order, so
    the same patterns -- up to a uniform within rounding of a boundary, hence the tolerance of
    1 in 1,000 draws (a wrong step changes far more). Both covariates of the unrepaired shift:
    one per category (the paper's regression) and one per client and category (the growth
    model's slopes)."""
    from oracles.imputation import impute_patterns as oracle

    trial = simulate_trial(400, 10, seed=31, p_second_rupture=0.3)
    model = pm.fit_pattern_model(trial.sessions, reliability=RELIABILITY)
    cols = ["pss_i_pre", "pss_i_post"]
    values = (trial.participants.set_index("participant_id")[cols].reindex(model.probabilities["participant_id"])
              .astype(float).to_numpy())
    y, base, prior, seen = pm._effect_inputs(model.probabilities, model.unrepaired_seen, values)
    per_client = np.random.default_rng(4).uniform(0, 3, size=prior.shape)
    for covariate in (seen, per_client):
        got = pm.impute_patterns(prior, covariate, y, base, 6, np.random.default_rng(8), 30, 4)
        want = oracle(prior, covariate, y, base, 6, np.random.default_rng(8), 30, 4)
        assert got.shape == want.shape == (6, len(y))
        assert (got != want).mean() <= 1e-3
        assert len(np.unique(want)) == 3  # every pattern drawn: the comparison is not vacuous


def test_probabilities_in_blocks_equal_one_block(monkeypatch):
    X = simulate_arrays(150, 10, seed=11)["alliance"]
    whole = pm.fit_pattern_arrays(X, reliability=0.83)[0]
    monkeypatch.setattr(pm, "_BLOCK", 7)  # 150 clients in 22 blocks
    blocks = pm.fit_pattern_arrays(X, reliability=0.83)[0]
    cols = ["p_no_rupture", "p_repaired", "p_unrepaired", "rupture_session_mean"]
    np.testing.assert_allclose(blocks.probabilities[cols].to_numpy(), whole.probabilities[cols].to_numpy(),
                               rtol=0, atol=1e-12)
    assert blocks.loglik == pytest.approx(whole.loglik, rel=1e-12)


def test_a_cap_on_the_fitted_clients_samples_them_and_still_classifies_everyone():
    X = simulate_arrays(3000, 10, seed=12)["alliance"]
    full = pm.fit_pattern_arrays(X, reliability=0.83)[0]
    capped = pm.fit_pattern_arrays(X, reliability=0.83, max_fit_clients=800, fit_seed=3)[0]
    again = pm.fit_pattern_arrays(X, reliability=0.83, max_fit_clients=800, fit_seed=3)[0]
    classifiable = (full.probabilities["pattern"] != pm.INSUFFICIENT).sum()
    assert full.n_fitted == classifiable > 800 and capped.n_fitted == 800
    assert len(capped.probabilities) == 3000
    assert (capped.probabilities["pattern"] != pm.INSUFFICIENT).sum() == classifiable
    pd.testing.assert_frame_equal(capped.probabilities, again.probabilities)  # the seed fixes the sample
    # hyperparameters from 800 of ~2,100 clients: close to the full fit's, not equal to them
    for k in full.prevalence:
        assert abs(capped.prevalence[k] - full.prevalence[k]) < 0.05
    assert capped.prevalence != full.prevalence
    assert abs(capped.noise_sd / full.noise_sd - 1) < 0.05
    agree = (capped.probabilities["pattern"] == full.probabilities["pattern"]).mean()
    assert agree > 0.95


def test_a_cap_above_the_classifiable_clients_changes_nothing():
    X = simulate_arrays(120, 10, seed=13)["alliance"]
    full = pm.fit_pattern_arrays(X, reliability=0.83)[0]
    capped = pm.fit_pattern_arrays(X, reliability=0.83, max_fit_clients=10_000, fit_seed=1)[0]
    pd.testing.assert_frame_equal(capped.probabilities, full.probabilities)
    with pytest.raises(ValueError, match="max_fit_clients"):
        pm.fit_pattern_arrays(X, reliability=0.83, max_fit_clients=2)
