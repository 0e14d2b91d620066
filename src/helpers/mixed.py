"""Checked linear mixed models with one grouping factor, fitted by :mod:`helpers.lmm`.

:func:`fit_mixed` takes a formula, fits it with the exact REML/ML engine of
:mod:`helpers.lmm` (lme4's profiled criterion, Satterthwaite df as lmerTest) and adds the
project's checks:

1. convergence is judged by the gradient of the profiled criterion (``max |gradient| <
   grad_tol``), never by an optimiser's flag, and a fit that fails raises
   :class:`MixedModelConvergenceError`;
2. a boundary (singular) fit -- a diagonal entry of the relative covariance factor below
   ``boundary_tol``, i.e. a variance near zero or a correlation near +-1, lme4's
   ``isSingular`` rule -- is said in a note and a :class:`MixedModelBoundaryWarning`, and by
   default refitted with the simpler random structure.

Standard errors are lme4's ``vcov``; ``fixed`` has Satterthwaite df and t-based p-values and
confidence intervals (lmerTest). This is the project's one mixed-model implementation
(statsmodels' MixedLM is only an independent cross-check in the tests). The project's growth
model is :mod:`helpers.growth`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special  # the normal quantile as scipy.stats computes it, without scipy.stats (0.5 s)

from helpers import lmm

#: Largest absolute gradient of the profiled criterion accepted as an optimum.
GRAD_TOL = lmm.GRAD_TOL


class MixedModelConvergenceError(RuntimeError):
    """The mixed model did not reach a (gradient-checked) optimum."""


class MixedModelBoundaryWarning(UserWarning):
    """The random-effects covariance is singular (a variance ~0 or a correlation ~+-1)."""


# --------------------------------------------------------------------------------------------
# result objects
# --------------------------------------------------------------------------------------------
@dataclass
class MixedFit:
    """A checked linear mixed model fit.

    Attributes
    ----------
    fixed : DataFrame
        term, estimate, se, df (Satterthwaite, as lmerTest), t, p (two-sided on df),
        ci_low, ci_high (t-based, 95%).
    random : DataFrame
        Variance components in lme4's ``as.data.frame(VarCorr(fit))`` layout plus a readable
        name: component, grp, var1, var2, vcov (variance or covariance), sdcor (SD or
        correlation). The residual row has grp ``Residual``.
    loglik : float
        Maximised log-likelihood (REML criterion when ``reml``), lme4's ``logLik``.
    reml, converged : bool
    optimizer : str
        How the optimum was reached (:func:`helpers.lmm.fit_lmm`).
    n_obs, n_groups : int
    notes : list of str
        Everything a reader should know (boundary refits, centring, dropped rows).
    aic, bic : float
        ``-2 loglik + 2k`` and ``-2 loglik + log(n_obs) k`` with k = fixed effects + covariance
        parameters + residual variance (as lme4; with REML only comparable across models with
        the same fixed effects).
    grad_norm : float
        Max absolute gradient of the profiled criterion at the estimate (machine-dependent
        digits: report :attr:`convergence`, a bound, instead).
    convergence : str
        ``"max |gradient| < 0.001"`` (the bound ``grad_tol``) when converged.
    singular : bool
        Whether the fit is on the boundary.
    attempts : DataFrame
        The optimisation record: method, nit, nfev, grad_norm, seconds.
    cov_fe : DataFrame
        Covariance matrix of the fixed effects (lme4's ``vcov``).
    formula, re_formula, groups : str
    boundary_fit : MixedFit or None
        The singular fit of the richer random structure when it was simplified.
    result : helpers.lmm.LMMResult
        The underlying fit; ``result.fittedvalues`` and ``result.resid`` are the conditional
        fitted values and residuals (fixed + random effects), as statsmodels gives them.
    failure : str
        Why the fit is not converged (empty otherwise).
    """

    fixed: pd.DataFrame
    random: pd.DataFrame
    loglik: float
    reml: bool
    converged: bool
    optimizer: str
    n_obs: int
    n_groups: int
    notes: list = field(default_factory=list)
    aic: float = np.nan
    bic: float = np.nan
    grad_norm: float = np.nan
    singular: bool = False
    attempts: pd.DataFrame | None = None
    cov_fe: pd.DataFrame | None = None
    formula: str = ""
    re_formula: str = ""
    groups: str = ""
    boundary_fit: "MixedFit | None" = None
    result: object = None
    convergence: str = ""
    failure: str = ""

    def predict(self, data, *, level=0.95) -> pd.DataFrame:
        """Population-level (fixed-effects) predictions with Wald confidence intervals.

        Parameters
        ----------
        data : DataFrame
            Holds the right-hand-side variables of ``formula``.
        level : float
            Confidence level of the interval.

        Returns
        -------
        DataFrame
            ``data`` plus columns estimate, se, ci_low, ci_high. The interval reflects the
            uncertainty of the fixed effects only (``x' cov_fe x``, normal reference), not
            the random effects.
        """
        _, rhs = _split_formula(self.formula)
        terms, intercept = lmm.expand_terms(rhs)
        x, names = lmm.design_matrix(data.reset_index(drop=True), terms, intercept, "Intercept")
        if names != list(self.fixed["term"]):
            raise ValueError(f"design {names} does not match the fit's terms "
                             f"{list(self.fixed['term'])}")
        return linear_prediction(data, x, self, level)

    def contrast(self, L, terms=None) -> pd.DataFrame:
        """t-tests of ``L beta`` with Satterthwaite df (:meth:`helpers.lmm.LMMResult.contrast`),
        one row per row of ``L``, labelled by ``terms`` when given."""
        out = self.result.contrast(L)
        if terms is not None:
            out.insert(0, "term", list(terms))
        return out


def linear_prediction(data, x, fit, level):
    """``data`` plus estimate, se, ci_low, ci_high of ``x beta`` (normal reference)."""
    beta = fit.fixed["estimate"].to_numpy(float)
    cov = fit.cov_fe.to_numpy(float)
    est = x @ beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", x, cov, x))
    zq = special.ndtri(0.5 + level / 2)
    out = data.reset_index(drop=True).copy()
    out["estimate"] = est
    out["se"] = se
    out["ci_low"] = est - zq * se
    out["ci_high"] = est + zq * se
    return out


# --------------------------------------------------------------------------------------------
# checked fit
# --------------------------------------------------------------------------------------------
def fit_mixed(data, formula, groups, re_formula="1", *, reml=True, grad_tol=GRAD_TOL,
              boundary_tol=lmm.SINGULAR_TOL, on_boundary="simplify", simple_re_formula="1",
              warn=True) -> MixedFit:
    """Fit ``formula + (re_formula | groups)`` and keep it only at a checked optimum.

    Parameters
    ----------
    data : DataFrame
        Long data; numeric model columns (factors coded as 0/1 dummies). Rows with a missing
        value in a model variable are dropped and noted.
    formula : str
        ``"y ~ terms"`` with terms as :func:`helpers.lmm.expand_terms` reads them, e.g.
        ``"Reaction ~ Days"`` or ``"pss_sr ~ time * (repaired + unrepaired)"``.
    groups : str
        Column of ``data`` with the grouping factor.
    re_formula : str
        Random-effects terms, with or without ``~``: ``"1"`` or ``"1 + Days"``.
    reml : bool
        REML (default) or maximum likelihood.
    grad_tol : float
        Largest absolute gradient of the profiled criterion accepted as an optimum.
    boundary_tol : float
        A diagonal element of the relative covariance factor below this is a boundary fit
        (lme4's ``isSingular`` default, 1e-4).
    on_boundary : {"simplify", "keep"}
        "simplify" refits with ``simple_re_formula`` (when it differs from ``re_formula``);
        either way a :class:`MixedModelBoundaryWarning` is emitted and noted.
    simple_re_formula : str
    warn : bool
        Emit warnings (boundary, refit). They are always recorded in ``notes``.

    Returns
    -------
    MixedFit

    Raises
    ------
    MixedModelConvergenceError
        When the kept fit's gradient is not below ``grad_tol`` (a boundary fit that is
        simplified does not need to pass; its simpler refit does).

    Examples
    --------
    lme4's sleepstudy (shipped with the tests): lme4 + lmerTest give 251.405 (SE 6.825,
    df 17) and 10.467 (1.546, 17).

    >>> import pandas as pd
    >>> from helpers import paths
    >>> sleepstudy = pd.read_csv(paths.ROOT / "tests" / "data" / "lme4_sleepstudy.csv")
    >>> fit = fit_mixed(sleepstudy, "Reaction ~ Days", "Subject", "1 + Days")
    >>> fit.fixed[["estimate", "se", "df"]].round(3).values.tolist()
    [[251.405, 6.825, 17.0], [10.467, 1.546, 17.0]]
    >>> fit.convergence
    'max |gradient| < 0.001'
    """
    if on_boundary not in ("simplify", "keep"):
        raise ValueError(f"on_boundary must be 'simplify' or 'keep', not {on_boundary!r}")
    re_formula = _clean_re(re_formula)
    y, rhs = _split_formula(formula)

    def fitter(re):
        return lmm.fit_lmm(data, y, rhs, groups, re, reml=reml, grad_tol=grad_tol)

    return fit_mixed_with(fitter, formula, groups, re_formula, grad_tol=grad_tol,
                           boundary_tol=boundary_tol, on_boundary=on_boundary,
                           simple_re_formula=simple_re_formula, warn=warn, stacklevel=3)


def fit_mixed_with(fitter, formula, groups, re_formula, *, grad_tol, boundary_tol,
                   on_boundary, simple_re_formula, warn, stacklevel=2):
    """:func:`fit_mixed` with ``fitter(re_formula)`` giving the :class:`helpers.lmm.LMMResult`
    of ``formula + (re_formula | groups)`` (``re_formula`` already cleaned), e.g. from a
    design built without tables (:func:`helpers.growth.fit_growth`); warnings are attributed
    ``stacklevel`` frames up (2: this function's caller)."""
    fit = _from_lmm(fitter(re_formula), formula, re_formula, groups, grad_tol, boundary_tol)
    if not fit.singular:
        _require_converged(fit)
        return fit
    simple = _clean_re(simple_re_formula)
    msg = (f"boundary (singular) fit with random effects ~{re_formula} | {groups}: "
           f"{_describe_boundary(fit.random)}")
    if on_boundary == "simplify" and simple != re_formula:
        msg += f"; refitted with the simpler random structure ~{simple} | {groups}"
        if warn:
            warnings.warn(msg, MixedModelBoundaryWarning, stacklevel=stacklevel)
        simpler = _from_lmm(fitter(simple), formula, simple, groups, grad_tol, boundary_tol)
        _require_converged(simpler)
        simpler.notes.insert(0, msg)
        simpler.boundary_fit = fit
        if simpler.singular:
            note = (f"the simpler random structure ~{simple} is also on the boundary: "
                    f"{_describe_boundary(simpler.random)}")
            simpler.notes.append(note)
            if warn:
                warnings.warn(note, MixedModelBoundaryWarning, stacklevel=stacklevel)
        return simpler
    _require_converged(fit)
    msg += "; kept as is"
    if warn:
        warnings.warn(msg, MixedModelBoundaryWarning, stacklevel=stacklevel)
    fit.notes.insert(0, msg)
    return fit


def _require_converged(fit):
    if not fit.converged:
        raise MixedModelConvergenceError(fit.failure)


def _clean_re(re_formula):
    return re_formula.strip().lstrip("~").strip()


def _split_formula(formula):
    if formula.count("~") != 1:
        raise ValueError(f"formula must be 'outcome ~ terms', not {formula!r}")
    y, rhs = (s.strip() for s in formula.split("~"))
    return y, rhs


def _describe_boundary(random):
    parts = [f"{r.component.replace('var(', 'SD(').replace('cov(', 'corr(')} = {r.sdcor:.4g}"
             for r in random.itertuples() if r.grp != "Residual"]
    return ", ".join(parts)


def random_table(res: lmm.LMMResult) -> pd.DataFrame:
    """lmm's variance table with the readable ``component`` column of the project's tables."""
    rnd = res.random
    bare = {n: n.strip("()") for n in res.z_names}
    comp = []
    for grp, var1, var2 in zip(rnd["grp"].tolist(), rnd["var1"].tolist(),
                               rnd["var2"].tolist()):
        if grp == "Residual":
            comp.append("residual")
        elif var2 is None or (isinstance(var2, float) and np.isnan(var2)):
            comp.append(f"var({bare[var1]})")
        else:
            comp.append(f"cov({bare[var1]},{bare[var2]})")
    # built at once (not copied, inserted into and filled): the same table, faster
    out = {"component": comp, "grp": rnd["grp"], "var1": rnd["var1"].fillna(""),
           "var2": rnd["var2"].fillna("")}
    out.update({c: rnd[c] for c in rnd.columns if c not in out})
    return pd.DataFrame(out)


def _from_lmm(res, formula, re_formula, groups, grad_tol, boundary_tol):
    singular = bool(np.min(np.diag(res.lambda_)) < boundary_tol)
    opt = res.optimizer
    attempts = pd.DataFrame([{"method": opt.get("message", ""), "nit": opt.get("nit"),
                              "nfev": opt.get("nfev"), "grad_norm": res.grad_norm,
                              "seconds": opt.get("seconds")}])
    fit = MixedFit(
        fixed=res.fixed, random=random_table(res), loglik=float(res.loglik), reml=res.reml,
        converged=bool(res.grad_norm < grad_tol), optimizer=opt.get("message", ""),
        n_obs=res.n_obs, n_groups=res.n_groups,
        notes=[n for n in res.notes if not n.startswith("not converged")],
        aic=float(res.aic), bic=float(res.bic), grad_norm=float(res.grad_norm),
        singular=singular, attempts=attempts, cov_fe=res.cov_fe, formula=formula,
        re_formula=re_formula, groups=groups, result=res)
    if fit.converged:
        # a bound, not the value: the gradient's digits at an optimum are machine noise
        fit.convergence = f"max |gradient| < {grad_tol:g}"
    else:
        fit.convergence = f"not converged: max |gradient| >= {grad_tol:g}"
        fit.failure = convergence_failure(formula, re_formula, groups, res.grad_norm, grad_tol,
                                          opt.get("message", ""))
    return fit


def convergence_failure(formula, re_formula, groups, grad_norm, grad_tol, message) -> str:
    """Why a fit is not kept: the text of :class:`MixedModelConvergenceError`."""
    return (f"{formula} + (~{re_formula} | {groups}) did not reach an optimum: "
            f"max |gradient| {grad_norm:.3g} >= {grad_tol:g} ({message})")


# --------------------------------------------------------------------------------------------
# cluster-robust standard errors with small-sample corrections (CR2)
# --------------------------------------------------------------------------------------------
def cr2_test(y, X, Z, groups, beta, lam, sigma, L=None, *, level=0.95) -> dict:
    """Cluster-robust (CR2) tests of fixed effects of a linear mixed model, with the
    Bell-McCaffrey (Satterthwaite) degrees of freedom.

    The fixed effects of a mixed model are the GLS estimate under the fitted marginal
    covariance ``Phi_i = sigma^2 (I + Z_i Lambda Lambda' Z_i')`` of each cluster. When that
    covariance is wrong -- a random linear slope for a course that drops and stays, residuals
    correlated over sessions, slopes that vary more in one group than in another -- the
    model's SE of a fixed effect is wrong too, but the GLS estimate is still consistent and a
    sandwich estimator around it is not. CR2 (Bell & McCaffrey, 2002; Pustejovsky & Tipton,
    2018) adjusts each cluster's residuals so that the sandwich is unbiased when the working
    model is right, and its degrees of freedom come from the sandwich's own variance under
    that model; with few or unequal clusters the plain (CR0) sandwich and normal quantiles
    reject too often.

    Parameters
    ----------
    y : array (n,)
    X : array (n, p)
        Fixed-effects design.
    Z : array (n, q)
        Random-effects design.
    groups : array (n,)
        Cluster of each row (any labels).
    beta : array (p,)
        The fitted fixed effects (REML or ML).
    lam : array (q, q)
        The fitted relative covariance factor Lambda (lme4's, lower triangular).
    sigma : float
        The fitted residual SD.
    L : array (k, p), optional
        Contrasts, one per row (default: every fixed effect).
    level : float

    Returns
    -------
    dict
        Arrays of length k: ``estimate``, ``se`` (CR2), ``df`` (Bell-McCaffrey), ``t``,
        ``p``, ``ci_low``, ``ci_high``. Equal to clubSandwich's ``coef_test(fit, vcov =
        "CR2", test = "Satterthwaite")`` of the lme4 fit (``tests/reference/growth_cr2.R``).

    Notes
    -----
    With ``W_i = Phi_i^-1``, ``M = (sum X_i' W_i X_i)^-1``, residuals ``e_i = y_i - X_i beta``
    and ``Phi_i = D_i' D_i`` (``D_i`` upper triangular), the adjustment is ``A_i = D_i'
    B_i^(-1/2) D_i`` with ``B_i = D_i (Phi_i - X_i M X_i') D_i'``, and the variance of
    ``c' beta`` is ``sum_i (u_i' e_i)^2``, ``u_i = A_i' W_i X_i M c``. Under the working
    model, ``cov(u_i' e_i, u_j' e_j) = [i = j] u_i' Phi_i u_i - v_i' M v_j`` with ``v_i =
    X_i' u_i``; the degrees of freedom are ``2 E^2 / Var``, ``(trace G)^2 / sum G^2`` of that
    matrix G. Clusters are padded to the largest size with unit variances and zero rows,
    which add nothing.

    References
    ----------
    Bell, R. M., & McCaffrey, D. F. (2002). Bias reduction in standard errors for linear
    regression with multi-stage samples. Survey Methodology, 28(2), 169-181.
    Pustejovsky, J. E., & Tipton, E. (2018). Small-sample methods for cluster-robust variance
    estimation and hypothesis testing in fixed effects models. Journal of Business &
    Economic Statistics, 36(4), 672-683.

    Examples
    --------
    Ordinary least squares (Lambda = 0) with one row per cluster: CR2 is HC2 (statsmodels
    gives 0.2741 and 0.0952 with ``cov_type="HC2"``).

    >>> X = np.column_stack([np.ones(5), [0.0, 1, 2, 3, 4]])
    >>> y = np.array([1.0, 2.5, 2.9, 4.2, 4.8])
    >>> beta = np.linalg.lstsq(X, y, rcond=None)[0]
    >>> r = cr2_test(y, X, np.ones((5, 1)), np.arange(5), beta, np.zeros((1, 1)), 1.0)
    >>> np.round(r["se"], 4).tolist()
    [0.2741, 0.0952]
    """
    y, X, Z = (np.asarray(a, dtype=float) for a in (y, X, Z))
    X, Z = X.reshape(len(X), -1), Z.reshape(len(Z), -1)
    beta = np.asarray(beta, dtype=float)
    L = np.eye(X.shape[1]) if L is None else np.atleast_2d(np.asarray(L, dtype=float))
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    codes = codes.reshape(-1)
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    m, k, p = sizes.size, int(sizes.max()), X.shape[1]
    pos = np.arange(len(codes)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    cl = codes[order]
    Xp, Zp, ep = np.zeros((m, k, p)), np.zeros((m, k, Z.shape[1])), np.zeros((m, k))
    Xp[cl, pos], Zp[cl, pos], ep[cl, pos] = X[order], Z[order], (y - X @ beta)[order]
    real = np.zeros((m, k), dtype=bool)
    real[cl, pos] = True
    G = sigma**2 * (np.asarray(lam, float) @ np.asarray(lam, float).T)
    eye = np.eye(k)
    # Phi_i on the cluster's rows, the identity on its padding (rows of zeros in X, Z, e)
    phi = Zp @ G @ np.swapaxes(Zp, 1, 2) + np.where(real[:, :, None], sigma**2, 1.0) * eye
    W = np.linalg.inv(phi)
    WX = W @ Xp
    M = np.linalg.inv(np.einsum("mij,mik->jk", Xp, WX))
    low = np.linalg.cholesky(phi)  # Phi = low low', so D = low'
    B = np.swapaxes(low, 1, 2) @ (phi - Xp @ M @ np.swapaxes(Xp, 1, 2)) @ low
    ev, U = np.linalg.eigh(B)
    # B^(-1/2) as a pseudo-inverse, as clubSandwich does: a cluster whose rows the fixed effects
    # fit exactly has eigenvalues of (numerically) zero, whose inverse root is taken as 0
    inv_root = np.zeros_like(ev)
    positive = ev > 1e-12 * np.abs(ev).max(axis=1, keepdims=True)
    inv_root[positive] = ev[positive] ** -0.5
    A = low @ (U * inv_root[:, None, :]) @ np.swapaxes(U, 1, 2) @ np.swapaxes(low, 1, 2)
    u = np.swapaxes(A, 1, 2) @ WX @ M @ L.T  # (m, k, contrasts)
    est = L @ beta
    var = (np.einsum("mkc,mk->mc", u, ep) ** 2).sum(axis=0)
    a = np.einsum("mic,mij,mjc->mc", u, phi, u)
    v = np.einsum("mkp,mkc->mcp", Xp, u)
    gram = -np.einsum("icp,pq,jcq->cij", v, M, v)
    gram[:, np.arange(m), np.arange(m)] += a.T
    df = np.trace(gram, axis1=1, axis2=2) ** 2 / (gram**2).sum(axis=(1, 2))
    se = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = est / se
    half = special.stdtrit(df, 0.5 + level / 2) * se
    return {"estimate": est, "se": se, "df": df, "t": t, "p": 2 * special.stdtr(df, -np.abs(t)),
            "ci_low": est - half, "ci_high": est + half}
