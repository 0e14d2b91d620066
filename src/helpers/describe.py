"""Descriptive tables: the sample (Table 1) beside the paper, missingness, prevalences.

Every estimate comes with its N and a 95% confidence interval: Wilson intervals for
proportions (Wilson, 1927; recommended over the Wald interval for small N by Brown, Cai &
DasGupta, 2001) and t intervals for means. A prevalence estimated from pattern
*probabilities* (:func:`expected_prevalence_table`) has a Wilson interval widened by the
classification's uncertainty, as multiple imputation of the patterns would widen it (Rubin,
1987; Lott & Reiter, 2020, combine Wilson intervals with multiple imputation).

References
----------
Brown, L. D., Cai, T. T., & DasGupta, A. (2001). Interval estimation for a binomial
proportion. Statistical Science, 16(2), 101-133.
Lott, A., & Reiter, J. P. (2020). Wilson confidence intervals for binomial proportions with
multiple imputation for missing data. The American Statistician, 74(2), 109-115.
McLaughlin, A. A., Keller, S. M., Feeny, N. C., Youngstrom, E. A., & Zoellner, L. A. (2014).
Journal of Consulting and Clinical Psychology, 82(1), 112-121.
Rubin, D. B. (1987). Multiple imputation for nonresponse in surveys. Wiley.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special  # the quantiles without scipy.stats (0.5 s to import)

from helpers import paper
from helpers.contract import INSUFFICIENT

#: The paper's sample and pattern figures (see helpers.paper, the single source of targets).
PAPER_SAMPLE = paper.SAMPLE
PAPER_PATTERNS = paper.PATTERN_PCT

SUMMARY_COLUMNS = ["quantity", "paper", "estimate", "ci_low", "ci_high", "n", "unit", "interval"]


def proportion_ci(successes, n, level=0.95, *, percent=True) -> tuple[float, float, float]:
    """Proportion with its Wilson score interval, in percent (or as proportions: ``percent=False``).

    Parameters
    ----------
    successes, n : int
    level : float

    Returns
    -------
    (estimate, low, high) in percent (proportions when ``percent`` is False); NaNs when ``n == 0``.

    Examples
    --------
    >>> [round(v, 2) for v in proportion_ci(23, 82)]
    [28.05, 19.48, 38.59]
    """
    if n == 0:
        return (np.nan, np.nan, np.nan)
    z = special.ndtri(0.5 + level / 2)  # what stats.norm.ppf computes, to the bit
    p = successes / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    if not percent:
        return (float(p), float(centre - half), float(centre + half))
    return (float(100 * p), float(100 * (centre - half)), float(100 * (centre + half)))


def mean_ci(values, level=0.95) -> tuple[float, float, float, float, int]:
    """Mean, t-interval, SD and N of the non-missing ``values``."""
    x = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(float)
    n = len(x)
    if n < 2:
        return (float(x.mean()) if n else np.nan, np.nan, np.nan, np.nan, n)
    m, sd = x.mean(), x.std(ddof=1)
    half = special.stdtrit(n - 1, 0.5 + level / 2) * sd / np.sqrt(n)  # = stats.t.ppf(q, n - 1)
    return (m, m - half, m + half, sd, n)


def _prop_row(quantity, flags, paper=None):
    s = pd.Series(flags).dropna().astype(bool)
    est, lo, hi = proportion_ci(int(s.sum()), len(s))
    return [quantity, paper, est, lo, hi, len(s), "%", "Wilson 95% CI"]


def _mean_row(quantity, values, paper=None, unit=""):
    m, lo, hi, _, n = mean_ci(values)
    return [quantity, paper, m, lo, hi, n, unit, "t 95% CI"]


def demographics_table(participants: pd.DataFrame) -> pd.DataFrame:
    """The rows of Table 1 the paper's abstract reports: N, sex, ethnicity, age (``SUMMARY_COLUMNS``)."""
    p = participants
    _, _, _, age_sd, _ = mean_ci(p["age"])
    rows = [
        ["N (PE clients)", PAPER_SAMPLE["N"], len(p), np.nan, np.nan, len(p), "clients", ""],
        _prop_row("female", p["female"], PAPER_SAMPLE["female_pct"]),
        _prop_row("Caucasian", p["caucasian"], PAPER_SAMPLE["caucasian_pct"]),
        _mean_row("age, mean", p["age"], PAPER_SAMPLE["age_mean"], "years"),
        ["age, SD", PAPER_SAMPLE["age_sd"], age_sd, np.nan, np.nan, int(p["age"].notna().sum()), "years", ""],
    ]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def sample_table(participants: pd.DataFrame, instruments: dict) -> pd.DataFrame:
    """Table 1: the sample's characteristics beside the paper's.

    Parameters
    ----------
    participants : DataFrame
        The contract's participants table.
    instruments : dict
        Role -> :class:`helpers.instruments.Instrument` (the run's): names and ranges of the
        pre-treatment score rows; a role without an instrument has no row.

    Returns
    -------
    DataFrame
        One row per quantity with ``SUMMARY_COLUMNS``: the paper's value (NaN where the
        paper's abstract does not report it), this sample's estimate, 95% CI, N. Scores the
        data do not hold (every value missing) have no row.
    """
    p = participants
    rows = demographics_table(p).values.tolist()
    for role, column in (("symptoms", "pss_sr_pre"), ("interview", "pss_i_pre"), ("depression", "bdi_pre")):
        if role in instruments and p[column].notna().any():
            inst = instruments[role]
            rows.append(_mean_row(f"{inst.name} pre, mean", p[column], unit=f"points ({inst.range_text})"))
    rows += [
        _prop_row("co-occurring MDD", p["mdd"]),
        _prop_row("childhood abuse history", p["child_abuse"]),
    ]
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    out["paper"] = out["paper"].astype(float)
    return out


