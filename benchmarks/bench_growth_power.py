"""Speed of the growth model's power study (``helpers.power.growth_power``): reference vs batched.

Run:  .venv/bin/python benchmarks/bench_growth_power.py [--replications 100] [--repeat 3]

Notebook 05's design (sample sizes 60, 116, 200, 400; ``--replications`` per size; criterion
rci, outcome PSS-SR) in one process run:

1. one replication at a time by the tests' reference (``tests/oracles/power.py``:
   ``growth_replicate``: tables, the loop detection, ``growth.fit_growth``), once;
2. batched (``growth_replicate_batch``: simulated arrays, stacked detection, numpy designs,
   every mixed model optimised together by ``lmm.fit_lmm_lean``) in this process alone
   (``n_workers=1``, the default) and with worker processes (one per core), best of
   ``--repeat`` runs each, after a warm-up call (imports);

then the speed-up and the largest relative difference of estimate, se, df, t, p between the
reference and the batched rows (the other columns must be identical). The markdown is printed
and written to ``benchmarks/results_growth_power.md``.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))

from helpers import power  # noqa: E402
from oracles import power as oracle  # noqa: E402

from bench_ruptures import timed as _timed  # noqa: E402 (best of n runs; this folder is on sys.path)

SIZES = (60, 116, 200, 400)
FLOATS = ["estimate", "se", "df", "t", "p"]


def run(replications: int, repeat: int) -> dict:
    design = power.StudyDesign(sample_sizes=SIZES, replications=replications, seed=20140101)
    power.growth_power(power.StudyDesign(sample_sizes=[60], replications=2, seed=1))  # imports
    tasks = power.replication_keys(design)
    t_ref, (rows, _) = _timed(lambda: oracle.run(design, tasks, functools.partial(oracle.growth_replicate)), 1)
    r_ref = pd.DataFrame(rows)
    t_one, _ = _timed(lambda: power.growth_replicate_batch(design, tasks, n_workers=1), repeat)
    workers = min(os.cpu_count() or 1, 4)
    t_bat, (s_bat, r_bat) = _timed(lambda: power.growth_power(design, n_workers=workers), repeat)
    rel = {c: float(np.nanmax(np.abs(r_bat[c] - r_ref[c]) / np.abs(r_ref[c]))) for c in FLOATS}
    others = [c for c in r_ref.columns if c not in FLOATS]
    same_other = all(r_ref[c].tolist() == r_bat[c].tolist() for c in others)
    return {"n": len(tasks), "ref": t_ref, "one": t_one, "bat": t_bat, "rel": rel, "same_other": same_other,
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
    for name, t in (("one at a time (the tests' reference, `tests/oracles/power.py`)", res["ref"]),
                    ("batched, this process (`growth_replicate_batch(n_workers=1)`)", res["one"]),
                    (f"batched, worker processes ({res['workers']}; `growth_power(n_workers={res['workers']})`)", res["bat"])):
        lines.append(f"| {name} | {res['n']} | {t:.2f} | {res['n'] / t:.0f} | {res['ref'] / t:.1f}x |")
    diffs = ", ".join(f"{c} {v:.1e}" for c, v in res["rel"].items())
    lines += [
        "",
        f"Largest relative difference batched vs reference: {diffs} (the optimiser takes the same path: "
        "bit for bit). Other columns identical: "
        f"{'yes' if res['same_other'] else 'NO'}. Failed replications: {res['n_failed']}; simplified "
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
