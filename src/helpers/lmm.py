"""Exact, fast linear mixed models with one grouping factor (lme4's formulation).

The model is ``y = X beta + Z b + e`` with one grouping factor: group ``i`` has ``q`` random
effects ``b_i ~ N(0, sigma^2 Lambda Lambda')`` and ``e ~ N(0, sigma^2 I)``. ``Lambda`` (the
relative covariance factor, lower-triangular ``q x q``, the same for every group) is
parameterised by ``theta``, its lower triangle taken column by column, exactly as lme4 does
(Bates et al. 2015, section 3). For a given ``theta`` the penalised least-squares problem is
block-diagonal in the groups, so it reduces to

* per-group cross-products ``Z_i'Z_i, Z_i'X_i, Z_i'y_i`` and the totals ``X'X, X'y, y'y``,
  computed once;
* per evaluation, a batched ``q x q`` factorisation of ``A_i = Lambda' Z_i'Z_i Lambda + I``
  over all groups (closed form for q = 1 and q = 2) and one ``p x p`` Cholesky solve.

``beta`` and ``sigma`` are profiled out, and the REML criterion (or ML deviance) is minimised
over ``theta`` by BFGS with its analytic gradient (started from lme4's ``Lambda = I`` with a
finite-difference Hessian), then polished by a Newton step with the Hessian that
Satterthwaite needs anyway. The search is *unbounded*: the criterion depends on ``Lambda``
only through ``Lambda Lambda'``, so the signs of ``Lambda``'s columns are flipped afterwards
to make its diagonal non-negative. Bounds (diagonal >= 0, as in lme4) make quasi-Newton and
simplex optimisers stop at wrong points of singular fits, because the criterion depends on a
diagonal entry only through its square and its derivative vanishes on the bound.

A trial point of the line search where ``X'V^{-1}X`` is not numerically positive definite
(a quasi-Newton step from nearly flat curvature can land at ``Lambda`` ~ 1e8, where it cancels
to rounding noise) counts as an infinite criterion and the search backs off; lme4 stops there
with "Downdated VtV is not positive definite".

To keep the criterion's digits, the outcome is shifted by its OLS fit once (``y - X b_ols``;
the model is unchanged, ``beta`` is shifted back): otherwise ``y'V^{-1}y`` dwarfs the
penalised residual sum of squares it is subtracted from.

Satterthwaite denominator degrees of freedom follow lmerTest (Kuznetsova et al. 2017): the
variance parameters are ``(theta, sigma)``, their asymptotic covariance is twice the
(pseudo-)inverse of the Hessian of the deviance ``-2 log L(theta, sigma)`` (REML or ML,
``beta`` profiled), and ``df = 2 V^2 / (g' A g)`` with ``V = l' cov(beta) l`` and ``g`` its
gradient in ``(theta, sigma)``. Here ``g`` is analytic, and the Hessian is analytic in
``sigma`` and comes from central differences of the analytic gradient in ``theta`` (relative
step 1e-3).

Simulation studies fit thousands of small models: :func:`fit_lmm_lean` optimises many at once
-- each along exactly the path :func:`fit_lmm_arrays` takes (the optimiser is a generator that
requests evaluations), their evaluations stacked bit for bit -- and keeps only the fixed
effects' tests. Bit for bit matters: the Hessian behind the Satterthwaite df is taken where the
optimiser stops, which moves with the criterion's last bits (up to ~1e-7 relative in the df).
"""

from __future__ import annotations

import itertools
import time as _time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special  # the t distribution as scipy.stats computes it, without scipy.stats (0.5 s)

#: Largest absolute gradient of the profiled criterion accepted as an optimum.
GRAD_TOL = 1e-3
#: lme4's ``isSingular`` tolerance on the diagonal of ``Lambda``.
SINGULAR_TOL = 1e-4
#: lmerTest's tolerance on the Hessian's eigenvalues (smaller ones are dropped).
EIGEN_TOL = 1e-8
#: Relative step of the finite differences of the gradient (Hessian of the deviance).
HESS_STEP = 1e-3
#: Groups per stack of :func:`fit_lmm_lean` (its per-group arrays fit in a 2 MB cache).
STACK_GROUPS = 3000

__all__ = ["LMMResult", "LeanFit", "design_matrix", "expand_terms", "fit_lmm", "fit_lmm_arrays", "fit_lmm_coded",
           "fit_lmm_lean"]


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
@dataclass
class LMMResult:
    """A fitted linear mixed model (one grouping factor).

    Attributes
    ----------
    fixed : DataFrame
        term, estimate, se, df (Satterthwaite, as lmerTest), t, p (two-sided, t on df),
        ci_low, ci_high (t-based, ``conf_level``).
    random : DataFrame
        lme4's ``as.data.frame(VarCorr(fit))`` layout: grp, var1, var2, vcov, sdcor; the
        variances first, then the covariances (sdcor is then the correlation), then the
        residual row with grp ``"Residual"``.
    loglik : float
        Maximised log-likelihood, REML or ML, with lme4's constant (``logLik(fit)``).
    deviance : float
        ``-2 loglik`` (lme4's ``REMLcrit`` or ``deviance``).
    reml : bool
    theta : ndarray
        lme4's ``theta``: the lower triangle of ``Lambda`` column by column, diagonal >= 0.
    sigma : float
        Residual standard deviation.
    converged : bool
        Whether ``grad_norm < grad_tol``.
    grad_norm : float
        Largest absolute gradient of the profiled criterion in ``theta`` at the estimate.
    singular : bool
        lme4's ``isSingular``: a diagonal entry of ``Lambda`` below ``1e-4``.
    n_obs, n_groups : int
    aic, bic : float
        ``-2 loglik + 2k`` and ``-2 loglik + log(n_obs) k``, k = p + q(q+1)/2 + 1 (as lme4).
    cov_fe : DataFrame
        Covariance matrix of the fixed effects (lme4's ``vcov``).
    ranef : DataFrame
        Conditional modes (BLUPs) of the random effects: one row per group (index: group
        level, sorted), one column per random term.
    fitted : DataFrame
        Index of the rows used; columns fitted_marginal (``X beta``), fitted_conditional
        (``X beta + Z b``), resid_marginal, resid_conditional.
    vcov_varpar : ndarray
        Asymptotic covariance of ``(theta, sigma)`` (lmerTest's ``vcov_varpar``).
    jac_cov_fe : ndarray
        ``(k, p, p)``: derivative of ``cov_fe`` in each of ``(theta, sigma)``.
    x_names, z_names : list of str
    group : str
    notes : list of str
    optimizer : dict
        nit, nfev, message and seconds of the optimisation.
    """

    fixed: pd.DataFrame
    random: pd.DataFrame
    loglik: float
    deviance: float
    reml: bool
    theta: np.ndarray
    sigma: float
    converged: bool
    grad_norm: float
    singular: bool
    n_obs: int
    n_groups: int
    aic: float
    bic: float
    cov_fe: pd.DataFrame
    ranef: pd.DataFrame
    fitted: pd.DataFrame
    vcov_varpar: np.ndarray | None = None
    jac_cov_fe: np.ndarray | None = None
    x_names: list = field(default_factory=list)
    z_names: list = field(default_factory=list)
    group: str = ""
    notes: list = field(default_factory=list)
    optimizer: dict = field(default_factory=dict)

    @property
    def fittedvalues(self) -> pd.Series:
        """Conditional fitted values ``X beta + Z b`` (statsmodels' ``fittedvalues``)."""
        return self.fitted["fitted_conditional"]

    @property
    def resid(self) -> pd.Series:
        """Conditional residuals ``y - X beta - Z b`` (statsmodels' ``resid``)."""
        return self.fitted["resid_conditional"]

    @property
    def lambda_(self) -> np.ndarray:
        """The relative covariance factor ``Lambda`` (q x q, lower-triangular)."""
        lam = np.zeros((len(self.z_names),) * 2)
        lam[_tril_index(len(self.z_names))] = self.theta
        return lam

    def contrast(self, L, *, conf_level=0.95) -> pd.DataFrame:
        """t-test of linear combinations ``L beta`` with Satterthwaite df (lmerTest's contest1D).

        Parameters
        ----------
        L : array_like
            ``(p,)`` or ``(m, p)``: one contrast per row.
        conf_level : float

        Returns
        -------
        DataFrame
            estimate, se, df, t, p, ci_low, ci_high; one row per contrast.
        """
        L = np.atleast_2d(np.asarray(L, float))
        beta = self.fixed["estimate"].to_numpy(float)
        cov = self.cov_fe.to_numpy(float)
        est = L @ beta
        var = np.einsum("mi,ij,mj->m", L, cov, L)
        if self.vcov_varpar is None:
            df = np.full(len(L), np.nan)
        else:
            df = _satterthwaite(L, var, self.jac_cov_fe, self.vcov_varpar)
        return _t_table(est, np.sqrt(var), df, conf_level)


