"""Multiple imputation: Rubin's rules with the Barnard-Rubin degrees of freedom, and a batched
least-squares fit of many completed data sets.

:func:`rubin_rules` pools ``m`` completed-data estimates and their variances (Rubin, 1987) and
gives the small-sample degrees of freedom of Barnard & Rubin (1999); :func:`ols_many` fits one
linear model to many completed data sets at once with classical or HC3 standard errors (what
``statsmodels.OLS(...).fit(cov_type=...)`` reports, tested against it). Used by
:func:`helpers.pattern_model.unrepaired_effect`.

References
----------
Barnard, J., & Rubin, D. B. (1999). Small-sample degrees of freedom with multiple imputation.
Biometrika, 86(4), 948-955.
MacKinnon, J. G., & White, H. (1985). Some heteroskedasticity-consistent covariance matrix
estimators with improved finite sample properties. Journal of Econometrics, 29(3), 305-325.
Rubin, D. B. (1987). Multiple imputation for nonresponse in surveys. Wiley.
"""

from __future__ import annotations

import numpy as np

from scipy import special  # scipy.stats.t's own functions, without importing scipy.stats (0.5 s)

from helpers.ols import leverage_is_one

__all__ = ["rubin_rules", "ols_many"]


def rubin_rules(estimates, variances, df_complete=None, level: float = 0.95) -> dict:
    """Pool completed-data estimates by Rubin's rules (along the first axis).

    Parameters
    ----------
    estimates, variances : array-like, shape (m, ...)
        The estimate and its squared standard error in each of ``m`` completed data sets
        (more axes: many quantities pooled at once, each separately).
    df_complete : float or array, optional
        Degrees of freedom of the completed-data analysis (``n - p`` for a regression);
        ``None`` = infinite (large samples), Rubin's (1987) original degrees of freedom.
    level : float, default 0.95
        Confidence level of the interval.

    Returns
    -------
    dict
        ``estimate`` (mean of the estimates), ``within`` (mean variance, U-bar),
        ``between`` (variance of the estimates, B, ddof 1), ``total`` (T = U-bar + (1 + 1/m) B),
        ``se`` (sqrt T), ``riv`` (relative increase in variance, (1 + 1/m) B / U-bar),
        ``fmi`` (the fraction of missing information of Barnard & Rubin, 1999,
        ``gamma = (1 + 1/m) B / T``: 0 when every imputation gives the same estimate),
        ``df`` (Barnard-Rubin), ``ci_low``, ``ci_high``, ``t``, ``p`` (two-sided) and ``m``.

    Notes
    -----
    ``df_m = (m - 1) / gamma^2`` (Rubin, 1987; infinite when B = 0); with finite complete-data
    degrees of freedom ``nu_com``, ``nu_obs = (nu_com + 1) / (nu_com + 3) * nu_com * (1 -
    gamma)`` and ``df = 1 / (1 / df_m + 1 / nu_obs)`` (Barnard & Rubin, 1999), which never
    exceeds ``nu_com``. When the imputations agree (B = 0), ``gamma`` = 0 and ``df`` =
    ``nu_com (nu_com + 1) / (nu_com + 3)``: the complete-data analysis, with the small
    correction of Barnard & Rubin. (van Buuren's ``fmi`` adds ``2 / (df + 3)`` to gamma; it is
    not 0 when B = 0.) Intervals use Student's t with ``df``.

    Examples
    --------
    Three imputations with estimates 1, 2, 3 and variance 1 each: U-bar = 1, B = 1,
    T = 1 + 4/3, gamma = (4/3) / (7/3) = 4/7, df_m = 2 / (4/7)^2 = 6.125.

    >>> r = rubin_rules([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    >>> r["estimate"], round(r["total"], 6), round(r["fmi"], 6), round(r["df"], 6)
    (2.0, 2.333333, 0.571429, 6.125)
    """
    q = np.asarray(estimates, dtype=float)
    u = np.asarray(variances, dtype=float)
    if q.shape != u.shape or q.ndim == 0:
        raise ValueError("estimates and variances must have the same shape, with imputations along axis 0")
    m = q.shape[0]
    if m < 2:
        raise ValueError(f"Rubin's rules need at least 2 imputations, got {m}")
    dev = q - q[0]  # deviations from the first: identical imputations give B = 0 exactly
    qbar = q[0] + dev.mean(axis=0)
    ubar = u.mean(axis=0)
    b = ((dev - dev.mean(axis=0)) ** 2).sum(axis=0) / (m - 1)
    total = ubar + (1 + 1 / m) * b
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = np.where(total > 0, (1 + 1 / m) * b / total, 0.0)
        riv = np.where(ubar > 0, (1 + 1 / m) * b / ubar, np.inf)
        df_m = np.where(gamma > 0, (m - 1) / gamma**2, np.inf)
        if df_complete is None:
            df = df_m
        else:
            nu = np.asarray(df_complete, dtype=float)
            nu_obs = (nu + 1) / (nu + 3) * nu * (1 - gamma)
            df = 1 / (1 / df_m + 1 / nu_obs)
        se = np.sqrt(total)
        half = special.stdtrit(df, 0.5 + level / 2) * se  # = stats.t.ppf(q, df)
        t = qbar / se
    out = {"estimate": qbar, "within": ubar, "between": b, "total": total, "se": se, "riv": riv,
           "fmi": gamma, "df": df, "ci_low": qbar - half, "ci_high": qbar + half, "t": t,
           "p": 2 * special.stdtr(df, -np.abs(t)), "m": m}  # stats.t.sf(|t|, df) = stdtr(df, -|t|)
    return {k: (v if k == "m" else float(v) if np.ndim(v) == 0 else v) for k, v in out.items()}


