"""Summaries of the power study (:mod:`helpers.power`): performance measures with Monte-Carlo
SEs, the N needed for 80% power and a recommendation sentence (the figures are in
:mod:`helpers.figures`).

Every function takes the tidy replication table of :func:`helpers.power.run_replications`
(one row per replication x criterion, sorted by key) and returns a tidy DataFrame with one
row per sample size x criterion. Rows are visited in the design's order and aggregated with
numpy on arrays sorted by replication, so the numbers do not depend on how the replications
were distributed over workers.

Performance measures (Morris, White & Crowther, 2019, Table 6), over the ``k`` replications
in which the beta was estimable (someone and not everyone classified unrepaired):

* bias = mean(beta_hat) - theta, MC SE = SD(beta_hat) / sqrt(k);
* empirical SE = SD(beta_hat), MC SE = empSE / sqrt(2 (k - 1));
* coverage of the 95% CI = share of CIs containing theta, MC SE = sqrt(c (1 - c) / k);
* power = share of the ``R`` successful replications with p < alpha (a replication in which
  the beta is not estimable counts as not significant: the test could not be done), MC SE =
  sqrt(P (1 - P) / R).

References
----------
Morris, T. P., White, I. R., & Crowther, M. J. (2019). Using simulation studies to evaluate
statistical methods. Statistics in Medicine, 38(11), 2074-2102.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import special  # quantiles as scipy.stats computes them, without scipy.stats (0.5 s)

from helpers import paper
from helpers.contract import PATTERN_LABELS, TRUE_PATTERN

#: The model-based patterns' criterion name (:data:`helpers.power.MODEL`).
MODEL = "model"

#: The paper's standardised beta of an unrepaired rupture.
PAPER_BETA = paper.BETA["beta"]

def _mcse_mean(x) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return np.nan, np.nan
    se = float(np.std(x, ddof=1) / math.sqrt(x.size)) if x.size > 1 else np.nan
    return float(np.mean(x)), se


def _share(hits, n) -> tuple[float, float]:
    if n == 0:
        return np.nan, np.nan
    p = hits / n
    return float(p), float(math.sqrt(p * (1 - p) / n))


def _groups(replications, failures, design):
    """(N, criterion, rows of that cell, failed replications at N) in the design's order."""
    for n in design.sample_sizes:
        at_n = replications[replications["n_participants"] == n]
        n_failed = int((failures["n_participants"] == n).sum()) if len(failures) else 0
        for name in design.criteria:
            cell = at_n[at_n["preset"] == name].sort_values("rep", kind="mergesort")
            if cell.empty and name == MODEL:  # the model-based patterns run at some sizes only
                continue
            yield n, name, cell, n_failed