# --------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------
def fit_lmm(data, y, fixed, group, random="1", *, reml=True, missing="drop",
            satterthwaite=True, conf_level=0.95, grad_tol=GRAD_TOL) -> LMMResult:
    """Fit a linear mixed model with one grouping factor by REML or ML (lme4's formulation).

    ``y ~ fixed + (random | group)`` in lme4's notation.

    Parameters
    ----------
    data : DataFrame
        Long data, one row per observation.
    y : str
        Outcome column.
    fixed : str or sequence of str
        Fixed-effect terms: column names, products ``"a:b"``, crossings ``"a * (b + c)"``
        (see :func:`expand_terms`); an intercept is included unless a term is ``"0"`` or
        ``"-1"``. Columns must be numeric (code factors as 0/1 dummies).
    group : str
        Grouping-factor column (any hashable values).
    random : str or sequence of str
        Random terms per group, e.g. ``"1"`` (random intercept), ``"1 + time"`` (random
        intercept and slope), ``["1", "time", "time2"]``.
    reml : bool
        REML (default) or maximum likelihood.
    missing : {"drop", "raise"}
        Rows with a missing value in ``y``, a model column or ``group`` are dropped (the count
        is recorded in ``notes``), or raise ``ValueError``.
    satterthwaite : bool
        Compute Satterthwaite df (otherwise df, p, ci_low and ci_high are NaN and
        ``vcov_varpar``/``jac_cov_fe`` are None; it saves little: the Hessian is reused).
    conf_level : float
        Confidence level of ``ci_low``/``ci_high``.
    grad_tol : float
        ``converged`` is ``grad_norm < grad_tol``.

    Returns
    -------
    LMMResult

    Raises
    ------
    ValueError
        Unknown column, missing values with ``missing="raise"``, a non-numeric model column,
        fewer than two groups, no more observations than random effects (lme4's checks), or a
        rank-deficient fixed-effects design.

    Notes
    -----
    Groups with a single row are kept (they inform the intercept variance), as in lme4. Fixed
    term names follow the project's tables (``"Intercept"``); the random table follows
    lme4 (``"(Intercept)"``). The fitted criterion, ``theta``, the estimates, their SEs and the
    Satterthwaite df equal lme4 + lmerTest's at a tightly converged optimum
    (tests/test_lmm.py). Unlike ``helpers.mixed.fit_mixed`` there is no boundary refit: a
    singular fit is reported (``singular``) and kept, as lme4 does.

    References
    ----------
    Bates, D., Maechler, M., Bolker, B. & Walker, S. (2015). Fitting linear mixed-effects
    models using lme4. Journal of Statistical Software, 67(1), 1-48.
    Kuznetsova, A., Brockhoff, P. B. & Christensen, R. H. B. (2017). lmerTest package: tests
    in linear mixed effects models. Journal of Statistical Software, 82(13), 1-26.

    Examples
    --------
    lme4's sleepstudy: lme4 + lmerTest give 251.405 (SE 6.825, df 17) and 10.467 (1.546, 17).

    >>> import pandas as pd
    >>> from helpers import paths
    >>> sleep = pd.read_csv(paths.ROOT / "tests" / "data" / "lme4_sleepstudy.csv")
    >>> fit = fit_lmm(sleep, "Reaction", "Days", "Subject", "1 + Days")
    >>> fit.fixed[["estimate", "se", "df"]].round(3).values.tolist()
    [[251.405, 6.825, 17.0], [10.467, 1.546, 17.0]]
    >>> round(fit.loglik, 4), fit.singular, fit.converged
    (-871.8141, False, True)
    """
    x_terms, intercept = expand_terms(fixed)
    z_terms, z_intercept = expand_terms(random)
    columns = sorted({c for t in x_terms + z_terms for c in t.split(":")} | {y, group})
    unknown = [c for c in columns if c not in data.columns]
    if unknown:
        raise ValueError(f"columns not in data: {unknown}")
    d, notes = _handle_missing(data[columns], missing)
    X, x_names = design_matrix(d, x_terms, intercept, "Intercept")
    Z, z_names = design_matrix(d, z_terms, z_intercept, "(Intercept)")
    fit = fit_lmm_arrays(d[y].to_numpy(float), X, Z, d[group].to_numpy(), reml=reml,
                         x_names=x_names, z_names=z_names, group_name=group,
                         satterthwaite=satterthwaite, conf_level=conf_level, grad_tol=grad_tol,
                         index=d.index)
    fit.notes = notes + fit.notes
    return fit


def fit_lmm_arrays(y, X, Z, groups, *, reml=True, x_names=None, z_names=None,
                   group_name="group", satterthwaite=True, conf_level=0.95,
                   grad_tol=GRAD_TOL, index=None) -> LMMResult:
    """:func:`fit_lmm` on arrays: ``y`` (n,), ``X`` (n, p), ``Z`` (n, q), ``groups`` (n,).

    No missing values are allowed (``ValueError``). ``index`` labels the rows of
    ``LMMResult.fitted`` (default ``0..n-1``). See :func:`fit_lmm` for the rest.
    """
    y, X, Z = (np.asarray(a, float) for a in (y, X, Z))
    X, Z = (a.reshape(len(a), -1) for a in (X, Z))
    x_names = list(x_names) if x_names is not None else [f"x{j}" for j in range(X.shape[1])]
    z_names = list(z_names) if z_names is not None else [f"z{j}" for j in range(Z.shape[1])]
    levels, codes = _group_codes(groups)
    return fit_lmm_coded(y, X, Z, levels, codes, reml, x_names, z_names, group_name,
                      satterthwaite, conf_level, grad_tol, index)