def missingness(sessions: pd.DataFrame, columns=("alliance", "pss_sr")) -> pd.DataFrame:
    """Observed and missing counts per session for each score column (tidy, long).

    Returns
    -------
    DataFrame with session, measure, n_participants, n_observed, pct_missing.
    """
    rows = []
    n_participants = sessions["participant_id"].nunique()
    for col in columns:
        observed = sessions.loc[sessions[col].notna()].groupby("session")["participant_id"].nunique()
        for s in sorted(sessions["session"].unique()):
            n_obs = int(observed.get(s, 0))
            rows.append([int(s), col, n_participants, n_obs, 100 * (1 - n_obs / n_participants)])
    return pd.DataFrame(rows, columns=["session", "measure", "n_participants", "n_observed", "pct_missing"])


def observed_per_participant(sessions: pd.DataFrame, column="alliance") -> pd.Series:
    """Number of observed ``column`` scores per participant (0 for none)."""
    return sessions[column].notna().groupby(sessions["participant_id"]).sum().astype(int)


def prevalence_table(patterns: pd.DataFrame, *, pattern_col="pattern",
                     exclude=(INSUFFICIENT,)) -> pd.DataFrame:
    """Prevalence of each alliance pattern among classifiable participants, beside the paper.

    Returns
    -------
    DataFrame with ``SUMMARY_COLUMNS``; rows no_rupture, repaired, unrepaired, any_rupture.
    """
    classified = patterns.loc[~patterns[pattern_col].isin(exclude), pattern_col]
    rows = []
    for name in ("no_rupture", "repaired", "unrepaired", "any_rupture"):
        hit = classified.isin(["repaired", "unrepaired"]) if name == "any_rupture" else classified == name
        rows.append(_prop_row(name, hit, PAPER_PATTERNS[name]))
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    out["paper"] = out["paper"].astype(float)
    return out


def expected_proportion_ci(probabilities, level=0.95, *, percent=True) -> tuple[float, float, float, float]:
    """The expected share of clients in a pattern, from each client's probability of it, with a
    Wilson interval that carries the classification's uncertainty.

    Were the patterns imputed -- each client's drawn from its probability, again and again --
    each completed data set would give a proportion with binomial variance q(1 - q)/n, and
    the proportions would vary between imputations. With infinitely many imputations (the
    hyperparameters of the probabilities treated as known) Rubin's rules have closed forms:
    the estimate is the mean probability q, the between-imputation variance
    B = sum p_i (1 - p_i) / n^2, the mean within-imputation variance U = (q (1 - q) - B) / n,
    and the total variance T = U + B. The interval is Wilson's at the *effective* sample size
    n_eff = q (1 - q) / T, whose binomial variance at the estimate is T: with every pattern
    certain (B = 0) it is the Wilson interval of the counts.

    Parameters
    ----------
    probabilities : array-like
        Each classifiable client's probability of the pattern.
    level : float
    percent : bool
        Estimate and interval in percent (as :func:`proportion_ci`).

    Returns
    -------
    (estimate, low, high, n_effective); NaNs (and n_effective 0) for no client.

    Examples
    --------
    Two clients, each even odds: q = .5, B = .125, U = .0625, T = .1875, n_eff = .25 / .1875.

    >>> est, low, high, n_eff = expected_proportion_ci([0.5, 0.5])
    >>> est, round(n_eff, 4)
    (50.0, 1.3333)
    """
    p = np.asarray(probabilities, dtype=float)
    n = p.size
    if n == 0:
        return (np.nan, np.nan, np.nan, 0.0)
    q = float(p.mean())
    between = float((p * (1 - p)).sum()) / n**2
    spread = q * (1 - q)
    # q(1 - q) = 0 only when every probability is 0 or every one is 1: nothing is uncertain
    n_eff = n if spread == 0 else spread / ((spread - between) / n + between)
    est, low, high = proportion_ci(q * n_eff, n_eff, level, percent=percent)
    return (est, low, high, float(n_eff))


def expected_prevalence_table(probabilities: pd.DataFrame, *, pattern_col="pattern",
                              exclude=(INSUFFICIENT,)) -> pd.DataFrame:
    """Expected prevalence of each alliance pattern among the classifiable clients (the mean of
    their pattern probabilities), beside the paper, with :func:`expected_proportion_ci`'s
    interval.

    Parameters
    ----------
    probabilities : DataFrame
        One row per client with ``p_no_rupture``, ``p_repaired``, ``p_unrepaired`` and the
        ``pattern_col`` that marks the unclassifiable (``PatternModel.probabilities``).

    Returns
    -------
    DataFrame
        ``SUMMARY_COLUMNS`` plus ``n_effective``; rows no_rupture, repaired, unrepaired,
        any_rupture (the probability of either rupture pattern), as :func:`prevalence_table`.
    """
    classified = probabilities.loc[~probabilities[pattern_col].isin(exclude)]
    rows = []
    for name in ("no_rupture", "repaired", "unrepaired", "any_rupture"):
        p = (classified["p_repaired"] + classified["p_unrepaired"] if name == "any_rupture"
             else classified[f"p_{name}"])
        est, low, high, n_eff = expected_proportion_ci(p.to_numpy(dtype=float))
        rows.append([name, PAPER_PATTERNS[name], est, low, high, len(classified), "%",
                     "Wilson 95% CI, classification uncertainty added", n_eff])
    out = pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS, "n_effective"])
    out["paper"] = out["paper"].astype(float)
    return out
