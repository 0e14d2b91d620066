"""Robust linear mixed models: statsmodels MixedLM fitted with checked convergence.

statsmodels' default optimiser can stop at a worse optimum of the (restricted) likelihood and
still report convergence, or report non-convergence at the optimum. :func:`fit_mixed` therefore

1. fits the model with several optimisers from statsmodels' default start,
2. keeps the best log-likelihood among the fits that produced a finite one,
3. polishes it (restarts BFGS, then Nelder-Mead + BFGS if needed, from the best parameters),
4. judges convergence by the gradient of the profile log-likelihood (in the unconstrained
   Cholesky parameterisation that statsmodels optimises, so it is zero at any optimum, including
   a boundary one) and by the stability of the log-likelihood under polishing -- never by the
   optimiser's flag alone -- and raises :class:`MixedModelConvergenceError` if no fit passes,
5. detects a boundary (singular) fit -- a relative Cholesky factor with a near-zero diagonal,
   i.e. a variance near zero or a correlation near +-1, lme4's ``isSingular`` rule -- and refits
   with the simpler random structure, with a warning and a note.

Standard errors of the fixed effects are computed as lme4 does,
``sigma^2 (X' V^-1 X)^-1`` at the estimates, not from statsmodels' joint Hessian.

The generic fit only: the project's growth model is :mod:`helpers.growth`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLM


#: Optimisers tried by default (statsmodels / scipy names).
DEFAULT_METHODS = ("lbfgs", "bfgs", "powell", "nm", "cg")



class MixedModelConvergenceError(RuntimeError):
    """No optimiser brought the mixed model to a (gradient-checked) optimum."""


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
        term, estimate, se, z, p, ci_low, ci_high (Wald, normal reference as in statsmodels).
    random : DataFrame
        Variance components in lme4's ``as.data.frame(VarCorr(fit))`` layout plus a readable
        name: component, grp, var1, var2, vcov (variance or covariance), sdcor (SD or
        correlation). The residual row has grp ``Residual``.
    loglik : float
        Maximised log-likelihood (REML criterion when ``reml``), same constant as lme4.
    reml, converged : bool
    optimizer : str
        Optimiser whose fit was kept, with ``+polish`` when polishing improved it.
    n_obs, n_groups : int
    notes : list of str
        Everything a reader should know (boundary refits, centring, polishing).
    aic, bic : float
        ``-2 loglik + 2k`` and ``-2 loglik + log(n_obs) k`` with k = fixed effects + covariance
        parameters + residual variance (as lme4; with REML only comparable across models with
        the same fixed effects).
    grad_norm : float
        Max absolute gradient of the profile log-likelihood at the estimate.
    convergence : str
        Which criterion accepted the estimate: the gradient below ``grad_tol``, or (on a flat
        ridge, gradient below 10 x ``grad_tol``) a log-likelihood that restarts of different
        optimisers no longer raise.
    singular : bool
        Whether the kept fit is on the boundary.
    attempts : DataFrame
        One row per optimiser attempt: method, start, loglik, flag, grad_norm, warnings, kept.
    cov_fe : DataFrame
        Covariance matrix of the fixed effects (lme4's ``vcov``).
    formula, re_formula, groups : str
    boundary_fit : MixedFit or None
        The singular fit of the richer random structure when it was simplified (its
        ``converged`` may be False: a boundary fit is not reported, only replaced).
    result : statsmodels MixedLMResults
        The underlying statsmodels result at the kept parameters.
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
            uncertainty of the fixed effects only (``x' cov_fe x``), not the random effects.
        """
        import patsy  # statsmodels' formula engine (a statsmodels requirement)

        design_info = self.result.model.data.model_spec
        (x,) = patsy.build_design_matrices([design_info], data, return_type="dataframe")
        return linear_prediction(data, x.to_numpy(float), self, level)


def linear_prediction(data, x, fit, level):
    beta = fit.fixed["estimate"].to_numpy(float)
    cov = fit.cov_fe.to_numpy(float)
    est = x @ beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", x, cov, x))
    zq = stats.norm.ppf(0.5 + level / 2)
    out = data.reset_index(drop=True).copy()
    out["estimate"] = est
    out["se"] = se
    out["ci_low"] = est - zq * se
    out["ci_high"] = est + zq * se
    return out