def summarise_beta(replications: pd.DataFrame, failures: pd.DataFrame, design, *, theta: float,
                   theta_b: float = np.nan, alpha: float = 0.05, reference: pd.DataFrame | None = None,
                   paper_beta: float = PAPER_BETA) -> pd.DataFrame:
    """Bias, empirical SE, CI coverage and power of the unrepaired-rupture beta.

    Parameters
    ----------
    replications : DataFrame
        :data:`helpers.power.MC_ROW_COLUMNS` rows.
    failures : DataFrame
        Failed replications (n_participants, rep, seed, error).
    design : helpers.power.StudyDesign
        Gives the sample sizes and criteria (and their order).
    theta : float
        The true beta (see :mod:`helpers.power`): bias and coverage are measured against it.
    theta_b : float, optional
        The true unstandardised coefficient (PSS points), for ``b_bias`` and ``coverage_b``:
        the CI of the standardised beta is the CI of b scaled by the sample SDs, which ignores
        their sampling error, so it covers less often than the CI of b.
    alpha : float
        Two-sided level of the test whose power is estimated.
    reference : DataFrame, optional
        :func:`helpers.power.reference_values`; adds ``beta_large_sample``.
    paper_beta : float
        The paper's beta (.45): ``diff_vs_paper = beta_mean - paper_beta``.

    Returns
    -------
    DataFrame
        n_participants, preset, n_replications (successful + failed), n_failed,
        n_not_estimable, mean_n_analysed, mean_n_unrepaired, theta, beta_large_sample,
        beta_mean, bias, bias_mcse, diff_vs_paper, emp_se, emp_se_mcse, model_se (mean SE of
        beta), rmse, coverage, coverage_mcse, theta_b, b_mean, b_bias, b_bias_mcse,
        coverage_b, coverage_b_mcse, coverage_b_hc3, coverage_b_hc3_mcse (CI of b with the HC3
        SE, over the replications where HC3 is defined), power, power_mcse (the paper's OLS t
        test), power_hc3, power_hc3_mcse (the same test with the HC3 SE; undefined HC3 counts
        as not significant), alpha.
    """
    large = (reference.set_index("preset")["beta"] if reference is not None else pd.Series(dtype=float))
    rows = []
    for n, name, cell, n_failed in _groups(replications, failures, design):
        est = cell[cell["estimable"].astype(bool)]
        beta = est["beta"].to_numpy(dtype=float)
        k, n_ok = beta.size, len(cell)
        beta_mean, bias_mcse = _mcse_mean(beta)
        emp_se = float(np.std(beta, ddof=1)) if k > 1 else np.nan
        covered = int(((est["beta_ci_low"] <= theta) & (theta <= est["beta_ci_high"])).sum())
        coverage, coverage_mcse = _share(covered, k)
        power, power_mcse = _share(int((est["p"] < alpha).sum()), n_ok)
        b_mean, b_mcse = _mcse_mean(est["b"])
        covered_b = int(((est["b_ci_low"] <= theta_b) & (theta_b <= est["b_ci_high"])).sum())
        coverage_b, coverage_b_mcse = _share(covered_b, k)
        hc3 = est[est["b_hc3_ci_low"].notna()]  # HC3 is undefined with a leverage-1 client
        covered_hc3 = int(((hc3["b_hc3_ci_low"] <= theta_b) & (theta_b <= hc3["b_hc3_ci_high"])).sum())
        coverage_b_hc3, coverage_b_hc3_mcse = _share(covered_hc3, len(hc3))
        power_hc3, power_hc3_mcse = _share(int((est["p_hc3"] < alpha).sum()), n_ok)
        rows.append({
            "n_participants": n, "preset": name, "n_replications": n_ok + n_failed,
            "n_failed": n_failed, "n_not_estimable": n_ok - k,
            "mean_n_analysed": _mcse_mean(cell["n_analysed"])[0],
            "mean_n_unrepaired": _mcse_mean(cell["n_unrepaired"])[0],
            "theta": theta, "beta_large_sample": float(large.get(name, np.nan)),
            "beta_mean": beta_mean, "bias": beta_mean - theta, "bias_mcse": bias_mcse,
            "diff_vs_paper": beta_mean - paper_beta,
            "emp_se": emp_se, "emp_se_mcse": emp_se / math.sqrt(2 * (k - 1)) if k > 1 else np.nan,
            "model_se": _mcse_mean(est["beta_se"])[0],
            "rmse": float(np.sqrt(np.mean((beta - theta) ** 2))) if k else np.nan,
            "coverage": coverage, "coverage_mcse": coverage_mcse,
            "theta_b": theta_b, "b_mean": b_mean, "b_bias": b_mean - theta_b, "b_bias_mcse": b_mcse,
            "coverage_b": coverage_b, "coverage_b_mcse": coverage_b_mcse,
            "coverage_b_hc3": coverage_b_hc3, "coverage_b_hc3_mcse": coverage_b_hc3_mcse,
            "power": power, "power_mcse": power_mcse, "power_hc3": power_hc3,
            "power_hc3_mcse": power_hc3_mcse, "alpha": alpha,
        })
    return pd.DataFrame(rows)


