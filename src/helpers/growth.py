"""The study's growth model: PSS-SR over sessions by alliance pattern.

``outcome ~ time * (repaired + unrepaired) + (1 + time | participant_id)`` with ``time`` the
centred session number (reference pattern: no_rupture), written once (:class:`GrowthSpec`:
time coding, dummies, formula, design matrices) and used for fitting (:func:`fit_growth`, by
the checked mixed-model fit of :mod:`helpers.mixed` on the exact engine of :mod:`helpers.lmm`),
predicted trajectories per pattern (:class:`GrowthFit`), the likelihood-ratio test of the time x
pattern interaction (:func:`lrt_interaction`) and the power study (:func:`growth_design`,
:func:`fit_growth_lean`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special  # the chi-squared survival function without scipy.stats (0.5 s)

from helpers import lmm
from helpers.contract import PATTERN_LABELS
from helpers.mixed import (GRAD_TOL, MixedFit, MixedModelConvergenceError, convergence_failure, cr2_test,
                           fit_mixed, fit_mixed_with, linear_prediction)

#: Patterns that enter the growth model, reference first.
GROWTH_PATTERNS = tuple(PATTERN_LABELS)  # ("no_rupture", "repaired", "unrepaired")
#: The patterns with a dummy (and a time interaction) in the model; no_rupture is the reference.
PATTERN_TERMS = GROWTH_PATTERNS[1:]
#: The term whose test the power study counts: the unrepaired clients' extra slope per session.
UNREPAIRED_SLOPE = "time:unrepaired"


# --------------------------------------------------------------------------------------------
# the model, written once
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GrowthSpec:
    """The growth model's specification: what every route fits, predicts and tests.

    Attributes
    ----------
    outcome : str
        Session-level outcome column (PSS-SR by default).
    time_center : float, "mid", "mean", "first" or None
        Session that ``time = 0`` stands for (:meth:`center`); "mid" (default) is the middle of
        the observed session range (5.5 for sessions 1-10), which makes the intercept and slope
        nearly uncorrelated; None keeps the session number.
    interaction : bool
        Include time x pattern (False: the reduced model of :func:`lrt_interaction`).
    random_slope : bool
        ``(1 + time | participant_id)`` (default) or a random intercept only.
    groups : str
        The grouping column.

    Examples
    --------
    >>> GrowthSpec().model_formula(("repaired", "unrepaired"))
    'pss_sr ~ time * (repaired + unrepaired) + (1 + time | participant_id)'
    """

    outcome: str = "pss_sr"
    time_center: float | str | None = "mid"
    interaction: bool = True
    random_slope: bool = True
    groups: str = "participant_id"

    @property
    def re_formula(self) -> str:
        """The random effects of the full structure (``"1 + time"`` or ``"1"``)."""
        return "1 + time" if self.random_slope else "1"

    def center(self, session) -> float:
        """The session number ``time = 0`` stands for, given the observed ``session`` numbers."""
        rule = self.time_center
        if rule is None:
            return 0.0
        if isinstance(rule, str):
            if rule == "mid":
                return float((session.min() + session.max()) / 2)
            if rule == "mean":
                return float(session.mean())
            if rule == "first":
                return float(session.min())
            raise ValueError(f"time_center must be a number, 'mid', 'mean', 'first' or None, not {rule!r}")
        return float(rule)

    def formula(self, present=PATTERN_TERMS) -> str:
        """The fixed effects as a formula, with the pattern terms ``present`` in the data."""
        if not present:
            return f"{self.outcome} ~ time"
        pats = " + ".join(present)
        return f"{self.outcome} ~ time * ({pats})" if self.interaction else f"{self.outcome} ~ time + {pats}"

    def model_formula(self, present=PATTERN_TERMS, re_formula=None) -> str:
        """The whole model in lme4's notation."""
        return f"{self.formula(present)} + ({re_formula or self.re_formula} | {self.groups})"

    @staticmethod
    def dummies(pattern) -> dict:
        """Pattern term -> its 0/1 column for the patterns ``pattern`` (one per observation)."""
        pattern = np.asarray(pattern, dtype=object)
        return {p: (pattern == p).astype(float) for p in PATTERN_TERMS}

    def fixed_design(self, time, dummies: dict, present=None):
        """The fixed-effects design and its column names: Intercept, time, the pattern terms
        ``present`` (default: those with a 1 in ``dummies``) and their time interactions; the
        columns lmm's formula route stacks for :meth:`formula` (products of columns, in its
        order), bit for bit."""
        present = [p for p in PATTERN_TERMS if dummies[p].any()] if present is None else list(present)
        cols, names = [np.ones(len(time)), time, *(dummies[p] for p in present)], ["Intercept", "time", *present]
        if self.interaction:
            cols += [np.prod([time, dummies[p]], axis=0) for p in present]
            names += [f"time:{p}" for p in present]
        return np.column_stack(cols), names

    @staticmethod
    def random_design(time, re_formula):
        """The random-effects design of ``re_formula`` (``"1 + time"`` or ``"1"``) and its names."""
        if re_formula == "1 + time":
            return np.column_stack([np.ones(len(time)), time]), ["(Intercept)", "time"]
        return np.column_stack([np.ones(len(time))]), ["(Intercept)"]

    def slope_pairs(self) -> list:
        """(level term, its slope term) pairs: what moves when the time origin moves."""
        return [("Intercept", "time"), *((p, f"time:{p}") for p in PATTERN_TERMS)]


