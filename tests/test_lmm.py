"""Tests of helpers.lmm: parity with lme4 + lmerTest (committed reference tables written by
tests/reference/lmm_lme4.R; R is not needed here), a cross-check with statsmodels MixedLM, a
slow dense evaluation of the criterion, and input handling."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from helpers import lmm

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference"
GROWTH_FIXED = "time * (repaired + unrepaired)"

#: model name -> (data loader, outcome, fixed terms, group, random terms)
MODELS = {
    "sleep_slope": ("sleep", "Reaction", "Days", "Subject", "1 + Days"),
    "sleep_int": ("sleep", "Reaction", "Days", "Subject", "1"),
    "sleep_quad": ("sleep", "Reaction", "Days + Days2", "Subject", "1 + Days + Days2"),
    "sleep_onerow": ("onerow", "Reaction", "Days", "Subject", "1 + Days"),
    "default_growth": ("default_growth_input.csv", "pss_sr", GROWTH_FIXED, "participant_id",
                       "1 + time"),
    "trial1160": ("lmm_trial1160_input.csv", "pss_sr", GROWTH_FIXED, "participant_id",
                  "1 + time"),
    "noslope": ("lmm_noslope_input.csv", "pss_sr", GROWTH_FIXED, "participant_id", "1 + time"),
    # a completed data set of the pattern model's imputation on which the optimiser's first
    # quasi-Newton step once went to Lambda ~ 1e8 and the fit raised (lme4 fits it)
    "downdate": ("lmm_downdate_input.csv", "pss_sr", GROWTH_FIXED, "participant_id", "1 + time"),
}
CASES = [(m, reml) for m in MODELS for reml in (True, False)]

# Tolerances of the issue: estimates, SEs and variances 1e-5 relative (absolute floor for
# values ~0), log-likelihood 1e-6 absolute, Satterthwaite df 1e-3 relative.
RTOL = 1e-5
LOGLIK_ATOL = 1e-6
DF_RTOL = 1e-3


# --------------------------------------------------------------------------------------------
# data and fits
# --------------------------------------------------------------------------------------------
@functools.cache
def sleep():
    d = pd.read_csv(ROOT / "tests" / "data" / "lme4_sleepstudy.csv", dtype={"Subject": str})
    return d.assign(Days2=d["Days"] ** 2)


def growth_input(name):
    """The growth model's table, built as growth_lme4.R / lmm_lme4.R build it."""
    d = pd.read_csv(REF / name, dtype={"participant_id": str})
    d = d[d["pattern"].isin(["no_rupture", "repaired", "unrepaired"]) & d["pss_sr"].notna()]
    d = d.assign(time=d["session"] - (d["session"].min() + d["session"].max()) / 2,
                 repaired=(d["pattern"] == "repaired").astype(float),
                 unrepaired=(d["pattern"] == "unrepaired").astype(float))
    return d.reset_index(drop=True)


@functools.cache
def model_data(model):
    source = MODELS[model][0]
    if source == "sleep":
        return sleep()
    if source == "onerow":
        d = sleep()
        return d[(d["Subject"] != "308") | ~d["Subject"].duplicated()].reset_index(drop=True)
    return growth_input(source)


@functools.cache
def fit(model, reml):
    _, y, fixed, group, random = MODELS[model]
    return lmm.fit_lmm(model_data(model), y, fixed, group, random, reml=reml)


def reference(table, model, reml):
    d = pd.read_csv(REF / f"lmm_lme4_{table}.csv", keep_default_na=False, na_values=[""])
    return d[(d["model"] == model) & (d["reml"] == reml)].reset_index(drop=True)


def rel_diff(a, b, floor=0.0):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.abs(a - b) / np.maximum(np.abs(b), floor)


# --------------------------------------------------------------------------------------------
# parity with lme4 + lmerTest
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model,reml", CASES)
def test_fixed_effects_match_lme4(model, reml):
    ours, ref = fit(model, reml).fixed, reference("fixed", model, reml)
    assert list(ours["term"]) == list(ref["term"])
    for col in ("estimate", "se"):
        # floor: an estimate ~0 is compared on the scale of its SE
        floor = ref["se"].to_numpy() if col == "estimate" else 0.0
        assert rel_diff(ours[col], ref[col], floor).max() < RTOL, col


