"""The same data under every rupture criterion preset: how much do the results move?

The paper's exact rupture and repair thresholds are not public, so every headline number is
shown under each named preset of :func:`helpers.episodes.presets` (absolute 1 point; 1 and
2 SD with within / between / stricter scales; RCI, the default; sudden-change criteria) and,
when a fitted :class:`helpers.pattern_model.PatternModel` is given, under the model-based
definition (the row :data:`MODEL`): its prevalences and tests are those of each client's most
probable pattern, its β is :func:`helpers.pattern_model.unrepaired_effect` -- an estimate of the
effect of the *true* pattern, with the patterns' uncertainty carried by multiple imputation,
where every threshold row estimates the effect of the *detected* pattern (column ``estimand``).

Each function takes the contract's tables and returns a tidy DataFrame with one row per
preset (and pattern), with N and 95% CIs. Every threshold row also counts the clients whose
unrepaired pattern rests on censored ruptures only (``n_unrepaired_censored``;
``docs/rupture_criteria.md``), and :func:`beta_sensitivity` gives the paper's β with them
excluded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from helpers import agreement, available, describe, episodes, models, pattern_model
from helpers.contract import INSUFFICIENT, PATTERN_LABELS

#: The multiverse's row of the pattern model.
MODEL = "model"
#: What a row's β estimates (column ``estimand``): the effect of the pattern a threshold
#: criterion *detects* -- the paper's kind of estimate -- or of the *true* pattern (the model).
DETECTED, TRUE = "detected pattern", "true pattern"


def _is_model(patterns: pd.DataFrame) -> bool:
    """A patterns table of the pattern model (its probabilities) rather than of a criterion."""
    return "p_unrepaired" in patterns.columns


def _n_episodes(eps) -> "int | None":
    return None if eps is None else len(eps)


def _censored(pats: pd.DataFrame) -> "int | None":
    """Classifiable clients unrepaired through censored ruptures only (None for the model,
    whose probabilities already weigh what a client's data could show)."""
    return None if "unrepaired_censored" not in pats.columns else int(pats["unrepaired_censored"].sum())


def prevalence_by_preset(results: dict) -> pd.DataFrame:
    """Prevalence of each pattern (and any rupture) per preset, with Wilson CIs and N."""
    rows = []
    for name, (eps, pats) in results.items():
        table = describe.prevalence_table(pats).assign(preset=name, n_episodes=_n_episodes(eps))
        rows.append(table)
    out = pd.concat(rows, ignore_index=True)
    out["n_episodes"] = out["n_episodes"].astype("Int64")  # the model has no episodes: NA, not a float column
    return out[["preset", "quantity", "paper", "estimate", "ci_low", "ci_high", "n", "n_episodes"]]


def accuracy_by_preset(results: dict, truth: pd.DataFrame) -> pd.DataFrame:
    """Agreement of detected with true patterns per preset (simulated data): Cohen's kappa
    with 95% CI, the mean Brier score with its t 95% CI (a criterion's hard labels scored as
    probabilities 0 and 1, so twice its error rate; the model's probabilities as they are:
    :func:`helpers.agreement.brier_scores`), and sensitivity / specificity of each pattern.
    The model's row scores its most probable pattern for kappa, sensitivity and specificity."""
    true = truth.set_index("participant_id")["true_pattern"]
    rows = []
    for name, (_, pats) in results.items():
        indexed = pats.set_index("participant_id")
        table = agreement.confusion(indexed["pattern"], true)
        k = agreement.cohen_kappa(table)
        acc = agreement.pattern_accuracy(table).set_index("pattern")
        probs = (indexed[indexed["pattern"] != INSUFFICIENT][agreement.PROBABILITY_COLUMNS] if _is_model(pats)
                 else agreement.one_hot(indexed["pattern"]))
        brier, brier_low, brier_high, _, _ = describe.mean_ci(agreement.brier_scores(probs, true))
        row = {"preset": name, "n": k["n"], "kappa": k["kappa"], "kappa_ci_low": k["ci_low"],
               "kappa_ci_high": k["ci_high"], "agreement_pct": 100 * k["observed"], "brier": brier,
               "brier_ci_low": brier_low, "brier_ci_high": brier_high}
        for pattern in acc.index:
            row[f"sens_{pattern}"] = acc.loc[pattern, "sensitivity"]
            row[f"spec_{pattern}"] = acc.loc[pattern, "specificity"]
        rows.append(row)
    return pd.DataFrame(rows)


#: Columns of :func:`beta_by_preset` (``beta_by_criterion.csv``).
BETA_COLUMNS = ["preset", "outcome", "b", "beta", "beta_ci_low", "beta_ci_high", "p", "n", "n_unrepaired",
                "n_unrepaired_analysed", "n_dropped", "note", "estimand", "se_type", "fmi", "expected_n_unrepaired"]


def beta_by_preset(results: dict, participants: pd.DataFrame, *, outcome: str = "pss_i",
                   effect: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's test (model A: post ~ pre + unrepaired) under every preset.

    Returns one row per preset with the unrepaired term (b, beta with 95% CI, p, n: the analysed
    clients, with pre and post scores), ``n_unrepaired`` (classified unrepaired) and
    ``n_unrepaired_analysed`` (unrepaired among the analysed), ``estimand`` (:data:`DETECTED`)
    and ``se_type`` (``nonrobust``: the paper's OLS). A preset
    under which nobody (or everybody) is unrepaired cannot be tested: its row has NaNs and a
    ``note``. Listwise-deletion warnings are collected into ``n_dropped`` rather than repeated
    for every preset (each row states its N).

    The pattern model's row (:data:`MODEL` in ``results``) is ``effect``
    (:func:`helpers.pattern_model.unrepaired_effect`): estimand :data:`TRUE`, HC3 standard
    errors pooled by Rubin's rules, ``fmi``, ``expected_n_unrepaired`` among the analysed (its
    ``n_unrepaired_analysed`` is NA: no count is fixed), ``n_unrepaired`` the clients whose most
    probable pattern is unrepaired.
    """
    rows = []
    for name, (_, pats) in results.items():
        if _is_model(pats):
            rows.append(_model_beta_row(name, pats, effect, outcome))
            continue
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
                     "n_dropped": int(term["n_dropped"]), "note": "", "estimand": DETECTED,
                     "se_type": "nonrobust"})
    out = pd.DataFrame(rows).reindex(columns=BETA_COLUMNS)
    # counts stay integers in the written table when a row has none (the model's analysed count)
    for col in ("n", "n_unrepaired", "n_unrepaired_analysed", "n_dropped"):
        out[col] = out[col].astype("Int64")
    dropped = out["n_dropped"].max()
    if pd.notna(dropped) and dropped > 0:
        warnings.warn(f"beta_by_preset ({outcome}): up to {int(dropped)} classifiable participants without "
                      "both pre and post scores left out (listwise); see n_dropped per preset",
                      UserWarning, stacklevel=2)
    return out


def _model_beta_row(name, probs, effect, outcome) -> dict:
    """:func:`beta_by_preset`'s row of the pattern model, from its ``unrepaired_effect``."""
    classified = probs[probs["pattern"] != INSUFFICIENT]
    row = {"preset": name, "n_unrepaired": int((classified["pattern"] == "unrepaired").sum()), "estimand": TRUE}
    if effect is None or outcome is None:
        return {**row, "note": "no outcome with pre- and post-treatment scores: not estimable"}
    e = effect.iloc[0]
    note = ("" if e["n_not_estimable"] == 0 else
            f"not estimable: in {int(e['n_not_estimable'])} of {int(e['n_imputations'])} imputations fewer than "
            "two clients are unrepaired")
    return {**row, "outcome": outcome, "b": e["b"], "beta": e["beta"], "beta_ci_low": e["beta_ci_low"],
            "beta_ci_high": e["beta_ci_high"], "p": e["p"], "n": int(e["n"]),
            "n_dropped": len(classified) - int(e["n"]), "note": note,
            "se_type": f"HC3, Rubin's rules (m = {int(e['n_imputations'])})", "fmi": e["fmi"],
            "expected_n_unrepaired": e["expected_n_unrepaired"]}


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
    effect : DataFrame or None
        The pattern model's :func:`helpers.pattern_model.unrepaired_effect` (one row; None
        without a model or an outcome).
    """

    results: dict
    prevalence: pd.DataFrame
    beta: pd.DataFrame
    accuracy: pd.DataFrame | None
    table: pd.DataFrame
    effect: pd.DataFrame | None = None


def compute(sessions: pd.DataFrame, participants: pd.DataFrame, truth: pd.DataFrame | None = None, *,
            presets: dict, min_sessions: int = 6, repair_window=None, tolerance: float = 0.0,
            outcome: str = "pss_i", by=("mdd", "child_abuse"), model=None, seed=None,
            n_imputations: int = 20, effect: pd.DataFrame | None = None) -> Multiverse:
    """The multiverse of one dataset, computed once (notebook 02 shows it and writes its tables; 04 reads them).

    Patterns under every preset, then prevalence, the paper's beta (``outcome=None`` when the
    data have no pre/post outcome: every row says so), agreement with the truth (when ``truth``
    is given) and :func:`multiverse_table` (the association tests only for the ``by`` columns the
    data have).

    ``model``, a fitted :class:`helpers.pattern_model.PatternModel` of the same sessions, adds
    the row :data:`MODEL`: its most probable patterns, and its β by
    :func:`helpers.pattern_model.unrepaired_effect` (``seed``, ``n_imputations``) -- fitted
    here once, so the model is not refitted; or ``effect``, that row computed already (notebook
    02 computes it once for this table and the ``min_drop`` sensitivity).
    """
    by = tuple(b for b in by if available.has_column(participants, b))
    results = episodes.detect_by_preset(sessions, presets, min_sessions=min_sessions,
                                        repair_window=repair_window, tolerance=tolerance)
    if model is not None:
        results[MODEL] = (None, model.probabilities)
        if outcome is not None and effect is None:
            effect = pattern_model.unrepaired_effect(model, participants, outcome=outcome, seed=seed,
                                                     n_imputations=n_imputations)
    if effect is not None and (model is None or outcome is None):
        raise ValueError("effect is the pattern model's row: pass it with model= and an outcome")
    prevalence = prevalence_by_preset(results)
    beta = beta_by_preset(results, participants, outcome=outcome, effect=effect)
    accuracy = accuracy_by_preset(results, truth) if truth is not None else None
    table = multiverse_table(results, participants, prevalence=prevalence, beta=beta, accuracy=accuracy, by=by)
    return Multiverse(results, prevalence, beta, accuracy, table, effect)


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
        One row per preset: preset, n (classifiable), n_episodes (NA for the model),
        <pattern>_pct for the three patterns, unrepaired_ci_low / _high; per ``by``:
        chi2_<by>, dof_<by>, p_<by>, p_exact_<by>, n_<by> (NaN and a ``note`` when the table
        has fewer than 2 patterns); beta, beta_ci_low, beta_ci_high, p_beta, n_beta; kappa,
        kappa_ci_low, kappa_ci_high (NaN without truth); note; n_unrepaired_censored
        (classifiable clients unrepaired through censored ruptures only; NA for the model);
        estimand (:data:`DETECTED`, or :data:`TRUE` for the model's β).
    """
    prev = prevalence.set_index(["preset", "quantity"])
    beta = beta.set_index("preset")
    acc = accuracy.set_index("preset") if accuracy is not None else None
    rows = []
    for name, (eps, pats) in results.items():
        row = {"preset": name, "n": int(prev.loc[(name, "unrepaired"), "n"]), "n_episodes": _n_episodes(eps)}
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
        row["n_unrepaired_censored"] = _censored(pats[pats["pattern"] != INSUFFICIENT])
        row["estimand"] = b["estimand"]
        rows.append(row)
    out = pd.DataFrame(rows)
    for col in ("n_episodes", "n_unrepaired_censored"):  # NA for the model, integers for the rest
        out[col] = out[col].astype("Int64")
    return out


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
    model = None
    if "estimand" in mv.columns and (mv["estimand"] == TRUE).any():  # the model: said apart, not in the ranges
        model, mv = mv[mv["estimand"] == TRUE].iloc[0], mv[mv["estimand"] != TRUE]
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
    return head + beta + (f" Notes: {notes}." if notes else "") + _model_sentence(model)