@dataclass
class GrowthFit(MixedFit):
    """:class:`MixedFit` of the growth model, with the time coding needed to map back.

    Extra attributes
    ----------------
    outcome : str
    time_center : float
        ``time = session - time_center``: the intercept and the pattern main effects are the
        levels (and group differences) at session ``time_center``; slopes are per session.
    sessions_range : tuple of int
        (first, last) session observed.
    pattern_counts : dict
        Participants per pattern in the fit.
    spec : GrowthSpec
        The model that was fitted.
    """

    outcome: str = "pss_sr"
    time_center: float = 0.0
    sessions_range: tuple = (1, 10)
    pattern_counts: dict = field(default_factory=dict)
    spec: GrowthSpec = field(default_factory=GrowthSpec)

    @property
    def present(self) -> tuple:
        """The pattern terms in the fit (a pattern nobody has is left out)."""
        terms = set(self.fixed["term"])
        return tuple(p for p in PATTERN_TERMS if p in terms)

    @property
    def model_formula(self) -> str:
        """The fitted model in lme4's notation, its random structure the one kept, e.g.
        ``"pss_sr ~ time * (repaired + unrepaired) + (1 + time | participant_id)"``."""
        return self.spec.model_formula(self.present, self.re_formula)

    @property
    def time_coding(self) -> str:
        """How ``time`` was coded, e.g. ``"time = session - 5.5"``."""
        return f"time = session - {self.time_center:g}"

    def _design(self, session, pattern):
        t = np.asarray(session, float) - self.time_center
        X, names = self.spec.fixed_design(t, self.spec.dummies(pattern), self.present)
        if names != list(self.fixed["term"]):
            raise ValueError(f"design {names} does not match the fit's terms {list(self.fixed['term'])}")
        return X

    def predicted_trajectories(self, sessions=None, *, level=0.95) -> pd.DataFrame:
        """Predicted mean outcome per pattern and session, with Wald CIs.

        Parameters
        ----------
        sessions : sequence of int, optional
            Defaults to every session from the first to the last observed.
        level : float

        Returns
        -------
        DataFrame
            pattern, session, estimate, se, ci_low, ci_high (fixed-effects uncertainty);
            only the patterns present in the fit.
        """
        if sessions is None:
            sessions = np.arange(self.sessions_range[0], self.sessions_range[1] + 1)
        present = [p for p in GROWTH_PATTERNS if self.pattern_counts.get(p, 0) > 0]
        grid = pd.DataFrame(
            [(p, s) for p in present for s in sessions], columns=["pattern", "session"]
        )
        x = self._design(grid["session"], grid["pattern"])
        return linear_prediction(grid, x, self, level)

    def fixed_at(self, session: float) -> pd.DataFrame:
        """The fixed-effects table re-expressed with time origin at ``session``.

        Intercept and pattern main effects become levels/differences at ``session``
        (``b0 + b_time * (session - time_center)`` etc.), with SEs from ``cov_fe`` and the
        Satterthwaite df of each combination; slopes are unchanged. Equivalent to refitting
        with ``time_center=session``.
        """
        terms = list(self.fixed["term"])
        shift = session - self.time_center
        lmat = np.eye(len(terms))
        for main, slope in self.spec.slope_pairs():
            if main in terms and slope in terms:
                lmat[terms.index(main), terms.index(slope)] = shift
        return self.contrast(lmat, terms)


