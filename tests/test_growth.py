"""Tests of the mixed growth models (helpers.growth on helpers.mixed / helpers.lmm).

statsmodels' MixedLM appears here only as an independent cross-check of the production fit.
External anchors:
- lme4 1.1-31 on lme4's ``sleepstudy`` (tests/data/lme4_sleepstudy.csv, see tests/data/README.md);
- lme4 1.1-31 on the simulated growth dataset tests/reference/growth_input.csv, fitted by
  tests/reference/growth_lme4.R into tests/reference/growth_lme4.csv (committed; R is needed
  only to regenerate it).
"""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLM

from helpers import growth, mixed, models

HERE = Path(__file__).parent
REFERENCE = HERE / "reference"


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_growth_input",
                                                  REFERENCE / "make_growth_input.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


simulate_growth = _load_generator().simulate_growth


# --------------------------------------------------------------------------------------------
# lme4 sleepstudy parity
# --------------------------------------------------------------------------------------------
# lme4 1.1-31 (R 4.2.2) on sleepstudy, from the project's shared reference data README
# (../shared/data/README.md, "lme4_sleepstudy.csv"), copied here so the tests do not read it.
SLEEPSTUDY_LME4 = {
    # Reaction ~ Days + (Days | Subject), REML
    "slope_reml": dict(
        reml=True, re="1 + Days",
        fixed=[251.405105, 10.467286], se=[6.8245967, 1.5457896],
        sd=[24.740658, 5.922138], corr=0.065551, sigma=25.591796, loglik=-871.81414),
    # same model, ML
    "slope_ml": dict(
        reml=False, re="1 + Days",
        fixed=[251.405105, 10.467286], se=[6.6321227, 1.5022302],
        sd=[23.779760, 5.716799], corr=0.081321, sigma=25.591907, loglik=-875.96967),
    # Reaction ~ Days + (1 | Subject), REML
    "intercept_reml": dict(
        reml=True, re="1",
        fixed=[251.405105, 10.467286], se=[9.7467163, 0.80422143],
        sd=[37.123827], corr=None, sigma=30.991234, loglik=-893.23254),
}


def _sig4(got, want):
    """Equal to the reference's printed digits (relative difference below 5e-5)."""
    np.testing.assert_allclose(got, want, rtol=5e-5, atol=0)


# Tolerances of issue 12 against a tightly converged lme4 (tests/reference/lmm_lme4_*.csv).
RTOL = 1e-5
LOGLIK_ATOL = 1e-6
DF_RTOL = 1e-3


@pytest.fixture(scope="module")
def sleepstudy():
    d = pd.read_csv(HERE / "data" / "lme4_sleepstudy.csv")
    d["Subject"] = d["Subject"].astype(str)
    return d


@pytest.mark.parametrize("case", list(SLEEPSTUDY_LME4))
def test_sleepstudy_matches_lme4(sleepstudy, case):
    ref = SLEEPSTUDY_LME4[case]
    fit = mixed.fit_mixed(sleepstudy, "Reaction ~ Days", "Subject", ref["re"],
                           reml=ref["reml"])
    assert fit.converged and not fit.singular
    assert fit.n_obs == 180 and fit.n_groups == 18
    assert list(fit.fixed["term"]) == ["Intercept", "Days"]
    _sig4(fit.fixed["estimate"], ref["fixed"])
    _sig4(fit.fixed["se"], ref["se"])
    rnd = fit.random.set_index("component")
    sds = [rnd.loc["var(Intercept)", "sdcor"]]
    if ref["corr"] is not None:
        sds.append(rnd.loc["var(Days)", "sdcor"])
        _sig4(rnd.loc["cov(Intercept,Days)", "sdcor"], ref["corr"])
    _sig4(sds, ref["sd"])
    _sig4(rnd.loc["residual", "sdcor"], ref["sigma"])
    _sig4(fit.loglik, ref["loglik"])


