"""The paper's regression for thousands of simulated trials at once: ``post ~ pre + flag`` by
batched least squares (:func:`ols_unrepaired_batch`), and the standardised beta's factor.

The power study fits the paper's test to every replication x criterion; no library fits 10^5
small regressions at once, so this one does, with statsmodels as its test oracle
(``tests/test_ols.py``). The regression a reader sees (notebook 03) is statsmodels' own
(:func:`helpers.models.outcome_regression`), standardised with the same :func:`beta_scale`.

References
----------
Long, J. S., & Ervin, L. H. (2000). Using heteroscedasticity consistent standard errors in the
linear regression model. The American Statistician, 54(3), 217-224.
MacKinnon, J. G., & White, H. (1985). Some heteroskedasticity-consistent covariance matrix
estimators with improved finite sample properties. Journal of Econometrics, 29(3), 305-325.
"""

from __future__ import annotations

import numpy as np
from scipy import special  # scipy.stats.t's own functions, without importing scipy.stats (0.5 s)

#: A leverage within this of 1 is a leverage of 1 (HC3 undefined): the computed ``1 - h`` of a
#: client alone in its group is 0 or a rounding error of either sign, depending on the BLAS.
LEVERAGE_ONE_TOL = 1e-10

#: Keys of :func:`ols_unrepaired_batch` that are NaN when a fit is not estimable.
FIT_KEYS = ("b", "se", "b_ci_low", "b_ci_high", "t", "p", "se_hc3", "b_hc3_ci_low", "b_hc3_ci_high",
            "p_hc3", "beta", "beta_se", "beta_ci_low", "beta_ci_high")


def beta_scale(x, y) -> float:
    """``sd(x) / sd(y)`` (sample SDs, ddof = 1): multiplies a coefficient of ``x`` in a
    regression of ``y`` into a standardised beta.

    >>> beta_scale([0.0, 1.0, 0.0, 1.0], [1.0, 3.0, 1.0, 3.0])
    0.5
    """
    return float(np.std(np.asarray(x, dtype=float), ddof=1) / np.std(np.asarray(y, dtype=float), ddof=1))


def leverage_is_one(h):
    """Whether each leverage ``h`` counts as 1 (:data:`LEVERAGE_ONE_TOL`): the rule, not the
    bits of ``1 - h``.

    >>> leverage_is_one([1.0, 1 - 1e-13, 1 + 1e-13, 1 - 1e-6]).tolist()
    [True, True, True, False]
    """
    return np.asarray(h, dtype=float) >= 1 - LEVERAGE_ONE_TOL