# --------------------------------------------------------------------------------------------
# the project's growth model
# --------------------------------------------------------------------------------------------
def growth_data(sessions, patterns, *, outcome="pss_sr", time_center="mid",
                pattern_col="pattern"):
    """Long analysis table for the growth model (classifiable participants, observed outcome).

    Returns
    -------
    data : DataFrame
        participant_id, session, time, pattern, repaired, unrepaired, ``outcome``.
    center : float
        The session number that ``time = 0`` stands for.
    n_missing : int
        Session rows of classifiable participants dropped for a missing outcome.
    """
    spec = GrowthSpec(outcome=outcome, time_center=time_center)
    pats = patterns[["participant_id", pattern_col]].rename(columns={pattern_col: "pattern"})
    pats = pats.assign(participant_id=pats["participant_id"].astype(str),
                       pattern=pats["pattern"].astype(str))
    pats = pats[pats["pattern"].isin(GROWTH_PATTERNS)]
    ses = sessions[["participant_id", "session", outcome]].copy()
    ses["participant_id"] = ses["participant_id"].astype(str)
    d = ses.merge(pats, on="participant_id", how="inner", validate="many_to_one")
    n_missing = int(d[outcome].isna().sum())
    d = d[d[outcome].notna()].copy()
    if d.empty:
        raise ValueError("no observed outcome among classifiable participants")
    d["session"] = d["session"].astype(float)
    center = spec.center(d["session"])
    d["time"] = d["session"] - center
    d[outcome] = d[outcome].astype(float)
    for p, column in spec.dummies(d["pattern"]).items():
        d[p] = column
    d = d.sort_values(["participant_id", "session"], kind="mergesort").reset_index(drop=True)
    return d, center, n_missing


def _growth_arrays(sessions, patterns, spec, pattern_col):
    """:func:`growth_data`'s rows as arrays, with the grouping of :func:`helpers.lmm.fit_lmm`.

    The same rows in the same order (participant id as text, then session), the same values
    (``y``, ``time``, the pattern dummies), ``center``, ``n_missing``, and the groups as
    ``helpers.lmm.fit_lmm`` codes them (sorted ``levels``, ``codes``), plus ``sessions_range``
    and ``pattern_counts`` as :func:`fit_growth` reads them off the table. ``None`` where the
    table's route is not sure to give the same (a non-numeric session or outcome, a missing
    session, a repeated session, ``time_center="mean"`` whose sum runs in the merge's order,
    a participant with two patterns, nothing to fit, ...): the caller then takes that route,
    with its errors.
    """
    time_center = spec.time_center
    if pattern_col == "participant_id" or not (
            time_center is None or time_center in ("mid", "first")
            or isinstance(time_center, (int, float, np.integer, np.floating))):
        return None
    try:
        pid_p = patterns["participant_id"].astype(str).to_numpy()
        pat = patterns[pattern_col].astype(str).to_numpy()
        ses_col, y_col = sessions["session"], sessions[spec.outcome]
        sid = sessions["participant_id"].astype(str).to_numpy()
    except Exception:  # noqa: BLE001 -- the table route raises it
        return None
    if not (isinstance(ses_col, pd.Series) and isinstance(y_col, pd.Series)
            and ses_col.dtype.kind in "iuf" and y_col.dtype.kind in "iuf"):
        return None
    wanted = set(GROWTH_PATTERNS)
    keep = [x in wanted for x in pat]
    mapping = dict(zip(pid_p[keep], pat[keep]))
    if len(mapping) != sum(keep):  # a participant listed twice: the merge raises
        return None
    codes_u, uniques = pd.factorize(sid)
    uniques = list(uniques)
    levels = sorted(u for u in uniques if u in mapping)  # pandas' sort of the ids as text
    rank = {u: i for i, u in enumerate(levels)}
    codes = np.array([rank.get(u, -1) for u in uniques], dtype=np.intp)[codes_u]
    inner = codes >= 0
    y = y_col.to_numpy(float)[inner]
    observed = ~np.isnan(y)
    n_missing = int(y.size - observed.sum())
    session = ses_col.to_numpy(float)[inner][observed]
    codes = codes[inner][observed]
    if session.size == 0 or np.isnan(session).any():
        return None
    order = np.lexsort((session, codes))  # stable, as the table's mergesort
    session, codes, y = session[order], codes[order], y[observed][order]
    if ((codes[1:] == codes[:-1]) & (session[1:] == session[:-1])).any():
        return None  # repeated sessions: their order would rest on the merge's
    used, codes = np.unique(codes, return_inverse=True)
    codes = codes.astype(np.intp).reshape(-1)
    levels = np.array(levels, dtype=object)[used]
    level_pattern = np.array([mapping[u] for u in levels], dtype=object)
    center = spec.center(session)
    return {"y": y, "time": session - center, "levels": levels, "codes": codes,
            "center": center, "n_missing": n_missing,
            "sessions_range": (int(session.min()), int(session.max())),
            "pattern_counts": {p: int((level_pattern == p).sum()) for p in GROWTH_PATTERNS},
            "dummies": spec.dummies(level_pattern[codes])}