def test_nonconvergence_is_an_error(sleepstudy):
    # No gradient is exactly zero in floating point: a tolerance of 0 can never be met, so
    # the fit must raise (and say why) rather than return an unchecked estimate.
    with pytest.raises(mixed.MixedModelConvergenceError, match="did not reach an optimum"):
        mixed.fit_mixed(sleepstudy, "Reaction ~ Days", "Subject", "1 + Days", grad_tol=0.0)


def test_convergence_is_reported_as_a_bound(sleepstudy):
    fit = mixed.fit_mixed(sleepstudy, "Reaction ~ Days", "Subject", "1 + Days")
    assert fit.convergence == "max |gradient| < 0.001"
    assert fit.grad_norm < 1e-3


def test_fit_mixed_agrees_with_statsmodels(sleepstudy):
    """Independent cross-check: statsmodels' MixedLM (a different parameterisation and
    optimiser) reaches the same REML optimum on sleepstudy."""
    fit = mixed.fit_mixed(sleepstudy, "Reaction ~ Days", "Subject", "1 + Days")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = MixedLM.from_formula("Reaction ~ Days", sleepstudy, groups=sleepstudy["Subject"],
                                  re_formula="~1 + Days").fit(reml=True, method="lbfgs")
    assert fit.loglik >= sm.llf - 1e-6
    assert fit.loglik == pytest.approx(sm.llf, abs=1e-3)
    np.testing.assert_allclose(fit.fixed["estimate"], sm.fe_params, rtol=1e-5)
    np.testing.assert_allclose(fit.random["vcov"].iloc[0], sm.cov_re.iloc[0, 0], rtol=1e-3)


# --------------------------------------------------------------------------------------------
# growth model parity with lme4 on the simulated reference dataset
# --------------------------------------------------------------------------------------------
# Two reference datasets: the tests' own generator (make_growth_input.py) and the project's
# default simulated trial as the committed default run detects it (make_default_growth_input.py).
REFERENCE_SETS = {"generator": ("growth_input.csv", "growth_lme4.csv"),
                  "default_run": ("default_growth_input.csv", "default_growth_lme4.csv")}


@pytest.fixture(scope="module", params=sorted(REFERENCE_SETS))
def reference_set(request):
    return REFERENCE_SETS[request.param]


@pytest.fixture(scope="module")
def growth_input(reference_set):
    d = pd.read_csv(REFERENCE / reference_set[0], dtype={"participant_id": str})
    sessions = d[["participant_id", "session", "pss_sr"]]
    patterns = d.groupby("participant_id", as_index=False)["pattern"].first()
    return sessions, patterns


@pytest.fixture(scope="module")
def lme4_growth(reference_set):
    ref = pd.read_csv(REFERENCE / reference_set[1])
    return {s: g.set_index("name") for s, g in ref.groupby("section")}


@pytest.fixture(scope="module")
def growth_fit(growth_input):
    return growth.fit_growth(*growth_input)


def test_growth_fixed_effects_match_lme4(growth_fit, lme4_growth):
    ref = lme4_growth["fixed"]
    got = growth_fit.fixed.set_index("term")
    assert list(got.index) == list(ref.index)
    np.testing.assert_allclose(got["estimate"], ref["estimate"], rtol=RTOL)
    np.testing.assert_allclose(got["se"], ref["se"], rtol=RTOL)


def test_growth_variance_components_match_lme4(growth_fit, lme4_growth):
    ref = lme4_growth["random"]
    got = growth_fit.random.set_index("component")
    assert sorted(got.index) == sorted(ref.index)
    np.testing.assert_allclose(got.loc[ref.index, "vcov"], ref["estimate"], rtol=RTOL)
    np.testing.assert_allclose(got.loc[ref.index, "sdcor"], ref["sdcor"], rtol=RTOL)


