"""The power study one replication at a time: the reference the batched route
(``helpers.power``) is tested against.

Each replication is the simulated trial's long tables (``simulate_trial``), its patterns by
the plain-Python loop detection (:mod:`oracles.ruptures`), the paper's regression by
statsmodels (classical and HC3, leverage 1 by the project's rule) and the agreement with the
truth by :mod:`helpers.agreement`; the growth model by :func:`helpers.growth.fit_growth` on the
tables. Nothing here is shared with the batched route but the simulator and the rules' wording.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm

from helpers import agreement, growth, ols, simulate
from helpers.contract import INSUFFICIENT, PATTERN_LABELS, TRUE_PATTERN
from helpers.power import GROWTH_TERM
from oracles.ruptures import loop_classify, loop_detect_episodes

#: The messages and errors of the detection's rules, as documented (docs/rupture_criteria.md).
BETWEEN_UNDEFINED = ("fewer than 2 session-to-session changes in the sample: the between-client SD is undefined, "
                     "no rupture detected")
RCI_TOO_FEW = ("the RCI needs the SD of the first observed scores, but fewer than 2 participants have an observed "
               "score; pass sd=")
RCI_ZERO_SD = "the SD of the first observed scores is 0; pass sd="


def trial_of(design, n_participants, seed):
    """The simulated trial of a replication, as long tables (a test may replace it)."""
    return simulate.simulate_trial(n_participants, design.n_sessions, seed=seed, **design.knobs)


def _rules_say(sessions, preset) -> list:
    """The messages of a preset's detection on ``sessions``; raises its errors (ValueError)."""
    crit = preset.get("criterion", "rci")
    observed = sessions.dropna(subset=["alliance"]).sort_values(["participant_id", "session"])
    if crit in ("rci", "sudden") and preset.get("sd") is None:
        firsts = observed.groupby("participant_id")["alliance"].first()
        if len(firsts) < 2:
            raise ValueError(RCI_TOO_FEW)
        if np.std(firsts, ddof=1) == 0:
            raise ValueError(RCI_ZERO_SD)
    if crit == "sd" and preset.get("scale", "stricter") in ("between", "stricter"):
        n_changes = len(observed) - observed["participant_id"].nunique()  # observed scores after a first
        if n_changes < 2:
            return [BETWEEN_UNDEFINED]
    n_sessions = sessions["session"].nunique()
    if crit == "sudden" and n_sessions < 4:
        return [f"criterion='sudden' needs at least 4 sessions; the data have {n_sessions}, so no rupture can be "
                "detected"]
    return []


def detect(design, sessions) -> tuple[dict, list]:
    """Every preset's patterns (Series by sorted participant id) and ``"<preset>: <message>"``
    messages, by the loop detection."""
    patterns, messages = {}, []
    for name, preset in design.presets.items():
        messages += [f"{name}: {m}" for m in _rules_say(sessions, preset)]
        eps = loop_detect_episodes(sessions, repair_window=design.repair_window, tolerance=design.tolerance,
                                   **preset)
        patterns[name] = loop_classify(eps, sessions, min_sessions=design.min_sessions)
    return patterns, messages


def paper_regression(post, pre, flag) -> dict:
    """``post ~ pre + flag`` by statsmodels: the flag's b, SE, CI, t, p; HC3 SE, CI, p (t on
    the residual df; NaN when a client has leverage 1 by :func:`helpers.ols.leverage_is_one`);
    the standardised beta; NaN and not estimable with n < 4, a constant flag or a rank-deficient
    design."""
    res = dict.fromkeys(ols.FIT_KEYS, np.nan)
    res["estimable"] = False
    n = len(post)
    if n < 4 or len(set(flag)) < 2:
        return res
    X = sm.add_constant(np.column_stack([pre, flag]), has_constant="add")
    fit = sm.OLS(post, X).fit()
    if fit.model.rank < 3:
        return res
    defined = not ols.leverage_is_one(fit.get_influence().hat_matrix_diag).any()
    hc3 = sm.OLS(post, X).fit(cov_type="HC3" if defined else "nonrobust", use_t=True)
    ci, ci3 = fit.conf_int(0.05)[2], hc3.conf_int(0.05)[2]
    scale = np.std(flag, ddof=1) / np.std(post, ddof=1)
    res.update(b=fit.params[2], se=fit.bse[2], b_ci_low=ci[0], b_ci_high=ci[1], t=fit.tvalues[2],
               p=fit.pvalues[2], se_hc3=hc3.bse[2] if defined else np.nan,
               b_hc3_ci_low=ci3[0] if defined else np.nan, b_hc3_ci_high=ci3[1] if defined else np.nan,
               p_hc3=hc3.pvalues[2] if defined else np.nan, beta=fit.params[2] * scale,
               beta_se=fit.bse[2] * scale, beta_ci_low=ci[0] * scale, beta_ci_high=ci[1] * scale, estimable=True)
    return res