def ols_unrepaired_batch(post, pre, flag, n, level: float = 0.95) -> dict:
    """The paper's regression ``post ~ pre + flag`` of many data sets at once, for the flag.

    Parameters
    ----------
    post, pre, flag : array of float, shape (P, m)
        Data set ``p`` in the first ``n[p]`` entries of row ``p`` (complete cases; ``flag``
        0/1); the rest is ignored.
    n : array of int, shape (P,)
    level : float
        Confidence level of the intervals.

    Returns
    -------
    dict
        Arrays of length P: n, df (``n - 3``), estimable (False, with NaNs, when the flag is
        constant, n < 4 or the design is rank deficient) and :data:`FIT_KEYS`: b, se, its CI,
        t, p (two-sided, t on df); the HC3 SE with its CI and p (t on the residual df, as
        statsmodels' ``fit(cov_type="HC3", use_t=True)``; NaN when a client has leverage 1
        -- :func:`leverage_is_one` -- e.g. the only one of a group); beta
        (``b * sd(flag) / sd(post)``) and beta_se, beta_ci_low, beta_ci_high (SE and CI of b
        scaled the same way).

    Notes
    -----
    Least squares by a batched SVD, the covariance by a batched inverse of X'X. Why HC3 as
    well: in the simulated trials the residual SD of the unrepaired clients is about twice
    the others' (symptoms worsen after the rupture at person-specific rates), and the
    unrepaired group is small; the classical OLS SE then understates the SE of the group
    difference, and its CIs cover less than 95%. HC3 (MacKinnon & White, 1985; Long &
    Ervin, 2000) does not assume equal variances.

    Examples
    --------
    >>> post = [[3.0, 5.0, 4.0, 8.0, 9.0], [1.0, 2.0, 3.0, 0.0, 0.0]]
    >>> pre = [[1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 0.0, 0.0]]
    >>> r = ols_unrepaired_batch(post, pre, [[0, 0, 0, 1, 1], [0, 1, 0, 0, 0]], [5, 3])
    >>> round(float(r["b"][0]), 4), r["estimable"].tolist()
    (3.0, [True, False])
    """
    post, pre, flag = (np.atleast_2d(np.asarray(v, dtype=float)) for v in (post, pre, flag))
    n = np.asarray(n, dtype=np.int64)
    P, m = post.shape
    res = {k: np.full(P, np.nan) for k in FIT_KEYS}
    res.update(n=n.copy(), df=n - 3, estimable=np.zeros(P, dtype=bool))
    valid = np.arange(m)[None, :] < n[:, None]
    fmin = np.where(valid, flag, np.inf).min(axis=1, initial=np.inf)
    fmax = np.where(valid, flag, -np.inf).max(axis=1, initial=-np.inf)
    idx = np.flatnonzero((n >= 4) & (fmin != fmax))
    if idx.size == 0:
        return res
    v = valid[idx]
    y = np.where(v, post[idx], 0.0)
    g = np.where(v, flag[idx], 0.0)
    X = np.stack([v.astype(float), np.where(v, pre[idx], 0.0), g], axis=2)
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    nn = n[idx]
    tol = np.finfo(float).eps * np.maximum(nn, 3) * s[:, 0]
    full = (s > tol[:, None]).sum(axis=1) == 3
    if not full.all():  # (copying every array when all are of full rank costs as much as the SVD)
        idx, v, y, g, X, U, s, Vt, nn = (a[full] for a in (idx, v, y, g, X, U, s, Vt, nn))
    if idx.size == 0:
        return res
    coef = np.einsum("pji,pj->pi", Vt, np.einsum("pmi,pm->pi", U, y) / s)
    resid = y - np.einsum("pmi,pi->pm", X, coef)
    df = nn - 3
    xtx_inv = np.linalg.inv(np.matmul(np.swapaxes(X, 1, 2), X))
    b = coef[:, 2]
    se = np.sqrt((resid * resid).sum(axis=1) / df * xtx_inv[:, 2, 2])
    se_hc3 = _hc3_se(X, xtx_inv, resid, v)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(se > 0, b / se, np.nan)
        t_hc3 = np.where(se_hc3 > 0, b / se_hc3, np.nan)
        scale = _masked_sd(g, v, nn) / _masked_sd(y, v, nn)
    crit = special.stdtrit(df, 0.5 + level / 2)  # = stats.t.ppf; stats.t.sf(x, df) = stdtr(df, -x)
    half = crit * se
    out = dict(b=b, se=se, b_ci_low=b - half, b_ci_high=b + half, t=t,
               p=2 * special.stdtr(df, -np.abs(t)), se_hc3=se_hc3, b_hc3_ci_low=b - crit * se_hc3,
               b_hc3_ci_high=b + crit * se_hc3, p_hc3=2 * special.stdtr(df, -np.abs(t_hc3)),
               beta=b * scale, beta_se=se * scale, beta_ci_low=(b - half) * scale,
               beta_ci_high=(b + half) * scale)
    for k, val in out.items():
        res[k][idx] = val
    res["estimable"][idx] = True
    return res


def _hc3_se(X, xtx_inv, resid, valid):
    """HC3 SE of the flag: ``(X'X)^-1 X' diag(e_i^2 / (1 - h_i)^2) X (X'X)^-1``, ``h_i`` the
    leverages; NaN for a fit with a client of leverage 1."""
    lev = np.einsum("pij,pjk,pik->pi", X, xtx_inv, X)
    row = np.einsum("pij,pj->pi", X, xtx_inv[:, :, 2])
    defined = ~np.any(valid & leverage_is_one(lev), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(valid, row**2 * resid**2 / (1 - lev) ** 2, 0.0)
        return np.where(defined, np.sqrt(terms.sum(axis=1)), np.nan)


def _masked_sd(a, valid, n):
    """SD (ddof = 1) of each row's valid entries."""
    mean = a.sum(axis=1) / n
    dev = np.where(valid, a - mean[:, None], 0.0)
    return np.sqrt((dev * dev).sum(axis=1) / (n - 1))
