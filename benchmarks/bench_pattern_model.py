"""Speed of the pattern model (``helpers.pattern_model``).

Run:  .venv/bin/python benchmarks/bench_pattern_model.py [--trials 30] [--batch 100]

1. **One fit of a 116-client, 10-session trial** (the issue's budget: at most 0.1 s median):
   ``fit_pattern_model`` on the long sessions table of ``--trials`` default simulated trials,
   each timed best of 3; the median over the trials. The same for the array route
   (``fit_pattern_arrays`` on the wide matrix) and, best of 1, for each harder setting of
   the simulator (``docs/simulation.md``), whose fits take more E-steps (and, with second
   episodes, the two-episode templates take part).
2. **Batched replications** (the power study's route): ``--batch`` default trials stacked and
   fitted at once by ``fit_pattern_arrays(..., starts=...)``, against the same trials fitted
   one at a time; replications per second of both, and the largest difference between their
   probabilities (they are equal to rounding: each trial keeps its own hyperparameters and
   stopping point).
3. ``unrepaired_effect`` (20 imputations, 200 + 20 x 10 Gibbs sweeps): median time.

The markdown table is printed and written to ``benchmarks/results_pattern_model_speed.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from bench_ruptures import timed  # noqa: E402  (best-of-n timer)

from helpers import pattern_model, simulate  # noqa: E402
from helpers.power import replication_seed  # noqa: E402
from helpers.study import HARDER_SETTINGS  # noqa: E402

ROOT = 20131106
HARDER = HARDER_SETTINGS  # the harder worlds notebook 05 runs (helpers.study), one definition


def single_fits(trials: int) -> list[tuple]:
    seeds = [replication_seed(ROOT, 116, r) for r in range(trials)]
    table, arrays, iters = [], [], []
    for s in seeds:
        trial = simulate.simulate_trial(116, 10, seed=s)
        X = simulate.simulate_arrays(116, 10, seed=s)["alliance"]
        t, m = timed(lambda: pattern_model.fit_pattern_model(trial.sessions, reliability=0.83), 3)
        table.append(t)
        iters.append(m.n_iter)
        arrays.append(timed(lambda: pattern_model.fit_pattern_arrays(X, reliability=0.83), 3)[0])
    rows = [("default, table route (fit_pattern_model)", np.median(table), np.median(iters)),
            ("default, array route (fit_pattern_arrays)", np.median(arrays), np.median(iters))]
    for name, knobs in HARDER.items():
        times, its = [], []
        for s in seeds:
            X = simulate.simulate_arrays(116, 10, seed=s, **knobs)["alliance"]
            t, m = timed(lambda: pattern_model.fit_pattern_arrays(X, reliability=0.83), 1)
            times.append(t)
            its.append(m[0].n_iter)
        rows.append((name, np.median(times), np.median(its)))
    return rows


def batched(n_trials: int) -> dict:
    seeds = [replication_seed(ROOT, 116, 10_000 + r) for r in range(n_trials)]
    arrays = [simulate.simulate_arrays(116, 10, seed=s)["alliance"] for s in seeds]
    X = np.vstack(arrays)
    starts = np.arange(n_trials) * 116
    t_batch, together = timed(lambda: pattern_model.fit_pattern_arrays(X, starts=starts, reliability=0.83), 2)
    t0 = time.perf_counter()
    alone = [pattern_model.fit_pattern_arrays(a, reliability=0.83)[0] for a in arrays]
    t_alone = time.perf_counter() - t0
    cols = ["p_no_rupture", "p_repaired", "p_unrepaired"]
    diff = max(float(np.abs(a.probabilities[cols].to_numpy() - b.probabilities[cols].to_numpy()).max())
               for a, b in zip(together, alone))
    return {"n": n_trials, "batched_per_s": n_trials / t_batch, "alone_per_s": n_trials / t_alone,
            "max_diff": diff}


def effect_time(trials: int) -> float:
    times = []
    for r in range(trials):
        trial = simulate.simulate_trial(116, 10, seed=replication_seed(ROOT, 116, r))
        m = pattern_model.fit_pattern_model(trial.sessions, reliability=0.83)
        times.append(timed(lambda: pattern_model.unrepaired_effect(m, trial.participants, seed=r), 1)[0])
    return float(np.median(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args(argv)
    single = single_fits(args.trials)
    batch = batched(args.batch)
    eff = effect_time(min(args.trials, 20))
    lines = [
        "# Speed of the pattern model",
        "",
        f"`benchmarks/bench_pattern_model.py --trials {args.trials} --batch {args.batch}`; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}; one process. Times are best of 3 (harder settings: 1) per trial, "
        "median over the trials; measured on a shared machine, so they are upper bounds.",
        "",
        "| fit of a 116-client, 10-session trial | median seconds | median E-steps |",
        "|---|---|---|",
        *[f"| {name} | {t:.3f} | {it:.0f} |" for name, t, it in single],
        "",
        f"Batched: {batch['n']} default trials stacked, {batch['batched_per_s']:.1f} replications/s, against "
        f"{batch['alone_per_s']:.1f} one at a time ({batch['batched_per_s'] / batch['alone_per_s']:.1f}x); "
        f"largest difference between their probabilities {batch['max_diff']:.1e}.",
        "",
        f"`unrepaired_effect` (20 imputations): median {eff:.3f} s.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    (HERE / "results_pattern_model_speed.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