def summarise_accuracy(replications: pd.DataFrame, failures: pd.DataFrame, design) -> pd.DataFrame:
    """Detection accuracy against the true patterns: mean over replications with MC SEs.

    Returns
    -------
    DataFrame
        n_participants, preset, n_replications, n_failed, mean_n_classifiable, kappa,
        kappa_mcse, agreement, agreement_mcse, and for every pattern sens_<pattern>,
        sens_<pattern>_mcse, spec_<pattern>, spec_<pattern>_mcse (proportions; a replication
        without a true member of a pattern has no sensitivity for it and is left out of that
        mean). The oracle is not listed (it agrees with itself).
    """
    rows = []
    for n, name, cell, n_failed in _groups(replications, failures, design):
        if name == TRUE_PATTERN:
            continue
        row = {"n_participants": n, "preset": name, "n_replications": len(cell) + n_failed,
               "n_failed": n_failed, "mean_n_classifiable": _mcse_mean(cell["n_classifiable"])[0]}
        cols = ["kappa", "agreement", *[f"{m}_{p}" for p in PATTERN_LABELS for m in ("sens", "spec")]]
        for col in cols:
            row[col], row[f"{col}_mcse"] = _mcse_mean(cell[col])
        rows.append(row)
    return pd.DataFrame(rows)


def _probit(p, n_ok):
    """Probit of the powers ``p`` (any shape; the last axis runs over sample sizes).

    P = 0 or 1 has no probit: clipped to half a replication from the edge (1 / 2R, R =
    ``n_ok`` at that size). ``scipy.special.ndtri`` is what ``scipy.stats.norm.ppf``
    computes, without its per-call argument checks (the bootstrap calls it on arrays).
    """
    lo = 0.5 / np.maximum(np.asarray(n_ok, dtype=float), 1)
    return special.ndtri(np.clip(p, lo, 1 - lo))


#: Codes of the ways :func:`interpolate_many` obtained N (index into this tuple).
STATUSES = ("interpolated", "extrapolated below smallest N", "extrapolated above largest N", "not estimable")


def interpolate_n(sizes, power, n_ok, target: float = 0.8, alpha: float = 0.05) -> tuple:
    """N at which ``power`` first reaches ``target``.

    * **Interpolated** between the bracketing sizes, linearly in ``probit(power)`` against
      ``sqrt(N)``: for a test of a fixed effect with SE proportional to 1 / sqrt(n), power =
      Phi(delta sqrt(n) - z_{1-alpha/2}), so the probit of power is linear in sqrt(n) (and the
      analysed n is proportional to the enrolled N).
    * **Extrapolated** when the target is already reached at the smallest N (or not yet at
      the largest): through the power at that N with the same normal approximation and its
      known intercept, ``delta = (probit(P) + z_{1-alpha/2}) / sqrt(N)``,
      ``N_target = ((z_target + z_{1-alpha/2}) / delta)^2``. A model-based guess; the status
      says so.

    Powers of 0 or 1 are clipped to 1 / (2R) from the edge (R = replications at that N),
    which moves the estimate towards larger N (conservative).

    Returns
    -------
    (n, status, n_low, n_high)
        status "interpolated", "extrapolated below smallest N", "extrapolated above largest
        N" or "not estimable" (n = NaN); n_low / n_high are the sizes used (-1 when none).

    Examples
    --------
    >>> n, status, lo, hi = interpolate_n([100, 400], [0.5, 0.975], [1000, 1000])
    >>> round(n), status, lo, hi   # sqrt(N) = 10 + (0.8416 - 0) / (1.96 - 0) * (20 - 10) = 14.29
    (204, 'interpolated', 100, 400)
    >>> n, status, lo, hi = interpolate_n([100, 400], [0.975, 1.0], [1000, 1000])
    >>> round(n), status   # delta = 3.92 / 10: 80% power at ((0.84 + 1.96) / 0.392)^2
    (51, 'extrapolated below smallest N')
    """
    n, code, lo, hi = interpolate_many(sizes, np.asarray(power, dtype=float)[None, :], n_ok, target, alpha)
    return float(n[0]), STATUSES[code[0]], int(lo[0]), int(hi[0])