def _agreement(truth: pd.Series, detected: pd.Series) -> dict:
    table = agreement.confusion(detected, truth)
    kappa = agreement.cohen_kappa(table)
    acc = agreement.pattern_accuracy(table).set_index("pattern")
    out = {"kappa": kappa["kappa"], "agreement": kappa["observed"]}
    for p in PATTERN_LABELS:
        out.update({f"sens_{p}": acc.loc[p, "sensitivity"], f"spec_{p}": acc.loc[p, "specificity"]})
    return out


def replicate_trial(design, n_participants, rep, seed) -> list:
    """One replication: one row per preset and the oracle (``helpers.power.MC_ROW_COLUMNS``)."""
    trial = trial_of(design, n_participants, seed)
    patterns, messages = detect(design, trial.sessions)
    ids = np.sort(trial.sessions["participant_id"].unique())
    part = trial.participants.set_index("participant_id").reindex(ids)
    pre, post = (part[f"{design.outcome}_{t}"].to_numpy(float) for t in ("pre", "post"))
    truth = trial.truth.set_index("participant_id")["true_pattern"].reindex(ids)
    classifiable = trial.sessions.groupby("participant_id")["alliance"].count().reindex(ids) >= design.min_sessions
    patterns[TRUE_PATTERN] = truth.where(classifiable, INSUFFICIENT)
    rows = []
    for name, pats in patterns.items():
        pats = pats.reindex(ids)
        cls = (pats != INSUFFICIENT).to_numpy()
        used = cls & ~np.isnan(pre) & ~np.isnan(post)
        flag = (pats.to_numpy()[used] == "unrepaired").astype(float)
        fit = paper_regression(post[used], pre[used], flag)
        own = [m for m in messages if m.startswith(f"{name}: ")]
        rows.append({"n_participants": n_participants, "rep": rep, "seed": seed, "preset": name,
                     "n_classifiable": int(cls.sum()), "n_analysed": int(used.sum()), "n_unrepaired": int(flag.sum()),
                     "estimable": fit["estimable"], **{k: fit[k] for k in ols.FIT_KEYS if k != "t"},
                     **_agreement(truth[cls], pats[cls]), "n_warnings": len(own), "warnings": " | ".join(own)})
    return rows


def run(design, tasks, replicate=replicate_trial) -> tuple[list, list]:
    """``replicate`` of each task, one at a time; a replication that raises is a failure record."""
    rows, failures = [], []
    for n, rep, seed in tasks:
        try:
            rows += replicate(design, n, rep, seed)
        except Exception as exc:  # noqa: BLE001 -- what the batched route records
            failures.append({"n_participants": n, "rep": rep, "seed": seed, "error": f"{type(exc).__name__}: {exc}"})
    return rows, failures


def growth_replicate(design, n_participants, rep, seed, *, criterion="rci", outcome="pss_sr") -> list:
    """One replication of the growth model's power study: the trial's tables, the loop
    detection under ``criterion`` (its messages warned) and :func:`helpers.growth.fit_growth`."""
    trial = trial_of(design, n_participants, seed)
    preset = design.presets[criterion]
    for msg in _rules_say(trial.sessions, preset):
        warnings.warn(msg, UserWarning, stacklevel=2)
    eps = loop_detect_episodes(trial.sessions, repair_window=design.repair_window, tolerance=design.tolerance,
                               **preset)
    pats = loop_classify(eps, trial.sessions, min_sessions=design.min_sessions)
    table = pd.DataFrame({"participant_id": pats.index, "pattern": pats.to_numpy()})
    fit = growth.fit_growth(trial.sessions, table, outcome=outcome, warn=False)
    fx = fit.fixed.set_index("term")
    row = {"n_participants": n_participants, "rep": rep, "seed": seed, "preset": criterion,
           "n_analysed": fit.n_groups, "n_unrepaired": fit.pattern_counts.get("unrepaired", 0),
           "re_formula": fit.re_formula, "simplified": fit.boundary_fit is not None}
    row.update({c: float(fx.loc[GROWTH_TERM, c]) if GROWTH_TERM in fx.index else math.nan
                for c in ("estimate", "se", "df", "t", "p")})
    return [row]