def fit_growth(sessions, patterns, *, outcome="pss_sr", reml=True, time_center="mid",
               interaction=True, random_slope=True, pattern_col="pattern",
               on_boundary="simplify", grad_tol=GRAD_TOL, boundary_tol=1e-4,
               warn=True) -> GrowthFit:
    """Session-by-session growth model of the outcome by alliance pattern.

    ``outcome ~ time * (repaired + unrepaired) + (1 + time | participant_id)`` on the
    participants classified no_rupture, repaired or unrepaired (reference: no_rupture), with
    ``time = session - time_center`` (:class:`GrowthSpec`); fitted by
    :func:`helpers.mixed.fit_mixed` (exact REML/ML of :mod:`helpers.lmm`, gradient-checked
    convergence, Satterthwaite df, boundary refit with a random intercept only).

    Parameters
    ----------
    sessions : DataFrame
        participant_id, session and the ``outcome`` column (long).
    patterns : DataFrame
        participant_id and ``pattern_col``; participants not classifiable are left out.
    outcome, time_center, interaction, random_slope
        The model (:class:`GrowthSpec`). The intercept and pattern main effects are
        levels/differences at session ``time_center``; ``GrowthFit.fixed_at(s)`` re-expresses
        them at any session ``s``.
    reml : bool
    pattern_col, on_boundary, grad_tol, boundary_tol, warn
        See :func:`fit_mixed`.

    Returns
    -------
    GrowthFit
        With the model as text (``model_formula``) and the time coding used (``time_center``,
        ``time_coding``).

    Raises
    ------
    MixedModelConvergenceError
    """
    spec = GrowthSpec(outcome=outcome, time_center=time_center, interaction=interaction,
                      random_slope=random_slope)
    long = _growth_arrays(sessions, patterns, spec, pattern_col)
    if long is None:  # what the arrays do not reproduce for sure: the tables' route
        return _fit_growth_tables(sessions, patterns, spec, reml=reml, pattern_col=pattern_col,
                                  on_boundary=on_boundary, grad_tol=grad_tol,
                                  boundary_tol=boundary_tol, warn=warn)
    if on_boundary not in ("simplify", "keep"):
        raise ValueError(f"on_boundary must be 'simplify' or 'keep', not {on_boundary!r}")
    X, x_names = spec.fixed_design(long["time"], long["dummies"])
    present = tuple(p for p in PATTERN_TERMS if p in x_names)
    index = pd.RangeIndex(len(long["time"]))

    def fitter(re_formula):
        Z, z_names = spec.random_design(long["time"], re_formula)
        return lmm.fit_lmm_coded(long["y"], X, Z, long["levels"], long["codes"], reml, x_names,
                                 z_names, spec.groups, True, 0.95, grad_tol, index)

    fit = fit_mixed_with(fitter, spec.formula(present), spec.groups, spec.re_formula, grad_tol=grad_tol,
                         boundary_tol=boundary_tol, on_boundary=on_boundary, simple_re_formula="1", warn=warn)
    return _growth_result(fit, spec, long["center"], long["sessions_range"], long["pattern_counts"],
                          present, long["n_missing"])


def _fit_growth_tables(sessions, patterns, spec, *, reml=True, pattern_col="pattern",
                       on_boundary="simplify", grad_tol=GRAD_TOL, boundary_tol=1e-4,
                       warn=True) -> GrowthFit:
    """:func:`fit_growth` through the long table of :func:`growth_data` and the formula route
    of :func:`helpers.mixed.fit_mixed` (the general route; the arrays of
    :func:`_growth_arrays` give the same numbers bit for bit, tests/test_growth_fast.py)."""
    d, center, n_missing = growth_data(sessions, patterns, outcome=spec.outcome,
                                       time_center=spec.time_center, pattern_col=pattern_col)
    present = tuple(p for p in PATTERN_TERMS if d[p].any())
    fit = fit_mixed(d, spec.formula(present), spec.groups, spec.re_formula, reml=reml, grad_tol=grad_tol,
                    boundary_tol=boundary_tol, on_boundary=on_boundary, warn=warn)
    counts = d.groupby("participant_id")["pattern"].first().value_counts()
    return _growth_result(fit, spec, center,
                          (int(d["session"].min()), int(d["session"].max())),
                          {p: int(counts.get(p, 0)) for p in GROWTH_PATTERNS}, present,
                          n_missing)