def fit_lmm_coded(y, X, Z, levels, codes, reml, x_names, z_names, group_name, satterthwaite,
                  conf_level, grad_tol, index):
    """:func:`fit_lmm_arrays` after its conversions: float ``y``, 2-D ``X`` and ``Z``, name
    lists, and the groups coded as :func:`fit_lmm` codes them (``levels`` sorted, ``codes``
    the index of each row's level), for a caller that built all of them already
    (:func:`helpers.growth.fit_growth`)."""
    _check_inputs(y, X, Z, codes, len(levels))
    tic = _time.perf_counter()
    prob = _Problem(y, X, Z, codes, len(levels), reml)
    theta, hess, opt = _optimise(prob)
    opt["seconds"] = _time.perf_counter() - tic
    return _build_result(prob, theta, hess, opt, levels, codes, x_names, z_names, group_name,
                         satterthwaite, conf_level, grad_tol, index)


def expand_terms(terms):
    """Expand model terms into ``(list of column products, intercept)``.

    Parameters
    ----------
    terms : str or sequence of str
        ``"+"``-separated terms; ``"a:b"`` is the product of columns a and b; ``"a * b"``
        crosses (a, b, a:b), with parenthesised sums allowed: ``"t * (r + u)"`` gives
        t, r, u, t:r, t:u (lme4's order: main effects, then interactions). ``"1"`` is the
        intercept (included by default), ``"0"`` or ``"-1"`` removes it.

    Returns
    -------
    terms : list of str
    intercept : bool

    Examples
    --------
    >>> expand_terms("time * (repaired + unrepaired)")
    (['time', 'repaired', 'unrepaired', 'time:repaired', 'time:unrepaired'], True)
    >>> expand_terms(["0", "Days"])
    (['Days'], False)
    """
    if isinstance(terms, str):
        terms = [terms]
    text = " + ".join(terms).replace(" ", "")
    text = text.replace("-1", "+0")
    intercept = True
    out = []
    for piece in _split_top(text, "+"):
        if piece in ("", "1"):
            continue
        if piece == "0":
            intercept = False
            continue
        for term in _cross(piece):
            if term not in out:
                out.append(term)
    main = [t for t in out if ":" not in t]
    return main + [t for t in out if ":" in t], intercept


