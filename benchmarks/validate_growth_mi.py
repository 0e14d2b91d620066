"""Validation of the growth model's interaction pooled over pattern imputations (issue 18 item 5).

The growth model's session x unrepaired interaction (``time:unrepaired`` of ``pss_sr ~ time *
pattern + (1 + time | client)``) is estimated three ways on the same simulated trials of 116
clients (the power study's trials: ``power.StudyDesign()``'s root seed 20140101, the seeds of
``power.replication_keys``, as notebook 05 at N = 116):

* ``true_pattern``: the simulator's true patterns, CR2 SEs (``power.growth_replicate_batch``);
* ``rci``: the default threshold criterion's patterns, CR2 SEs (the same);
* ``mi``: :func:`helpers.pattern_growth.unrepaired_slope` -- the pattern model
  (``fit_pattern_model``, reliability .83, min_sessions 6), 20 imputations with the symptom
  course in the imputation model, CR2 per completed data set, Rubin's rules (seeded by the
  trial's seed).

Each is scored against the true-pattern value ``power.growth_reference`` (the growth model
with the true patterns fitted to one trial of 20,000 clients): mean estimate, bias, empirical
SE, mean SE, coverage of the 95 % CI (with its Monte-Carlo SE), power (share p < .05). The
size of each test is the share p < .05 on the same seeds in the world where an unrepaired
rupture does not change the course (``unrepaired_dose_factor = 1``: every session is a full
dose; its reference value is printed and is ~0). Run from the repository root:

    .venv/bin/python benchmarks/validate_growth_mi.py --reps 500   # the table in docs/pattern_model.md, ~4 min
    .venv/bin/python benchmarks/validate_growth_mi.py --reps 20    # a quick look

It writes ``benchmarks/results_growth_mi.md`` (the table) and ``benchmarks/results_growth_mi.csv``
(one row per trial, world and method).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

from helpers import power, simulate
from helpers.pattern_growth import unrepaired_slope
from helpers.pattern_model import fit_pattern_model

N_CLIENTS = 116
N_IMPUTATIONS = 20
#: The world without an effect of an unrepaired rupture on the course (the test's size).
NULL_KNOBS = {"unrepaired_dose_factor": 1.0}
HERE = Path(__file__).resolve().parent


def hard_rows(design, tasks, criterion) -> pd.DataFrame:
    """The CR2 result of the growth model on ``criterion``'s patterns, one row per trial."""
    rows, failures = power.growth_replicate_batch(design, tasks, criterion=criterion)
    for f in failures:  # a failed fit is a NaN row, counted in the table (never dropped)
        print(f"{criterion}: rep {f['rep']} failed: {f['error']}", file=sys.stderr)
    r = pd.DataFrame(rows).set_index("rep").reindex([t[1] for t in tasks]).reset_index()
    r["seed"] = [t[2] for t in tasks]
    half = special.stdtrit(r["df_cr2"], 0.975) * r["se_cr2"]
    return pd.DataFrame({"rep": r["rep"], "seed": r["seed"], "method": criterion, "b": r["estimate"],
                         "se": r["se_cr2"], "ci_low": r["estimate"] - half, "ci_high": r["estimate"] + half,
                         "df": r["df_cr2"], "p": r["p_cr2"], "fmi": 0.0, "seconds": np.nan})


def mi_rows(design, tasks) -> pd.DataFrame:
    """:func:`unrepaired_slope` of each trial (pattern model fitted first), with its seconds;
    warnings are counted, not hidden."""
    out = []
    for n, rep, seed in tasks:
        trial = simulate.simulate_trial(n, design.n_sessions, seed, **design.knobs)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = fit_pattern_model(trial.sessions, reliability=power.SIMULATED_RELIABILITY,
                                      min_sessions=design.min_sessions)
            res = unrepaired_slope(model, trial.sessions, n_imputations=N_IMPUTATIONS, seed=seed).iloc[0]
        out.append({"rep": rep, "seed": seed, "method": "mi", **res[["b", "se", "ci_low", "ci_high", "df", "p",
                                                                     "fmi"]].to_dict(),
                    "expected_n_unrepaired": res["expected_n_unrepaired"],
                    "n_not_estimable": res["n_not_estimable"], "n_failed": res["n_failed"], "seconds": time.perf_counter() - t0,
                    "n_warnings": len(caught)})
        for w in caught[:3]:
            print(f"warning (rep {rep}): {w.message}", file=sys.stderr)
    return pd.DataFrame(out)


def world_rows(design, tasks) -> pd.DataFrame:
    t0 = time.perf_counter()
    hard = [hard_rows(design, tasks, c) for c in ("true_pattern", "rci")]
    hard_s = (time.perf_counter() - t0) / (2 * len(tasks))
    for h in hard:
        h["seconds"] = hard_s  # batched: the mean over the trials
    return pd.concat([*hard, mi_rows(design, tasks)], ignore_index=True)


def share(x) -> tuple:
    x = np.asarray(x, dtype=float)
    p = float(x.mean())
    return p, float(np.sqrt(p * (1 - p) / len(x)))