def interpolate_many(sizes, power, n_ok, target: float = 0.8, alpha: float = 0.05) -> tuple:
    """:func:`interpolate_n` of every row of ``power`` (draws x sizes) at once.

    Returns
    -------
    n : ndarray of float
    status : ndarray of int
        Index into :data:`STATUSES`.
    n_low, n_high : ndarray of int
        Sizes used (-1 when none).
    """
    sizes = np.asarray(sizes, dtype=float)
    power = np.atleast_2d(np.asarray(power, dtype=float))
    rows = np.arange(power.shape[0])
    last = sizes.size - 1
    zt, za = special.ndtri(target), special.ndtri(1 - alpha / 2)
    z = _probit(power, n_ok)
    root = np.sqrt(sizes)
    reached = power >= target
    first = np.where(reached.any(axis=1), reached.argmax(axis=1), -1)
    # one end: through the power at the smallest (target reached there) or the largest N
    end = np.where(first == 0, 0, last)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (z[rows, end] + za) / root[end]
        through = np.where(delta > 0, ((zt + za) / delta) ** 2, np.nan)
        # between the last size below the target and the first at or above it (rows with
        # first > 0; the others compute a value that is not used, on columns padded by one)
        i1 = np.maximum(first, 1)
        zp = np.pad(z, ((0, 0), (0, 1)), constant_values=np.nan)
        rp, sp = np.append(root, np.nan), np.append(sizes, -1)
        z0, z1 = zp[rows, i1 - 1], zp[rows, i1]
        frac = np.where(z1 > z0, (zt - z0) / (z1 - z0), 1.0)
        between = (rp[i1 - 1] + frac * (rp[i1] - rp[i1 - 1])) ** 2
    inside = first > 0
    n = np.where(inside, between, through)
    status = np.where(inside, 0, np.where(first == 0, 1, 2))
    status = np.where(np.isfinite(n), status, 3)
    lo = np.where(inside, sp[i1 - 1], np.where(first == 0, -1, sizes[last])).astype(int)
    hi = np.where(inside, sp[i1], np.where(first == 0, sizes[0], -1)).astype(int)
    bad = np.isnan(power).any(axis=1)
    n[bad], status[bad], lo[bad], hi[bad] = np.nan, 3, -1, -1
    return n, status, lo, hi


#: Test name -> power column of :func:`summarise_beta`.
TESTS = {"ols": "power", "hc3": "power_hc3"}


def n_for_power(beta_summary: pd.DataFrame, *, target: float = 0.8, n_boot: int = 2000,
                seed: int = 0, tests=("ols", "hc3")) -> pd.DataFrame:
    """Enrolled N needed for ``target`` power per test and criterion, with a Monte-Carlo SE.

    ``tests``: "ols" (the paper's t test of the unrepaired term) and/or "hc3" (the same with
    the HC3 SE).

    The point estimate is :func:`interpolate_n` on the estimated powers. Its MC SE is the SD
    over ``n_boot`` parametric bootstrap draws of the powers (binomial with the estimated
    power and the number of successful replications at each N, independently per N: the
    replications are independent across sample sizes), each put through
    :func:`interpolate_n` the same way; ``boot_same_status_pct`` is the share of draws that
    ended with the same status (interpolated between the same sizes, or extrapolated).
    Test ``t`` and criterion ``i`` (in table order) use the random stream
    ``SeedSequence(seed, spawn_key=(t, i))``.

    Returns
    -------
    DataFrame
        test, preset, target_power, n_needed, n_needed_mcse, status, n_low, n_high, power_low,
        power_high (powers at the sizes used), analysed_needed (n_needed x the mean analysed
        share of the enrolled clients), boot_same_status_pct.
    """
    rows = []
    presets = list(dict.fromkeys(beta_summary["preset"]))
    for (t, test), (i, name) in itertools.product(enumerate(tests), enumerate(presets)):
        cell = beta_summary[beta_summary["preset"] == name].sort_values("n_participants")
        sizes = cell["n_participants"].to_numpy()
        power = cell[TESTS[test]].to_numpy(dtype=float)
        alpha = float(cell["alpha"].iloc[0])
        n_ok = (cell["n_replications"] - cell["n_failed"]).to_numpy()
        n, status, lo, hi = interpolate_n(sizes, power, n_ok, target, alpha)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(t, i)))
        draws = rng.binomial(n_ok, np.nan_to_num(power), size=(n_boot, sizes.size)) / np.maximum(n_ok, 1)
        values, b_status, b_lo, b_hi = interpolate_many(sizes, draws, n_ok, target, alpha)
        same = (b_status == STATUSES.index(status)) & (b_lo == lo) & (b_hi == hi)
        ok = np.isfinite(values)
        share = cell["mean_n_analysed"].to_numpy(dtype=float) / sizes
        rows.append({
            "test": test, "preset": name, "target_power": target, "n_needed": n,
            "n_needed_mcse": float(np.std(values[ok], ddof=1)) if np.isfinite(n) and ok.sum() > 1 else np.nan,
            "status": status, "n_low": lo, "n_high": hi,
            "power_low": float(power[sizes == lo][0]) if lo in sizes else np.nan,
            "power_high": float(power[sizes == hi][0]) if hi in sizes else np.nan,
            "analysed_needed": n * float(np.nanmean(share)),
            "boot_same_status_pct": 100 * float(same.mean()),
        })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# what to pre-register