# --------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------
def _split_top(text, sep):
    """Split on ``sep`` outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def _cross(piece):
    factors = []
    for f in _split_top(piece, "*"):
        inner = f[1:-1] if f.startswith("(") and f.endswith(")") else f
        factors.append([t for t in _split_top(inner, "+") if t])
    out = []
    for size in range(1, len(factors) + 1):
        for subset in itertools.combinations(factors, size):
            out += [":".join(combo) for combo in itertools.product(*subset)]
    return out


def _handle_missing(d, missing):
    if missing not in ("drop", "raise"):
        raise ValueError(f"missing must be 'drop' or 'raise', not {missing!r}")
    bad = d.isna().any(axis=1)
    n_bad = int(bad.sum())
    if not n_bad:
        return d, []
    cols = [c for c in d.columns if d[c].isna().any()]
    if missing == "raise":
        raise ValueError(f"{n_bad} rows with missing values in {cols} (use missing='drop')")
    return d[~bad], [f"{n_bad} rows with missing values in {cols} dropped"]


def design_matrix(d, terms, intercept, intercept_name):
    """The columns of ``terms`` (products of ``d``'s numeric columns, :func:`expand_terms`),
    after an intercept column named ``intercept_name`` when ``intercept``; and their names."""
    used = list(dict.fromkeys(c for t in terms for c in t.split(":")))
    for c in used:
        if not (pd.api.types.is_numeric_dtype(d[c]) or pd.api.types.is_bool_dtype(d[c])):
            raise ValueError(f"column {c!r} is not numeric: code it as 0/1 dummies")
    values = d[used].to_numpy(float) if used else np.empty((len(d), 0))
    pos = {c: i for i, c in enumerate(used)}
    cols = [np.ones(len(d))] if intercept else []
    for term in terms:
        cols.append(np.prod([values[:, pos[c]] for c in term.split(":")], axis=0))
    if not cols:
        raise ValueError("no terms: the model needs at least one column")
    names = ([intercept_name] if intercept else []) + list(terms)
    return np.column_stack(cols), names


def _group_codes(groups):
    codes, levels = pd.factorize(pd.Series(np.asarray(groups)), sort=True)
    if (codes < 0).any():
        raise ValueError("missing values in the grouping factor")
    return np.asarray(levels), codes


def _check_inputs(y, X, Z, codes, n_groups):
    n = len(y)
    if X.shape[0] != n or Z.shape[0] != n or len(codes) != n:
        raise ValueError("y, X, Z and groups must have the same number of rows")
    for name, a in (("y", y), ("X", X), ("Z", Z)):
        if not np.isfinite(a).all():
            raise ValueError(f"non-finite values in {name}: drop those rows first")
    if n_groups < 2:
        raise ValueError("the grouping factor must have at least two levels")
    if n <= n_groups * Z.shape[1]:
        # lme4's check.nobs.vs.nRE: the model would be unidentifiable
        raise ValueError(f"number of observations ({n}) <= number of random effects "
                         f"({n_groups * Z.shape[1]})")
    # rank via the eigenvalues of X'X with unit-norm columns (cheaper than an SVD of X)
    norms = np.sqrt(np.einsum("ij,ij->j", X, X))
    xtx = (X.T @ X) / np.outer(norms, norms) if norms.all() else np.zeros((1, 1))
    if np.linalg.eigvalsh(xtx)[0] < 1e-10:
        raise ValueError("the fixed-effects design is rank deficient")


# --------------------------------------------------------------------------------------------
# the profiled criterion
# --------------------------------------------------------------------------------------------
def _tril_index(q):
    """Row and column of theta's entries in Lambda (lower triangle, column by column)."""
    cols, rows = np.triu_indices(q)
    return rows, cols


def _bmm(A, B):
    """Per-group products in the (rows, cols, group) layout: C[:, :, g] = A[:, :, g] B[:, :, g].

    A loop over the q inner entries of vector operations of length G: several times faster
    than numpy's stacked matmul for q x q blocks with q = 1, 2, 3.
    """
    out = A[:, 0, None, :] * B[None, 0]
    for k in range(1, A.shape[1]):
        out = out + A[:, k, None, :] * B[None, k]
    return out


def _const_left(C, A):
    """C A_g for a constant matrix C and per-group A (layout rows, cols, group)."""
    out = C[:, 0, None, None] * A[None, 0]
    for k in range(1, C.shape[1]):
        out = out + C[:, k, None, None] * A[None, k]
    return out


def _const_right(A, C):
    """A_g C for per-group A and a constant matrix C."""
    out = A[:, 0, None, :] * C[0][None, :, None]
    for k in range(1, C.shape[0]):
        out = out + A[:, k, None, :] * C[k][None, :, None]
    return out


class _Problem:
    """Cross-products of one model, computed once, and the criterion evaluated from them.

    Per-group arrays are stored as (rows, cols, G): ``ztz`` is (q, q, G) and ``ztxy`` stacks
    ``Z_i'X_i`` and ``Z_i'y_i`` as (q, p + 1, G), so that one product gives ``X'V^{-1}X``,
    ``X'V^{-1}y`` and ``y'V^{-1}y`` together.
    """

    def __init__(self, y, X, Z, codes, n_groups, reml):
        self.n, self.p = X.shape
        self.q = Z.shape[1]
        self.G = n_groups
        self.reml = bool(reml)
        self.nu = self.n - self.p if reml else self.n  # residual df of sigma's estimate
        self.y, self.X, self.Z, self.codes = y, X, Z, codes
        self.rows, self.cols = _tril_index(self.q)
        # Work with y - X beta_ols: the same model (beta shifted by beta_ols), but y'V^{-1}y no
        # longer dwarfs the penalised RSS, which would cost digits of the criterion.
        xtx = X.T @ X
        self.beta0 = np.linalg.solve(xtx, X.T @ y)  # any beta0 is exact; OLS keeps r2 large
        XY = np.column_stack([X, y - X @ self.beta0])
        # One pass over the rows: Z_r (x) [Z_r, X_r, y_r], summed by group.
        W = np.concatenate([Z, XY], axis=1)
        outer = (Z[:, :, None] * W[:, None, :]).reshape(self.n, -1)
        order = np.argsort(codes, kind="stable")
        starts = np.searchsorted(codes[order], np.arange(n_groups))
        per = np.add.reduceat(outer[order], starts, axis=0).reshape(n_groups, self.q, -1)
        per = per.transpose(1, 2, 0)
        self.ztz = np.ascontiguousarray(per[:, :self.q])
        self.ztxy = np.ascontiguousarray(per[:, self.q:])
        self.xytxy = XY.T @ XY
        self.sum_ztz = self.ztz.sum(axis=2)
        self.ztz_flat = self.ztz.transpose(0, 2, 1).reshape(self.q * n_groups, self.q)

    def lam(self, theta):
        lam = np.zeros((self.q, self.q))
        lam[self.rows, self.cols] = theta
        return lam

    def _a_inverse(self, lam):
        """``A_i^{-1}`` and ``sum_i log|A_i|`` for ``A_i = Lambda' Z_i'Z_i Lambda + I``."""
        if self.q == 1:
            a = lam[0, 0] ** 2 * self.ztz[0, 0] + 1.0
            return (1.0 / a)[None, None, :], float(np.log(a).sum())
        M = _const_left(lam.T, _const_right(self.ztz, lam))
        if self.q == 2:  # closed form: A >= I, so det >= 1 and no pivoting is needed
            a, b, c = M[0, 0] + 1.0, M[0, 1], M[1, 1] + 1.0
            det = a * c - b * b
            return np.array([[c, -b], [-b, a]]) / det, float(np.log(det).sum())
        A = (M + np.eye(self.q)[:, :, None]).transpose(2, 0, 1)
        chol = np.linalg.cholesky(A)
        logdet = 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
        return np.linalg.inv(A).transpose(1, 2, 0), logdet

    def evaluate(self, theta, gradient=True):
        """Everything the criteria, their gradients and the estimates need at ``theta``."""
        p = self.p
        lam = self.lam(theta)
        ainv, ld_a = self._a_inverse(lam)
        # W_i = Lambda A_i^{-1} Lambda':  V_i^{-1} = I - Z_i W_i Z_i' (Woodbury, relative scale)
        W = _const_left(lam, _const_right(ainv, lam.T))
        WXY = _bmm(W, self.ztxy)
        # [X y]' V^{-1} [X y]: one contraction over (random effect, group)
        full = self.xytxy - np.matmul(self.ztxy, WXY.transpose(0, 2, 1)).sum(axis=0)
        S, r = full[:p, :p], full[:p, p]
        try:
            chol = np.linalg.cholesky(S)  # S = X'V^{-1}X = RX'RX
        except np.linalg.LinAlgError:
            return self._unevaluable(lam)
        beta = np.linalg.solve(S, r)  # on the shifted scale (minus beta0)
        r2 = float(full[p, p] - r @ beta)  # penalised RSS = (y - X beta)' V^{-1} (y - X beta)
        ev = {"lam": lam, "W": W, "ld_a": ld_a, "S": S, "beta": beta, "r2": r2,
              "ld_s": 2.0 * float(np.log(np.diag(chol)).sum())}
        if gradient:
            self._gradient_parts(ev)
        return ev

    def _unevaluable(self, lam):
        """The evaluation at a ``theta`` where ``X'V^{-1}X`` is not numerically positive
        definite: criterion +inf, gradient NaN.

        ``X'V^{-1}X`` is ``X'X`` minus the random effects' share; when a trial step of the
        line search puts ``Lambda`` at ~1e7 or beyond (a quasi-Newton update from nearly flat
        curvature), that difference cancels to rounding noise for the columns constant within
        groups (a client's pattern), and the Cholesky factorisation fails. The criterion there
        is astronomically worse than at the start (``log|A|`` grows as ``2 G log|Lambda|``),
        so an infinite value is the truthful answer for the search: it backs off, as from any
        non-finite value (lme4 stops instead, "Downdated VtV is not positive definite"). An
        optimum can never be such a point (the search accepts finite decreases only); a fit
        that starts at one raises (:func:`_bfgs_steps`).
        """
        k = len(self.rows)
        return {"lam": lam, "crit": np.inf, "grad": np.full(k, np.nan), "unevaluable": True}

    def _gradient_parts(self, ev):
        """q x q sums whose products with Lambda give the gradients.

        With P_i = Z_i'V_i^{-1}Z_i, H_i = Z_i'V_i^{-1}X_i, s_i = Z_i'V_i^{-1}(y_i - X_i beta):
        d log|A|/dLambda = 2 sum P_i Lambda, d log|RX'RX|/dLambda = -2 sum H_i S^{-1} H_i'
        Lambda, d r2/dLambda = -2 sum s_i s_i' Lambda (envelope theorem: beta and u are
        profiled, so only the explicit dependence on Lambda counts).
        """
        p = self.p
        GW = _bmm(self.ztz, ev["W"])
        HY = self.ztxy - _bmm(GW, self.ztxy)  # Z_i'V_i^{-1}[X_i y_i]
        H = HY[:, :p]
        s = HY[:, p] - ev["beta"] @ H
        sinv = np.linalg.inv(ev["S"])
        HS = np.matmul(sinv, H)  # S^{-1} H_i', (q, p, G)
        ev["H"], ev["sinv"] = H, sinv
        q, G = self.q, self.G
        ev["sum_p"] = self.sum_ztz - GW.reshape(q, q * G) @ self.ztz_flat
        ev["sum_hsh"] = HS.reshape(q, -1) @ H.reshape(q, -1).T
        ev["sum_ss"] = s @ s.T

    def w0(self, beta):
        """Z_i'(y_i - X_i beta) as (q, G) (``beta`` on the shifted scale)."""
        return self.ztxy[:, self.p] - beta @ self.ztxy[:, :self.p]

    def criterion(self, ev):
        """Profiled REML criterion or ML deviance (lme4's ``REMLcrit`` / ``deviance``)."""
        if "crit" in ev:  # computed for a whole stack by _Stack.evaluate, the same arithmetic
            return ev["crit"]
        nu = self.nu
        crit = ev["ld_a"] + nu * (1.0 + np.log(2.0 * np.pi * ev["r2"] / nu))
        return crit + ev["ld_s"] if self.reml else crit

    def _grad_matrix(self, ev, inv_sigma2):
        M = ev["sum_p"] - inv_sigma2 * ev["sum_ss"]
        if self.reml:
            M = M - ev["sum_hsh"]
        return (2.0 * M @ ev["lam"])[self.rows, self.cols]

    def criterion_gradient(self, ev):
        if "grad" in ev:  # as "crit" in criterion
            return ev["grad"]
        # profiled: sigma^2 = r2 / nu, so d(nu log r2) = nu / r2 d r2
        return self._grad_matrix(ev, self.nu / ev["r2"])

    def fun_and_grad(self, theta):
        ev = self.evaluate(theta)
        return self.criterion(ev), self.criterion_gradient(ev)

    def varpar_grad_theta(self, ev, sigma):
        """theta-gradient of lmerTest's devfun_vp (deviance at fixed sigma, beta profiled)."""
        if ev.get("unevaluable"):
            raise np.linalg.LinAlgError("X'V^{-1}X is not positive definite next to the optimum (the Hessian "
                                        "of the variance parameters cannot be computed)")
        return self._grad_matrix(ev, 1.0 / sigma**2)


# --------------------------------------------------------------------------------------------
# optimisation
# --------------------------------------------------------------------------------------------
def _optimise(prob):
    """Minimise the profiled criterion over unbounded theta, polish with a Newton step, then
    make Lambda's diagonal >= 0 (flipping a column's sign leaves Lambda Lambda' unchanged).

    Returns theta, the deviance Hessian in (theta, sigma) at theta (for Satterthwaite), and a
    record of the optimisation. The steps are :func:`_optimise_steps`, each evaluation
    answered by ``prob.evaluate`` (:func:`_drive`).
    """
    return _drive(prob, _optimise_steps(prob))


def _drive(prob, steps):
    """Run an optimisation generator, answering each ``(theta, gradient)`` request with
    ``prob.evaluate(theta, gradient)``; its return value."""
    try:
        request = next(steps)
        while True:
            request = steps.send(prob.evaluate(*request))
    except StopIteration as done:
        return done.value


def _fun_and_grad_steps(prob, theta):
    """``prob.fun_and_grad(theta)`` as a generator step (the evaluation is requested)."""
    ev = yield theta, True
    return prob.criterion(ev), prob.criterion_gradient(ev)


def _optimise_steps(prob):
    """:func:`_optimise` as a generator: it yields ``(theta, gradient)`` for every evaluation
    of the criterion and is sent ``prob.evaluate(theta, gradient)`` back, so that many
    problems can be evaluated together (:func:`fit_lmm_lean`) along exactly the path each
    would take alone."""
    theta, _f, g, info = yield from _bfgs_steps(prob, _lambda_start(prob.q))
    nfev = info["nfev"]
    if not np.max(np.abs(g)) < GRAD_TOL:  # fallback: scipy's BFGS (Wolfe line search)
        from scipy import optimize  # 0.3 s to import: only for this rare fallback

        # evaluated directly: prob.evaluate gives the numbers a request would get
        res = optimize.minimize(prob.fun_and_grad, theta, jac=True, method="BFGS",
                                options={"gtol": 1e-6, "maxiter": 2000})
        theta, nfev = res.x, nfev + int(res.nfev)
        info["message"] = f"BFGS, then scipy BFGS ({res.message}), + Newton polish"
    hess = None
    for _ in range(3):  # Newton polish; the last Hessian is reused by Satterthwaite
        ev = yield theta, True
        crit, grad = prob.criterion(ev), prob.criterion_gradient(ev)
        sigma = np.sqrt(ev["r2"] / prob.nu)
        hess = yield from _varpar_hessian_steps(prob, theta, sigma, ev)
        nfev += 1 + 2 * len(theta)
        step = _newton_step(hess, grad)
        if np.max(np.abs(grad)) < 1e-8 or np.all(
                np.abs(step) <= 1e-9 * np.maximum(np.abs(theta), 1.0)):
            break
        new = theta - step
        nfev += 1
        # accept unless the criterion rises above its rounding noise
        if prob.criterion((yield new, False)) > crit + 1e-13 * abs(crit):
            break
        theta = new
        if np.all(np.abs(step) <= 1e-6 * np.maximum(np.abs(theta), 1.0)):
            break  # the Hessian moved by ~1e-6 relative at most: keep it
    lam = prob.lam(theta)
    flip = np.where(np.diag(lam) < 0, -1.0, 1.0)
    theta = (lam * flip[None, :])[prob.rows, prob.cols]
    # the Hessian of the flipped parameters: D H D with D = +-1 per theta entry (and sigma)
    d = np.append(flip[prob.cols], 1.0)
    hess = hess * np.outer(d, d)
    info["nfev"] = nfev
    return theta, hess, info


def _bfgs_steps(prob, theta, maxiter=200):
    """BFGS with Armijo backtracking, started with the inverse of a forward-difference Hessian.

    A plain loop: the criterion costs ~0.1 ms, so scipy's line-search overhead would dominate.
    Stops when the predicted decrease ``-g'd/2`` reaches the criterion's rounding noise.
    A generator (see :func:`_optimise_steps`).
    """
    k = len(theta)
    f, g = yield from _fun_and_grad_steps(prob, theta)
    if not np.isfinite(f):
        raise np.linalg.LinAlgError("X'V^{-1}X is not positive definite at the start (Lambda = I): "
                                    "the fixed effects are not estimable from these data")
    nfev = 1 + k
    hinv = yield from _initial_inverse_hessian_steps(prob, theta, g)
    for it in range(maxiter):
        d = -hinv @ g
        slope = g @ d
        if slope >= 0:  # not a descent direction: restart from steepest descent
            hinv = np.eye(k) / max(np.abs(g).max(), 1.0)
            d, slope = -hinv @ g, -(g @ hinv @ g)
        if -slope < 1e-13 * max(abs(f), 1.0):
            break
        t = 1.0
        while True:
            f_new, g_new = yield from _fun_and_grad_steps(prob, theta + t * d)
            nfev += 1
            if (np.isfinite(f_new) and f_new <= f + 1e-4 * t * slope) or t < 1e-8:
                break
            # minimiser of the quadratic through f, slope and f_new, kept in [0.1t, 0.5t]
            t = min(max(-slope * t * t / (2.0 * (f_new - f - slope * t)), 0.1 * t), 0.5 * t)
        if not f_new <= f:
            break  # no decrease even with a tiny step: at the noise floor
        step, dg = t * d, g_new - g
        sy = step @ dg
        if sy > 1e-12 * np.linalg.norm(step) * np.linalg.norm(dg):
            rho = 1.0 / sy
            v = np.eye(k) - rho * np.outer(step, dg)
            hinv = v @ hinv @ v.T + rho * np.outer(step, step)
        theta, f, g = theta + step, f_new, g_new
    return theta, f, g, {"nit": it + 1, "nfev": nfev, "message": "BFGS + Newton polish"}


def _initial_inverse_hessian_steps(prob, theta, g, h=1e-4):
    k = len(theta)
    hess = np.empty((k, k))
    for j in range(k):
        e = np.zeros(k)
        e[j] = h
        hess[:, j] = ((yield from _fun_and_grad_steps(prob, theta + e))[1] - g) / h
    hess = (hess + hess.T) / 2.0
    vals, vecs = np.linalg.eigh(hess)
    # keep curvature positive and bounded so that the first steps stay reasonable
    vals = np.maximum(np.abs(vals), 1e-3 * np.abs(vals).max() + 1e-8)
    return (vecs / vals) @ vecs.T


def _newton_step(hess, grad):
    """Newton step of the profiled criterion: its Hessian in theta is the Schur complement of
    sigma in the deviance Hessian (sigma profiled). Directions of ~zero or negative curvature
    (a singular fit's vanishing diagonal entry) are left alone."""
    k = len(grad)
    h = hess[:k, :k] - np.outer(hess[:k, k], hess[k, :k]) / hess[k, k]
    vals, vecs = np.linalg.eigh(h)
    keep = vals > 1e-8 * max(vals.max(), 1.0)
    return (vecs[:, keep] / vals[keep]) @ (vecs[:, keep].T @ grad)


def _lambda_start(q):
    """lme4's start: Lambda = I."""
    rows, cols = _tril_index(q)
    return (rows == cols).astype(float)


# --------------------------------------------------------------------------------------------
# inference: Satterthwaite (lmerTest) and result tables
# --------------------------------------------------------------------------------------------
def _varpar_hessian_steps(prob, theta, sigma, ev):
    """Hessian of the deviance in (theta, sigma) (lmerTest's devfun_vp): the theta block by
    central differences of the analytic gradient (relative step 1e-3), the sigma row and
    column analytically. A generator (see :func:`_optimise_steps`)."""
    k = len(theta)
    hess = np.zeros((k + 1, k + 1))
    steps = HESS_STEP * np.maximum(np.abs(theta), 0.1)
    for j in range(k):
        e = np.zeros(k)
        e[j] = steps[j]
        g_plus = prob.varpar_grad_theta((yield theta + e, True), sigma)
        g_minus = prob.varpar_grad_theta((yield theta - e, True), sigma)
        hess[:k, j] = (g_plus - g_minus) / (2.0 * steps[j])
    hess[:k, :k] = (hess[:k, :k] + hess[:k, :k].T) / 2.0
    # d/dsigma of (d r2/dtheta) / sigma^2 with d r2/dtheta = -2 (sum s s' Lambda)
    cross = (4.0 * ev["sum_ss"] @ ev["lam"])[prob.rows, prob.cols] / sigma**3
    hess[:k, k] = hess[k, :k] = cross
    hess[k, k] = 6.0 * ev["r2"] / sigma**4 - 2.0 * prob.nu / sigma**2
    return hess


def _pseudo_inverse_cov(hess):
    """lmerTest's vcov_varpar: 2 x Moore-Penrose inverse, eigenvalues <= 1e-8 dropped."""
    vals, vecs = np.linalg.eigh(hess)
    keep = vals > EIGEN_TOL
    return 2.0 * (vecs[:, keep] / vals[keep]) @ vecs[:, keep].T


def _jac_cov_fe(prob, ev, sigma):
    """d cov(beta) / d(theta, sigma), cov(beta) = sigma^2 S^{-1}, S = X'V^{-1}X.

    dS/dLambda_ab = -(T_ab + T_ab') with T_ab = sum_i H_i[a]' (Lambda' H_i)[b].
    """
    sinv, H, lam = ev["sinv"], ev["H"], ev["lam"]
    K = np.tensordot(lam, H, axes=([0], [0]))  # Lambda' H_i, (q, p, G)
    jac = []
    for a, b in zip(prob.rows, prob.cols):
        T = H[a] @ K[b].T
        jac.append(sigma**2 * sinv @ (T + T.T) @ sinv)
    jac.append(2.0 * sigma * sinv)
    return np.array(jac)


def _satterthwaite(L, var, jac, vcov_varpar):
    grad = np.einsum("mi,kij,mj->mk", L, jac, L)
    denom = np.einsum("mk,kl,ml->m", grad, vcov_varpar, grad)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2.0 * var**2 / denom


def _t_stats(est, se, df):
    """t and two-sided p on ``df`` (the columns of :func:`_t_table`, without the table)."""
    t = est / se
    return t, 2.0 * special.stdtr(df, -np.abs(t))


def _t_table(est, se, df, conf_level, terms=None):
    """The t-test table; with ``terms``, a first column ``term`` (built at once)."""
    t, p = _t_stats(est, se, df)
    crit = special.stdtrit(df, 0.5 + conf_level / 2.0)
    cols = {} if terms is None else {"term": list(terms)}
    cols.update({"estimate": est, "se": se, "df": df, "t": t, "p": p,
                 "ci_low": est - crit * se, "ci_high": est + crit * se})
    return pd.DataFrame(cols)


def _random_table(lam, sigma, z_names, group):
    cov = sigma**2 * lam @ lam.T
    sd = np.sqrt(np.diag(cov))
    rows = [(group, a, None, cov[i, i], sd[i]) for i, a in enumerate(z_names)]
    for i, j in itertools.combinations(range(len(z_names)), 2):
        corr = cov[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else np.nan
        rows.append((group, z_names[i], z_names[j], cov[i, j], corr))
    rows.append(("Residual", None, None, sigma**2, sigma))
    return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])