@pytest.mark.parametrize("model,reml", CASES)
def test_satterthwaite_df_match_lmertest(model, reml):
    ours, ref = fit(model, reml).fixed, reference("fixed", model, reml)
    assert rel_diff(ours["df"], ref["df"]).max() < DF_RTOL


@pytest.mark.parametrize("model,reml", CASES)
def test_variance_components_match_lme4(model, reml):
    ours, ref = fit(model, reml).random, reference("random", model, reml)
    for col in ("grp", "var1", "var2"):
        assert list(ours[col].fillna("")) == list(ref[col].fillna("").astype(str)), col
    # absolute floor for a component ~0 (singular fit): values below 1e-3 of the largest
    # component are compared on that scale (absolute tolerance 1e-8 of the largest)
    floor = 1e-3 * ref["vcov"].abs().max()
    assert rel_diff(ours["vcov"], ref["vcov"], floor).max() < RTOL
    is_var = ref["var2"].isna().to_numpy()
    sd_floor = np.sqrt(floor)
    assert rel_diff(ours["sdcor"][is_var], ref["sdcor"][is_var], sd_floor).max() < RTOL
    # correlations: absolute (they are bounded by 1)
    corr_diff = np.abs(ours["sdcor"].to_numpy() - ref["sdcor"].to_numpy())[~is_var]
    assert np.max(corr_diff, initial=0.0) < RTOL


@pytest.mark.parametrize("model,reml", CASES)
def test_loglik_theta_and_flags_match_lme4(model, reml):
    ours, ref = fit(model, reml), reference("fit", model, reml).iloc[0]
    assert abs(ours.loglik - ref["loglik"]) < LOGLIK_ATOL
    assert abs(ours.deviance - ref["deviance"]) < 2 * LOGLIK_ATOL
    assert abs(ours.aic - ref["aic"]) < 2 * LOGLIK_ATOL
    assert abs(ours.bic - ref["bic"]) < 2 * LOGLIK_ATOL
    assert ours.singular == bool(ref["singular"])
    assert (ours.n_obs, ours.n_groups) == (ref["n_obs"], ref["n_groups"])
    assert rel_diff(ours.sigma, ref["sigma"]) < RTOL
    theta = reference("theta", model, reml)["theta"].to_numpy()
    assert np.abs(ours.theta - theta).max() < 1e-4 * max(1.0, np.abs(theta).max())
    assert ours.converged and ours.grad_norm < 1e-3


@pytest.mark.parametrize("model,reml", [(m, True) for m in MODELS])
def test_random_effects_match_lme4(model, reml):
    ours, ref = fit(model, reml), reference("ranef", model, reml)
    wide = ref.pivot(index="group", columns="term", values="value")
    wide.index = wide.index.astype(str)
    ranef = ours.ranef.copy()
    ranef.index = ranef.index.astype(str)
    wide = wide.loc[ranef.index, ranef.columns]
    scale = np.abs(wide.to_numpy()).max(axis=0)
    assert (np.abs(ranef.to_numpy() - wide.to_numpy()) / scale).max() < RTOL


def test_singular_fit_detected_on_no_slope_trial():
    for reml in (True, False):
        f = fit("noslope", reml)
        assert f.singular and f.converged
        assert np.diag(f.lambda_).min() < lmm.SINGULAR_TOL
        assert np.all(np.diag(f.lambda_) >= 0)  # columns flipped after the unbounded search
    assert not fit("default_growth", True).singular


# --------------------------------------------------------------------------------------------
# internal consistency
# --------------------------------------------------------------------------------------------
def test_fitted_values_and_residuals():
    f = fit("sleep_slope", True)
    d = model_data("sleep_slope")
    beta = f.fixed.set_index("term")["estimate"]
    marginal = beta["Intercept"] + beta["Days"] * d["Days"]
    b = f.ranef.loc[d["Subject"]].to_numpy()
    conditional = marginal + b[:, 0] + b[:, 1] * d["Days"]
    np.testing.assert_allclose(f.fitted["fitted_marginal"], marginal, rtol=1e-12)
    np.testing.assert_allclose(f.fitted["fitted_conditional"], conditional, rtol=1e-12)
    np.testing.assert_allclose(f.fitted["resid_conditional"],
                               d["Reaction"] - conditional, atol=1e-9)
    # the PLS normal equations: sum of conditional residuals equals what the penalty absorbs
    assert abs(f.fitted["resid_marginal"].sum() - (d["Reaction"] - marginal).sum()) < 1e-8