def _model_sentence(row) -> str:
    """The pattern model's row of a multiverse table in words, as a different kind of estimate."""
    if row is None:
        return ""
    text = (f" The pattern model's most probable patterns class {row['unrepaired_pct']:.1f}% of its N = {int(row['n'])} "
            "classifiable clients as unrepaired")
    if pd.isna(row["beta"]):
        return text + "; its β is not estimable" + (f" ({row['note']})." if isinstance(row["note"], str) and row["note"]
                                                    else ".")
    return text + (f"; its β, β = {row['beta']:.2f} (95% CI {row['beta_ci_low']:.2f} to {row['beta_ci_high']:.2f}; "
                   f"N = {int(row['n_beta'])}), estimates the effect of the true pattern with the classification's "
                   "uncertainty carried (multiple imputation), so it is not one more point in the criteria's range.")


#: Columns of :func:`beta_sensitivity`.
SENSITIVITY_COLUMNS = ["analysis", "patterns", "censored", "estimand", "se_type", "b", "se", "ci_low", "ci_high",
                       "beta", "beta_ci_low", "beta_ci_high", "p", "df", "n", "n_unrepaired_analysed",
                       "expected_n_unrepaired", "n_excluded", "fmi", "note"]


def beta_sensitivity(patterns: pd.DataFrame, participants: pd.DataFrame, *, outcome: str | None, criterion: str,
                     effect: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's β under the run's criterion with the censored repairs classed as the paper
    would and with them excluded, each with the classical (OLS) and the HC3 standard error,
    and the pattern model's β beside them.

    Parameters
    ----------
    patterns : DataFrame
        The criterion's patterns (:func:`helpers.episodes.classify_participants`, with
        ``unrepaired_censored``).
    participants : DataFrame
    outcome : str or None
        The outcome of the run (None: no pre/post outcome, every row says so).
    criterion : str
        The criterion's name, for the ``patterns`` column.
    effect : DataFrame, optional
        :func:`helpers.pattern_model.unrepaired_effect`'s row: the last row, an estimate of
        the true-pattern effect (estimand :data:`TRUE`), HC3 standard errors pooled by
        Rubin's rules.

    Returns
    -------
    DataFrame
        :data:`SENSITIVITY_COLUMNS`, one row per analysis: ``censored`` says what was done with
        the clients unrepaired through censored ruptures only; ``n_excluded`` how many of the
        analysable clients (pre and post scores) that left out; ``n_unrepaired_analysed`` the
        unrepaired clients analysed (the model: ``expected_n_unrepaired``); ``fmi`` the model's
        fraction of missing information.
    """
    rows = []
    if outcome is None:
        return pd.DataFrame([{"analysis": "paper's test", "patterns": criterion,
                              "note": "no outcome with pre- and post-treatment scores: not estimable"}],
                            columns=SENSITIVITY_COLUMNS)
    analysable, _ = models.regression_data(patterns, participants, outcome=outcome)
    censored = set(patterns.loc[patterns["unrepaired_censored"].astype(bool), "participant_id"].astype(str))
    n_excluded = int(analysable["participant_id"].isin(censored).sum())
    for label, pats, how in (("paper's test", patterns, "classed unrepaired (the paper's rule)"),
                             ("censored excluded", patterns[~patterns["participant_id"].astype(str).isin(censored)],
                              "excluded")):
        d, _ = models.regression_data(pats, participants, outcome=outcome)
        n_unrep = int(d["unrepaired"].sum())
        base = {"analysis": label, "patterns": criterion, "censored": how, "estimand": DETECTED,
                "n_excluded": n_excluded if how == "excluded" else 0, "n": len(d), "n_unrepaired_analysed": n_unrep}
        if n_unrep in (0, len(d)):
            rows += [{**base, "se_type": se, "note": f"{n_unrep} of {len(d)} unrepaired: not estimable"}
                     for se in ("nonrobust", "HC3")]
            continue
        for se in ("nonrobust", "HC3"):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="outcome_regression")  # the N is in the row
                fit = models.outcome_regression(pats, participants, outcome=outcome, models=("A",), cov_type=se,
                                                warn=False)
            term = fit[fit["term"] == "unrepaired"].iloc[0]
            rows.append({**base, "se_type": se, **{k: term[k] for k in ("b", "se", "ci_low", "ci_high", "beta",
                                                                         "beta_ci_low", "beta_ci_high", "p", "df")},
                         "note": ""})
    if effect is not None:
        e = effect.iloc[0]
        rows.append({"analysis": "pattern model", "patterns": "model (probabilities)",
                     "censored": "weighed by the ratings observed after the rupture", "estimand": TRUE,
                     "se_type": f"HC3, Rubin's rules (m = {int(e['n_imputations'])})",
                     **{k: e[k] for k in ("b", "se", "ci_low", "ci_high", "beta", "beta_ci_low", "beta_ci_high",
                                          "p", "df", "fmi", "expected_n_unrepaired")},
                     "n": int(e["n"]), "n_excluded": 0,
                     "note": "" if e["n_not_estimable"] == 0 else
                     f"not estimable in {int(e['n_not_estimable'])} of {int(e['n_imputations'])} imputations"})
    out = pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)
    for col in ("n", "n_unrepaired_analysed", "n_excluded"):
        out[col] = out[col].astype("Int64")
    return out
