"""The paper's regression, lean: ``post ~ pre + flag`` by least squares, and the standardised beta.

One home for the standardised coefficient of McLaughlin et al. (2014), ``beta = b * sd(x) /
sd(post)``: :func:`beta_scale` is the factor, :func:`ols_unrepaired` the numpy fit used by the
power study and the calibration for thousands of simulated trials, :func:`standardised_beta`
the same on complete cases. :func:`ols_fit` is the whole OLS table as statsmodels reports it
(classical and HC3 SEs), without statsmodels: :func:`helpers.models.outcome_regression` fits
with it and scales its coefficients with :func:`beta_scale` too.

References
----------
Long, J. S., & Ervin, L. H. (2000). Using heteroscedasticity consistent standard errors in the
linear regression model. The American Statistician, 54(3), 217-224.
MacKinnon, J. G., & White, H. (1985). Some heteroskedasticity-consistent covariance matrix
estimators with improved finite sample properties. Journal of Econometrics, 29(3), 305-325.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: A leverage within this of 1 is a leverage of 1 (HC3 undefined): the computed ``1 - h`` of a
#: client alone in its group is 0 or a rounding error of either sign, depending on the BLAS.
LEVERAGE_ONE_TOL = 1e-10


def leverage_is_one(h):
    """Whether each leverage ``h`` counts as 1 (:data:`LEVERAGE_ONE_TOL`): the rule, not the
    bits of ``1 - h``.

    >>> leverage_is_one([1.0, 1 - 1e-13, 1 + 1e-13, 1 - 1e-6]).tolist()
    [True, True, True, False]
    """
    return np.asarray(h, dtype=float) >= 1 - LEVERAGE_ONE_TOL


def beta_scale(x, y) -> float:
    """``sd(x) / sd(y)`` (sample SDs, ddof = 1): multiplies a coefficient of ``x`` in a
    regression of ``y`` into a standardised beta.

    >>> beta_scale([0.0, 1.0, 0.0, 1.0], [1.0, 3.0, 1.0, 3.0])
    0.5
    """
    return float(np.std(np.asarray(x, dtype=float), ddof=1) / np.std(np.asarray(y, dtype=float), ddof=1))


def ols_unrepaired(post, pre, flag, level: float = 0.95) -> dict:
    """The paper's regression ``post ~ pre + flag`` by least squares, for the flag's term.

    The lean core of the paper's test, for thousands of replications: the power study and the
    calibration call it; :func:`helpers.models.outcome_regression` (statsmodels, model A) is
    checked against it in ``tests/test_ols.py`` and standardises with the same :func:`beta_scale`.

    Parameters
    ----------
    post, pre, flag : array-like of float
        Complete cases only (no NaN); ``flag`` is 0/1.
    level : float
        Confidence level of the intervals.

    Returns
    -------
    dict
        n, b, se, b_ci_low, b_ci_high, t, df, p (two-sided), the same with the HC3
        heteroscedasticity-consistent SE (se_hc3, b_hc3_ci_low, b_hc3_ci_high, p_hc3; t on the
        residual df, as statsmodels' ``cov_type="HC3"``; NaN when a client has leverage 1,
        e.g. the only unrepaired one), beta (``b * sd(flag) / sd(post)``),
        beta_se, beta_ci_low, beta_ci_high (SE and CI of b scaled the same way) and estimable
        (False, with NaNs, when the flag is constant or n < 4).

    Notes
    -----
    Why HC3 as well: in the simulated trials the residual SD of the unrepaired clients is about
    twice the others' (symptoms worsen after the rupture at person-specific rates), and the
    unrepaired group is small; the classical OLS SE then understates the SE of the group
    difference, and its CIs cover less than 95%. HC3 (MacKinnon & White, 1985; Long &
    Ervin, 2000) does not assume equal variances.

    Examples
    --------
    >>> r = ols_unrepaired([3.0, 5.0, 4.0, 8.0, 9.0], [1.0, 2.0, 3.0, 4.0, 5.0], [0, 0, 0, 1, 1])
    >>> round(r["b"], 4), r["df"]
    (3.0, 2)
    """
    y, x, g = (np.asarray(v, dtype=float) for v in (post, pre, flag))
    n = y.size
    res = dict.fromkeys(["b", "se", "b_ci_low", "b_ci_high", "t", "p", "se_hc3", "b_hc3_ci_low",
                         "b_hc3_ci_high", "p_hc3", "beta", "beta_se", "beta_ci_low", "beta_ci_high"],
                        np.nan)
    res.update(n=n, df=n - 3, estimable=False)
    if n < 4 or np.all(g == g[0]):
        return res
    X = np.column_stack([np.ones(n), x, g])
    coef, _, rank, _ = np.linalg.lstsq(X, y, rcond=None)
    if rank < 3:
        return res
    resid = y - X @ coef
    df = n - 3
    sigma2 = float(resid @ resid) / df
    xtx_inv = np.linalg.inv(X.T @ X)
    b, se = float(coef[2]), float(np.sqrt(sigma2 * xtx_inv[2, 2]))
    # HC3: (X'X)^-1 X' diag(e_i^2 / (1 - h_i)^2) X (X'X)^-1, h_i the leverages.
    # A client with leverage 1 (the only one in a group) leaves HC3 undefined: NaN.
    lev = np.einsum("ij,jk,ik->i", X, xtx_inv, X)
    row = X @ xtx_inv[:, 2]
    se_hc3 = (float(np.sqrt(np.sum(row**2 * resid**2 / (1 - lev) ** 2)))
              if np.all(lev < 1 - 1e-10) else np.nan)
    t = b / se if se > 0 else np.nan
    t_hc3 = b / se_hc3 if se_hc3 > 0 else np.nan
    scale = beta_scale(g, y)
    from scipy import special  # the t distribution as scipy.stats.t computes it, without importing scipy.stats

    crit = float(special.stdtrit(df, 0.5 + level / 2))  # = stats.t.ppf
    half = crit * se
    res.update(b=b, se=se, b_ci_low=b - half, b_ci_high=b + half, t=t,
               p=float(2 * special.stdtr(df, -abs(t))), se_hc3=se_hc3, b_hc3_ci_low=b - crit * se_hc3,
               b_hc3_ci_high=b + crit * se_hc3, p_hc3=float(2 * special.stdtr(df, -abs(t_hc3))),
               beta=b * scale,
               beta_se=se * scale, beta_ci_low=(b - half) * scale, beta_ci_high=(b + half) * scale,
               estimable=True)
    return res


def standardised_beta(post, pre, flag) -> float:
    """Standardised coefficient of ``flag`` in ``post ~ pre + flag`` on the complete cases.

    :func:`ols_unrepaired`'s ``beta`` after dropping every row with a missing value; NaN when it
    cannot be estimated (constant flag, fewer than 4 complete cases).

    >>> round(standardised_beta([3.0, 5.0, 4.0, 8.0, 9.0, None], [1, 2, 3, 4, 5, 6], [0, 0, 0, 1, 1, 1]), 4)
    0.6348
    """
    d = pd.DataFrame({"y": post, "x": pre, "g": flag}).dropna().astype(float)
    fit = ols_unrepaired(d["y"], d["x"], d["g"])
    return float(fit["beta"]) if fit["estimable"] else np.nan


def ols_unrepaired_batch(post, pre, flag, n, level: float = 0.95) -> dict:
    """:func:`ols_unrepaired` of many data sets at once (the batched power study).

    Parameters
    ----------
    post, pre, flag : array of float, shape (P, m)
        Data set ``p`` in the first ``n[p]`` entries of row ``p``; the rest is ignored.
    n : array of int, shape (P,)
    level : float

    Returns
    -------
    dict
        Arrays of length P under the keys of :func:`ols_unrepaired` (``estimable`` boolean):
        the same numbers to rounding (least squares by a batched SVD, the covariance by a
        batched inverse of X'X, as the one-at-a-time fit).

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
    keys = ["b", "se", "b_ci_low", "b_ci_high", "t", "p", "se_hc3", "b_hc3_ci_low",
            "b_hc3_ci_high", "p_hc3", "beta", "beta_se", "beta_ci_low", "beta_ci_high"]
    res = {k: np.full(P, np.nan) for k in keys}
    res.update(n=n.copy(), df=n - 3, estimable=np.zeros(P, dtype=bool))
    valid = np.arange(m)[None, :] < n[:, None]
    fmin = np.where(valid, flag, np.inf).min(axis=1, initial=np.inf)
    fmax = np.where(valid, flag, -np.inf).max(axis=1, initial=-np.inf)
    idx = np.flatnonzero((n >= 4) & (fmin != fmax))
    if idx.size == 0:
        return res
    v = valid[idx]
    vf = v.astype(float)
    y = np.where(v, post[idx], 0.0)
    g = np.where(v, flag[idx], 0.0)
    X = np.stack([vf, np.where(v, pre[idx], 0.0), g], axis=2)
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    nn = n[idx]
    tol = np.finfo(float).eps * np.maximum(nn, 3) * s[:, 0]
    full = (s > tol[:, None]).sum(axis=1) == 3
    if not full.all():  # (copying every array when all are of full rank costs as much as the SVD)
        idx, v, vf, y, g, X, U, s, Vt, nn = (a[full] for a in (idx, v, vf, y, g, X, U, s, Vt, nn))
    if idx.size == 0:
        return res
    coef = np.einsum("pji,pj->pi", Vt, np.einsum("pmi,pm->pi", U, y) / s)
    resid = y - np.einsum("pmi,pi->pm", X, coef)
    df = nn - 3
    sigma2 = (resid * resid).sum(axis=1) / df
    xtx_inv = np.linalg.inv(np.matmul(np.swapaxes(X, 1, 2), X))
    b = coef[:, 2]
    se = np.sqrt(sigma2 * xtx_inv[:, 2, 2])
    lev = np.einsum("pij,pjk,pik->pi", X, xtx_inv, X)
    row = np.einsum("pij,pj->pi", X, xtx_inv[:, :, 2])
    hc3_ok = np.all(~v | (lev < 1 - 1e-10), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        se_hc3 = np.where(hc3_ok, np.sqrt(np.sum(np.where(v, row**2 * resid**2 / (1 - lev) ** 2, 0.0),
                                                 axis=1)), np.nan)
        t = np.where(se > 0, b / se, np.nan)
        t_hc3 = np.where(se_hc3 > 0, b / se_hc3, np.nan)

        def sd(a):
            mean = a.sum(axis=1) / nn
            dev = np.where(v, a - mean[:, None], 0.0)
            return np.sqrt((dev * dev).sum(axis=1) / (nn - 1))

        scale = sd(g) / sd(y)
    from scipy import special  # scipy.stats.t's own functions, without importing scipy.stats

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


# --------------------------------------------------------------------------------------------
# the whole OLS table: what statsmodels' OLS(...).fit(cov_type, use_t=True) reports
# --------------------------------------------------------------------------------------------
class SingularMatrixWarning(UserWarning):
    """The design matrix is rank-deficient (statsmodels' warning of the same name and message,
    raised by :func:`ols_fit` without importing statsmodels)."""


def t_sf(x, df):
    """Survival function of Student's t, as ``scipy.stats.t.sf(x, df)`` to the bit, without
    importing scipy.stats (0.4 s).

    ``scipy.stats`` computes ``special.stdtr(df, -x)`` where the arguments are valid, and fills
    in the rest itself: NaN for ``df <= 0`` or NaN, 1 at ``x = -inf``, 0 at ``x = +inf``; the
    same here.

    >>> float(t_sf(0.0, 5)), float(t_sf(float("inf"), 5)), bool(np.isnan(t_sf(1.0, 0)))
    (0.5, 0.0, True)
    """
    from scipy import special

    x, df = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(df, dtype=float))
    out = np.zeros(x.shape)
    valid = df > 0  # (False for NaN)
    inside = valid & np.isfinite(x)
    out[inside] = special.stdtr(df[inside], -x[inside])
    out[valid & (x == -np.inf)] = 1.0
    out[~valid | np.isnan(x)] = np.nan
    return out[()] if out.ndim == 0 else out


def t_ppf(q, df):
    """Quantile of Student's t, as ``scipy.stats.t.ppf(q, df)`` to the bit (``special.stdtrit``
    for ``df > 0`` and ``0 < q < 1``, -inf/inf at q = 0/1, NaN otherwise), without scipy.stats.

    >>> float(t_ppf(0.5, 3)), bool(np.isnan(t_ppf(0.975, 0)))
    (0.0, True)
    """
    from scipy import special

    q, df = np.broadcast_arrays(np.asarray(q, dtype=float), np.asarray(df, dtype=float))
    out = np.full(q.shape, np.nan)
    valid = df > 0
    inside = valid & (q > 0) & (q < 1)
    out[inside] = special.stdtrit(df[inside], q[inside])
    out[valid & (q == 0)] = -np.inf
    out[valid & (q == 1)] = np.inf
    return out[()] if out.ndim == 0 else out


def f_sf(x, dfn, dfd):
    """Survival function of the F distribution, as ``scipy.stats.f.sf(x, dfn, dfd)`` to the bit
    (``special.fdtrc`` inside the support; 1 at ``x <= 0``, e.g. an F a rounding error below
    zero; 0 at ``x = inf``; NaN for ``dfn <= 0``, ``dfd <= 0`` or NaN ``x``), without scipy.stats.

    >>> float(f_sf(0.0, 2, 10)), float(f_sf(-1e-15, 2, 10)), bool(np.isnan(f_sf(1.0, 2, 0)))
    (1.0, 1.0, True)
    """
    from scipy import special

    x, dfn, dfd = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (x, dfn, dfd)))
    out = np.zeros(x.shape)
    valid = (dfn > 0) & (dfd > 0)
    inside = valid & (x > 0) & (x < np.inf)
    out[inside] = special.fdtrc(dfn[inside], dfd[inside], x[inside])
    out[valid & (x <= 0)] = 1.0
    out[~valid | np.isnan(x)] = np.nan
    return out[()] if out.ndim == 0 else out


