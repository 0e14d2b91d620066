"""Speed of the growth model's power study (``helpers.power.growth_power``): reference vs batched.

Run:  .venv/bin/python benchmarks/bench_growth_power.py [--replications 100] [--repeat 3]

Notebook 05's design (sample sizes 60, 116, 200, 400; ``--replications`` per size; criterion
rci, outcome PSS-SR) in one process run:

1. one replication at a time (``growth_replicate``: tables, ``growth.fit_growth``; the
   reference), once;
2. batched (``growth_replicate_batch``: simulated arrays, stacked detection, numpy designs,
   every mixed model optimised together by ``lmm.fit_lmm_lean``) in this process alone
   (``n_workers=1``, the default) and with worker processes (one per core), best of
   ``--repeat`` runs each, after a warm-up call (imports);

then the speed-up and the largest relative difference of estimate, se, df, t, p between the
reference and the batched rows (the other columns must be identical), and whether the summary
table written with 6 decimals is identical. The markdown is printed and written to
``benchmarks/results_growth_power.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from helpers import power  # noqa: E402

from bench_ruptures import timed as _timed  # noqa: E402 (best of n runs; this folder is on sys.path)

SIZES = (60, 116, 200, 400)
FLOATS = ["estimate", "se", "df", "t", "p"]


def run(replications: int, repeat: int) -> dict:
    design = power.StudyDesign(sample_sizes=SIZES, replications=replications, seed=20140101)
    power.growth_power(power.StudyDesign(sample_sizes=[60], replications=2, seed=1))  # imports
    t_ref, (s_ref, r_ref) = _timed(lambda: power.growth_power(design, batched=False), 1)
    tasks = power.replication_keys(design)
    t_one, _ = _timed(lambda: power.growth_replicate_batch(design, tasks, n_workers=1), repeat)
    workers = min(os.cpu_count() or 1, 4)
    t_bat, (s_bat, r_bat) = _timed(lambda: power.growth_power(design, n_workers=workers), repeat)
    rel = {c: float(np.nanmax(np.abs(r_bat[c] - r_ref[c]) / np.abs(r_ref[c]))) for c in FLOATS}
    others = [c for c in r_ref.columns if c not in FLOATS]
    same_other = all(r_ref[c].tolist() == r_bat[c].tolist() for c in others)
    same_summary = s_ref.round(6).to_csv(index=False) == s_bat.round(6).to_csv(index=False)
    return {"n": len(tasks), "ref": t_ref, "one": t_one, "bat": t_bat, "rel": rel,
            "same_other": same_other, "same_summary": same_summary,
            "workers": workers, "n_failed": int(s_bat["n_failed"].sum()),
            "n_simplified": int(s_bat["n_simplified"].sum())}


def markdown(res: dict, args) -> str:
    lines = [
        "# Benchmark: growth-model power study (`helpers.power.growth_power`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. "
        f"Command: `.venv/bin/python benchmarks/bench_growth_power.py --replications {args.replications} "
        f"--repeat {args.repeat}`.",
        "",
        f"Notebook 05's design: sample sizes {', '.join(map(str, SIZES))}; {args.replications} replications "
        f"each ({res['n']} in all); criterion rci, outcome PSS-SR; best of {args.repeat} for the batched "
        "routes (after a warm-up call), one run of the reference.",
        "",
        "| route | replications | time (s) | replications / s | speed-up vs reference |",
        "|---|---|---|---|---|",
    ]
    for name, t in (("one at a time (`growth_replicate`, the reference)", res["ref"]),
                    ("batched, this process (`growth_replicate_batch(n_workers=1)`)", res["one"]),
                    (f"batched, worker processes ({res['workers']}; `growth_power(n_workers={res['workers']})`)", res["bat"])):
        lines.append(f"| {name} | {res['n']} | {t:.2f} | {res['n'] / t:.0f} | {res['ref'] / t:.1f}x |")
    diffs = ", ".join(f"{c} {v:.1e}" for c, v in res["rel"].items())
    lines += [
        "",
        f"Largest relative difference batched vs reference: {diffs} (the optimiser takes the same path: "
        "bit for bit). Other columns identical: "
        f"{'yes' if res['same_other'] else 'NO'}; summary table identical at 6 decimals: "
        f"{'yes' if res['same_summary'] else 'NO'}. Failed replications: {res['n_failed']}; simplified "
        f"(singular) fits: {res['n_simplified']}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    res = run(args.replications, args.repeat)
    print(f"reference {res['ref']:.2f} s, batched {res['one']:.2f} s (1 process), {res['bat']:.2f} s "
          f"({res['workers']} worker processes): {res['ref'] / res['bat']:.1f}x", flush=True)
    text = markdown(res, args)
    print(text)
    (HERE / "results_growth_power.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
