"""Is a replication's estimate consistent with the original study's? Prediction intervals.

A replication estimate that differs from the original is not evidence of a different effect
when both are noisy: the right question is whether it falls where a replication of that size
*would* fall if both studies estimated the same quantity. Patil, Peng & Leek (2016) answer it
with the 95% prediction interval

    θ_o ± z · √(se_o² + se_r²),

where θ_o is the original estimate and se_o, se_r are the standard errors of the original and of
the replication (each from its own sample size). Unlike "the original value lies inside the
replication's CI", the interval does not grow with the replication's imprecision alone, and
unlike "both p ≥ .05" it compares effects, not significance.

Each function here gives the interval for one kind of estimate:

* a percentage (:func:`proportion_pi`) and a mean (:func:`mean_pi`): the original's estimate
  and spread, both sample sizes;
* an SD (:func:`sd_pi`): on the log scale, var(log s) ≈ 1 / (2 (n − 1));
* an estimate reported with its p value only (:func:`estimate_pi`, e.g. the paper's β): the
  original's SE implied by the estimate and its two-sided p (normal theory);
* Cramér's V of an r × c table from the original's χ² and N (:func:`cramers_v_pi`): V is
  bounded at 0 and skewed, so the interval is simulated exactly rather than approximated. The
  original's noncentrality is drawn from its confidence distribution (the λ at which the
  original χ² is the u-quantile, u uniform; λ = 0 where no λ ≥ 0 reaches it), then the
  replication's χ² from the noncentral χ² with λ scaled to its N.

References
----------
Patil, P., Peng, R. D., & Leek, J. T. (2016). What should researchers expect when they replicate
studies? A statistical view of replicability in psychological science. Perspectives on
Psychological Science, 11(4), 539-544.
Smithson, M. (2003). Confidence intervals. Sage (noncentral χ² intervals for effect sizes).
Xie, M., & Singh, K. (2013). Confidence distribution, the frequentist distribution estimator of a
parameter. International Statistical Review, 81(1), 3-39.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

Z95 = float(special.ndtri(0.975))


def estimate_pi(original: float, se_original: float, se_replication: float, level: float = 0.95):
    """The prediction interval θ_o ± z √(se_o² + se_r²) (Patil, Peng & Leek, 2016).

    >>> [round(v, 3) for v in estimate_pi(0.44, 0.134, 0.10)]
    [0.112, 0.768]
    """
    z = float(special.ndtri(0.5 + level / 2))
    half = z * np.hypot(se_original, se_replication)
    return (float(original - half), float(original + half))


def se_from_p(estimate: float, p: float) -> float:
    """The standard error of a normally distributed estimate implied by its two-sided p value.

    >>> round(se_from_p(0.44, 0.001), 4)
    0.1337
    """
    return float(abs(estimate) / special.ndtri(1 - p / 2))


def proportion_pi(percent: float, n_original: int, n_replication: int, level: float = 0.95):
    """Prediction interval of a replication's percentage, from the original's percentage and both Ns.

    >>> [round(v, 1) for v in proportion_pi(76.1, 116, 116)]
    [65.1, 87.1]
    """
    p = percent / 100
    lo, hi = estimate_pi(p, np.sqrt(p * (1 - p) / n_original), np.sqrt(p * (1 - p) / n_replication), level)
    return (100 * max(lo, 0.0), 100 * min(hi, 1.0))


def mean_pi(mean: float, sd: float, n_original: int, n_replication: int, level: float = 0.95):
    """Prediction interval of a replication's mean from the original's mean and SD and both Ns."""
    return estimate_pi(mean, sd / np.sqrt(n_original), sd / np.sqrt(n_replication), level)


def sd_pi(sd: float, n_original: int, n_replication: int, level: float = 0.95):
    """Prediction interval of a replication's SD (normal theory, on the log scale).

    >>> [round(v, 2) for v in sd_pi(11.3, 116, 116)]
    [9.41, 13.57]
    """
    lo, hi = estimate_pi(np.log(sd), np.sqrt(1 / (2 * (n_original - 1))), np.sqrt(1 / (2 * (n_replication - 1))),
                         level)
    return (float(np.exp(lo)), float(np.exp(hi)))


def cramers_v(chi2: float, n: int, k: int = 2) -> float:
    """Cramér's V of a table whose smaller dimension is ``k``: √(χ² / (N (k − 1)))."""
    return float(np.sqrt(chi2 / (n * (k - 1))))


def cramers_v_pi(chi2_original: float, n_original: int, dof: int, n_replication: int, *, k: int = 2,
                 level: float = 0.95, n_draws: int = 20_000, seed: int = 20160901):
    """Prediction interval of a replication's Cramér's V from the original's χ², df and N.

    Parameters
    ----------
    chi2_original, n_original, dof
        The original's Pearson χ², its N and degrees of freedom.
    n_replication : int
        The replication's N.
    k : int
        The smaller dimension of the table (2 for pattern × yes/no).
    level : float
    n_draws, seed
        Monte-Carlo draws and their seed (the interval is reproducible; its MC error at 20,000
        draws is below 0.005 in V).

    Returns
    -------
    (low, high)

    Examples
    --------
    >>> lo, hi = cramers_v_pi(0.57, 81, 2, 81)
    >>> 0.0 < lo < 0.05 and 0.3 < hi < 0.4
    True
    """
    rng = np.random.default_rng(seed)
    u = rng.uniform(size=n_draws)
    # the original's confidence distribution of its noncentrality: sf(χ²_o; df, λ) rises with λ
    lam_grid = np.concatenate([[0.0], np.geomspace(1e-3, max(200.0, 20 * chi2_original), 2000)])
    sf = stats.ncx2.sf(chi2_original, dof, np.maximum(lam_grid, 1e-12))
    sf[0] = stats.chi2.sf(chi2_original, dof)
    lam = np.where(u <= sf[0], 0.0, np.interp(u, sf, lam_grid))
    chi2_rep = rng.noncentral_chisquare(dof, np.maximum(lam * n_replication / n_original, 1e-12))
    v = np.sqrt(chi2_rep / (n_replication * (k - 1)))
    a = (1 - level) / 2
    return (float(np.quantile(v, a)), float(np.quantile(v, 1 - a)))