def _growth_result(fit, spec, center, sessions_range, pattern_counts, present, n_missing):
    growth = GrowthFit(**{f: getattr(fit, f) for f in MixedFit.__dataclass_fields__},
                       outcome=spec.outcome, time_center=center, sessions_range=sessions_range,
                       pattern_counts=pattern_counts, spec=spec)
    growth.notes = list(fit.notes)
    growth.notes.append(
        f"{growth.time_coding}: Intercept and pattern terms are levels/differences at "
        f"session {center:g}; slopes are per session (use fixed_at(s) for another session)")
    missing = [p for p in PATTERN_TERMS if p not in present]
    if missing:
        growth.notes.append(f"no participant with pattern {missing}: terms left out")
    if n_missing:
        growth.notes.append(f"{n_missing} session rows with missing {spec.outcome} left out "
                            "(the model uses every observed session)")
    return growth


def growth_design(scores, pattern, *, sessions=None, spec=None):
    """The arrays :func:`fit_growth` fits, built from a wide outcome matrix without tables.

    For the growth model's power study, which fits it to thousands of simulated trials: the
    same rows, columns, time coding and dropped rows as :func:`growth_data` and the design of
    :func:`helpers.lmm.fit_lmm` give for the long table of these scores (bit for bit; tested
    against :func:`fit_growth`).

    Parameters
    ----------
    scores : array_like
        ``participants x sessions`` outcome scores, NaN where missing; rows in participant-id
        order (the order of the long table's sorted ids), columns in session order.
    pattern : array_like of str
        Pattern of each row; rows not in :data:`GROWTH_PATTERNS` are left out.
    sessions : array_like, optional
        Session number of each column (default ``1..n_columns``), ascending.
    spec : GrowthSpec, optional
        The model (default :class:`GrowthSpec`'s: the study's).

    Returns
    -------
    dict
        ``y``, ``X`` (columns ``x_names``: Intercept, time, the patterns present, their time
        interactions), ``time``, ``groups`` (row index of each observation's participant),
        ``x_names``, ``formula`` (the fixed effects), ``center``, ``pattern_counts``, ``spec``.

    Raises
    ------
    ValueError
        No observed outcome among classifiable participants (as :func:`growth_data`).
    """
    spec = spec or GrowthSpec()
    y_wide = np.asarray(scores, dtype=float)
    pattern = np.asarray(pattern, dtype=object)
    if sessions is None:
        sessions = np.arange(1, y_wide.shape[1] + 1)
    keep = np.isin(pattern, GROWTH_PATTERNS)
    # row-major nonzero: by participant, then session -- growth_data's sort order
    rows, cols = np.nonzero(keep[:, None] & ~np.isnan(y_wide))
    if rows.size == 0:
        raise ValueError("no observed outcome among classifiable participants")
    session = np.asarray(sessions, dtype=float)[cols]
    center = spec.center(session)
    time = session - center
    X, names = spec.fixed_design(time, spec.dummies(pattern[rows]))
    first = np.unique(rows)
    counts = {p: int((pattern[first] == p).sum()) for p in GROWTH_PATTERNS}
    present = tuple(p for p in PATTERN_TERMS if p in names)
    return {"y": y_wide[rows, cols], "X": X, "time": time, "groups": rows, "x_names": names,
            "formula": spec.formula(present), "center": center, "pattern_counts": counts, "spec": spec}