def test_growth_fit_info_matches_lme4(growth_fit, lme4_growth):
    info = lme4_growth["fit"]["estimate"]
    assert growth_fit.loglik == pytest.approx(info["loglik"], abs=LOGLIK_ATOL)
    assert growth_fit.n_obs == info["n_obs"]
    assert growth_fit.n_groups == info["n_groups"]
    assert growth_fit.time_center == info["time_center"]
    assert growth_fit.reml and growth_fit.converged and not growth_fit.singular
    assert growth_fit.re_formula == "1 + time"
    assert any("time = session - 5.5" in n for n in growth_fit.notes)
    assert growth_fit.convergence == "max |gradient| < 0.001"


# lmm_lme4.R: lme4 with the tight nloptwrap control + lmerTest 3.1-3 (Satterthwaite df)
LMM_GROWTH_MODELS = {"default_growth": "default_growth_input.csv",
                     "trial1160": "lmm_trial1160_input.csv",
                     "noslope": "lmm_noslope_input.csv"}


@pytest.mark.parametrize("model", sorted(LMM_GROWTH_MODELS))
@pytest.mark.parametrize("reml", [True, False])
def test_fit_growth_matches_tight_lme4_and_lmertest(model, reml):
    d = pd.read_csv(REFERENCE / LMM_GROWTH_MODELS[model], dtype={"participant_id": str})
    sessions = d[["participant_id", "session", "pss_sr"]]
    patterns = d.groupby("participant_id", as_index=False)["pattern"].first()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mixed.MixedModelBoundaryWarning)
        fit = growth.fit_growth(sessions, patterns, reml=reml, on_boundary="keep")
    fx = pd.read_csv(REFERENCE / "lmm_lme4_fixed.csv")
    fx = fx[(fx["model"] == model) & (fx["reml"] == reml)].set_index("term")
    got = fit.fixed.set_index("term").loc[fx.index]
    np.testing.assert_allclose(got["estimate"], fx["estimate"], rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(got["se"], fx["se"], rtol=RTOL)
    np.testing.assert_allclose(got["df"], fx["df"], rtol=DF_RTOL)
    info = pd.read_csv(REFERENCE / "lmm_lme4_fit.csv")
    info = info[(info["model"] == model) & (info["reml"] == reml)].iloc[0]
    assert fit.loglik == pytest.approx(info["loglik"], abs=LOGLIK_ATOL)
    assert fit.singular == bool(info["singular"])
    rnd = pd.read_csv(REFERENCE / "lmm_lme4_random.csv")
    rnd = rnd[(rnd["model"] == model) & (rnd["reml"] == reml)]
    # variances (sdcor of the variance rows and the residual); a zero variance to 1e-8 abs
    np.testing.assert_allclose(fit.random["vcov"].iloc[[0, 1, 3]],
                               rnd["vcov"].iloc[[0, 1, 3]], rtol=RTOL, atol=1e-8)


@pytest.mark.slow  # several mixed-model refits
def test_lrt_interaction_matches_lme4_anova(growth_input, lme4_growth):
    ref = lme4_growth["lrt"]["estimate"]
    lrt = growth.lrt_interaction(*growth_input).set_index("model")
    assert lrt.loc["reduced", "loglik"] == pytest.approx(ref["loglik_reduced"], abs=LOGLIK_ATOL)
    assert lrt.loc["full", "loglik"] == pytest.approx(ref["loglik_full"], abs=LOGLIK_ATOL)
    assert lrt.loc["full", "chi2"] == pytest.approx(ref["chi2"], rel=1e-5)
    assert lrt.loc["full", "df"] == ref["df"]
    assert lrt.loc["full", "p"] == pytest.approx(ref["p"], rel=1e-5)
    for m in ("reduced", "full"):
        assert lrt.loc[m, "aic"] == pytest.approx(ref[f"aic_{m}"], rel=1e-6)
        assert lrt.loc[m, "bic"] == pytest.approx(ref[f"bic_{m}"], rel=1e-6)


# --------------------------------------------------------------------------------------------
# time coding, predictions
# --------------------------------------------------------------------------------------------
@pytest.mark.slow  # several mixed-model refits
def test_fixed_at_equals_refit_with_other_centre(growth_input, growth_fit):
    refit = growth.fit_growth(*growth_input, time_center=1)
    mapped = growth_fit.fixed_at(1).set_index("term")
    want = refit.fixed.set_index("term")
    np.testing.assert_allclose(mapped["estimate"], want["estimate"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(mapped["se"], want["se"], rtol=1e-5)
    # Satterthwaite df of the shifted combinations equal the refit's own df
    np.testing.assert_allclose(mapped["df"], want["df"], rtol=1e-3)
    # the random intercept variance moves with the origin; the slope variance does not
    r0, r1 = growth_fit.random.set_index("component"), refit.random.set_index("component")
    assert r1.loc["var(time)", "vcov"] == pytest.approx(r0.loc["var(time)", "vcov"], rel=1e-5)
    assert refit.loglik == pytest.approx(growth_fit.loglik, abs=1e-6)


def test_predicted_trajectories(growth_fit):
    traj = growth_fit.predicted_trajectories()
    assert list(traj.columns) == ["pattern", "session", "estimate", "se", "ci_low", "ci_high"]
    assert len(traj) == 3 * 10
    fx = growth_fit.fixed.set_index("term")
    cov = growth_fit.cov_fe
    # session 3: time = -2.5; unrepaired = b0 + b_unr + (b_t + b_t:unr) * -2.5
    row = traj[(traj["pattern"] == "unrepaired") & (traj["session"] == 3)].iloc[0]
    x = pd.Series({"Intercept": 1, "time": -2.5, "repaired": 0, "unrepaired": 1,
                   "time:repaired": 0, "time:unrepaired": -2.5})[fx.index]
    assert row["estimate"] == pytest.approx(float(x @ fx["estimate"]), rel=1e-12)
    assert row["se"] == pytest.approx(float(np.sqrt(x @ cov @ x)), rel=1e-12)
    z = stats.norm.ppf(0.975)
    assert row["ci_high"] - row["estimate"] == pytest.approx(z * row["se"], rel=1e-12)
    # the generic predict() on the model's own formula gives the same numbers
    new = pd.DataFrame({"time": [-2.5], "repaired": [0.0], "unrepaired": [1.0]})
    pred = growth_fit.predict(new).iloc[0]
    assert pred["estimate"] == pytest.approx(row["estimate"], rel=1e-12)
    assert pred["se"] == pytest.approx(row["se"], rel=1e-12)
    # notebook 03 plots the conditional fitted values and residuals (statsmodels' names)
    res = growth_fit.result
    np.testing.assert_allclose(res.fittedvalues + res.resid, d_outcome(growth_fit), rtol=1e-12)
    assert np.abs(res.resid).mean() < np.abs(res.fitted["resid_marginal"]).mean()


def d_outcome(fit):
    """The outcome the fit used, in the fit's row order."""
    return fit.result.fitted["fitted_marginal"] + fit.result.fitted["resid_marginal"]


# --------------------------------------------------------------------------------------------
# boundary handling
# --------------------------------------------------------------------------------------------
@pytest.mark.slow  # several mixed-model refits
def test_boundary_fit_is_simplified_with_a_note():
    # No true slope variance; with this seed the random-slope fit ends at a correlation of 1.
    sessions, patterns = simulate_growth(30, 6, seed=1, sd1=0.0)
    with pytest.warns(mixed.MixedModelBoundaryWarning, match="refitted"):
        fit = growth.fit_growth(sessions, patterns)
    assert fit.re_formula == "1"
    assert fit.boundary_fit is not None and fit.boundary_fit.singular
    assert "boundary (singular) fit" in fit.notes[0]
    assert list(fit.random["component"]) == ["var(Intercept)", "residual"]
    assert fit.converged
    # kept as is on request, still warned and noted
    with pytest.warns(mixed.MixedModelBoundaryWarning, match="kept as is"):
        kept = growth.fit_growth(sessions, patterns, on_boundary="keep")
    assert kept.singular and kept.re_formula == "1 + time"


def test_growth_uses_only_classifiable_participants(growth_input):
    sessions, patterns = growth_input
    d, center, n_missing = growth.growth_data(sessions, patterns)
    assert set(d["pattern"]) == {"no_rupture", "repaired", "unrepaired"}
    assert center == 5.5
    assert d["pss_sr"].notna().all() and n_missing > 0


# --------------------------------------------------------------------------------------------
# mixed ANOVA (pingouin)
# --------------------------------------------------------------------------------------------
def test_mixed_anova_interaction_equals_oneway_on_change_scores():
    rng = np.random.default_rng(4)
    n = 60
    ids = [f"p{i}" for i in range(n)]
    pattern = rng.choice(["no_rupture", "repaired", "unrepaired", "insufficient_data"], n)
    pre = rng.normal(30, 7, n)
    post = pre - 8 + 4 * (pattern == "unrepaired") + rng.normal(0, 5, n)
    post[:3] = np.nan
    patterns = pd.DataFrame({"participant_id": ids, "pattern": pattern})
    participants = pd.DataFrame({"participant_id": ids, "pss_sr_pre": pre, "pss_sr_post": post})
    with pytest.warns(UserWarning, match="listwise"):
        table = models.mixed_anova_prepost(patterns, participants)
    keep = (pattern != "insufficient_data") & ~np.isnan(post)
    n_dropped = int(((pattern != "insufficient_data") & np.isnan(post)).sum())
    assert (table["n"] == keep.sum()).all() and (table["n_dropped"] == n_dropped).all()
    # With two within levels, the time x group F equals the one-way F on change scores.
    change = (post - pre)[keep]
    groups = [change[pattern[keep] == g] for g in ("no_rupture", "repaired", "unrepaired")]
    f_ref, p_ref = stats.f_oneway(*groups)
    inter = table[table["Source"] == "Interaction"].iloc[0]
    assert inter["F"] == pytest.approx(f_ref, rel=1e-8)


# --------------------------------------------------------------------------------------------
# convergence stress test
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_convergence_stress_never_worse_than_statsmodels_default():
    """50 small simulated trials: fit_growth always converges, and its random-slope
    log-likelihood is never below statsmodels' default fit (bfgs -> lbfgs -> cg)."""
    n_boundary, gaps = 0, []
    for seed in range(50):
        sessions, patterns = simulate_growth(20, 6, seed=1000 + seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mixed.MixedModelBoundaryWarning)
            fit = growth.fit_growth(sessions, patterns)
        assert fit.converged
        full = fit.boundary_fit if fit.boundary_fit is not None else fit
        n_boundary += fit.boundary_fit is not None
        d, _, _ = growth.growth_data(sessions, patterns)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the default fit's warnings are what we test
            default = MixedLM.from_formula(full.formula, d, groups=d["participant_id"],
                                           re_formula="~1 + time").fit(reml=True)
        if np.isfinite(default.llf):
            gaps.append(full.loglik - default.llf)
            assert full.loglik >= default.llf - 1e-6, f"seed {1000 + seed}"
    assert len(gaps) >= 45


def test_default_run_reference_input_is_what_the_current_code_produces():
    # The lme4 table for the default run is only a parity check of *this* code's default
    # dataset if its input is still what simulate + the default rupture criterion give.
    from helpers import episodes, simulate

    trial = simulate.simulate_trial(seed=20131106)
    pats = episodes.classify_participants(episodes.detect_episodes(trial.sessions), trial.sessions)
    now = trial.sessions[["participant_id", "session", "pss_sr"]].merge(pats[["participant_id", "pattern"]])
    ref = pd.read_csv(REFERENCE / "default_growth_input.csv", dtype={"participant_id": str})
    pd.testing.assert_frame_equal(now.reset_index(drop=True), ref, check_dtype=False)