def ols_many(y, X, cov_type: str = "HC3") -> dict:
    """Least squares of one outcome on many designs at once (one per completed data set).

    Parameters
    ----------
    y : array (n,) or (m, n)
        Outcome (shared, or one per data set).
    X : array (m, n, p)
        Design matrices, intercept included, of full column rank.
    cov_type : {"HC3", "nonrobust"}
        Standard errors as ``statsmodels.OLS(y, X).fit(cov_type=...)``: HC3 (MacKinnon &
        White, 1985) or classical.

    Returns
    -------
    dict
        ``coef`` and ``var`` (m, p): coefficients and their variances; ``df`` (n - p);
        ``estimable`` (m,): False where ``X'X`` is singular or, for HC3, a point has leverage
        1 (the only client of a group), with NaN coefficients/variances there.

    Examples
    --------
    >>> X = np.array([[[1, 0.0], [1, 1.0], [1, 2.0], [1, 3.0]]])
    >>> r = ols_many([1.0, 3.0, 5.0, 7.5], X, cov_type="nonrobust")
    >>> np.round(r["coef"], 3).tolist()
    [[0.9, 2.15]]
    """
    if cov_type not in ("HC3", "nonrobust"):
        raise ValueError(f"cov_type must be 'HC3' or 'nonrobust', got {cov_type!r}")
    X = np.asarray(X, dtype=float)
    m, n, p = X.shape
    y = np.broadcast_to(np.asarray(y, dtype=float), (m, n))
    xtx = np.swapaxes(X, 1, 2) @ X
    cond = np.linalg.cond(xtx)
    full = np.isfinite(cond) & (cond < 1 / np.finfo(float).eps)
    coef = np.full((m, p), np.nan)
    var = np.full((m, p), np.nan)
    estimable = full.copy()
    if full.any():
        Xf, yf = X[full], y[full]
        inv = np.linalg.inv(xtx[full])
        c = (inv @ (np.swapaxes(Xf, 1, 2) @ yf[:, :, None]))[:, :, 0]
        resid = yf - (Xf @ c[:, :, None])[:, :, 0]
        if cov_type == "nonrobust":
            v = ((resid**2).sum(axis=1) / (n - p))[:, None] * np.diagonal(inv, axis1=1, axis2=2)
        else:  # (X'X)^-1 X' diag(e_i^2 / (1 - h_i)^2) X (X'X)^-1, h_i the leverages
            xinv = Xf @ inv  # rows x_i' (X'X)^-1
            lev = (xinv * Xf).sum(axis=2)
            lev_ok = ~np.any(leverage_is_one(lev), axis=1)  # the project's one rule for leverage 1
            with np.errstate(divide="ignore", invalid="ignore"):  # leverage 1: flagged below
                omega = resid**2 / (1 - lev) ** 2
                v = np.where(lev_ok[:, None], (xinv**2 * omega[:, :, None]).sum(axis=1), np.nan)
            estimable[full] = lev_ok
        coef[full], var[full] = c, v
    coef[~estimable] = np.nan
    var[~estimable] = np.nan
    return {"coef": coef, "var": var, "df": n - p, "estimable": estimable}