def test_contrast_reproduces_fixed_table_and_cov():
    f = fit("default_growth", True)
    p = len(f.fixed)
    table = f.contrast(np.eye(p))
    for col in ("estimate", "se", "df", "t", "p", "ci_low", "ci_high"):
        np.testing.assert_allclose(table[col], f.fixed[col], rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(np.diag(f.cov_fe)), f.fixed["se"], rtol=1e-12)
    # a combination: its df lies between the df of its parts' extremes (sanity, not equality)
    combo = f.contrast(np.r_[1.0, 2.0, np.zeros(p - 2)])
    assert 0 < combo["df"].iloc[0] < 10 * f.n_obs


def test_t_based_p_and_ci():
    from scipy import stats

    f = fit("sleep_int", True)
    row = f.fixed.iloc[0]
    assert row["p"] == pytest.approx(2 * stats.t.sf(abs(row["t"]), row["df"]), rel=1e-10)
    half = stats.t.ppf(0.975, row["df"]) * row["se"]
    assert row["ci_high"] - row["estimate"] == pytest.approx(half, rel=1e-10)


# --------------------------------------------------------------------------------------------
# a slow dense reference: the REML criterion and its optimum from n x n matrices
# --------------------------------------------------------------------------------------------
def dense_criterion(theta, y, X, Z, codes, reml=True):
    """-2 log L (REML or ML, beta and sigma profiled) from the dense marginal covariance."""
    n, p = X.shape
    q = Z.shape[1]
    lam = np.zeros((q, q))
    lam[lmm._tril_index(q)] = theta
    G = codes.max() + 1
    Zfull = np.zeros((n, G * q))
    for j in range(q):
        Zfull[np.arange(n), codes * q + j] = Z[:, j]
    Lfull = np.kron(np.eye(G), lam)
    V = np.eye(n) + Zfull @ Lfull @ Lfull.T @ Zfull.T
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
    e = y - X @ beta
    r2 = e @ Vi @ e
    nu = n - p if reml else n
    crit = np.linalg.slogdet(V)[1] + nu * (1 + np.log(2 * np.pi * r2 / nu))
    return crit + np.linalg.slogdet(XtViX)[1] if reml else crit


def sleep_arrays(q):
    d = sleep()
    days = d["Days"].to_numpy(float)
    X = np.column_stack([np.ones(len(d)), days, days**2][: max(q, 2)])
    Z = np.column_stack([np.ones(len(d)), days, days**2][:q])
    codes = pd.factorize(d["Subject"], sort=True)[0]
    return d["Reaction"].to_numpy(float), X, Z, codes


