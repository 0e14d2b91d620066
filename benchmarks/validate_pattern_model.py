"""Validation of helpers.pattern_model against the simulator's truth (issue 18's done-when).

For the default simulated world and each harder setting (``docs/simulation.md``), R trials of
116 clients x 10 sessions, each on its own seed, are analysed two ways:

* the pattern model (:func:`helpers.pattern_model.fit_pattern_model`, reliability .83) and its
  multiply imputed effect of an unrepaired rupture (:func:`~helpers.pattern_model.unrepaired_effect`,
  20 imputations, HC3, seeded by the trial's seed);
* the default threshold criterion ``rci`` (``episodes.detect_episodes(criterion="rci",
  reliability=0.83)`` + ``classify_participants(min_sessions=6)``) and the paper's regression
  on its hard labels (``helpers.ols.ols_unrepaired_batch``, HC3 interval).

Both are scored on the classifiable clients (at least 6 ratings) against the true patterns:
Cohen's kappa of the modal pattern, the multi-class Brier score (sum over the three patterns of
the squared difference between the probability and the truth's 0/1; the criterion's hard
label as probabilities 0/1, so its Brier is twice its error rate), and -- for the effect -- the
bias against and the coverage of the true-pattern b: the b of post PSS-I ~ pre + true
unrepaired among the classifiable clients with pre and post, in one trial of 200,000 clients of
the same setting (what ``power.reference_values`` computes for the default world).

Seeds: trial r of every setting uses ``power.replication_seed(ROOT_SEED, 116, r)``, the
reference trial ``power.replication_seed(ROOT_SEED, 0, 0)``, with ``ROOT_SEED`` below: none of
these seeds was used while the model was written or tuned (that used seeds 1-200 and a handful
of small ones). Run from the repository root:

    .venv/bin/python benchmarks/validate_pattern_model.py            # R = 200, ~15 min
    .venv/bin/python benchmarks/validate_pattern_model.py --reps 20  # a quick look

It writes ``benchmarks/results_pattern_model.md`` (the summary) and
``benchmarks/results_pattern_model.csv`` (one row per trial and setting).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import episodes, pattern_model, simulate
from helpers.contract import PATTERN_LABELS
from helpers.ols import ols_unrepaired_batch
from helpers.power import agreement_many, replication_seed


def ols_unrepaired(post, pre, flag) -> dict:
    """The paper's regression of one data set (helpers.ols.ols_unrepaired_batch of one)."""
    r = ols_unrepaired_batch(post[None], pre[None], flag[None], [len(post)])
    return {k: (v[0] if np.ndim(v) else v) for k, v in r.items()}


def agreement_stats(truth, detected) -> dict:
    """Cohen's kappa of two label arrays (helpers.power.agreement_many of one table)."""
    k = len(PATTERN_LABELS)
    code = {lab: i for i, lab in enumerate(PATTERN_LABELS)}
    t = np.array([code[v] for v in truth])
    d = np.array([code[v] for v in detected])
    return {key: float(v[0]) for key, v in agreement_many(np.bincount(k * t + d, minlength=k * k).reshape(1, k, k)).items()}

#: Seeds of the validation (run 2). Run 1 used 2026_1204 (results kept in
#: results_pattern_model_run1.*): it found two fits that stopped at max_iter, NaN warnings in
#: the bivariate moments far in the tail, and prevalences thrown to 0 by an extrapolated EM
#: step; the fixes (a floor on the drop SD, the NaN guard, a weak Dirichlet prior on the
#: prevalences) were made after seeing it, so the numbers reported come from fresh seeds.
ROOT_SEED = 2026_1205
N_CLIENTS, N_SESSIONS, REFERENCE_N = 116, 10, 200_000
RELIABILITY, MIN_SESSIONS = 0.83, 6
HERE = Path(__file__).resolve().parent

