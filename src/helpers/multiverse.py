"""The same data under every rupture criterion preset: how much do the results move?

The paper's exact rupture and repair thresholds are not public, so every headline number is
shown under each named preset of :func:`helpers.episodes.presets` (absolute 1 point; 1 and
2 SD with within / between / stricter scales; RCI, the default; sudden-change criteria).

Each function takes the contract's tables and returns a tidy DataFrame with one row per
preset (and pattern), with N and 95% CIs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from helpers import agreement, available, describe, episodes, models
from helpers.contract import INSUFFICIENT, PATTERN_LABELS


def prevalence_by_preset(results: dict) -> pd.DataFrame:
    """Prevalence of each pattern (and any rupture) per preset, with Wilson CIs and N."""
    rows = []
    for name, (eps, pats) in results.items():
        table = describe.prevalence_table(pats).assign(preset=name, n_episodes=len(eps))
        rows.append(table)
    out = pd.concat(rows, ignore_index=True)
    return out[["preset", "quantity", "paper", "estimate", "ci_low", "ci_high", "n", "n_episodes"]]


def accuracy_by_preset(results: dict, truth: pd.DataFrame) -> pd.DataFrame:
    """Agreement of detected with true patterns per preset (simulated data): Cohen's kappa
    with 95% CI, and sensitivity / specificity of each pattern."""
    true = truth.set_index("participant_id")["true_pattern"]
    rows = []
    for name, (_, pats) in results.items():
        table = agreement.confusion(pats.set_index("participant_id")["pattern"], true)
        k = agreement.cohen_kappa(table)
        acc = agreement.pattern_accuracy(table).set_index("pattern")
        row = {"preset": name, "n": k["n"], "kappa": k["kappa"], "kappa_ci_low": k["ci_low"],
               "kappa_ci_high": k["ci_high"], "agreement_pct": 100 * k["observed"]}
        for pattern in acc.index:
            row[f"sens_{pattern}"] = acc.loc[pattern, "sensitivity"]
            row[f"spec_{pattern}"] = acc.loc[pattern, "specificity"]
        rows.append(row)
    return pd.DataFrame(rows)


def beta_by_preset(results: dict, participants: pd.DataFrame, *, outcome: str = "pss_i") -> pd.DataFrame:
    """The paper's test (model A: post ~ pre + unrepaired) under every preset.

    Returns one row per preset with the unrepaired term (b, beta with 95% CI, p, n: the analysed
    clients, with pre and post scores), ``n_unrepaired`` (classified unrepaired) and
    ``n_unrepaired_analysed`` (unrepaired among the analysed). A preset
    under which nobody (or everybody) is unrepaired cannot be tested: its row has NaNs and a
    ``note``. Listwise-deletion warnings are collected into ``n_dropped`` rather than repeated
    for every preset (each row states its N).
    """
    rows = []
    for name, (_, pats) in results.items():
        classified = pats[pats["pattern"] != INSUFFICIENT]
        n_unrep = int((classified["pattern"] == "unrepaired").sum())
        if outcome is None:  # helpers.available.regression_outcomes found none
            rows.append({"preset": name, "note": "no outcome with pre- and post-treatment scores: not estimable"})
            continue
        if n_unrep in (0, len(classified)):
            rows.append({"preset": name, "note": f"{n_unrep} of {len(classified)} unrepaired: not estimable"})
            continue
        with warnings.catch_warnings():
            # The same listwise deletion happens under every preset; its count is in n_dropped.
            warnings.filterwarnings("ignore", message="outcome_regression")
            fit = models.outcome_regression(pats, participants, outcome=outcome, models=("A",))
        term = fit[fit["term"] == "unrepaired"].iloc[0]
        analysed, _ = models.regression_data(pats, participants, outcome=outcome)
        rows.append({"preset": name, "outcome": outcome, "b": term["b"], "beta": term["beta"],
                     "beta_ci_low": term["beta_ci_low"], "beta_ci_high": term["beta_ci_high"],
                     "p": term["p"], "n": int(term["n"]), "n_unrepaired": n_unrep,
                     "n_unrepaired_analysed": int(analysed["unrepaired"].sum()),
                     "n_dropped": int(term["n_dropped"]), "note": ""})
    cols = ["preset", "outcome", "b", "beta", "beta_ci_low", "beta_ci_high", "p", "n",
            "n_unrepaired", "n_unrepaired_analysed", "n_dropped", "note"]
    out = pd.DataFrame(rows).reindex(columns=cols)
    dropped = out["n_dropped"].max()
    if pd.notna(dropped) and dropped > 0:
        warnings.warn(f"beta_by_preset ({outcome}): up to {int(dropped)} classifiable participants without "
                      "both pre and post scores left out (listwise); see n_dropped per preset",
                      UserWarning, stacklevel=2)
    return out


# --------------------------------------------------------------------------------------------
# every headline number under every preset
# --------------------------------------------------------------------------------------------
@dataclass
class Multiverse:
    """Every table of :func:`compute`: the detection per preset and its summaries.

    Attributes
    ----------
    results : dict
        ``{preset: (episodes, patterns)}`` (:func:`helpers.episodes.detect_by_preset`).
    prevalence : DataFrame
        :func:`prevalence_by_preset` (written as ``prevalence_by_criterion.csv``).
    beta : DataFrame
        :func:`beta_by_preset` (``beta_by_criterion.csv``).
    accuracy : DataFrame or None
        :func:`accuracy_by_preset`; None without truth.
    table : DataFrame
        :func:`multiverse_table`, one row per preset (``multiverse.csv``).
    """

    results: dict
    prevalence: pd.DataFrame
    beta: pd.DataFrame
    accuracy: pd.DataFrame | None
    table: pd.DataFrame


def compute(sessions: pd.DataFrame, participants: pd.DataFrame, truth: pd.DataFrame | None = None, *,
            presets: dict, min_sessions: int = 6, repair_window=None, tolerance: float = 0.0,
            outcome: str = "pss_i", by=("mdd", "child_abuse")) -> Multiverse:
    """The multiverse of one dataset, computed once (notebook 02 shows it and writes its tables; 04 reads them).

    Patterns under every preset, then prevalence, the paper's beta (``outcome=None`` when the
    data have no pre/post outcome: every row says so), agreement with the truth (when ``truth``
    is given) and :func:`multiverse_table` (the association tests only for the ``by`` columns the
    data have).
    """
    by = tuple(b for b in by if available.has_column(participants, b))
    results = episodes.detect_by_preset(sessions, presets, min_sessions=min_sessions,
                                        repair_window=repair_window, tolerance=tolerance)
    prevalence = prevalence_by_preset(results)
    beta = beta_by_preset(results, participants, outcome=outcome)
    accuracy = accuracy_by_preset(results, truth) if truth is not None else None
    table = multiverse_table(results, participants, prevalence=prevalence, beta=beta, accuracy=accuracy, by=by)
    return Multiverse(results, prevalence, beta, accuracy, table)


def multiverse_table(results: dict, participants: pd.DataFrame, *, prevalence: pd.DataFrame,
                     beta: pd.DataFrame, accuracy: pd.DataFrame | None = None,
                     by=("mdd", "child_abuse")) -> pd.DataFrame:
    """Every headline number of the paper under every criterion preset, on one dataset.

    Built from this module's tables (``prevalence``: :func:`prevalence_by_preset`, ``beta``:
    :func:`beta_by_preset`, ``accuracy``: :func:`accuracy_by_preset` or None without truth) and
    :func:`helpers.models.pattern_chi2` (pattern x ``by``; exact or Monte-Carlo p when an
    expected count is below 5).

    Returns
    -------
    DataFrame
        One row per preset: preset, n (classifiable), n_episodes, <pattern>_pct for the three
        patterns, unrepaired_ci_low / _high; per ``by``: chi2_<by>, dof_<by>, p_<by>,
        p_exact_<by>, n_<by> (NaN and a ``note`` when the table has fewer than 2 patterns);
        beta, beta_ci_low, beta_ci_high, p_beta, n_beta; kappa, kappa_ci_low, kappa_ci_high
        (NaN without truth); note.
    """
    prev = prevalence.set_index(["preset", "quantity"])
    beta = beta.set_index("preset")
    acc = accuracy.set_index("preset") if accuracy is not None else None
    rows = []
    for name, (eps, pats) in results.items():
        row = {"preset": name, "n": int(prev.loc[(name, "unrepaired"), "n"]), "n_episodes": len(eps)}
        for pattern in PATTERN_LABELS:
            row[f"{pattern}_pct"] = prev.loc[(name, pattern), "estimate"]
        row["unrepaired_ci_low"] = prev.loc[(name, "unrepaired"), "ci_low"]
        row["unrepaired_ci_high"] = prev.loc[(name, "unrepaired"), "ci_high"]
        notes = []
        for var in by:
            try:
                chi = models.pattern_chi2(pats, participants, by=var, warn=False).iloc[0]
                row.update({f"chi2_{var}": chi["chi2"], f"dof_{var}": chi["dof"], f"p_{var}": chi["p"],
                            f"p_exact_{var}": chi["p_exact"], f"n_{var}": chi["n"]})
            except ValueError as exc:  # fewer than 2 patterns under this preset: not testable
                row.update({f"chi2_{var}": np.nan, f"dof_{var}": np.nan, f"p_{var}": np.nan,
                            f"p_exact_{var}": np.nan, f"n_{var}": np.nan})
                notes.append(f"chi2 {var}: {str(exc).splitlines()[0]}")
        b = beta.loc[name]
        row.update({"beta": b["beta"], "beta_ci_low": b["beta_ci_low"], "beta_ci_high": b["beta_ci_high"],
                    "p_beta": b["p"], "n_beta": b["n"]})
        if isinstance(b.get("note"), str) and b["note"]:
            notes.append(b["note"])
        if acc is not None:
            row.update({"kappa": acc.loc[name, "kappa"], "kappa_ci_low": acc.loc[name, "kappa_ci_low"],
                        "kappa_ci_high": acc.loc[name, "kappa_ci_high"]})
        else:
            row.update({"kappa": np.nan, "kappa_ci_low": np.nan, "kappa_ci_high": np.nan})
        row["note"] = "; ".join(notes)
        rows.append(row)
    return pd.DataFrame(rows)


def summary_sentence(table: pd.DataFrame) -> str:
    """One paragraph on how prevalence and beta move across the criteria of a multiverse
    table (from :func:`compute`), with the Ns and the notes of criteria that could not be run.
    Criteria under which beta cannot be estimated (no pre/post outcome, nobody unrepaired) are
    counted and said, not averaged over.

    Examples
    --------
    >>> t = pd.DataFrame({"preset": ["a", "b"], "n": [80, 80], "unrepaired_pct": [10.0, 20.0],
    ...                   "n_beta": [float("nan")] * 2, "beta": [float("nan")] * 2,
    ...                   "p_beta": [float("nan")] * 2, "note": ["", ""]})
    >>> summary_sentence(t)
    'Across the 2 criteria the unrepaired prevalence ranges from 10.0% (`a`) to 20.0% (`b`) of N = 80 classifiable clients; β is not estimable under any criterion (no pre and post scores, or nobody classified unrepaired).'
    """
    mv = table.set_index("preset")
    notes = "; ".join(f"`{k}`: {v}" for k, v in mv["note"].items() if isinstance(v, str) and v)
    prev = mv["unrepaired_pct"].dropna()
    if prev.empty:
        head = f"Under none of the {len(mv)} criteria is anybody classifiable"
    else:
        head = (f"Across the {len(mv)} criteria the unrepaired prevalence ranges from {prev.min():.1f}% "
                f"(`{prev.idxmin()}`) to {prev.max():.1f}% (`{prev.idxmax()}`) of N = {int(mv['n'].iloc[0])} "
                "classifiable clients")
    est = mv[mv["beta"].notna()]
    if est.empty:
        beta = ("; β is not estimable under any criterion (no pre and post scores, or nobody classified "
                "unrepaired).")
    else:
        n_beta = (f"N = {int(est['n_beta'].min())}" if est["n_beta"].nunique() == 1
                  else f"N = {int(est['n_beta'].min())}–{int(est['n_beta'].max())}")
        missing = (f" (not estimable under {len(mv) - len(est)} criteria)" if len(est) < len(mv) else "")
        beta = (f", and β from {est['beta'].min():.2f} to {est['beta'].max():.2f}{missing} ({n_beta} with pre "
                f"and post scores); {int((mv['p_beta'] < .05).sum())} of {len(mv)} criteria give p < .05 for β.")
    return head + beta + (f" Notes: {notes}." if notes else "")