# --------------------------------------------------------------------------------------------
# generic robust fit
# --------------------------------------------------------------------------------------------
def fit_mixed(data, formula, groups, re_formula="1", *, reml=True, methods=DEFAULT_METHODS,
              polish=True, grad_tol=1e-3, boundary_tol=1e-4, on_boundary="simplify",
              simple_re_formula="1", maxiter=None, warn=True) -> MixedFit:
    """Fit a linear mixed model with several optimisers and keep a checked optimum.

    Parameters
    ----------
    data : DataFrame
        Long data; rows with a missing value in a model variable must be removed beforehand.
    formula : str
        Fixed-effects formula, e.g. ``"Reaction ~ Days"``.
    groups : str
        Column of ``data`` with the grouping factor.
    re_formula : str
        Random-effects formula without ``~`` or with it, e.g. ``"1"`` or ``"1 + Days"``.
    reml : bool
        REML (default) or maximum likelihood.
    methods : sequence of str
        Optimisers tried from statsmodels' default start (scipy names as statsmodels takes them).
    polish : bool
        Restart from the best fit until the gradient is below ``grad_tol``.
    grad_tol : float
        Largest absolute gradient of the profile log-likelihood accepted as an optimum.
    boundary_tol : float
        A diagonal element of the relative Cholesky factor below this is a boundary fit
        (lme4's ``isSingular`` default, 1e-4).
    on_boundary : {"simplify", "keep"}
        "simplify" refits with ``simple_re_formula`` (when it differs from ``re_formula``);
        either way a :class:`MixedModelBoundaryWarning` is emitted and noted.
    maxiter : int, optional
        Iteration limit per first-round attempt (None: statsmodels' default). Polishing
        attempts allow 1000 iterations.
    warn : bool
        Emit warnings (boundary, refit). They are always recorded in ``notes``.

    Returns
    -------
    MixedFit

    Raises
    ------
    MixedModelConvergenceError
        When no attempt, even after polishing, is accepted as converged (gradient below
        ``grad_tol``, or a flat ridge whose log-likelihood restarts no longer raise). A
        boundary fit that is simplified does not need to pass; its simpler refit does.

    Notes
    -----
    The log-likelihood uses lme4's constants, so REML and ML values equal lme4's ``logLik``.

    Examples
    --------
    lme4's sleepstudy (shipped with the tests): lme4 gives 251.405 (SE 6.825) and 10.467 (1.546).

    >>> import pandas as pd
    >>> from helpers import paths
    >>> sleepstudy = pd.read_csv(paths.ROOT / "tests" / "data" / "lme4_sleepstudy.csv")
    >>> fit = fit_mixed(sleepstudy, "Reaction ~ Days", "Subject", "1 + Days")
    >>> fit.fixed[["estimate", "se"]].round(3).values.tolist()
    [[251.405, 6.825], [10.467, 1.546]]
    """
    if on_boundary not in ("simplify", "keep"):
        raise ValueError(f"on_boundary must be 'simplify' or 'keep', not {on_boundary!r}")
    re_formula = _clean_re(re_formula)
    fit = _fit_checked(data, formula, groups, re_formula, reml, methods, polish, grad_tol,
                       boundary_tol, maxiter)
    if not fit.singular:
        _require_converged(fit)
        return fit
    simple = _clean_re(simple_re_formula)
    msg = (f"boundary (singular) fit with random effects ~{re_formula} | {groups}: "
           f"{_describe_boundary(fit.random)}")
    if on_boundary == "simplify" and simple != re_formula:
        msg += f"; refitted with the simpler random structure ~{simple} | {groups}"
        if warn:
            warnings.warn(msg, MixedModelBoundaryWarning, stacklevel=2)
        simpler = _fit_checked(data, formula, groups, simple, reml, methods, polish, grad_tol,
                               boundary_tol, maxiter)
        _require_converged(simpler)
        simpler.notes.insert(0, msg)
        simpler.boundary_fit = fit
        if simpler.singular:
            note = (f"the simpler random structure ~{simple} is also on the boundary: "
                    f"{_describe_boundary(simpler.random)}")
            simpler.notes.append(note)
            if warn:
                warnings.warn(note, MixedModelBoundaryWarning, stacklevel=2)
        return simpler
    _require_converged(fit)
    msg += "; kept as is"
    if warn:
        warnings.warn(msg, MixedModelBoundaryWarning, stacklevel=2)
    fit.notes.insert(0, msg)
    return fit


def _require_converged(fit):
    if not fit.converged:
        raise MixedModelConvergenceError(fit.failure)


def _clean_re(re_formula):
    return re_formula.strip().lstrip("~").strip()


