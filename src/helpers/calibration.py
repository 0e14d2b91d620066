"""Calibration of the simulator against what the pipeline *detects*.

The simulator's true pattern prevalences are not what a reader sees: the pipeline detects
ruptures from noisy, incomplete alliance ratings, so some ruptures are missed, some repairs
are not seen and noise makes a few false ruptures. The rupture knobs of
:mod:`helpers.simulate` are therefore tuned so that the *detected* prevalence under the
default criterion (:data:`helpers.episodes.DEFAULT_CRITERION`) among classifiable clients
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

from helpers import episodes, power
from helpers.contract import PATTERN_LABELS, TRUE_PATTERN

TARGETS = {"n_classifiable": 82.0, "no_rupture": 54.0, "repaired": 28.0, "unrepaired": 18.0, "beta": 0.45}


def run(seeds, *, n_participants=116, n_sessions=10, min_sessions=6, rupture_params=None,
        outcome="pss_i", **knobs) -> pd.DataFrame:
    """Simulated trials (one per seed) through the power study's chain (simulate -> detect ->
    classify -> estimate, :func:`helpers.power.analyse_batch` and
    :func:`helpers.power.fit_batch`, the trials stacked) under one criterion
    (``rupture_params``: keywords of :func:`helpers.episodes.detect_episodes`; default its
    defaults): one row per seed with the numbers calibration targets (percent).

    Raises
    ------
    RuntimeError
        A trial failed (its seed and error in the message).
    """
    criterion = (rupture_params or {}).get("criterion", episodes.DEFAULT_CRITERION)
    design = power.StudyDesign(sample_sizes=(n_participants,), replications=1, n_sessions=n_sessions,
                               min_sessions=min_sessions, outcome=outcome, knobs=knobs,
                               presets={criterion: dict(rupture_params or {})})
    stacked, failures = power.analyse_batch(design, [(n_participants, i, s) for i, s in enumerate(seeds)])
    if failures:
        raise RuntimeError(f"calibration: {len(failures)} trials failed, e.g. seed {failures[0]['seed']}: "
                           f"{failures[0]['error']}")
    rows = {(row["rep"], row["preset"]): row for row in power.fit_batch(design, stacked)}
    return pd.DataFrame([_targets(stacked, g, rows[(task[1], criterion)], rows[(task[1], TRUE_PATTERN)], criterion)
                         for g, task in enumerate(stacked.tasks)])


def _targets(stacked, g, detected, oracle, criterion) -> dict:
    """The calibrated quantities of trial ``g``."""
    a, b = stacked.starts[g], stacked.starts[g + 1]
    codes, truth = stacked.codes[criterion][a:b], stacked.truth[a:b]
    classified = codes < len(PATTERN_LABELS)
    out = {"seed": stacked.tasks[g][2], "n_classifiable": detected["n_classifiable"]}
    for i, name in enumerate(PATTERN_LABELS):
        out[name] = 100 * float((codes[classified] == i).mean()) if classified.any() else np.nan
        out[f"true_{name}"] = 100 * float((truth[classified] == i).mean()) if classified.any() else np.nan
    out["agreement"] = 100 * detected["agreement"]
    out["beta"] = detected["beta"] if detected["estimable"] else np.nan
    out["beta_true"] = oracle["beta"] if oracle["estimable"] else np.nan
    return out


def one_run(seed, **kwargs) -> dict:
    """:func:`run` of one seed, as a dict."""
    return run([seed], **kwargs).iloc[0].to_dict()


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