# --------------------------------------------------------------------------------------------
def closest_size(sizes, at_n):
    sizes = sorted(set(int(s) for s in sizes))
    return min(sizes, key=lambda s: (abs(s - at_n), s))


def _n_text(row) -> str:
    """How many clients give 80% power, in words, with the way it was obtained."""
    if not np.isfinite(row["n_needed"]):
        return "no N that the normal approximation allows"
    core = (f"about N = {row['n_needed']:.0f} enrolled clients (about {row['analysed_needed']:.0f} "
            f"analysed; MC SE {row['n_needed_mcse']:.0f}")
    if row["status"] == "interpolated":
        return core + f"; interpolated between N = {row['n_low']} and {row['n_high']})"
    if row["status"] == "extrapolated below smallest N":
        return core + (f"; extrapolated: power was already {row['power_high']:.2f} at the smallest "
                       f"N studied, {row['n_high']})")
    return core + f"; extrapolated: power was only {row['power_low']:.2f} at the largest N, {row['n_low']})"


def recommend(accuracy: pd.DataFrame, beta_summary: pd.DataFrame, n80: pd.DataFrame, *,
              at_n: int = 116, default: str = "rci") -> dict:
    """Which criterion (and test) to pre-register, by rules fixed in advance, and why in words.

    Rules:

    1. **Criterion**: the preset with the highest mean kappa (agreement of the detected with
       the true patterns) at the sample size closest to ``at_n``; presets within 2 Monte-Carlo
       SEs of the best kappa count as tied and the tie is broken by the smallest absolute bias
       of the beta. Detection quality comes first because a pre-registered criterion should
       classify clients correctly; power alone would reward a criterion that happens to give
       a larger (but more biased) beta.
    2. **Test**: the paper's OLS t test, unless with the TRUE patterns its 95% CI of b covers
       the true b less than 95% by more than 2 MC SEs and the HC3 CI comes closer to 95%;
       then the same test with HC3 SEs. The N for 80% power is given for the chosen test.

    Returns
    -------
    dict
        preset, test ("ols" or "hc3"), n (the sample size used), tied (presets tied on kappa),
        text (the plain-language summary; every number comes from the tables).
    """
    n = closest_size(accuracy["n_participants"], at_n)
    # the threshold criteria only: the model-based patterns are not a threshold to pre-register
    # (notebook 05 reports them beside the recommendation)
    accuracy = accuracy[accuracy["preset"] != MODEL]
    n80 = n80[n80["preset"] != MODEL]
    acc = accuracy[accuracy["n_participants"] == n].set_index("preset")
    bet = beta_summary[beta_summary["n_participants"] == n].set_index("preset")
    best = acc["kappa"].idxmax()
    tied = acc.index[acc["kappa"] >= acc.loc[best, "kappa"] - 2 * acc.loc[best, "kappa_mcse"]].tolist()
    pick = min(tied, key=lambda p: (abs(bet.loc[p, "bias"]), p))
    ranked = acc["kappa"].sort_values(ascending=False, kind="mergesort")
    runner = [p for p in ranked.index if p != pick][:1]
    a, b = acc.loc[pick], bet.loc[pick]
    text = (f"**Pre-register `{pick}`.** In {int(b['n_replications'])} simulated trials of N = {n} it "
            f"recovered the true alliance patterns best (kappa = {a['kappa']:.2f}, MC SE {a['kappa_mcse']:.3f}")
    if runner:
        text += f"; next: `{runner[0]}`, kappa = {acc.loc[runner[0], 'kappa']:.2f}"
    text += ")"
    if len(tied) > 1:
        text += (f"; {len(tied)} presets were within 2 MC SEs of the best kappa "
                 f"({', '.join(f'`{t}`' for t in tied)}), and `{pick}` had the smallest bias among them")
    text += (f". Its unrepaired-rupture beta averaged {b['beta_mean']:.2f} (MC SE {b['bias_mcse']:.3f}; "
             f"the paper reported {PAPER_BETA:.2f}) against a true value of {b['theta']:.2f}: detection "
             f"errors attenuate it (bias {b['bias']:+.2f}; the 95% CI of beta covered the true value in "
             f"{100 * b['coverage']:.0f}% of trials).")

    test = "ols"
    if TRUE_PATTERN in bet.index:
        o = bet.loc[TRUE_PATTERN]
        short = o["coverage_b"] < 0.95 - 2 * o["coverage_b_mcse"]
        if short and abs(o["coverage_b_hc3"] - 0.95) < abs(o["coverage_b"] - 0.95):
            test = "hc3"
        text += (f" Even with the true patterns, the paper's OLS 95% CI of the unrepaired effect covered "
                 f"the true value in {100 * o['coverage_b']:.0f}% of trials (MC SE "
                 f"{100 * o['coverage_b_mcse']:.0f} points), with HC3 standard errors in "
                 f"{100 * o['coverage_b_hc3']:.0f}%")
        text += (": pre-register the test with HC3 (heteroscedasticity-consistent) standard errors -- in "
                 "these simulated trials the outcomes of the unrepaired clients vary more than the others', "
                 "and the OLS standard error, which assumes equal variances, is then too small."
                 if test == "hc3" else ": the OLS test is adequate.")
    need = n80[n80["test"] == test].set_index("preset")
    label = "the HC3 test" if test == "hc3" else "the OLS test"
    text += f" With {label}, `{pick}` reaches 80% power with {_n_text(need.loc[pick])}."
    if test == "hc3":
        ols = n80[n80["test"] == "ols"].set_index("preset").loc[pick]
        text += (f" (The paper's OLS test would suggest {ols['n_needed']:.0f}, an optimistic figure "
                 "because its SE is too small.)")
    finite = need[np.isfinite(need["n_needed"]) & (need.index != TRUE_PATTERN)]
    if len(finite) and finite["n_needed"].idxmin() != pick:
        fast = finite["n_needed"].idxmin()
        text += (f" `{fast}` would need fewer clients ({_n_text(need.loc[fast])}), but it recovers the "
                 f"patterns less well (kappa = {acc.loc[fast, 'kappa']:.2f}) and its beta is biased by "
                 f"{bet.loc[fast, 'bias']:+.2f}.")
    if default != pick and default in acc.index:
        rank = list(ranked.index).index(default) + 1
        text += (f" The project's default `{default}` ranks {rank} of {len(ranked)} by kappa "
                 f"({acc.loc[default, 'kappa']:.2f}) and reaches 80% power with {_n_text(need.loc[default])}.")
    elif default == pick:
        text += " This is the project's default criterion."
    if TRUE_PATTERN in need.index:
        text += (f" With perfect detection (the true patterns) 80% power would come with "
                 f"{_n_text(need.loc[TRUE_PATTERN])}: the difference is what detection errors cost.")
    return {"preset": pick, "test": test, "n": n, "tied": tied, "text": text}


def with_mcse(values, mcse, digits: int = 2) -> list[str]:
    """Each estimate with its Monte-Carlo SE, as ``"0.75 (0.003)"`` (one more digit for the SE).

    >>> with_mcse([0.7512, 0.5], [0.0031, 0.01])
    ['0.75 (0.003)', '0.50 (0.010)']
    """
    return [f"{v:.{digits}f} ({s:.{digits + 1}f})" for v, s in zip(values, mcse)]
