"""Speed of the power study (``helpers.power``): stage times per replication and Dask scaling.

Run:  .venv/bin/python benchmarks/bench_power.py [--replications 100] [--workers 1 2] [--stage-reps 30]

0. **Batched vs the one-at-a-time reference**: the study's replications in this process,
   batched per sample size (``run_chunk``: ``replicate_batch``, the study's only route) and
   one at a time by the tests' reference (``tests/oracles/power.py``: long tables, the
   plain-Python loop detection, statsmodels, ``helpers.agreement``); replications per second
   of both and their ratio, and the largest difference between the two tables.
1. **Stages of the batched route** (in this process, no Dask): ``--stage-reps`` replications
   of each sample size simulated into arrays (``replication_arrays``), detected together under
   the 9 criterion presets (``episodes.detect_grouped``) and fitted together (``fit_batch``:
   agreement with the truth and the paper's regression for the 9 presets and the oracle);
   mean milliseconds per replication.
2. **Throughput** (batched path): the study's replications (sample sizes 60, 116, 200, 400; ``--replications``
   per size; the reference trial shrunk to 2,000 clients so that it does not dominate) on a
   LocalCluster with 1 and with 2 workers. Cluster start-up and shut-down are timed apart
   (an empty cluster opened and closed); replications per minute = replications / (run time
   - start-up time). The scaling ratio is rate(2 workers) / rate(1 worker). The tables of
   the two runs are checked to be identical.

The markdown table is printed and written to ``benchmarks/results_power.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))

from helpers import episodes, power  # noqa: E402
from oracles import power as oracle  # noqa: E402

SIZES = (60, 116, 200, 400)


def stage_times(reps: int, seed: int = 20140101) -> list[dict]:
    """Milliseconds per replication of each stage of the batched route, ``reps`` replications
    of each sample size in one batch."""
    design = power.StudyDesign(sample_sizes=SIZES, replications=reps, seed=seed)
    rows = []
    for n in SIZES:
        tasks = [t for t in power.replication_keys(design) if t[0] == n]
        t0 = time.perf_counter()
        arrays = [power.replication_arrays(design, n, s) for _, _, s in tasks]
        t1 = time.perf_counter()
        X = np.vstack([a["alliance"] for a in arrays])
        starts = np.cumsum([0] + [a["alliance"].shape[0] for a in arrays])
        episodes.detect_grouped(X, arrays[0]["labels"], starts, design.presets, min_sessions=design.min_sessions)
        t2 = time.perf_counter()
        stacked, _ = power.analyse_batch(design, tasks)
        t3 = time.perf_counter()
        power.fit_batch(design, stacked)
        t4 = time.perf_counter()
        per = 1000 / reps
        rows.append({"n": n, "simulate": per * (t1 - t0), "detect": per * (t2 - t1), "fit": per * (t4 - t3),
                     "total": per * ((t1 - t0) + (t2 - t1) + (t4 - t3))})
    return rows


def batched_vs_one_at_a_time(replications: int, seed: int = 20140101) -> dict:
    """Replications per second in this process (no Dask): batched per sample size (the study)
    and one at a time by the tests' reference, on the same keys; the rows are checked to agree."""
    design = power.StudyDesign(sample_sizes=SIZES, replications=replications, seed=seed)
    tasks = power.replication_keys(design)
    t0 = time.perf_counter()
    ref, _ = oracle.run(design, tasks)
    t1 = time.perf_counter()
    bat, _ = power.run_chunk(design, tasks)
    t2 = time.perf_counter()
    a, b = pd.DataFrame(ref), pd.DataFrame(bat)
    num = a.select_dtypes("float").columns
    rel = float(np.nanmax(np.abs(a[num] - b[num]).to_numpy() / np.maximum(np.abs(a[num]).to_numpy(), 1.0)))
    same_other = a.drop(columns=num).equals(b.drop(columns=num))
    n = len(tasks)
    return {"replications": n, "one_s": t1 - t0, "batch_s": t2 - t1, "one_rate": n / (t1 - t0),
            "batch_rate": n / (t2 - t1), "max_diff": rel, "same_other": same_other}


def startup_time(n_workers: int) -> float:
    t0 = time.perf_counter()
    with ExitStack() as stack:
        client = power._open_client(stack, None, n_workers)
        client.wait_for_workers(n_workers, timeout=120)
    return time.perf_counter() - t0