def ols_fit(y, X, cov_type: str = "nonrobust", alpha: float = 0.05) -> dict:
    """Ordinary least squares with its inference table, as statsmodels'
    ``OLS(y, X).fit(cov_type=cov_type, use_t=True)`` reports it, without importing statsmodels
    (0.6 s with scipy.stats, for a fit of a millisecond).

    The same arithmetic, step by step, so that the numbers are statsmodels' to the last bit or
    nearly: the coefficients through the Moore-Penrose pseudo-inverse of ``X`` by SVD
    (singular values below ``1e-15`` of the largest set to zero, as ``pinv_extended``), the
    rank of the design as ``numpy.linalg.matrix_rank`` of its singular values, residual df
    ``n - rank``, the unscaled covariance ``pinv pinv'``.

    Parameters
    ----------
    y : array-like of float, shape (n,)
    X : array-like of float, shape (n, k)
        The design, its first column the intercept (a column of ones): R^2 is centred.
    cov_type : {"nonrobust", "HC3"}
        "nonrobust": ``s^2 (X'X)^-1`` with ``s^2 = RSS / (n - rank)``. "HC3": MacKinnon &
        White's (1985) heteroscedasticity-consistent covariance
        ``(X'X)^-1 X' diag(e_i^2 / (1 - h_i)^2) X (X'X)^-1``, ``h_i`` the leverages
        (statsmodels' ``cov_HC3``); t tests on the residual df either way (``use_t``).
    alpha : float
        1 - confidence level of the intervals.

    Returns
    -------
    dict
        params, bse, tvalues, pvalues (two-sided), ci_low, ci_high (arrays of length k), nobs
        (float, as statsmodels), rank, df_resid (float), ssr, rsquared, rsquared_adj.

    Warns
    -----
    SingularMatrixWarning
        When the design is rank-deficient (e.g. a 0/1 indicator of an empty group): the
        pseudo-inverse then sets the coefficient of the redundant direction to zero, with a
        zero SE, and t and p are NaN; statsmodels warns and does the same. Division warnings
        of numpy (perfect fit, zero residual df, leverage 1 under HC3) arise where
        statsmodels' arithmetic raises them; those it silences (SE, t, p) are silenced here.

    Notes
    -----
    ``R^2 = 1 - RSS / TSS`` (TSS about the mean of ``y``), ``R^2_adj = 1 - (n - 1) / (n -
    rank) (1 - R^2)``; CI ``b +- t_{1 - alpha/2, n - rank} SE``.

    References
    ----------
    MacKinnon, J. G., & White, H. (1985). Some heteroskedasticity-consistent covariance matrix
    estimators with improved finite sample properties. Journal of Econometrics, 29(3), 305-325.
    Seabold, S., & Perktold, J. (2010). statsmodels: Econometric and statistical modeling with
    Python. Proceedings of the 9th Python in Science Conference (``RegressionResults``).

    Examples
    --------
    >>> fit = ols_fit([3.0, 5.0, 4.0, 8.0, 9.0],
    ...               np.column_stack([np.ones(5), [1.0, 2, 3, 4, 5], [0.0, 0, 0, 1, 1]]))
    >>> [round(float(b), 4) for b in fit["params"]], fit["df_resid"], fit["rank"]
    ([2.8, 0.6, 3.0], 2.0, 3)
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] == 0 or y.shape != (X.shape[0],):
        raise ValueError(f"ols_fit: need y of shape (n,) and X of shape (n, k) with n > 0, got {y.shape} "
                         f"and {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("ols_fit: X contains inf or nans")
    if cov_type not in ("nonrobust", "HC3"):
        raise ValueError(f"ols_fit: cov_type must be 'nonrobust' or 'HC3', not {cov_type!r}")
    # pinv_extended: the loop of statsmodels (1 / s in the same order), not numpy.linalg.pinv
    u, s, vt = np.linalg.svd(X, False)
    s_orig = np.copy(s)
    cutoff = 1e-15 * np.maximum.reduce(s)
    for i in range(min(X.shape)):
        s[i] = 1.0 / s[i] if s[i] > cutoff else 0.0
    pinv = np.dot(np.transpose(vt), np.multiply(s[:, np.newaxis], np.transpose(u)))
    normalized_cov = np.dot(pinv, np.transpose(pinv))
    rank = int(np.linalg.matrix_rank(np.diag(s_orig)))
    if rank < X.shape[1]:
        import warnings

        warnings.warn("The design matrix is rank-deficient. The model parameters are not uniquely "
                      "determined.", SingularMatrixWarning, stacklevel=2)
    params = np.dot(pinv, y)
    resid = y - np.dot(X, params)
    nobs = float(X.shape[0])
    df_resid = nobs - rank
    ssr = np.dot(resid, resid)
    if cov_type == "HC3":
        # leverages h_i = diag(X (X'X)^+ X') by statsmodels' einsum; HC3 scales e_i^2 by 1/(1-h_i)^2
        h = np.einsum("ij,ik,kj->i", X, X, normalized_cov)
        het_scale = (resid / (1 - h)) ** 2
        cov = np.dot(pinv, het_scale[:, None] * pinv.T)
    else:
        cov = normalized_cov * (np.dot(resid, resid) / df_resid)
    bse = np.sqrt(np.diag(cov))
    with np.errstate(all="ignore"):  # statsmodels silences t's (and p's) warnings, not the SE's
        tvalues = params / bse
    pvalues = t_sf(np.abs(tvalues), df_resid) * 2
    q = t_ppf(1 - alpha / 2, df_resid)
    centered = y - y.mean()
    rsquared = 1 - ssr / np.dot(centered, centered)
    rsquared_adj = 1 - (np.divide(nobs - 1, df_resid) * (1 - rsquared))
    return {"params": params, "bse": bse, "tvalues": tvalues, "pvalues": pvalues,
            "ci_low": params - q * bse, "ci_high": params + q * bse, "nobs": nobs, "rank": rank,
            "df_resid": df_resid, "ssr": ssr, "rsquared": rsquared, "rsquared_adj": rsquared_adj}
