"""Calibration of the simulator against what the pipeline *detects*.

The simulator's true pattern prevalences are not what a reader sees: the pipeline detects
ruptures from noisy, incomplete alliance ratings, so some ruptures are missed, some repairs
are not seen and noise makes a few false ruptures. The rupture knobs of
:mod:`helpers.simulate` are therefore tuned so that the *detected* prevalence under the
default criterion (:data:`helpers.ruptures.DEFAULT_CRITERION`) among classifiable clients
averages the paper's 54 / 28 / 18 %, and the effect knob so that the standardised beta of the
*detected* unrepaired pattern averages .45.

Run ``python -m helpers.calibration --seeds 200`` to repeat the recorded run
(``docs/calibration.md``).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from helpers import power, ruptures, simulate

TARGETS = {"n_classifiable": 82.0, "no_rupture": 54.0, "repaired": 28.0, "unrepaired": 18.0, "beta": 0.45}


def standardised_beta(post, pre, flag) -> float:
    """Standardised coefficient of ``flag`` in ``post ~ pre + flag`` (complete cases), i.e.
    b * sd(flag) / sd(post): the paper's beta, by :func:`helpers.power.ols_unrepaired`.
    NaN when it cannot be estimated (constant flag, fewer than 4 complete cases)."""
    d = pd.DataFrame({"y": post, "x": pre, "g": flag}).dropna().astype(float)
    fit = power.ols_unrepaired(d["y"], d["x"], d["g"])
    return float(fit["beta"]) if fit["estimable"] else np.nan


def one_run(seed, *, n_participants=116, n_sessions=10, min_sessions=6, rupture_params=None,
            outcome="pss_i", **knobs) -> dict:
    """Simulate one trial, detect patterns, and return the numbers calibration targets."""
    trial = simulate.simulate_trial(n_participants, n_sessions, seed=seed, **knobs)
    episodes = ruptures.detect_episodes(trial.sessions, **(rupture_params or {}))
    pats = ruptures.classify_participants(episodes, trial.sessions, min_sessions=min_sessions)
    pats = pats.set_index("participant_id")
    classified = pats.loc[pats["pattern"] != "insufficient_data", "pattern"]
    truth = trial.truth.set_index("participant_id")["true_pattern"].reindex(classified.index)
    part = trial.participants.set_index("participant_id").reindex(classified.index)
    out = {"seed": seed, "n_classifiable": len(classified)}
    for name in ("no_rupture", "repaired", "unrepaired"):
        out[name] = 100 * float((classified == name).mean()) if len(classified) else np.nan
        out[f"true_{name}"] = 100 * float((truth == name).mean()) if len(classified) else np.nan
    out["agreement"] = 100 * float((truth == classified).mean()) if len(classified) else np.nan
    flag = (classified == "unrepaired").astype(float)
    out["beta"] = standardised_beta(part[f"{outcome}_post"], part[f"{outcome}_pre"], flag)
    out["beta_true"] = standardised_beta(part[f"{outcome}_post"], part[f"{outcome}_pre"],
                                         (truth == "unrepaired").astype(float))
    return out


def run(seeds, **kwargs) -> pd.DataFrame:
    """:func:`one_run` over ``seeds``: one row per seed."""
    return pd.DataFrame([one_run(s, **kwargs) for s in seeds])


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, SD and Monte-Carlo SE of each calibrated quantity, beside its target."""
    rows = []
    for col in ["n_classifiable", "no_rupture", "repaired", "unrepaired", "beta",
                "true_no_rupture", "true_repaired", "true_unrepaired", "beta_true", "agreement"]:
        x = runs[col].dropna()
        rows.append({"quantity": col, "target": TARGETS.get(col, np.nan), "mean": x.mean(),
                     "sd": x.std(ddof=1), "mc_se": x.std(ddof=1) / np.sqrt(len(x)), "n_runs": len(x)})
    return pd.DataFrame(rows)


def markdown_table(summary: pd.DataFrame) -> str:
    """:func:`summarise`'s table as GitHub markdown (no extra dependency)."""
    lines = ["| quantity | target | mean | SD over seeds | Monte-Carlo SE | runs |", "|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        target = "" if pd.isna(r["target"]) else f"{r['target']:g}"
        lines.append(f"| {r['quantity']} | {target} | {r['mean']:.3f} | {r['sd']:.3f} | "
                     f"{r['mc_se']:.3f} | {r['n_runs']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="calibration of the simulator under the default criterion")
    parser.add_argument("--seeds", type=int, default=200, help="number of simulated trials")
    parser.add_argument("--first-seed", type=int, default=1)
    args = parser.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(f"### seeds {seeds.start}-{seeds.stop - 1}\n")
    print(markdown_table(summarise(run(seeds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
