"""Benchmark of ``helpers.growth.fit_growth`` against lme4 (a script, not a test).

Times, on the simulated growth data of ``tests/reference/make_growth_input.py``:
- ``fit_growth`` (REML on :mod:`helpers.lmm`: data preparation, exact fit, Satterthwaite df,
  gradient and boundary checks -- the whole call a notebook makes),
- lme4's ``lmer`` (default control) via Rscript when it is on the PATH: the time inside R
  (``system.time``, excluding R start-up and package loading) and the wall time of the whole
  Rscript call,
on the default trial (116 participants x 10 sessions) and a 10x larger one (1160 x 10).
Prints a table with the ratio ``fit_growth`` / lme4 (goal <= 1; target 0.25) and writes
``benchmarks/results_growth.md``.

Run: ``.venv/bin/python benchmarks/bench_growth.py [--repeats 21]``
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from helpers import growth, mixed  # noqa: E402

#: The R side's growth data, as helpers.growth.growth_data builds them (classifiable clients,
#: observed PSS-SR, time centred on the middle session, pattern dummies); shared by
#: bench_lmm.py, so both benchmarks time lme4 on the same model.
R_GROWTH_DATA = r"""args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], na.strings = "NA", stringsAsFactors = FALSE)
repeats <- as.integer(args[2])
d <- d[d$pattern %in% c("no_rupture", "repaired", "unrepaired") & !is.na(d$pss_sr), ]
d$time <- d$session - (min(d$session) + max(d$session)) / 2
d$repaired <- as.numeric(d$pattern == "repaired")
d$unrepaired <- as.numeric(d$pattern == "unrepaired")
"""

R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
""" + R_GROWTH_DATA + r"""for (i in seq_len(repeats)) {
  tm <- system.time(fit <- lmer(pss_sr ~ time * (repaired + unrepaired) +
                                  (1 + time | participant_id), data = d, REML = TRUE))
  cat(sprintf("elapsed %.6f loglik %.6f\n", tm[["elapsed"]], as.numeric(logLik(fit))))
}
"""


def _generator():
    path = ROOT / "tests" / "reference" / "make_growth_input.py"
    spec = importlib.util.spec_from_file_location("make_growth_input", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.simulate_growth


def _time(func, repeats):
    times, out = [], None
    for _ in range(repeats):
        tic = time.perf_counter()
        out = func()
        times.append(time.perf_counter() - tic)
    return statistics.median(times), out


def _lme4(csv, repeats, tmp):
    script = Path(tmp) / "bench.R"
    script.write_text(R_SCRIPT)
    tic = time.perf_counter()
    proc = subprocess.run(["Rscript", str(script), str(csv), str(repeats)], capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - tic
    lines = [ln.split() for ln in proc.stdout.splitlines() if ln.startswith("elapsed")]
    inside = statistics.median(float(ln[1]) for ln in lines)
    return inside, wall, float(lines[-1][3])


def run(repeats=21, sizes=((116, 10), (1160, 10)), seed=20131106):
    simulate_growth = _generator()
    have_r = shutil.which("Rscript") is not None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_part, n_ses in sizes:
            sessions, patterns = simulate_growth(n_part, n_ses, seed=seed)
            reps = repeats if n_part <= 200 else max(3, repeats // 4)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", mixed.MixedModelBoundaryWarning)
                growth.fit_growth(sessions, patterns)  # warm-up (first-call imports)
                t_fit, fit = _time(lambda: growth.fit_growth(sessions, patterns), reps)
            row = {"dataset": f"{n_part} x {n_ses}", "n_obs": fit.n_obs,
                   "n_groups": fit.n_groups, "fit_growth_s": t_fit, "loglik": fit.loglik}
            if have_r:
                csv = Path(tmp) / f"growth_{n_part}.csv"
                sessions.merge(patterns, on="participant_id").to_csv(csv, index=False,
                                                                     na_rep="NA")
                inside, wall, ll = _lme4(csv, reps, tmp)
                row.update({"lme4_in_R_s": inside, "lme4_wall_s": wall, "lme4_loglik": ll,
                            "ratio_vs_lme4_in_R": t_fit / inside,
                            "ratio_vs_lme4_wall": t_fit / wall})
            rows.append(row)
            print(pd.DataFrame([row]).T.to_string(header=False), flush=True)
    return pd.DataFrame(rows), have_r, repeats


def _markdown(table, have_r, repeats):
    cols = ["dataset", "n_obs", "n_groups", "fit_growth_s"]
    if have_r:
        cols += ["lme4_in_R_s", "lme4_wall_s", "ratio_vs_lme4_in_R", "ratio_vs_lme4_wall"]
    fmt = table[cols].copy()
    for c in cols[3:]:
        fmt[c] = fmt[c].map(lambda v: f"{v:.3g}")
    header = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join("| " + " | ".join(str(v) for v in r) + " |\n" for r in fmt.to_numpy())
    ll = table[["dataset", "loglik"]
               + (["lme4_loglik"] if have_r else [])]
    ll_md = "| " + " | ".join(ll.columns) + " |\n|" + "---|" * len(ll.columns) + "\n" + "".join(
        "| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r) + " |\n"
        for r in ll.to_numpy())
    cpu = platform.processor() or platform.machine()
    return (
        "# Growth-model benchmark\n\n"
        "Generated by `benchmarks/bench_growth.py` (simulated data from "
        "`tests/reference/make_growth_input.py`, REML, "
        "`pss_sr ~ time * (repaired + unrepaired) + (1 + time | participant_id)`).\n"
        f"Median of {repeats} runs for the default trial, {max(3, repeats // 4)} for the 10x "
        "one (after one warm-up call); "
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}.\n\n"
        "- `fit_growth_s`: `helpers.growth.fit_growth` on `helpers.lmm` (data preparation, "
        "exact REML fit, Satterthwaite df, gradient and boundary checks).\n"
        + ("- `lme4_in_R_s`: `system.time(lmer(...))` inside R (excludes R start-up and "
           "loading lme4); `lme4_wall_s`: the whole `Rscript` call (start-up, reading the CSV, "
           "all repeats).\n- ratios: `fit_growth_s` / lme4 time (below 1: fit_growth is faster; "
           "goal <= 1, target 0.25).\n\n"
           if have_r else "- Rscript not found: lme4 columns skipped.\n\n")
        + header + body + "\nLog-likelihoods at the kept optimum:\n\n" + ll_md
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_growth.md"))
    args = parser.parse_args(argv)
    table, have_r, repeats = run(repeats=args.repeats)
    text = _markdown(table, have_r, repeats)
    Path(args.out).write_text(text)
    print(text)
    if "ratio_vs_lme4_in_R" in table:
        for r in table.itertuples():
            print(f"fit_growth / lme4 on {r.dataset}: {r.ratio_vs_lme4_in_R:.2f}")
    return table


if __name__ == "__main__":
    np.seterr(all="warn")
    main()
