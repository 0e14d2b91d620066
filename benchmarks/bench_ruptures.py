"""Speed of ``helpers.episodes`` / ``helpers.sudden`` against a straightforward per-participant Python loop.

Run:  .venv/bin/python benchmarks/bench_ruptures.py [--sizes 116 10000 1000000] [--quick]

For every size (participants x 10 sessions, 10% of alliance scores missing) it times
``detect_episodes`` (default criterion, "rci") and ``sudden_changes`` (alliance decreases,
cutoff 1 point, 25%, mean-difference test) and the loop versions below, checks that both
give the same table, and measures peak memory with ``tracemalloc`` in a separate run (so
tracing does not inflate the times). When the loop would take too long (more than
``--loop-max`` participants, default 10,000) it is timed on a random subsample of that size
and scaled linearly to the full size; the table says so. The markdown table is printed and
written to ``benchmarks/results_ruptures.md``.

The loop implementations (``loop_detect_episodes``, ``loop_sudden_changes``) live in
``tests/oracles/ruptures.py``, where they are the independent oracle of the property tests
(``tests/test_episodes.py``, ``tests/test_sudden.py``): they share no code with the vectorised
modules, and follow the written rules one participant, one interval at a time.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))

from helpers import episodes, sudden  # noqa: E402
from oracles.ruptures import loop_detect_episodes, loop_sudden_changes  # noqa: E402


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def simulate_sessions(n, n_sessions=10, missing=0.10, seed=0):
    """Alliance on 1-7 (a noisy random walk with occasional drops), ``missing`` cells NaN."""
    rng = np.random.default_rng(seed)
    level = rng.normal(5.3, 0.7, size=(n, 1))
    steps = rng.normal(0.05, 0.25, size=(n, n_sessions))
    shocks = -rng.exponential(1.0, size=(n, n_sessions)) * (rng.random((n, n_sessions)) < 0.08)
    a = np.clip(np.round((level + np.cumsum(steps + shocks, axis=1)) * 24) / 24, 1.0, 7.0)
    a[rng.random((n, n_sessions)) < missing] = np.nan
    width = len(str(n))
    ids = np.char.add("p", np.char.zfill(np.arange(1, n + 1).astype(str), width))
    return pd.DataFrame({
        "participant_id": pd.array(np.repeat(ids, n_sessions), dtype="str"),
        "session": np.tile(np.arange(1, n_sessions + 1), n),
        "alliance": a.ravel(),
    })


def to_wide(sessions):
    return sessions.pivot(index="participant_id", columns="session", values="alliance")


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------
def timed(fn, repeat):
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def peak_mb(fn):
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


SUDDEN_KW = {"direction": "decrease", "cutoff": 1.0}


def _same_episodes(vec, loop):
    cols = ["participant_id", "pre_session", "rupture_session", "repaired", "censored"]
    a = vec[cols].astype(str).reset_index(drop=True)
    b = loop[cols].astype(str).reset_index(drop=True)
    return len(a) == len(b) and a.equals(b)


def _same_sudden(vec, loop):
    cols = ["participant_id", "pre_session", "reversed"]
    a = vec[cols].astype(str).reset_index(drop=True)
    b = loop[cols].astype(str).reset_index(drop=True)
    return len(a) == len(b) and a.equals(b)


def run(sizes, loop_max, seed=20131106):
    rows = []
    for n in sizes:
        sessions = simulate_sessions(n, seed=seed)
        wide = to_wide(sessions)
        repeat = 3 if n <= 10_000 else 1
        if n > loop_max:
            rng = np.random.default_rng(seed)
            keep = np.sort(rng.choice(wide.index.to_numpy(), size=loop_max, replace=False))
            sub_sessions = sessions[sessions["participant_id"].isin(keep)]
            sub_wide = wide.loc[keep]
            scale, n_loop = n / loop_max, loop_max
        else:
            sub_sessions, sub_wide, scale, n_loop = sessions, wide, 1.0, n
        loop_repeat = 1 if n_loop > 1000 else repeat

        for name, vec_fn, loop_fn, same in (
            ("detect_episodes (rci)",
             lambda s=sessions: episodes.detect_episodes(s),
             lambda eng, s=sub_sessions: loop_detect_episodes(s, engine=eng),
             _same_episodes),
            ("sudden_changes",
             lambda w=wide: sudden.sudden_changes(w, **SUDDEN_KW),
             lambda eng, w=sub_wide: loop_sudden_changes(
                 w, engine="iterrows" if eng == "groupby" else "lists", **SUDDEN_KW),
             _same_sudden),
        ):
            t_vec, out_vec = timed(vec_fn, repeat)
            t_pd, out_pd = timed(lambda: loop_fn("groupby"), loop_repeat)
            t_ls, out_ls = timed(lambda: loop_fn("lists"), loop_repeat)
            # agreement on the loop's (sub)sample
            if scale == 1.0:
                agree = same(out_vec, out_ls) and same(out_vec, out_pd)
            elif name.startswith("detect"):
                # the RCI's SD comes from the whole sample: give the subsample the same SD
                sd_full = float(out_vec.attrs["params"]["sd"])
                agree = same(episodes.detect_episodes(sub_sessions, sd=sd_full),
                             loop_detect_episodes(sub_sessions, sd=sd_full))
            else:
                sub_vec = sudden.sudden_changes(sub_wide, **SUDDEN_KW)
                agree = same(sub_vec, out_ls) and same(sub_vec, out_pd)
            mem_vec = peak_mb(vec_fn)
            mem_pd = peak_mb(lambda: loop_fn("groupby"))
            rows.append({
                "function": name,
                "participants": n,
                "rows found": len(out_vec),
                "vectorised (s)": t_vec,
                "pandas loop (s)": t_pd * scale,
                "plain loop (s)": t_ls * scale,
                "loops timed on": "all" if scale == 1.0 else f"{n_loop:,}, x{scale:g} (est.)",
                "speed-up vs pandas loop": t_pd * scale / t_vec,
                "speed-up vs plain loop": t_ls * scale / t_vec,
                "peak MB vectorised": mem_vec,
                "peak MB pandas loop": mem_pd * scale,
                "same result": "yes" if agree else "NO",
            })
            print(f"{name:24s} n={n:>9,}  vec {t_vec:8.3f}s  pandas loop {t_pd * scale:9.2f}s "
                  f"plain loop {t_ls * scale:8.2f}s  agree={agree}", flush=True)
    return pd.DataFrame(rows)


def to_markdown(df):
    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    lines = [head, sep]
    for _, r in df.iterrows():
        cells = []
        for c in df.columns:
            v = r[c]
            if c == "participants" or c == "rows found":
                cells.append(f"{v:,}")
            elif c.startswith("speed-up"):
                cells.append(f"{v:,.0f}x")
            elif isinstance(v, float):
                cells.append(f"{v:,.3f}" if v < 100 else f"{v:,.0f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[116, 10_000, 1_000_000])
    ap.add_argument("--loop-max", type=int, default=10_000)
    ap.add_argument("--out", default=str(HERE / "results_ruptures.md"))
    args = ap.parse_args(argv)
    df = run(args.sizes, args.loop_max)
    md = to_markdown(df)
    header = (
        "# Benchmark: helpers.ruptures vs a per-participant Python loop\n\n"
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}.\n"
        "Data: participants x 10 sessions, alliance on 1-7, 10% of scores missing "
        "(`simulate_sessions`, seed 20131106). `detect_episodes` with its default criterion "
        "(rci) from the long table; `sudden_changes` (decreases, cutoff 1, 25%, adjusted "
        "mean-difference test) from the wide table. Times: best of 3 runs (1 run for "
        "1,000,000 and for loops over > 1,000 participants). Peak memory: tracemalloc, in a "
        "separate run. Where the loop was timed on a subsample, its time and memory are "
        "scaled linearly (estimated). 'same result': vectorised and loop tables agree on the "
        "participants the loop ran on.\n\n"
        "Command: `.venv/bin/python benchmarks/bench_ruptures.py`\n\n"
    )
    text = header + md + "\n"
    print()
    print(text)
    Path(args.out).write_text(text, encoding="utf-8")
    return df


if __name__ == "__main__":
    main()