def _build_result(prob, theta, hess, opt, levels, codes, x_names, z_names, group_name,
                  satterthwaite, conf_level, grad_tol, index):
    ev = prob.evaluate(theta)
    crit = float(prob.criterion(ev))
    grad = prob.criterion_gradient(ev)
    sigma = float(np.sqrt(ev["r2"] / prob.nu))
    beta, lam = ev["beta"] + prob.beta0, ev["lam"]
    cov = sigma**2 * ev["sinv"]
    vcov_varpar = jac = None
    df = np.full(prob.p, np.nan)
    if satterthwaite:
        vcov_varpar = _pseudo_inverse_cov(hess)
        jac = _jac_cov_fe(prob, ev, sigma)
        df = _satterthwaite(np.eye(prob.p), np.diag(cov), jac, vcov_varpar)
    fixed = _t_table(beta, np.sqrt(np.diag(cov)), df, conf_level, x_names)
    # BLUPs: b_i = Lambda u_i = W_i Z_i'(y_i - X_i beta)
    b = _bmm(ev["W"], prob.w0(ev["beta"])[:, None, :])[:, 0, :].T  # (G, q)
    marginal = prob.X @ beta
    conditional = marginal + np.einsum("nq,nq->n", prob.Z, b[codes])
    index = pd.RangeIndex(prob.n) if index is None else index
    fitted = pd.DataFrame({"fitted_marginal": marginal, "fitted_conditional": conditional,
                           "resid_marginal": prob.y - marginal,
                           "resid_conditional": prob.y - conditional}, index=index)
    k = prob.p + prob.q * (prob.q + 1) // 2 + 1
    loglik = -crit / 2.0
    grad_norm = float(np.max(np.abs(grad)))
    notes = []
    if grad_norm >= grad_tol:
        notes.append(f"not converged: max |gradient| {grad_norm:.3g} >= {grad_tol:g} "
                     f"({opt['message']})")
    return LMMResult(
        fixed=fixed, random=_random_table(lam, sigma, z_names, group_name), loglik=loglik,
        deviance=crit, reml=prob.reml, theta=theta, sigma=sigma,
        converged=grad_norm < grad_tol, grad_norm=grad_norm,
        singular=bool(np.min(np.diag(lam)) < SINGULAR_TOL), n_obs=prob.n, n_groups=prob.G,
        aic=crit + 2 * k, bic=crit + np.log(prob.n) * k,
        cov_fe=pd.DataFrame(cov, index=x_names, columns=x_names),
        ranef=pd.DataFrame(b, index=pd.Index(levels, name=group_name), columns=z_names),
        fitted=fitted, vcov_varpar=vcov_varpar, jac_cov_fe=jac, x_names=list(x_names),
        z_names=list(z_names), group=group_name, notes=notes, optimizer=opt)