def throughput(replications: int, n_workers: int) -> dict:
    design = power.StudyDesign(sample_sizes=SIZES, replications=replications, reference_n=2000)
    startup = min(startup_time(n_workers) for _ in range(2))
    # a study this small runs in-process by default (power.IN_PROCESS_MAX_CLIENTS): force the
    # LocalCluster, whose throughput is what this measures
    in_process_max = power.IN_PROCESS_MAX_CLIENTS
    power.IN_PROCESS_MAX_CLIENTS = 0
    try:
        t0 = time.perf_counter()
        reps, failures, _ = power.run_replications(design, n_workers=n_workers, progress=False)
        total = time.perf_counter() - t0
    finally:
        power.IN_PROCESS_MAX_CLIENTS = in_process_max
    n = len(power.replication_keys(design))
    return {"workers": n_workers, "replications": n, "failed": len(failures), "startup_s": startup,
            "total_s": total, "rate_per_min": 60 * n / (total - startup), "table": reps}


def markdown(stages, runs, args, cmp=None) -> str:
    lines = [
        "# Benchmark: helpers.power (simulation study on Dask)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. "
        f"Command: `.venv/bin/python benchmarks/bench_power.py --replications {args.replications} "
        f"--stage-reps {args.stage_reps}`.",
        "",
        "## Stages of the batched route (milliseconds per replication, "
        f"{args.stage_reps} replications per N in one batch; 9 presets + the oracle)",
        "",
        "| N enrolled | simulate (arrays) | detect (9 presets, stacked) | fit (agreement + regression, 10 criteria) "
        "| total |",
        "|---|---|---|---|---|",
    ]
    for r in stages:
        lines.append(f"| {r['n']} | {r['simulate']:.1f} | {r['detect']:.1f} | {r['fit']:.1f} | {r['total']:.1f} |")
    if cmp is not None:
        lines += [
            "",
            f"## Batched vs the tests' one-at-a-time reference (one process, no Dask; sample sizes "
            f"{', '.join(map(str, SIZES))}; "
            f"{args.replications} replications each)",
            "",
            "| path | replications | time (s) | replications / s |",
            "|---|---|---|---|",
            f"| one at a time (`tests/oracles/power.py`: tables, loop detection, statsmodels) | {cmp['replications']} "
            f"| {cmp['one_s']:.1f} | {cmp['one_rate']:.1f} |",
            f"| batched per sample size (`replicate_batch`) | {cmp['replications']} | {cmp['batch_s']:.1f} | "
            f"{cmp['batch_rate']:.1f} |",
            "",
            f"Speed-up batched / one at a time: **{cmp['batch_rate'] / cmp['one_rate']:.1f}x**. Largest difference "
            f"of a float column, relative (absolute below 1): {cmp['max_diff']:.1e}; other columns identical: "
            f"{'yes' if cmp['same_other'] else 'NO'}.",
        ]
    lines += [
        "",
        f"## Throughput (sample sizes {', '.join(map(str, SIZES))}; {args.replications} replications each)",
        "",
        "| workers | replications | cluster start + stop (s) | run incl. start-up (s) | replications / minute | scaling vs 1 worker |",
        "|---|---|---|---|---|---|",
    ]
    base = runs[0]["rate_per_min"]
    for r in runs:
        lines.append(f"| {r['workers']} | {r['replications']} | {r['startup_s']:.1f} | {r['total_s']:.1f} | "
                     f"{r['rate_per_min']:.0f} | {r['rate_per_min'] / base:.2f}x |")
    same = all(r["table"].equals(runs[0]["table"]) for r in runs)
    lines += ["", f"Replication tables identical across worker counts: {'yes' if same else 'NO'}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=100)
    parser.add_argument("--stage-reps", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    stages = stage_times(args.stage_reps)
    cmp = batched_vs_one_at_a_time(args.replications)
    print(f"batched vs one at a time: {cmp['batch_rate']:.1f} vs {cmp['one_rate']:.1f} replications/s "
          f"= {cmp['batch_rate'] / cmp['one_rate']:.1f}x", flush=True)
    runs = [throughput(args.replications, w) for w in args.workers]
    text = markdown(stages, runs, args, cmp)
    print(text)
    (HERE / "results_power.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
