"""Batched least squares: one kernel (:func:`ols_batch`) for every small regression the project
fits by the thousand, and the paper's regression on top of it (:func:`ols_unrepaired_batch`).

The power study fits the paper's test ``post ~ pre + flag`` to every replication x criterion,
and the multiple imputation of :mod:`helpers.pattern_model` fits one regression per completed
data set; no library fits 10^5 small regressions at once, so :func:`ols_batch` does -- a
general design, an optional row mask for stacked data sets of different sizes, classical and
HC3 standard errors, and the project's one rule for a leverage of 1
(:func:`leverage_is_one`) -- with statsmodels as its test oracle (``tests/test_ols.py``). The
regression a reader sees (notebook 03) is statsmodels' own
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


def ols_batch(y, X, mask=None) -> dict:
    """Least squares of many data sets at once: ``y[k] ~ X[k]`` over the rows ``mask[k]``.

    Parameters
    ----------
    y : array (K, m) or (m,)
        Outcomes (a single row is shared by every data set).
    X : array (K, m, p)
        Designs, intercept included.
    mask : array of bool (K, m), optional
        The rows of each data set (stacked data sets of different sizes, padded to ``m``);
        default every row. Rows outside it are ignored whatever they hold.

    Returns
    -------
    dict
        ``coef``, ``se`` (classical, ``s^2 (X'X)^-1``) and ``se_hc3`` (HC3: ``(X'X)^-1 X'
        diag(e_i^2 / (1 - h_i)^2) X (X'X)^-1``, MacKinnon & White, 1985), each (K, p);
        ``n`` (rows used), ``df`` (``n - p``), ``estimable`` (K,): False, with NaN
        estimates, where ``n <= p`` or the design is rank deficient (a singular value at most
        ``eps * max(n, p)`` times the largest); ``hc3_defined`` (K,): False, with NaN HC3 SEs,
        where a row has leverage 1 (:func:`leverage_is_one`, e.g. the only member of a
        group); ``resid`` (K, m), 0 outside the mask. The same numbers as
        ``statsmodels.OLS(y, X).fit()`` and ``.fit(cov_type="HC3")`` on each data set
        (``tests/test_ols.py``).

    Notes
    -----
    The coefficients come from a batched SVD of the masked design, the covariance from a
    batched inverse of ``X'X``. Rows outside the mask are zeroed, so they add nothing to any
    sum, and each data set's numbers do not depend on the others in the batch.

    Examples
    --------
    >>> X = np.array([[[1, 0.0], [1, 1.0], [1, 2.0], [1, 3.0]]])
    >>> r = ols_batch([1.0, 3.0, 5.0, 7.5], X)
    >>> np.round(r["coef"], 3).tolist(), r["df"].tolist()
    ([[0.9, 2.15]], [2])
    """
    X = np.asarray(X, dtype=float)
    K, m, p = X.shape
    y = np.broadcast_to(np.asarray(y, dtype=float), (K, m))
    valid = np.ones((K, m), dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), (K, m))
    n = valid.sum(axis=1)
    out = {"coef": np.full((K, p), np.nan), "se": np.full((K, p), np.nan), "se_hc3": np.full((K, p), np.nan),
           "n": n, "df": n - p, "estimable": np.zeros(K, dtype=bool), "hc3_defined": np.zeros(K, dtype=bool),
           "resid": np.zeros((K, m))}
    idx = np.flatnonzero(n > p)
    if idx.size == 0:
        return out
    v = valid[idx]
    Xv = np.where(v[:, :, None], X[idx], 0.0)
    yv = np.where(v, y[idx], 0.0)
    U, s, Vt = np.linalg.svd(Xv, full_matrices=False)
    nn = n[idx]
    tol = np.finfo(float).eps * np.maximum(nn, p) * s[:, 0]
    full = (s > tol[:, None]).sum(axis=1) == p
    if not full.all():  # (copying every array when all are of full rank costs as much as the SVD)
        idx, v, Xv, yv, U, s, Vt, nn = (a[full] for a in (idx, v, Xv, yv, U, s, Vt, nn))
    if idx.size == 0:
        return out
    coef = np.einsum("pji,pj->pi", Vt, np.einsum("pmi,pm->pi", U, yv) / s)
    resid = yv - np.einsum("pmi,pi->pm", Xv, coef)
    df = nn - p
    xtx_inv = np.linalg.inv(np.matmul(np.swapaxes(Xv, 1, 2), Xv))
    var = np.diagonal(xtx_inv, axis1=1, axis2=2)
    se = np.sqrt((resid * resid).sum(axis=1)[:, None] / df[:, None] * var)
    # HC3: the leverages h_i = x_i'(X'X)^-1 x_i and, per coefficient j, the sandwich's
    # diagonal sum_i (x_i'(X'X)^-1 e_j)^2 e_i^2 / (1 - h_i)^2
    lev = np.einsum("pij,pjk,pik->pi", Xv, xtx_inv, Xv)
    defined = ~np.any(v & leverage_is_one(lev), axis=1)
    se_hc3 = np.empty_like(se)
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in range(p):
            row = np.einsum("pij,pj->pi", Xv, xtx_inv[:, :, j])
            terms = np.where(v, row**2 * resid**2 / (1 - lev) ** 2, 0.0)
            se_hc3[:, j] = np.where(defined, np.sqrt(terms.sum(axis=1)), np.nan)
    out["coef"][idx], out["se"][idx], out["se_hc3"][idx] = coef, se, se_hc3
    out["estimable"][idx], out["hc3_defined"][idx], out["resid"][idx] = True, defined, resid
    return out


def ols_unrepaired_batch(post, pre, flag, n, level: float = 0.95) -> dict:
    """The paper's regression ``post ~ pre + flag`` of many data sets at once, for the flag
    (:func:`ols_batch` with the design ``[1, pre, flag]``).

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
    Why HC3 as well: in the simulated trials the residual SD of the unrepaired clients is
    about twice the others' (symptoms worsen after the rupture at person-specific rates), and
    the unrepaired group is small; the classical OLS SE then understates the SE of the group
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
    idx = np.flatnonzero((n >= 4) & (fmin != fmax))  # a constant flag has no effect to estimate
    if idx.size == 0:
        return res
    v = valid[idx]
    X = np.stack([np.ones((idx.size, m)), pre[idx], flag[idx]], axis=2)
    fit = ols_batch(post[idx], X, v)
    ok = fit["estimable"]
    idx, v, nn = idx[ok], v[ok], n[idx][ok]
    if idx.size == 0:
        return res
    b, se, se_hc3 = fit["coef"][ok, 2], fit["se"][ok, 2], fit["se_hc3"][ok, 2]
    df = nn - 3
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(se > 0, b / se, np.nan)
        t_hc3 = np.where(se_hc3 > 0, b / se_hc3, np.nan)
        scale = _masked_sd(np.where(v, flag[idx], 0.0), v, nn) / _masked_sd(np.where(v, post[idx], 0.0), v, nn)
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


def _masked_sd(a, valid, n):
    """SD (ddof = 1) of each row's valid entries (``a`` is 0 outside them)."""
    mean = a.sum(axis=1) / n
    dev = np.where(valid, a - mean[:, None], 0.0)
    return np.sqrt((dev * dev).sum(axis=1) / (n - 1))