def _describe_boundary(random):
    parts = [f"{r.component.replace('var(', 'SD(').replace('cov(', 'corr(')} = {r.sdcor:.4g}"
             for r in random.itertuples() if r.grp != "Residual"]
    return ", ".join(parts)


def _attempt(model, reml, method, start, maxiter, gtol=None):
    """One optimiser run; returns (result or None, record dict)."""
    kwargs = {} if maxiter is None else {"maxiter": maxiter}
    if gtol is not None:
        kwargs["gtol"] = gtol
    record = {"method": method, "start": "default" if start is None else "best so far",
              "loglik": np.nan, "flag": False, "grad_norm": np.nan, "seconds": np.nan,
              "warnings": "", "error": ""}
    tic = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = model.fit(reml=reml, method=method, start_params=start, **kwargs)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
            # An optimiser that breaks is an outcome of this attempt, recorded and reported;
            # the caller raises if no attempt succeeds.
            record["error"] = f"{type(exc).__name__}: {exc}"
            res = None
    record["seconds"] = time.perf_counter() - tic
    record["warnings"] = "; ".join(sorted({str(w.message).splitlines()[0][:80] for w in caught}))
    if res is None:
        return None, record
    record["loglik"] = float(res.llf)
    record["flag"] = bool(res.converged)
    record["grad_norm"] = _grad_norm(model, res)
    if not np.isfinite(record["loglik"]) or not np.isfinite(record["grad_norm"]):
        return None, record
    return res, record


def _grad_norm(model, res):
    packed = res.params_object.get_packed(use_sqrt=model.use_sqrt, has_fe=False)
    with np.errstate(all="ignore"):
        grad = model.score(packed, profile_fe=True)
    return float(np.max(np.abs(grad))) if np.size(grad) else 0.0


def _fit_checked(data, formula, groups, re_formula, reml, methods, polish, grad_tol,
                 boundary_tol, maxiter, ll_tol=1e-6):
    """Multi-optimiser fit + polish; the returned fit says whether (and how) it converged."""
    model = MixedLM.from_formula(formula, data, groups=data[groups], re_formula="~" + re_formula)
    records, fits = [], []
    for method in methods:
        res, rec = _attempt(model, reml, method, None, maxiter)
        records.append(rec)
        fits.append(res)
    ok = [i for i, r in enumerate(fits) if r is not None]
    if not ok:
        raise MixedModelConvergenceError(_fail_message(formula, re_formula, records))
    best_i = max(ok, key=lambda i: fits[i].llf)
    best, optimizer = fits[best_i], methods[best_i]
    ll_first = best.llf
    n_polish_ok, polish_gain_late = 0, 0.0
    if polish:
        # BFGS with a tight gradient tolerance from the best point; if the gradient is still
        # large, Nelder-Mead (derivative-free, crosses flat ridges) then BFGS and L-BFGS again.
        plan = [("bfgs", 1e-9), ("nm", None), ("bfgs", 1e-9), ("lbfgs", 1e-10)]
        for method, gtol in plan:
            if _grad_norm(model, best) < grad_tol * 1e-2:
                break
            start = best.params_object.get_packed(use_sqrt=model.use_sqrt, has_fe=False)
            res, rec = _attempt(model, reml, method, start, 1000, gtol)
            records.append(rec)
            fits.append(res)
            if res is None:
                continue
            n_polish_ok += 1
            if n_polish_ok > 1:
                polish_gain_late = max(polish_gain_late, res.llf - best.llf)
            # Keep the higher log-likelihood; on a tie (flat ridge) the smaller gradient.
            if res.llf > best.llf + 1e-10 or (
                    res.llf >= best.llf - 1e-10 and rec["grad_norm"] < _grad_norm(model, best)):
                best = res
    attempts = pd.DataFrame(records)
    attempts["kept"] = [f is best for f in fits]
    grad = _grad_norm(model, best)
    if best is not fits[best_i]:
        optimizer += "+polish"
    fit = _build_fit(model, best, data, formula, groups, re_formula, reml, optimizer, grad,
                     attempts, boundary_tol, best.llf - ll_first)
    if grad < grad_tol:
        # a bound, not the value: the gradient's digits at an optimum are machine noise
        fit.convergence = f"max |gradient| < {grad_tol:g}"
    elif n_polish_ok >= 2 and polish_gain_late < ll_tol and grad < 10 * grad_tol:
        # Flat ridge (typically near a boundary): the gradient is small but above tolerance,
        # and restarting different optimisers from the estimate no longer raises the
        # log-likelihood, so the estimate is a numerical maximum.
        fit.convergence = (f"log-likelihood stable under {n_polish_ok} restarts (gain < "
                           f"{ll_tol:g}); max |gradient| between {grad_tol:g} and {10 * grad_tol:g}")
        fit.notes.append(f"converged by log-likelihood stability: {fit.convergence}")
    else:
        fit.converged = False
        fit.convergence = (f"not converged: gradient {grad:.3g} >= {grad_tol:g}; "
                           f"late polish gain {polish_gain_late:.3g}")
        fit.failure = (_fail_message(formula, re_formula, records)
                       + f"\n{fit.convergence}")
    return fit