def summarise(effect: pd.DataFrame, null: pd.DataFrame, theta: float) -> pd.DataFrame:
    out = []
    for method, r in effect.groupby("method", sort=False):
        ok = r["b"].notna()
        rr = r[ok]
        cov, cov_se = share((rr["ci_low"] <= theta) & (theta <= rr["ci_high"]))
        pw, pw_se = share(rr["p"] < 0.05)
        rn = null[(null["method"] == method) & null["p"].notna()]
        size, size_se = share(rn["p"] < 0.05)
        out.append({"method": method, "n_trials": len(r), "n_not_estimable": int((~ok).sum()),
                    "n_failed_fit": int((r["n_failed"].fillna(0) > 0).sum()) if "n_failed" in r else 0,
                    "coverage_nan_as_miss": float(((r["ci_low"] <= theta) & (theta <= r["ci_high"])).mean()),
                    "mean_estimate": rr["b"].mean(), "bias": rr["b"].mean() - theta,
                    "bias_pct": 100 * (rr["b"].mean() - theta) / theta,
                    "bias_mcse": rr["b"].std(ddof=1) / np.sqrt(len(rr)),
                    "emp_se": rr["b"].std(ddof=1), "mean_se": rr["se"].mean(), "coverage": cov,
                    "coverage_mcse": cov_se, "power": pw, "power_mcse": pw_se, "size": size, "size_mcse": size_se,
                    "n_null": len(rn), "mean_fmi": rr["fmi"].mean(),
                    "seconds_per_trial": float(pd.concat([r["seconds"], null.loc[null["method"] == method,
                                                                                 "seconds"]]).mean())})
    return pd.DataFrame(out)


LABELS = {"true_pattern": "true patterns, CR2", "rci": "`rci` patterns, CR2",
          "mi": "pattern model, MI pooled (CR2, m = 20)"}


def markdown(s: pd.DataFrame, reps: int, theta: float, theta_null: float, command: str) -> str:
    lines = [
        f"Command: `{command}`. {reps} trials of {N_CLIENTS} clients per world (power-study seeds, root 20140101); "
        f"true-pattern interaction θ = {theta:.3f} PSS-SR points per session (`power.growth_reference`, "
        f"20,000 clients); in the null world (`unrepaired_dose_factor = 1`) θ₀ = {theta_null:.3f}.",
        "",
        "| patterns, SE | mean estimate | bias (MC SE) | empirical SE | mean SE | 95 % coverage (MC SE) "
        "| power | size (MC SE) | s / trial |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in s.iterrows():
        lines.append(
            f"| {LABELS.get(r['method'], r['method'])} | {r['mean_estimate']:.3f} | {r['bias']:+.3f} "
            f"({r['bias_pct']:+.0f} %; {r['bias_mcse']:.3f}) | {r['emp_se']:.3f} | {r['mean_se']:.3f} "
            f"| {r['coverage']:.3f} ({r['coverage_mcse']:.3f}) | {r['power']:.3f} "
            f"| {r['size']:.3f} ({r['size_mcse']:.3f}) | {r['seconds_per_trial']:.3f} |")
    mi = s.set_index("method").loc["mi"] if "mi" in set(s["method"]) else None
    if mi is not None:
        lines += ["", f"MI: mean fmi {mi['mean_fmi']:.2f}; a NaN result (a completed data set without an "
                      f"unrepaired client, or whose growth model could not be fitted: {int(mi['n_failed_fit'])}) in "
                      f"{int(mi['n_not_estimable'])} of {int(mi['n_trials'])} trials; the table is over the others "
                      f"(coverage counting them as misses: {mi['coverage_nan_as_miss']:.3f}). s / trial of the CR2 "
                      "rows: the batched growth fits of the power study; of MI: the pattern model's fit, the "
                      "imputation and 20 growth fits."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--out", default=str(HERE / "results_growth_mi"))
    ap.add_argument("--summarise-only", action="store_true", help="re-read OUT.csv, write OUT.md")
    args = ap.parse_args(argv)
    design = power.StudyDesign(sample_sizes=(N_CLIENTS,), replications=args.reps)
    null_design = dataclasses.replace(design, knobs=dict(NULL_KNOBS))
    tasks = power.replication_keys(design)
    theta = power.growth_reference(design)["estimate"]
    theta_null = power.growth_reference(null_design)["estimate"]
    print(f"theta {theta:.4f}, null theta {theta_null:.4f}", flush=True)
    if args.summarise_only:
        rows = pd.read_csv(args.out + ".csv")
    else:
        rows = pd.concat([world_rows(design, tasks).assign(world="effect"),
                          world_rows(null_design, tasks).assign(world="no_effect")], ignore_index=True)
        rows.to_csv(args.out + ".csv", index=False)
    effect, null = rows[rows["world"] == "effect"], rows[rows["world"] == "no_effect"]
    s = summarise(effect, null, theta)
    print(s.round(3).to_string())
    command = "python benchmarks/validate_growth_mi.py" + (f" --reps {args.reps}" if args.reps != 200 else "")
    Path(args.out + ".md").write_text(markdown(s, args.reps, theta, theta_null, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