# --------------------------------------------------------------------------------------------
# many models at once, lean results (the growth model's power study)
# --------------------------------------------------------------------------------------------
@dataclass
class LeanFit:
    """What :func:`fit_lmm_lean` keeps of a fit: the fixed effects' tests and the optimum.

    Attributes
    ----------
    estimate, se, df, t, p : ndarray
        Per fixed effect (in the columns' order): the ``fixed`` table of :func:`fit_lmm_arrays`
        without the confidence interval.
    theta : ndarray
        lme4's ``theta`` (Lambda's diagonal >= 0).
    lambda_diag : ndarray
        The diagonal of ``Lambda`` (a boundary fit has an entry near 0).
    grad_norm : float
    converged : bool
        ``grad_norm < grad_tol``.
    n_obs, n_groups : int
    message : str
        How the optimum was reached (the ``optimizer`` message of :func:`fit_lmm_arrays`).
    sigma : float
        The residual SD (with ``theta``, the fitted marginal covariance a cluster-robust SE
        needs: :func:`helpers.mixed.cr2_test`).
    lam : ndarray
        ``Lambda`` (q x q, lower triangular).
    """

    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    t: np.ndarray
    p: np.ndarray
    theta: np.ndarray
    lambda_diag: np.ndarray
    grad_norm: float
    converged: bool
    n_obs: int
    n_groups: int
    message: str = ""
    sigma: float = float("nan")
    lam: np.ndarray | None = None