def _fail_message(formula, re_formula, records):
    table = pd.DataFrame(records).to_string(index=False)
    return (f"no optimiser brought {formula} + (~{re_formula}) to a checked optimum; "
            f"attempts:\n{table}")


def fixed_table(terms, beta, cov):
    se = np.sqrt(np.diag(cov))
    z = beta / se
    zq = stats.norm.ppf(0.975)
    return pd.DataFrame({
        "term": terms, "estimate": beta, "se": se, "z": z,
        "p": 2 * stats.norm.sf(np.abs(z)), "ci_low": beta - zq * se, "ci_high": beta + zq * se,
    })


def _fe_cov(model, res):
    """lme4's vcov: scale * (sum_g X_g' V_g^-1 X_g)^-1 with V_g = I + Z_g Psi Z_g' (relative)."""
    psi = np.asarray(res.cov_re_unscaled, float)
    info = np.zeros((model.k_fe, model.k_fe))
    for x, z in zip(model.exog_li, model.exog_re_li):
        v = np.eye(len(x)) + z @ psi @ z.T
        info += x.T @ np.linalg.solve(v, x)
    return res.scale * np.linalg.inv(info)


def _re_names(model):
    names = list(model.data.exog_re_names)
    return ["(Intercept)" if n in ("Group", "Intercept") else n for n in names]


def _bare(name):
    return name.strip("()")


def _random_table(res, names, groups):
    cov = np.asarray(res.cov_re, float)
    rows = []
    for i, a in enumerate(names):
        rows.append((f"var({_bare(a)})", groups, a, "", cov[i, i], np.sqrt(max(cov[i, i], 0.0))))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            denom = np.sqrt(cov[i, i] * cov[j, j])
            corr = cov[i, j] / denom if denom > 0 else np.nan
            label = f"cov({_bare(names[i])},{_bare(names[j])})"
            rows.append((label, groups, names[i], names[j], cov[i, j], corr))
    rows.append(("residual", "Residual", "", "", float(res.scale), np.sqrt(res.scale)))
    return pd.DataFrame(rows, columns=["component", "grp", "var1", "var2", "vcov", "sdcor"])


def _is_singular(model, res, tol):
    chol = res.params_object.get_packed(use_sqrt=True, has_fe=False)
    k = model.k_re
    lower = np.zeros((k, k))
    lower[np.tril_indices(k)] = chol[: k * (k + 1) // 2]
    return bool(np.min(np.abs(np.diag(lower))) < tol)


def _build_fit(model, res, data, formula, groups, re_formula, reml, optimizer, grad, attempts,
               boundary_tol, polish_gain):
    terms = list(model.exog_names)
    cov = _fe_cov(model, res)
    names = _re_names(model)
    k = model.k_fe + model.k_re * (model.k_re + 1) // 2 + 1
    n_obs = int(model.nobs)
    notes = []
    if polish_gain > 1e-6:
        notes.append(f"polishing raised the log-likelihood by {polish_gain:.3g} over the best "
                     "first-round optimiser")
    return MixedFit(
        fixed=fixed_table(terms, res.fe_params.to_numpy(float), cov),
        random=_random_table(res, names, groups),
        loglik=float(res.llf), reml=bool(reml), converged=True, optimizer=optimizer,
        n_obs=n_obs, n_groups=int(model.n_groups), notes=notes,
        aic=-2 * res.llf + 2 * k, bic=-2 * res.llf + np.log(n_obs) * k, grad_norm=grad,
        singular=_is_singular(model, res, boundary_tol), attempts=attempts,
        cov_fe=pd.DataFrame(cov, index=terms, columns=terms), formula=formula,
        re_formula=re_formula, groups=groups, result=res,
    )
