"""The same data under every rupture criterion preset: how much do the results move?

The paper's exact rupture and repair thresholds are not public, so every headline number is
shown under each named preset of :func:`helpers.ruptures.presets` (absolute 1 point; 1 and
2 SD with within / between / stricter scales; RCI, the default; sudden-change criteria).

Each function takes the contract's tables and returns a tidy DataFrame with one row per
preset (and pattern), with N and 95% CIs.
"""

from __future__ import annotations

import warnings

import pandas as pd

from helpers import agreement, describe, models, ruptures


def criterion_kwargs(params: dict) -> dict:
    """Keyword arguments of :func:`helpers.ruptures.detect_episodes` from run parameters.

    ``params`` uses the names of ``params/default.yaml``: criterion, cutoff, k, sd_scale,
    reliability, rci_sd, repair_window, tolerance. Only the ones the criterion uses (plus the
    repair rule) are passed, so the episode table records exactly what was applied.
    """
    crit = params.get("criterion", ruptures.DEFAULT_CRITERION)
    kw = {"criterion": crit, "repair_window": params.get("repair_window"),
          "tolerance": params.get("tolerance", 0.0)}
    if crit == "absolute":
        kw["cutoff"] = params["cutoff"]
    elif crit == "sd":
        kw.update(k=params["k"], scale=params["sd_scale"])
    elif crit in ("rci", "sudden"):
        kw.update(reliability=params["reliability"], sd=params.get("rci_sd"))
    else:
        raise ValueError(f"unknown criterion {crit!r}; use one of {ruptures.CRITERIA}")
    return kw


def patterns_by_preset(sessions: pd.DataFrame, *, min_sessions: int = 6, repair_window=None,
                       tolerance: float = 0.0, presets=None) -> dict:
    """``{preset name: (episodes, patterns)}`` for every preset on the same sessions."""
    presets = presets or ruptures.presets()
    out = {}
    for name, kw in presets.items():
        episodes = ruptures.detect_episodes(sessions, repair_window=repair_window, tolerance=tolerance, **kw)
        out[name] = (episodes, ruptures.classify_participants(episodes, sessions, min_sessions=min_sessions))
    return out


def prevalence_by_preset(results: dict) -> pd.DataFrame:
    """Prevalence of each pattern (and any rupture) per preset, with Wilson CIs and N."""
    rows = []
    for name, (episodes, pats) in results.items():
        table = describe.prevalence_table(pats).assign(preset=name, n_episodes=len(episodes))
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

    Returns one row per preset with the unrepaired term (b, beta with 95% CI, p, n). A preset
    under which nobody (or everybody) is unrepaired cannot be tested: its row has NaNs and a
    ``note``. Listwise-deletion warnings are collected into ``n_dropped`` rather than repeated
    for every preset (each row states its N).
    """
    rows = []
    for name, (_, pats) in results.items():
        classified = pats[pats["pattern"] != "insufficient_data"]
        n_unrep = int((classified["pattern"] == "unrepaired").sum())
        if n_unrep in (0, len(classified)):
            rows.append({"preset": name, "note": f"{n_unrep} of {len(classified)} unrepaired: not estimable"})
            continue
        with warnings.catch_warnings():
            # The same listwise deletion happens under every preset; its count is in n_dropped.
            warnings.filterwarnings("ignore", message="outcome_regression")
            fit = models.outcome_regression(pats, participants, outcome=outcome, models=("A",))
        term = fit[fit["term"] == "unrepaired"].iloc[0]
        rows.append({"preset": name, "outcome": outcome, "b": term["b"], "beta": term["beta"],
                     "beta_ci_low": term["beta_ci_low"], "beta_ci_high": term["beta_ci_high"],
                     "p": term["p"], "n": int(term["n"]), "n_unrepaired": n_unrep,
                     "n_dropped": int(term["n_dropped"]), "note": ""})
    cols = ["preset", "outcome", "b", "beta", "beta_ci_low", "beta_ci_high", "p", "n",
            "n_unrepaired", "n_dropped", "note"]
    out = pd.DataFrame(rows).reindex(columns=cols)
    dropped = out["n_dropped"].max()
    if dropped > 0:
        warnings.warn(f"beta_by_preset ({outcome}): up to {int(dropped)} classifiable participants without "
                      "both pre and post scores left out (listwise); see n_dropped per preset",
                      UserWarning, stacklevel=2)
    return out