def fit_lmm_lean(models, *, reml=True, grad_tol=GRAD_TOL) -> list:
    """Fit many models at once; the same numbers as :func:`fit_lmm_arrays`, fewer of them.

    For simulation studies that fit thousands of small models and keep a few numbers: each
    model is optimised along exactly the path :func:`fit_lmm_arrays` takes (the same
    generator, :func:`_optimise_steps`), but the evaluations of all models that are waiting
    for one are computed together (:class:`_Stack`), bit for bit equal to each model's own
    ``_Problem.evaluate``; no tables are built. Bit-for-bit matters: the optimiser stops at
    the criterion's rounding noise and the Satterthwaite df use the Hessian where it
    stopped, so a different last bit moves the df by up to ~1e-7 relative.

    Parameters
    ----------
    models : sequence of tuple
        ``(y, X, Z, groups)`` per model, as :func:`fit_lmm_arrays` takes them.
    reml : bool
    grad_tol : float
        ``converged`` is ``grad_norm < grad_tol``.

    Returns
    -------
    list
        Per model a :class:`LeanFit`, or the exception :func:`fit_lmm_arrays` would raise
        (an invalid model, a failed factorisation) -- returned, not raised, so that one bad
        model leaves the others alone.

    Notes
    -----
    NumPy warnings of the stacked evaluations cannot be told apart by model; a caller that
    must show each model's warnings as :func:`fit_lmm_arrays` would should refit the models
    one at a time when any is raised here.

    Examples
    --------
    >>> import pandas as pd
    >>> from helpers import paths
    >>> sleep = pd.read_csv(paths.ROOT / "tests" / "data" / "lme4_sleepstudy.csv")
    >>> X = np.column_stack([np.ones(len(sleep)), sleep["Days"]])
    >>> fit, = fit_lmm_lean([(sleep["Reaction"], X, X, sleep["Subject"])])
    >>> np.round(fit.se, 3).tolist(), np.round(fit.df, 3).tolist()
    ([6.825, 1.546], [17.0, 17.0])
    """
    out = [None] * len(models)
    probs = {}
    for i, (y, X, Z, groups) in enumerate(models):
        try:  # the checks and set-up of fit_lmm_arrays
            y, X, Z = (np.asarray(a, float) for a in (y, X, Z))
            X, Z = (a.reshape(len(a), -1) for a in (X, Z))
            levels, codes = _group_codes(groups)
            _check_inputs(y, X, Z, codes, len(levels))
            probs[i] = _Problem(y, X, Z, codes, len(levels), reml)
        except Exception as exc:  # noqa: BLE001 -- returned for this model only
            out[i] = exc
    by_shape = {}
    for i, prob in probs.items():
        by_shape.setdefault((prob.q, prob.p), []).append(i)
    chunks = []
    for members in by_shape.values():
        # stacks of about STACK_GROUPS groups: their per-group arrays stay in the CPU's cache
        # (one stack of every model is slower per group than one model alone)
        sizes = np.cumsum([probs[i].G for i in members])
        cut = np.searchsorted(sizes, np.arange(STACK_GROUPS, sizes[-1], STACK_GROUPS))
        chunks += [list(c) for c in np.split(np.asarray(members), np.unique(cut + 1)) if len(c)]
    for members in chunks:
        optima = _optimise_many([probs[i] for i in members])
        for i, opt in zip(members, optima):
            if isinstance(opt, Exception):
                out[i] = opt
                continue
            try:
                out[i] = _lean_result(probs[i], *opt, grad_tol)
            except Exception as exc:  # noqa: BLE001
                out[i] = exc
    return out


def _lean_result(prob, theta, hess, info, ev, grad_tol):
    """The numbers of :func:`_build_result` that :class:`LeanFit` keeps, computed the same way
    (``ev``: the evaluation at ``theta``)."""
    grad = prob.criterion_gradient(ev)
    sigma = float(np.sqrt(ev["r2"] / prob.nu))
    beta = ev["beta"] + prob.beta0
    cov = sigma**2 * ev["sinv"]
    vcov_varpar = _pseudo_inverse_cov(hess)
    jac = _jac_cov_fe(prob, ev, sigma)
    df = _satterthwaite(np.eye(prob.p), np.diag(cov), jac, vcov_varpar)
    se = np.sqrt(np.diag(cov))
    t, p = _t_stats(beta, se, df)
    grad_norm = float(np.max(np.abs(grad)))
    return LeanFit(estimate=beta, se=se, df=df, t=t, p=p, theta=theta,
                   lambda_diag=np.diag(ev["lam"]).copy(), grad_norm=grad_norm,
                   converged=grad_norm < grad_tol, n_obs=prob.n, n_groups=prob.G,
                   message=info.get("message", ""), sigma=sigma, lam=ev["lam"].copy())


def _optimise_many(probs) -> list:
    """:func:`_optimise` of every problem (same q and p), the evaluations stacked.

    Each problem runs its own :func:`_optimise_steps`; every round, the evaluations that the
    waiting problems request are computed together by :meth:`_Stack.evaluate`. If the
    stacked evaluation raises (one problem's factorisation fails), that round is evaluated
    problem by problem, and a problem whose own evaluation raises gets that exception as
    its result, as :func:`_optimise` would raise it.

    Returns per problem ``(theta, hess, info, ev)`` -- what :func:`_optimise` returns and the
    evaluation at the optimum that :func:`_build_result` makes (requested with the others) --
    or the exception.
    """
    stack = _Stack(probs)
    gens = [_optimise_steps(prob) for prob in probs]
    results = [None] * len(probs)
    pending = {}

    def advance(i, ev=None, first=False):
        try:
            pending[i] = next(gens[i]) if first else gens[i].send(ev)
        except StopIteration as done:
            results[i] = done.value
            pending[i] = (done.value[0], True)  # the final evaluation, for the result
        except Exception as exc:  # noqa: BLE001 -- this problem's error, as _optimise raises it
            results[i] = exc

    for i in range(len(probs)):
        advance(i, first=True)
    while pending:
        idx = sorted(pending)
        requests = [pending.pop(i) for i in idx]
        try:
            evs = stack.evaluate(idx, np.array([r[0] for r in requests]),
                                 any(r[1] for r in requests))
        except Exception:  # noqa: BLE001 -- one at a time: each problem's own answer or error
            evs = []
            for i, (theta, gradient) in zip(idx, requests):
                try:
                    evs.append(probs[i].evaluate(theta, gradient))
                except Exception as exc:  # noqa: BLE001
                    evs.append(exc)
        for i, ev in zip(idx, evs):
            if isinstance(ev, Exception):
                gens[i].close()
                results[i] = ev
            elif results[i] is not None:
                results[i] = (*results[i], ev)
            else:
                advance(i, ev)
    return results


