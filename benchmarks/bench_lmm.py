"""Benchmark of ``helpers.lmm.fit_lmm`` against lme4 and statsmodels (a script, not a test).

Model: ``pss_sr ~ time * (repaired + unrepaired) + (1 + time | participant_id)``, REML, on
- the default simulated trial (116 clients): ``tests/reference/default_growth_input.csv``,
- the 1,160-client trial: ``tests/reference/lmm_trial1160_input.csv``
(built as ``tests/reference/lmm_lme4.R`` builds them). Timed, median of ``--repeats`` runs:

- ``fit_lmm`` from the DataFrame, *including* Satterthwaite df, SEs, BLUPs and fitted values;
- statsmodels ``MixedLM.from_formula(...).fit(reml=True)`` with its defaults;
- ``lme4::lmer()`` with its default control, timed inside R with ``system.time`` (R start-up
  and package loading excluded), and ``lmerTest::lmer()`` + ``summary()`` (lme4 plus
  Satterthwaite df, what ``fit_lmm`` computes); and the wall time of the whole Rscript call.

Prints a table and writes ``benchmarks/results_lmm.md``.

Run: ``.venv/bin/python benchmarks/bench_lmm.py [--repeats 7]``
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from helpers.lmm import fit_lmm  # noqa: E402

from bench_growth import R_GROWTH_DATA  # noqa: E402 (this folder is on sys.path when run as a script)

DATASETS = {"default trial (116 clients)": "default_growth_input.csv",
            "1,160-client trial": "lmm_trial1160_input.csv"}
FIXED = "time * (repaired + unrepaired)"

R_SCRIPT = r"""
suppressPackageStartupMessages({library(lme4); library(lmerTest)})
""" + R_GROWTH_DATA + r"""f <- pss_sr ~ time * (repaired + unrepaired) + (1 + time | participant_id)
invisible(lme4::lmer(f, data = d, REML = TRUE))  # warm-up (first-call method dispatch)
invisible(summary(lmerTest::lmer(f, data = d, REML = TRUE)))
for (i in seq_len(repeats)) {
  tm <- system.time(fit <- lme4::lmer(f, data = d, REML = TRUE))
  cat(sprintf("lme4 %.6f %.8f\n", tm[["elapsed"]], as.numeric(logLik(fit))))
  tm <- system.time(s <- summary(lmerTest::lmer(f, data = d, REML = TRUE)))
  cat(sprintf("lmerTest %.6f %.8f\n", tm[["elapsed"]], s$coefficients[1, "df"]))
}
"""


def growth_input(name):
    d = pd.read_csv(ROOT / "tests" / "reference" / name, dtype={"participant_id": str})
    d = d[d["pattern"].isin(["no_rupture", "repaired", "unrepaired"]) & d["pss_sr"].notna()]
    return d.assign(time=d["session"] - (d["session"].min() + d["session"].max()) / 2,
                    repaired=(d["pattern"] == "repaired").astype(float),
                    unrepaired=(d["pattern"] == "unrepaired").astype(float))


def _median_time(func, repeats):
    func()  # warm-up: imports, caches
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        out = func()
        times.append(time.perf_counter() - tic)
    return statistics.median(times), out


def time_python(d, repeats):
    from statsmodels.regression.mixed_linear_model import MixedLM

    ours, fit = _median_time(
        lambda: fit_lmm(d, "pss_sr", FIXED, "participant_id", "1 + time", reml=True), repeats)

    def sm_fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its convergence warnings are part of its default
            model = MixedLM.from_formula("pss_sr ~ " + FIXED, d, groups="participant_id",
                                         re_formula="~time")
            return model.fit(reml=True)

    sm, sm_res = _median_time(sm_fit, repeats)
    return ours, fit, sm, float(sm_res.llf)


def time_r(path, repeats):
    if shutil.which("Rscript") is None:
        return None
    with open(os.devnull, "w") as devnull:
        tic = time.perf_counter()
        out = subprocess.run(["Rscript", "-e", R_SCRIPT, str(path), str(repeats)],
                             capture_output=True, text=True, check=True, stdin=devnull)
        wall = time.perf_counter() - tic
    rows = [line.split() for line in out.stdout.splitlines() if line.split()[:1]
            in (["lme4"], ["lmerTest"])]
    lme4 = [float(r[1]) for r in rows if r[0] == "lme4"]
    lmertest = [float(r[1]) for r in rows if r[0] == "lmerTest"]
    loglik = next(float(r[2]) for r in rows if r[0] == "lme4")
    return {"lme4": statistics.median(lme4), "lmerTest": statistics.median(lmertest),
            "wall": wall, "loglik": loglik}


def run(repeats):
    rows = []
    for label, name in DATASETS.items():
        d = growth_input(name)
        ours, fit, sm, sm_llf = time_python(d, repeats)
        r = time_r(ROOT / "tests" / "reference" / name, repeats)
        rows.append({
            "dataset": label, "n_obs": fit.n_obs, "n_groups": fit.n_groups,
            "fit_lmm_s": ours, "lme4_lmer_s": r["lme4"] if r else np.nan,
            "lmerTest_s": r["lmerTest"] if r else np.nan,
            "rscript_wall_s": r["wall"] if r else np.nan, "statsmodels_s": sm,
            "ratio_vs_lme4": ours / r["lme4"] if r else np.nan,
            "ratio_vs_lmerTest": ours / r["lmerTest"] if r else np.nan,
            "ratio_vs_statsmodels": ours / sm,
            "loglik_fit_lmm": fit.loglik, "loglik_lme4": r["loglik"] if r else np.nan,
            "loglik_statsmodels": sm_llf,
        })
    return pd.DataFrame(rows)


def to_markdown(table, repeats):
    lines = [
        "# helpers.lmm benchmark",
        "",
        "`pss_sr ~ time * (repaired + unrepaired) + (1 + time | participant_id)`, REML.",
        f"Median of {repeats} runs after one warm-up. `fit_lmm` includes Satterthwaite df,",
        "SEs, BLUPs and fitted values; `lme4::lmer()` (default control) is timed inside R with",
        "`system.time`, as is `lmerTest::lmer()` + `summary()` (lme4 plus Satterthwaite df);",
        "`Rscript wall` is the whole Rscript call (start-up, package loading, both fits x",
        "repeats). statsmodels: `MixedLM.from_formula(...).fit(reml=True)` with its defaults.",
        "Ratios are fit_lmm time / other time (< 1: fit_lmm is faster).",
        "",
        ("| dataset | n obs | groups | fit_lmm (ms) | lme4 lmer (ms) | lmerTest (ms) | "
        "Rscript wall (s) | statsmodels (ms) | fit_lmm / lme4 | fit_lmm / lmerTest | "
        "fit_lmm / statsmodels |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.dataset} | {r.n_obs} | {r.n_groups} | {1e3 * r.fit_lmm_s:.1f} | "
            f"{1e3 * r.lme4_lmer_s:.1f} | {1e3 * r.lmerTest_s:.1f} | {r.rscript_wall_s:.2f} | "
            f"{1e3 * r.statsmodels_s:.1f} | {r.ratio_vs_lme4:.2f} | {r.ratio_vs_lmerTest:.2f} | "
            f"{r.ratio_vs_statsmodels:.3f} |")
    lines += ["", "Log-likelihood at the estimate (same constant):", "",
              "| dataset | fit_lmm | lme4 (default control) | statsmodels (default fit) |",
              "|---|---:|---:|---:|"]
    for r in table.itertuples():
        lines.append(f"| {r.dataset} | {r.loglik_fit_lmm:.6f} | {r.loglik_lme4:.6f} | "
                     f"{r.loglik_statsmodels:.6f} |")
    import numpy
    import scipy

    load = table.attrs.get("load", (np.nan, np.nan))

    lines += ["", (f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
              f"{platform.python_version()}, numpy {numpy.__version__}, scipy "
              f"{scipy.__version__}; R: {_r_version()}."),
              (f"1-minute load average before/after the run: {load[0]:.2f} / {load[1]:.2f} "
              "(the machine is shared: timings above ~2 CPUs of load are noisy)."), ""]
    return "\n".join(lines)


def _r_version():
    if shutil.which("Rscript") is None:
        return "not available"
    out = subprocess.run(["Rscript", "-e", ('cat(R.version.string, "lme4",'
                          ' format(packageVersion("lme4")), "lmerTest",'
                          ' format(packageVersion("lmerTest")))')],
                         check=False, capture_output=True, text=True)
    return out.stdout.strip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    table = run(args.repeats)
    table.attrs["load"] = (load_before, os.getloadavg()[0])
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.drop(columns=[c for c in table if c.startswith("loglik")]).to_string(
            index=False, float_format=lambda x: f"{x:.4g}"))
    text = to_markdown(table, args.repeats)
    (ROOT / "benchmarks" / "results_lmm.md").write_text(text)
    print(f"\nwrote {ROOT / 'benchmarks' / 'results_lmm.md'}")


if __name__ == "__main__":
    main()
