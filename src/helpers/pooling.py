"""Multiple imputation: Rubin's rules with the Barnard-Rubin degrees of freedom.

:func:`rubin_rules` pools ``m`` completed-data estimates and their variances (Rubin, 1987) and
gives the small-sample degrees of freedom of Barnard & Rubin (1999). The completed data sets
themselves are fitted by the project's one batched least squares (:func:`helpers.ols.ols_batch`).
Used by :func:`helpers.pattern_model.unrepaired_effect` and the growth model's pooled
interaction (:func:`helpers.pattern_growth.unrepaired_slope`).

References
----------
Barnard, J., & Rubin, D. B. (1999). Small-sample degrees of freedom with multiple imputation.
Biometrika, 86(4), 948-955.
Rubin, D. B. (1987). Multiple imputation for nonresponse in surveys. Wiley.
"""

from __future__ import annotations

import numpy as np

from scipy import special  # scipy.stats.t's own functions, without importing scipy.stats (0.5 s)

__all__ = ["rubin_rules"]


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