#: setting -> (simulator knobs, fit keywords)
SETTINGS = {
    "default": ({}, {}),
    "heavy_tails (t, df 3)": ({"alliance_noise_df": 3.0}, {}),
    "ar1 noise (0.5)": ({"alliance_noise_ar": 0.5}, {}),
    "random-walk drift (0.15)": ({"alliance_drift_sd": 0.15}, {}),
    "gradual drops (all)": ({"p_gradual_drop": 1.0}, {}),
    "second episode (p 0.5)": ({"p_second_rupture": 0.5}, {}),
    "second episode, one-episode templates": ({"p_second_rupture": 0.5}, {"two_episodes": False}),
    "rupture-dependent dropout (HR 3)": ({"dropout_rupture_hr": 3.0}, {}),
    "smaller ruptures (drop mean 0.9)": ({"rupture_drop_mean": 0.9}, {}),
}


def true_b(knobs: dict) -> float:
    """The true-pattern b of the setting, in one trial of REFERENCE_N clients."""
    arr = simulate.simulate_arrays(REFERENCE_N, N_SESSIONS, seed=replication_seed(ROOT_SEED, 0, 0), **knobs)
    ok = ((~np.isnan(arr["alliance"])).sum(axis=1) >= MIN_SESSIONS) & ~np.isnan(arr["pss_i_pre"]) \
        & ~np.isnan(arr["pss_i_post"])
    return float(ols_unrepaired(arr["pss_i_post"][ok], arr["pss_i_pre"][ok],
                                (arr["pattern"][ok] == 2).astype(float))["b"])


def brier(prob, truth_code) -> float:
    """Mean over clients of sum_k (p_k - [truth = k])^2."""
    return float(((prob - np.eye(3)[truth_code]) ** 2).sum(axis=1).mean())


