"""helpers.ols.ols_fit and helpers.models.outcome_regression against statsmodels, the independent
implementation they replace in notebook 03: the same tables (every number to 1e-10 relative, or
1e-12 absolute near zero; the same columns, dtypes and order) and the same warnings, on the
project's data, on random data and on the edge cases (perfect fit, rank deficiency, no residual
df, leverage 1 under HC3, tiny n). The t and F distribution functions against scipy.stats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.regression.linear_model import OLS
from statsmodels.tools.tools import add_constant

from helpers import models, ols, paths
from helpers.tables import read_table

from table_checks import ATOL, RTOL, assert_same_table, run_recording as _run  # noqa: E402 (tests/ is on sys.path)
#: The default run's processed data as committed (paths.PROCESSED points to the tests' output folder).
COMMITTED = paths.ROOT / "data" / "processed"


# --------------------------------------------------------------------------------------------
# the reference: outcome_regression's table as statsmodels made it (the code ols_fit replaced)
# --------------------------------------------------------------------------------------------
def _ols_table_statsmodels(d, terms, model, outcome, n_dropped, cov_type="nonrobust"):
    x = add_constant(d[["pre", *terms]], has_constant="add")
    res = OLS(d["post"], x).fit(cov_type=cov_type, use_t=True)
    ci = res.conf_int(0.05)
    scale = pd.Series({c: (ols.beta_scale(d[c], d["post"]) if c != "const" else np.nan) for c in x})
    out = pd.DataFrame({
        "outcome": outcome, "model": model, "contrast": models.MODEL_LABELS[model],
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
    return out[models.REGRESSION_COLUMNS]


def _both(monkeypatch, *args, **kwargs):
    """outcome_regression by ols_fit, and by statsmodels (models._ols_table swapped)."""
    ours = _run(models.outcome_regression, *args, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(models, "_ols_table", _ols_table_statsmodels)
        ref = _run(models.outcome_regression, *args, **kwargs)
    return ours, ref


def assert_same_run(ours, ref):
    (got, got_warn), (want, want_warn) = ours, ref
    assert got_warn == want_warn
    if isinstance(want, Exception):
        assert type(got) is type(want) and str(got) == str(want)
    else:
        assert_same_table(got, want)


def _trial(n, seed, p=(0.5, 0.25, 0.15, 0.1), sd=6.0, missing=0):
    rng = np.random.default_rng(seed)
    pattern = rng.choice(["no_rupture", "repaired", "unrepaired", "insufficient_data"], n, p=list(p))
    pre = rng.normal(30, 8, n)
    post = 5 + 0.5 * pre + 6 * (pattern == "unrepaired") - 2 * (pattern == "repaired") + rng.normal(0, sd, n)
    ids = [f"p{i:03d}" for i in range(n)]
    parts = pd.DataFrame({"participant_id": ids, "pss_i_pre": pre, "pss_i_post": post,
                          "pss_sr_pre": pre + rng.normal(0, 3, n), "pss_sr_post": post + rng.normal(0, 3, n)})
    if missing:
        parts.loc[rng.choice(n, missing, replace=False), "pss_i_post"] = np.nan
    return pd.DataFrame({"participant_id": ids, "pattern": pattern}), parts


# --------------------------------------------------------------------------------------------
# outcome_regression: ols_fit vs statsmodels
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cov_type", ["nonrobust", "HC3"])
@pytest.mark.parametrize("outcome", ["pss_i", "pss_sr"])
def test_project_data_tables_equal_statsmodels_to_the_bit(monkeypatch, outcome, cov_type):
    patterns = read_table(COMMITTED / "patterns.csv")
    participants = read_table(COMMITTED / "participants.csv")
    ours, ref = _both(monkeypatch, patterns, participants, outcome=outcome, cov_type=cov_type)
    assert_same_run(ours, ref)
    assert ours[0].equals(ref[0])  # not just close: the same arithmetic, the same bits
    assert [m for _, m in ours[1]] == [m for _, m in ref[1]]  # the listwise-deletion warning


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC3"])
@pytest.mark.parametrize("seed", range(12))
def test_random_data_tables_equal_statsmodels(monkeypatch, seed, cov_type):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.choice([6, 9, 15, 40, 120]))
    p = rng.dirichlet(np.ones(4))
    patterns, parts = _trial(n, seed, p=p, sd=float(rng.choice([0.5, 6, 50])), missing=int(rng.integers(0, 3)))
    for outcome in ("pss_i", "pss_sr"):
        assert_same_run(*_both(monkeypatch, patterns, parts, outcome=outcome, cov_type=cov_type))


def _fixed(pattern, pre, post):
    ids = [f"q{i:02d}" for i in range(len(pattern))]
    return (pd.DataFrame({"participant_id": ids, "pattern": pattern}),
            pd.DataFrame({"participant_id": ids, "pss_i_pre": np.asarray(pre, float),
                          "pss_i_post": np.asarray(post, float)}))


EDGE_CASES = {
    # post an exact linear function of pre and the flags: zero residuals, SE 0, t inf or NaN
    "perfect fit": _fixed(["no_rupture", "repaired", "unrepaired"] * 4, np.arange(12.0),
                          2 + 0.5 * np.arange(12.0) + 3 * (np.arange(12) % 3 == 2)),
    # no repaired client: model B's repaired column is all zero (rank deficient)
    "empty group": _fixed(["no_rupture", "unrepaired"] * 5, np.arange(10.0) ** 1.3,
                          [3.0, 9, 4, 12, 6, 11, 5, 15, 8, 14]),
    # no no_rupture client: repaired + unrepaired = the intercept (rank deficient)
    "no reference group": _fixed(["repaired", "unrepaired"] * 4, [1.0, 4, 2, 8, 5, 3, 7, 6],
                                 [2.0, 5, 1, 9, 6, 5, 6, 9]),
    # pre constant: collinear with the intercept
    "constant pre": _fixed(["no_rupture", "repaired", "unrepaired"] * 3, [5.0] * 9,
                           [3.0, 4, 9, 2, 5, 8, 4, 4, 10]),
    # the only unrepaired client has leverage 1: HC3 divides by 1 - h = 0
    "leverage one": _fixed(["no_rupture"] * 5 + ["repaired"] * 3 + ["unrepaired"],
                           [1.0, 3, 2, 6, 4, 5, 2, 7, 3], [2.0, 4, 2, 8, 5, 4, 3, 6, 12]),
    # n equal to the number of coefficients of model B: zero residual df
    "no residual df": _fixed(["no_rupture", "repaired", "unrepaired", "no_rupture"], [1.0, 2, 4, 3],
                             [2.0, 3, 9, 5]),
    # fewer clients than coefficients
    "n below k": _fixed(["no_rupture", "unrepaired"], [1.0, 2], [2.0, 7]),
    "one client": _fixed(["unrepaired"], [1.0], [2.0]),
    # post constant: R^2 is 0 / 0
    "constant post": _fixed(["no_rupture", "repaired", "unrepaired"] * 3, np.arange(9.0), [4.0] * 9),
    # no client with both scores: statsmodels fails on the empty design, and so do we
    "nobody": _fixed(["no_rupture", "unrepaired"], [1.0, np.nan], [np.nan, 2.0]),
    # large scores
    "large scale": _fixed(["no_rupture", "repaired", "unrepaired"] * 5, 1e6 + np.arange(15.0) ** 2,
                          1e6 + np.arange(15.0)[::-1] ** 1.5),
}


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC3"])
@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_equal_statsmodels_with_the_same_warnings(monkeypatch, case, cov_type):
    ours, ref = _both(monkeypatch, *EDGE_CASES[case], cov_type=cov_type)
    assert_same_run(ours, ref)


def test_edge_cases_are_what_they_claim(monkeypatch):
    (got, warns), _ = _both(monkeypatch, *EDGE_CASES["empty group"])
    rank_deficient = "The design matrix is rank-deficient. The model parameters are not uniquely determined."
    assert ("SingularMatrixWarning", rank_deficient) in warns
    b = got[got["model"] == "B"].set_index("term")
    assert b.loc["repaired", "b"] == 0 and b.loc["repaired", "se"] == 0 and np.isnan(b.loc["repaired", "p"])
    (got, _), _ = _both(monkeypatch, *EDGE_CASES["leverage one"], cov_type="HC3")
    assert not np.isfinite(got.set_index(["model", "term"]).loc[("A", "unrepaired"), "se"])
    (got, _), _ = _both(monkeypatch, *EDGE_CASES["nobody"])
    assert isinstance(got, ValueError)


# --------------------------------------------------------------------------------------------
# ols_fit on its own: any design with an intercept
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cov_type", ["nonrobust", "HC3"])
@pytest.mark.parametrize("seed", range(8))
def test_ols_fit_equals_statsmodels_on_random_designs(seed, cov_type):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(4, 60)), int(rng.integers(2, 6))
    X = np.column_stack([np.ones(n), rng.normal(size=(n, k - 1)) * rng.uniform(0.1, 100, k - 1)])
    if seed % 3 == 0:
        X[:, -1] = X[:, 1] - 2 * X[:, 0]  # an exact linear dependence
    y = X @ rng.normal(size=k) + rng.normal(size=n) * rng.exponential(1, n)
    (fit, w1) = _run(ols.ols_fit, y, X, cov_type=cov_type)
    (ref, w2) = _run(lambda: OLS(y, X).fit(cov_type=cov_type, use_t=True))
    assert w1 == w2
    ci = ref.conf_int(0.05)
    for got, want in ((fit["params"], ref.params), (fit["bse"], ref.bse), (fit["tvalues"], ref.tvalues),
                      (fit["pvalues"], ref.pvalues), (fit["ci_low"], ci[:, 0]), (fit["ci_high"], ci[:, 1]),
                      (fit["rsquared"], ref.rsquared), (fit["rsquared_adj"], ref.rsquared_adj),
                      (fit["ssr"], ref.ssr)):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True)
    assert (fit["nobs"], fit["df_resid"], fit["rank"]) == (ref.nobs, ref.df_resid, ref.model.rank)


def test_ols_fit_rejects_what_it_cannot_fit():
    with pytest.raises(ValueError, match="shape"):
        ols.ols_fit([], np.ones((0, 2)))
    with pytest.raises(ValueError, match="inf or nans"):
        ols.ols_fit([1.0, 2.0, 3.0], [[1.0, 0.0], [1.0, np.nan], [1.0, 2.0]])
    with pytest.raises(ValueError, match="cov_type"):
        ols.ols_fit([1.0, 2.0, 3.0], [[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]], cov_type="HC1")


# --------------------------------------------------------------------------------------------
# distribution functions without scipy.stats
# --------------------------------------------------------------------------------------------
def test_t_and_f_functions_equal_scipy_stats_to_the_bit():
    x = np.array([-np.inf, -3.0, -1e-300, 0.0, 0.5, 2.0, 40.0, np.inf, np.nan])
    for df in (-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 67.0, 1e6, np.inf, np.nan):
        np.testing.assert_array_equal(ols.t_sf(x, df), stats.t.sf(x, df))
        for dfd in (-2.0, 0.0, 1.0, 4.0, 66.0, np.nan):
            np.testing.assert_array_equal(ols.f_sf(x, df, dfd), stats.f.sf(x, df, dfd))
    q = np.array([-0.1, 0.0, 1e-10, 0.025, 0.5, 0.975, 1.0, 1.5, np.nan])
    for df in (-1.0, 0.0, 0.5, 1.0, 3.0, 67.0, 1e6, np.nan):
        np.testing.assert_array_equal(ols.t_ppf(q, df), stats.t.ppf(q, df))
    assert ols.t_sf(1.5, 10) == stats.t.sf(1.5, 10) and np.ndim(ols.t_sf(1.5, 10)) == 0