@pytest.mark.parametrize("q", [1, 2, 3])
@pytest.mark.parametrize("reml", [True, False])
def test_criterion_and_gradient_match_dense_evaluation(q, reml):
    y, X, Z, codes = sleep_arrays(q)
    prob = lmm._Problem(y, X, Z, codes, codes.max() + 1, reml)
    rng = np.random.default_rng(q)
    for _ in range(3):
        theta = rng.normal(0.5, 0.4, q * (q + 1) // 2)
        ev = prob.evaluate(theta)
        assert prob.criterion(ev) == pytest.approx(dense_criterion(theta, y, X, Z, codes, reml),
                                                   abs=1e-8)
        h = 1e-5
        fd = [(dense_criterion(theta + h * e, y, X, Z, codes, reml)
               - dense_criterion(theta - h * e, y, X, Z, codes, reml)) / (2 * h)
              for e in np.eye(len(theta))]
        np.testing.assert_allclose(prob.criterion_gradient(ev), fd, rtol=1e-5, atol=1e-5)


def growth_problem(model, reml=True):
    d = model_data(model)
    X = np.column_stack([np.ones(len(d)), d["time"], d["repaired"], d["unrepaired"],
                         d["time"] * d["repaired"], d["time"] * d["unrepaired"]])
    Z = np.column_stack([np.ones(len(d)), d["time"]])
    codes = pd.factorize(d["participant_id"], sort=True)[0]
    return lmm._Problem(d["pss_sr"].to_numpy(float), X, Z, codes, codes.max() + 1, reml)


def test_downdate_data_still_step_far_out(monkeypatch):
    # the lme4 parity of "downdate" (above) is worth something only while its REML optimiser
    # path still takes a trial step to |theta| >> 1e5, where X'V^{-1}X cancels to noise (on the
    # machine this was found on its Cholesky factorisation failed there): the fit must back off
    # and end at lme4's optimum (checked above). Whether the factorisation fails at that point
    # depends on the last bits, so only the step is asserted.
    seen = []
    real = lmm._Problem.evaluate

    def spy(self, theta, gradient=True):
        seen.append(np.abs(theta).max())
        return real(self, theta, gradient)

    monkeypatch.setattr(lmm._Problem, "evaluate", spy)
    f = lmm.fit_lmm(model_data("downdate"), "pss_sr", GROWTH_FIXED, "participant_id", "1 + time", reml=True)
    assert max(seen) > 1e5 and f.converged


def test_an_unevaluable_theta_is_an_infinite_criterion_not_an_error(monkeypatch):
    prob = growth_problem("downdate")
    real = np.linalg.cholesky

    def fails_on_s(a):  # X'V^{-1}X is the only p x p factorisation (p = 6; A_i are 2 x 2)
        if a.shape == (prob.p, prob.p):
            raise np.linalg.LinAlgError("Matrix is not positive definite")
        return real(a)

    monkeypatch.setattr(lmm.np.linalg, "cholesky", fails_on_s)
    ev = prob.evaluate(np.array([1.0, 0.0, 1.0]))
    assert prob.criterion(ev) == np.inf and np.isnan(prob.criterion_gradient(ev)).all()
    with pytest.raises(np.linalg.LinAlgError, match="Hessian of the variance parameters"):
        prob.varpar_grad_theta(ev, 4.0)
    with pytest.raises(np.linalg.LinAlgError, match="at the start"):  # Lambda = I unevaluable
        lmm._optimise(prob)
    monkeypatch.undo()
    assert np.isfinite(prob.criterion(prob.evaluate(np.array([1.0, 0.0, 1.0]))))


def test_lean_fits_of_the_downdate_data_equal_its_own_fit():
    # fit_lmm_lean stacks the evaluations; a round whose stacked factorisation fails is
    # evaluated problem by problem, so the far trial step is backed off in the stack too
    prob = growth_problem("downdate")
    other = growth_problem("default_growth")
    models = [(p.y, p.X, p.Z, p.codes) for p in (prob, other, prob)]
    lean = lmm.fit_lmm_lean(models)
    for model, got in zip(models, lean):
        own = lmm.fit_lmm_arrays(*model)
        assert got.converged and np.array_equal(got.estimate, own.fixed["estimate"].to_numpy())
    np.testing.assert_allclose(lean[0].estimate, reference("fixed", "downdate", True)["estimate"], rtol=RTOL)


def test_the_line_search_backs_off_an_unevaluable_trial_step(monkeypatch):
    # made certain on any machine: every theta beyond 1e3 is unevaluable; sleepstudy's fit
    # (theta ~ 1) is unchanged by it
    y, X, Z, codes = sleep_arrays(2)
    ref = lmm.fit_lmm_arrays(y, X, Z, codes)
    real = lmm._Problem.evaluate
    far = []

    def guarded(self, theta, gradient=True):
        if np.abs(theta).max() > 1e3:
            far.append(theta)
            return self._unevaluable(self.lam(theta))
        return real(self, theta, gradient)

    monkeypatch.setattr(lmm._Problem, "evaluate", guarded)
    # a first step that overshoots to ~1e6: the quasi-Newton start made 1e6 times too flat
    steps = lmm._initial_inverse_hessian_steps
    monkeypatch.setattr(lmm, "_initial_inverse_hessian_steps",
                        lambda prob, theta, g, h=1e-4: (yield from steps(prob, theta, g, h)) * 1e6)
    got = lmm.fit_lmm_arrays(y, X, Z, codes)
    assert far and got.converged
    np.testing.assert_allclose(got.theta, ref.theta, rtol=1e-6)


@pytest.mark.slow  # a Powell search of the dense criterion: ~8 s
def test_q3_optimum_is_the_dense_optimum():
    """q = 3 path: no direction improves the dense criterion at our estimate."""
    y, X, Z, codes = sleep_arrays(3)
    f = lmm.fit_lmm_arrays(y, X, Z, codes, reml=True)
    crit = dense_criterion(f.theta, y, X, Z, codes)
    assert crit == pytest.approx(f.deviance, abs=1e-8)
    res = optimize.minimize(dense_criterion, f.theta, args=(y, X, Z, codes), method="Powell",
                            options={"xtol": 1e-8, "ftol": 1e-13})
    assert res.fun > crit - 1e-8


# --------------------------------------------------------------------------------------------
# an independent implementation: statsmodels MixedLM
# --------------------------------------------------------------------------------------------
def test_agrees_with_statsmodels_mixedlm():
    """statsmodels' MixedLM, an independent implementation, at looser tolerance (its default
    optimiser converges on sleepstudy; its own SEs come from a joint Hessian, so only the
    estimates, variance components and log-likelihood are compared)."""
    import warnings

    from statsmodels.regression.mixed_linear_model import MixedLM

    d = model_data("sleep_slope")
    f = fit("sleep_slope", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = MixedLM.from_formula("Reaction ~ Days", d, groups="Subject",
                                   re_formula="~Days").fit(reml=True)
    np.testing.assert_allclose(f.fixed["estimate"], res.fe_params, rtol=1e-5)
    cov_re = np.asarray(res.cov_re)
    np.testing.assert_allclose(f.random["vcov"][:3], cov_re[[0, 1, 0], [0, 1, 1]], rtol=1e-3)
    np.testing.assert_allclose(f.sigma**2, res.scale, rtol=1e-4)
    assert f.loglik == pytest.approx(res.llf, abs=1e-4)


# --------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------
def test_missing_outcome_dropped_with_note_or_raised():
    d = sleep().copy()
    d.loc[[3, 50], "Reaction"] = np.nan
    f = lmm.fit_lmm(d, "Reaction", "Days", "Subject", "1 + Days")
    assert f.n_obs == 178 and "2 rows with missing values" in f.notes[0]
    clean = lmm.fit_lmm(d.dropna(), "Reaction", "Days", "Subject", "1 + Days")
    np.testing.assert_allclose(f.fixed["estimate"], clean.fixed["estimate"], rtol=1e-12)
    assert list(f.fitted.index) == list(d.dropna().index)
    with pytest.raises(ValueError, match="missing values"):
        lmm.fit_lmm(d, "Reaction", "Days", "Subject", "1 + Days", missing="raise")
    y, X, Z, codes = sleep_arrays(2)
    y = y.copy()
    y[0] = np.nan
    with pytest.raises(ValueError, match="non-finite values in y"):
        lmm.fit_lmm_arrays(y, X, Z, codes)


def test_group_with_one_row_is_kept():
    f = fit("sleep_onerow", True)
    assert f.n_groups == 18 and f.n_obs == 171
    assert "308" in f.ranef.index.astype(str)


@pytest.mark.parametrize("change,message", [
    (lambda d: d.assign(Subject="one"), "at least two levels"),
    (lambda d: d.assign(Days3=2 * d["Days"]), "rank deficient"),
    (lambda d: d.assign(Days3=d["Subject"]), "not numeric"),
])
def test_invalid_inputs_raise(change, message):
    with pytest.raises(ValueError, match=message):
        lmm.fit_lmm(change(sleep()), "Reaction", "Days + Days3" if "Days3" in message
                    or message != "at least two levels" else "Days", "Subject", "1")


def test_too_many_random_effects_raise():
    d = sleep().groupby("Subject").head(2)  # 36 rows, 18 groups x 2 random effects
    with pytest.raises(ValueError, match="number of random effects"):
        lmm.fit_lmm(d, "Reaction", "Days", "Subject", "1 + Days")


def test_expand_terms():
    assert lmm.expand_terms("a*b") == (["a", "b", "a:b"], True)
    assert lmm.expand_terms(["1", "time"]) == (["time"], True)
    assert lmm.expand_terms("0 + a") == (["a"], False)