class _Stack:
    """Problems with the same ``q`` and ``p``, evaluated together bit for bit as each alone.

    Everything in :meth:`_Problem.evaluate` that works group by group (``A_i^{-1}``,
    ``W_i``, ``W_i Z_i'[X y]``, ...) is elementwise over the groups: it is done once for
    the groups of all requested problems, each group with its own problem's ``Lambda``
    (the same products, summed in the same order). What sums over a problem's groups (BLAS
    products, numpy's pairwise sums) is computed per problem, on its slice, by the call that
    ``evaluate`` makes; the small factorisations run as stacks, which numpy's linalg loops
    over with the routine it uses for one matrix. tests/test_lmm.py checks the bits.
    """

    def __init__(self, probs):
        self.probs = list(probs)
        self.q, self.p = self.probs[0].q, self.probs[0].p
        if any(pr.q != self.q or pr.p != self.p for pr in self.probs):
            raise ValueError("a stack holds problems of one shape (q, p)")
        sizes = np.array([pr.G for pr in self.probs])
        self.start = np.concatenate([[0], np.cumsum(sizes)])
        self.member = np.repeat(np.arange(len(self.probs)), sizes)
        self.ztz = np.concatenate([pr.ztz for pr in self.probs], axis=2)
        self.ztxy = np.concatenate([pr.ztxy for pr in self.probs], axis=2)
        self.xytxy = np.stack([pr.xytxy for pr in self.probs])
        self.sum_ztz = np.stack([pr.sum_ztz for pr in self.probs])
        self.rows, self.cols = _tril_index(self.q)

    def evaluate(self, idx, thetas, gradient=True) -> list:
        """``[self.probs[i].evaluate(theta) for i, theta in zip(idx, thetas)]`` (idx ascending)."""
        if self.q > 2:  # the q x q Cholesky per group sums in an order not reproduced here
            return [self.probs[i].evaluate(th, gradient) for i, th in zip(idx, thetas)]
        idx = np.asarray(idx, dtype=np.int64)
        q, p, R = self.q, self.p, len(idx)
        probs = [self.probs[i] for i in idx]
        lam = np.zeros((R, q, q))
        lam[:, self.rows, self.cols] = thetas
        if R == len(self.probs):
            ztz, ztxy, start, local = self.ztz, self.ztxy, self.start, self.member
        else:
            mask = np.zeros(len(self.probs), dtype=bool)
            mask[idx] = True
            sel = np.flatnonzero(mask[self.member])
            sizes = self.start[idx + 1] - self.start[idx]
            start = np.concatenate([[0], np.cumsum(sizes)])
            local = np.repeat(np.arange(R), sizes)
            # take, not [:, :, sel]: fancy indexing puts the group axis first in memory, and the
            # per-problem products below would then leave BLAS (other rounding)
            ztz, ztxy = self.ztz.take(sel, axis=2), self.ztxy.take(sel, axis=2)
        # each group's own Lambda, (q, q, groups) in C order like every per-group array here
        # (the elementwise loops then run over contiguous groups)
        lg = np.ascontiguousarray(lam.transpose(1, 2, 0)).take(local, axis=2)
        # A_i^{-1} and log|A_i| as _Problem._a_inverse
        if q == 1:
            sq = np.array([lm[0, 0] ** 2 for lm in lam])  # the scalar square evaluate takes
            det = sq[local] * ztz[0, 0] + 1.0
            ainv = (1.0 / det)[None, None, :]
        else:
            M = _bmm(lg.transpose(1, 0, 2), _bmm(ztz, lg))
            a, b, c = M[0, 0] + 1.0, M[0, 1], M[1, 1] + 1.0
            det = a * c - b * b
            ainv = np.array([[c, -b], [-b, a]]) / det
        log_det = np.log(det)
        W = _bmm(lg, _bmm(ainv, lg.transpose(1, 0, 2)))
        WXY = _bmm(W, ztxy)
        cross = np.empty((R, q, p + 1, p + 1))
        for r, prob in enumerate(probs):
            a0, a1 = start[r], start[r + 1]
            np.matmul(prob.ztxy, WXY[:, :, a0:a1].transpose(0, 2, 1), out=cross[r])
        full = self.xytxy[idx] - cross.sum(axis=1)
        S, rhs = full[:, :p, :p], full[:, :p, p]
        chol = np.linalg.cholesky(S)
        beta = np.linalg.solve(S, rhs[:, :, None])[:, :, 0]
        ld_s = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        evs = []
        for r, prob in enumerate(probs):
            a0, a1 = start[r], start[r + 1]
            evs.append({"lam": lam[r], "W": W[:, :, a0:a1], "ld_a": float(log_det[a0:a1].sum()),
                        "S": S[r], "beta": beta[r], "r2": float(full[r, p, p] - rhs[r] @ beta[r]),
                        "ld_s": float(ld_s[r])})
        if len({pr.reml for pr in probs}) == 1:
            # _Problem.criterion for all at once: the same operations, elementwise
            nu = np.array([pr.nu for pr in probs])
            r2 = np.array([ev["r2"] for ev in evs])
            crit = np.array([ev["ld_a"] for ev in evs]) + nu * (1.0 + np.log(2.0 * np.pi * r2 / nu))
            if probs[0].reml:
                crit = crit + np.array([ev["ld_s"] for ev in evs])
            for ev, c in zip(evs, crit):
                ev["crit"] = c
        if gradient:
            self._gradient_parts(evs, probs, ztz, ztxy, W, start)
            if "crit" in evs[0]:
                # _Problem.criterion_gradient (_grad_matrix at sigma^2 = r2 / nu); numpy's
                # stacked matmul runs each q x q product as the single one would
                M = (np.stack([ev["sum_p"] for ev in evs])
                     - (nu / r2)[:, None, None] * np.stack([ev["sum_ss"] for ev in evs]))
                if probs[0].reml:
                    M = M - np.stack([ev["sum_hsh"] for ev in evs])
                grad = np.matmul(2.0 * M, lam)[:, self.rows, self.cols]
                for ev, g in zip(evs, grad):
                    ev["grad"] = g
        return evs

    def _gradient_parts(self, evs, probs, ztz, ztxy, W, start):
        """:meth:`_Problem._gradient_parts` of every requested problem."""
        p, q = self.p, self.q
        GW = _bmm(ztz, W)
        HY = ztxy - _bmm(GW, ztxy)
        H = HY[:, :p]
        sinv = np.linalg.inv(np.stack([ev["S"] for ev in evs]))
        bh = np.empty((q, HY.shape[2]))
        for r, ev in enumerate(evs):
            a0, a1 = start[r], start[r + 1]
            np.matmul(ev["beta"], H[:, :, a0:a1], out=bh[:, a0:a1])
        s = HY[:, p] - bh
        for r, (ev, prob) in enumerate(zip(evs, probs)):
            a0, a1 = start[r], start[r + 1]
            h, sr = H[:, :, a0:a1], s[:, a0:a1]
            hs = np.matmul(sinv[r], h)
            ev["H"], ev["sinv"] = h, sinv[r]
            ev["sum_p"] = prob.sum_ztz - GW[:, :, a0:a1].reshape(q, -1) @ prob.ztz_flat
            ev["sum_hsh"] = hs.reshape(q, -1) @ h.reshape(q, -1).T
            ev["sum_ss"] = sr @ sr.T