def fit_growth_lean(designs, *, reml=True, grad_tol=GRAD_TOL, boundary_tol=1e-4) -> list:
    """:func:`fit_growth` of many :func:`growth_design` designs at once, lean results.

    The fits of :func:`fit_growth` (the spec's random intercept and slope; a singular fit --
    a diagonal entry of Lambda below ``boundary_tol`` -- refitted with a random intercept, as
    :func:`helpers.mixed.fit_mixed` does), computed by :func:`helpers.lmm.fit_lmm_lean`: the
    same numbers, no tables.

    Returns
    -------
    list
        Per design a dict -- ``fit`` (:class:`helpers.lmm.LeanFit` of the kept model),
        ``re_formula`` (``"1 + time"`` or ``"1"``), ``simplified`` (a singular random-slope
        fit was refitted) -- or the exception :func:`fit_growth` raises on that trial (an
        invalid model, a failed factorisation, a kept fit that did not converge).
    """
    def fit_all(indices, re_formula):
        return lmm.fit_lmm_lean([(designs[i]["y"], designs[i]["X"],
                                  designs[i]["spec"].random_design(designs[i]["time"], re_formula)[0],
                                  designs[i]["groups"]) for i in indices], reml=reml, grad_tol=grad_tol)

    out = [None] * len(designs)
    simplify = []
    for i, fit in enumerate(fit_all(range(len(designs)), "1 + time")):
        if not isinstance(fit, Exception) and np.min(fit.lambda_diag) < boundary_tol:
            simplify.append(i)
        else:
            out[i] = _kept(designs[i], fit, "1 + time", False, grad_tol)
    for i, fit in zip(simplify, fit_all(simplify, "1")):
        out[i] = _kept(designs[i], fit, "1", True, grad_tol)
    return out


def _kept(design, fit, re_formula, simplified, grad_tol):
    """The lean fit :func:`fit_growth` keeps, or the error it raises instead."""
    if isinstance(fit, Exception):
        return fit
    if not fit.converged:
        return MixedModelConvergenceError(convergence_failure(
            design["formula"], re_formula, design["spec"].groups, fit.grad_norm, grad_tol, fit.message))
    return {"fit": fit, "re_formula": re_formula, "simplified": simplified}


def term_cr2(design, result, term, *, level=0.95) -> dict:
    """CR2 test of one fixed effect of a :func:`fit_growth_lean` fit of a :func:`growth_design`.

    The fit's own GLS estimate with a cluster-robust SE and Bell-McCaffrey df
    (:func:`helpers.mixed.cr2_test`) under the random structure the fit kept.

    Returns
    -------
    dict
        ``estimate``, ``se``, ``df``, ``t``, ``p``, ``ci_low``, ``ci_high`` (floats), or None
        when ``term`` is not in the design (no client of its pattern).
    """
    if term not in design["x_names"]:
        return None
    fit = result["fit"]
    Z = design["spec"].random_design(design["time"], result["re_formula"])[0]
    contrast = np.eye(len(design["x_names"]))[design["x_names"].index(term)]
    out = cr2_test(design["y"], design["X"], Z, design["groups"], fit.estimate, fit.lam, fit.sigma,
                   contrast, level=level)
    return {k: float(v[0]) for k, v in out.items()}


def lrt_interaction(sessions, patterns, *, outcome="pss_sr", time_center="mid",
                    pattern_col="pattern", warn=True) -> pd.DataFrame:
    """Likelihood-ratio test of the time x pattern interaction (ML fits).

    Both models use the random structure the full model supports (the random-intercept-only
    structure when the full random-slope fit is on the boundary), so they differ only in the
    fixed effects.

    Returns
    -------
    DataFrame
        One row per model (reduced, full): model, formula, re_formula, loglik, n_params, aic,
        bic, n_obs, n_groups, and on the full row chi2, df, p.
    """
    common = dict(outcome=outcome, time_center=time_center,
                  pattern_col=pattern_col, reml=False, warn=warn)
    full = fit_growth(sessions, patterns, interaction=True, **common)
    slope = full.re_formula != "1"
    reduced = fit_growth(sessions, patterns, interaction=False, random_slope=slope,
                         on_boundary="keep", **common)
    rows = []
    for name, f in (("reduced", reduced), ("full", full)):
        k = len(f.fixed) + len(f.random)
        rows.append({"model": name, "formula": f.formula, "re_formula": f.re_formula,
                     "loglik": f.loglik, "n_params": k, "aic": f.aic, "bic": f.bic,
                     "n_obs": f.n_obs, "n_groups": f.n_groups})
    out = pd.DataFrame(rows)
    chi2 = max(2 * (full.loglik - reduced.loglik), 0.0)
    df = int(out["n_params"].iloc[1] - out["n_params"].iloc[0])
    out["chi2"] = [np.nan, chi2]
    out["df"] = [np.nan, df]
    out["p"] = [np.nan, special.chdtrc(df, chi2)]
    out["notes"] = ["; ".join(reduced.notes), "; ".join(full.notes)]
    return out