def one_trial(knobs: dict, fit_kw: dict, seed: int) -> dict:
    """Both analyses of one simulated trial; warnings are counted, not hidden."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = _analyse(knobs, fit_kw, seed)
    return {**row, "n_warnings": len(caught)}


def _analyse(knobs: dict, fit_kw: dict, seed: int) -> dict:
    trial = simulate.simulate_trial(N_CLIENTS, N_SESSIONS, seed=seed, **knobs)
    t0 = time.perf_counter()
    model = pattern_model.fit_pattern_model(trial.sessions, reliability=RELIABILITY,
                                            min_sessions=MIN_SESSIONS, **fit_kw)
    fit_time = time.perf_counter() - t0
    effect = pattern_model.unrepaired_effect(model, trial.participants, seed=seed).iloc[0]
    eps = episodes.detect_episodes(trial.sessions, criterion="rci", reliability=RELIABILITY)
    rci = episodes.classify_participants(eps, trial.sessions, min_sessions=MIN_SESSIONS)
    probs = model.probabilities
    truth = trial.truth.set_index("participant_id")["true_pattern"].reindex(probs["participant_id"]).to_numpy()
    rci_pat = rci.set_index("participant_id")["pattern"].reindex(probs["participant_id"]).to_numpy()
    cls = probs["n_sessions_observed"].to_numpy() >= MIN_SESSIONS
    code = {lab: i for i, lab in enumerate(PATTERN_LABELS)}
    t_code = np.array([code[v] for v in truth[cls]])
    p_model = probs[["p_no_rupture", "p_repaired", "p_unrepaired"]].to_numpy()[cls]
    p_rci = np.eye(3)[[code[v] for v in rci_pat[cls]]]
    part = trial.participants.set_index("participant_id").reindex(probs["participant_id"])
    pre, post = part["pss_i_pre"].to_numpy(float), part["pss_i_post"].to_numpy(float)
    used = cls & ~np.isnan(pre) & ~np.isnan(post)
    ols = ols_unrepaired(post[used], pre[used], (rci_pat[used] == "unrepaired").astype(float))
    oracle = ols_unrepaired(post[used], pre[used], (truth[used] == "unrepaired").astype(float))
    return {
        "seed": seed, "n_classifiable": int(cls.sum()), "fit_seconds": fit_time,
        "n_iter": model.n_iter, "converged": model.converged, "p_second": model.p_second,
        "kappa_model": agreement_stats(truth[cls], probs["pattern"].to_numpy()[cls])["kappa"],
        "kappa_rci": agreement_stats(truth[cls], rci_pat[cls])["kappa"],
        "brier_model": brier(p_model, t_code), "brier_rci": brier(p_rci, t_code),
        "b_mi": effect["b"], "ci_low_mi": effect["ci_low"], "ci_high_mi": effect["ci_high"],
        "fmi": effect["fmi"], "expected_n_unrepaired": effect["expected_n_unrepaired"],
        "mi_estimable": bool(effect["n_not_estimable"] == 0),
        "n_true_unrepaired": int((truth[used] == "unrepaired").sum()),
        "b_rci": ols["b"], "ci_low_rci_hc3": ols["b_hc3_ci_low"], "ci_high_rci_hc3": ols["b_hc3_ci_high"],
        "b_oracle": oracle["b"],
    }


def summarise(rows: pd.DataFrame, b_true: float) -> dict:
    R = len(rows)

    def mean_se(x):
        x = np.asarray(x, dtype=float)
        x = x[np.isfinite(x)]
        return x.mean(), x.std(ddof=1) / np.sqrt(len(x))

    ok = rows["mi_estimable"].to_numpy(bool)
    cover_all = ((rows["ci_low_mi"] <= b_true) & (b_true <= rows["ci_high_mi"])).to_numpy()
    cover = cover_all[ok]  # among the trials where the MI estimate exists
    cover_rci = ((rows["ci_low_rci_hc3"] <= b_true) & (b_true <= rows["ci_high_rci_hc3"])).to_numpy()
    km, km_se = mean_se(rows["kappa_model"])
    kr, kr_se = mean_se(rows["kappa_rci"])
    kd, kd_se = mean_se(rows["kappa_model"] - rows["kappa_rci"])
    bm, bm_se = mean_se(rows["b_mi"])
    br, _ = mean_se(rows["b_rci"])
    bo, _ = mean_se(rows["b_oracle"])
    c = cover.mean()
    n_ok = int(ok.sum())
    return {
        "R": R, "b_true": b_true,
        "kappa_model": km, "kappa_model_se": km_se, "kappa_rci": kr, "kappa_rci_se": kr_se,
        "kappa_diff": kd, "kappa_diff_se": kd_se,
        "brier_model": rows["brier_model"].mean(), "brier_rci": rows["brier_rci"].mean(),
        "b_mi": bm, "rel_bias_mi": bm / b_true - 1, "rel_bias_mi_se": bm_se / b_true,
        "coverage_mi": c, "coverage_mi_se": np.sqrt(c * (1 - c) / n_ok), "n_mi_not_estimable": R - n_ok,
        "coverage_mi_all": cover_all.mean(),
        "ci_width_mi": (rows["ci_high_mi"] - rows["ci_low_mi"]).mean(), "fmi": rows["fmi"].mean(),
        "rel_bias_rci": br / b_true - 1, "coverage_rci_hc3": cover_rci.mean(),
        "rel_bias_oracle": bo / b_true - 1,
        "fit_seconds_median": rows["fit_seconds"].median(), "n_not_converged": int((~rows["converged"]).sum()),
        "n_warnings": int(rows["n_warnings"].sum()),
    }


def markdown(summary: pd.DataFrame, reps: int, seconds: float) -> str:
    s = summary
    lines = [
        "# Validation of the pattern model",
        "",
        "Written by `benchmarks/validate_pattern_model.py` (do not edit by hand). "
        f"{reps} simulated trials per setting (116 clients, 10 sessions), seeds "
        f"`power.replication_seed({ROOT_SEED}, 116, r)`, r = 0..{reps - 1}, none used in tuning; the true-pattern "
        f"b of each setting from one trial of {REFERENCE_N:,} clients (seed `replication_seed({ROOT_SEED}, 0, 0)`). "
        "Classifiable clients (>= 6 ratings) only. `rci` = the default threshold criterion "
        "(reliability .83) with the paper's OLS on its hard labels (HC3 interval). MC SE = Monte-Carlo "
        f"standard error over the trials. Run time {seconds / 60:.1f} min on this project's 2-core machine "
        "(shared with other jobs: the fit times are indicative; `benchmarks/bench_pattern_model.py` times the fit). "
        "An earlier run on the seeds of root 20261204 (`results_pattern_model_run1.md`, made by the code before "
        "them) led to three numerical fixes -- a floor on the drop SD (two fits stopped at max_iter), a guard "
        "against NaN moments far in the tail (warnings), a weak Dirichlet prior on the prevalences (an "
        "extrapolated step could set one to 0 for good); these numbers come from fresh seeds.",
        "",
        "## Patterns: agreement with the truth",
        "",
        "| setting | kappa model | kappa rci | model - rci (MC SE) | Brier model | Brier rci | median fit (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in s.iterrows():
        lines.append(f"| {name} | {r.kappa_model:.3f} | {r.kappa_rci:.3f} | {r.kappa_diff:+.3f} ({r.kappa_diff_se:.3f}) "
                     f"| {r.brier_model:.3f} | {r.brier_rci:.3f} | {r.fit_seconds_median:.3f} |")
    lines += [
        "",
        "## The effect of an unrepaired rupture (b, PSS-I points)",
        "",
        "| setting | true b | MI: mean b | MI: rel. bias (MC SE) | MI: 95% CI coverage (MC SE) | MI: not estimable "
        "(coverage counting them as misses) | MI: mean CI width | mean fmi | rci OLS: rel. bias | rci OLS: HC3 coverage "
        "| oracle: rel. bias |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in s.iterrows():
        lines.append(f"| {name} | {r.b_true:.2f} | {r.b_mi:.2f} | {r.rel_bias_mi:+.3f} ({r.rel_bias_mi_se:.3f}) "
                     f"| {r.coverage_mi:.3f} ({r.coverage_mi_se:.3f}) | {r.n_mi_not_estimable:.0f} ({r.coverage_mi_all:.3f}) "
                     f"| {r.ci_width_mi:.2f} | {r.fmi:.3f} "
                     f"| {r.rel_bias_rci:+.3f} | {r.coverage_rci_hc3:.3f} | {r.rel_bias_oracle:+.3f} |")
    lines += [
        "",
        "The oracle is the paper's OLS on the true patterns of the same trials: its relative bias is the",
        "Monte-Carlo noise of the trials themselves (its expectation is 0). Mean b, bias and coverage of the MI",
        "are over the trials where it exists: \"not estimable\" counts trials in which some completed data set",
        "had fewer than two unrepaired clients (HC3 undefined), so the pooled estimate is NaN.",
        f"Fits that did not converge: {int(s['n_not_converged'].sum())} of {int(s['R'].sum())}; "
        f"warnings raised during the analyses: {int(s['n_warnings'].sum())}.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--only", nargs="*", help="settings to run (default: all)")
    ap.add_argument("--out", default=str(HERE / "results_pattern_model"))
    args = ap.parse_args(argv)
    start = time.perf_counter()
    seeds = [replication_seed(ROOT_SEED, N_CLIENTS, r) for r in range(args.reps)]
    all_rows, summaries = [], {}
    for name, (knobs, fit_kw) in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        b_true = true_b(knobs)
        rows = pd.DataFrame([one_trial(knobs, fit_kw, s) for s in seeds])
        summaries[name] = summarise(rows, b_true)
        all_rows.append(rows.assign(setting=name, b_true=b_true))
        r = summaries[name]
        print(f"{name}: kappa {r['kappa_model']:.3f} vs rci {r['kappa_rci']:.3f}; bias {r['rel_bias_mi']:+.3f}; "
              f"coverage {r['coverage_mi']:.3f}", file=sys.stderr, flush=True)
    summary = pd.DataFrame.from_dict(summaries, orient="index")
    seconds = time.perf_counter() - start
    Path(args.out + ".md").write_text(markdown(summary, args.reps, seconds))
    cols = ["setting", "seed", *[c for c in all_rows[0].columns if c not in ("setting", "seed")]]
    pd.concat(all_rows)[cols].to_csv(args.out + ".csv", index=False, float_format="%.6g")
    return 0


if __name__ == "__main__":
    sys.exit(main())
