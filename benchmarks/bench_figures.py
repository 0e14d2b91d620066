"""Every figure of the pipeline at 116, 10,000 and 100,000 clients: time and bytes (a script, not a test).

For each size it simulates a trial (``helpers.simulate.simulate_trial``, 10 sessions), finds
its rupture-repair episodes and builds every figure's input directly, fitting nothing heavy
(the growth model's predictions are straight lines through the observed means, its residuals
the scores minus each client's mean and the session trend; the forest and power figures read
the committed result tables, which do not grow with N). Then it draws and saves every figure
as the notebooks do (``plot_*`` then ``save_figure``) and prints, per figure, the seconds and
the bytes of its PNG, SVG and data table, and the totals; ``benchmarks/results_figures.md``
gets the same table. The target (issue 19): at 100,000 clients seconds per figure and at
most 20 MB of figure outputs in all.

Run: ``.venv/bin/python benchmarks/bench_figures.py [--sizes 116 10000 100000] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a benchmark draws files, never a window

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from helpers import agreement, describe, episodes, figures, figures_patterns, simulate  # noqa: E402

LABELS = {"alliance": "CALPAS-P alliance (mean item score, 1-7)", "pss_sr": "PSS-SR PTSD severity (0-51)"}
CAPTION = " · SIMULATED DATA"
SLOPE = -1.37  # the growth model's session slope on the default run (points per session)


def growth_inputs(sessions: pd.DataFrame, patterns: pd.DataFrame):
    """Predicted lines per pattern (least squares through the observed means, CI from their
    SEs) and residuals (score - client mean - slope x centred session): no model fitted."""
    obs = sessions[["participant_id", "session", "pss_sr"]].dropna()
    obs = obs.assign(pattern=obs["participant_id"].map(patterns.set_index("participant_id")["pattern"]))
    obs = obs[obs["pattern"].isin(["no_rupture", "repaired", "unrepaired"])]
    rows = []
    for name, grp in obs.groupby("pattern"):
        m = grp.groupby("session")["pss_sr"].agg(["mean", "sem"])
        line = np.polyval(np.polyfit(m.index, m["mean"], 1), m.index)
        rows += [[name, s, e, se, e - 1.96 * se, e + 1.96 * se] for s, e, se in zip(m.index, line, m["sem"])]
    predicted = pd.DataFrame(rows, columns=["pattern", "session", "estimate", "se", "ci_low", "ci_high"])
    centred = obs["session"] - obs.groupby("participant_id")["session"].transform("mean")
    fitted = obs.groupby("participant_id")["pss_sr"].transform("mean") + SLOPE * centred
    return predicted, fitted.to_numpy(), (obs["pss_sr"] - fitted).to_numpy()


def pattern_inputs(patterns: pd.DataFrame, truth: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Stand-in pattern probabilities (no model fitted): 0.6 on the true pattern plus 0.4 spread
    by a seeded Dirichlet draw; the most probable pattern, and insufficient data where the
    detection found it, as ``PatternModel.probabilities`` has them."""
    rng = np.random.default_rng(seed)
    truth = truth.set_index("participant_id").loc[patterns["participant_id"], "true_pattern"].to_numpy()
    labels = np.array(["no_rupture", "repaired", "unrepaired"])
    p = 0.6 * (truth[:, None] == labels[None, :]) + 0.4 * rng.dirichlet([1.0, 1.0, 1.0], size=len(truth))
    pattern = np.where(patterns["pattern"].to_numpy() == "insufficient_data", "insufficient_data",
                       labels[p.argmax(axis=1)])
    return pd.DataFrame({"participant_id": patterns["participant_id"].to_numpy(), "p_no_rupture": p[:, 0],
                         "p_repaired": p[:, 1], "p_unrepaired": p[:, 2], "pattern": pattern})


def inputs(n: int) -> dict:
    """name -> a call drawing that figure from a simulated trial of ``n`` clients."""
    trial = simulate.simulate_trial(n_participants=n, seed=20131106)
    sessions, truth = trial.sessions, trial.truth
    eps = episodes.detect_episodes(sessions)
    patterns = episodes.classify_participants(eps, sessions)
    miss = describe.missingness(sessions)
    classified = patterns[patterns["pattern"] != "insufficient_data"]
    predicted, fitted, resid = growth_inputs(sessions, classified)
    table = agreement.confusion(patterns.set_index("participant_id")["pattern"],
                                truth.set_index("participant_id")["true_pattern"])
    betas = pd.read_csv(ROOT / "results" / "tables" / "beta_by_criterion.csv")
    power = pd.read_csv(ROOT / "results" / "tables" / "power_beta.csv")
    start = truth.set_index("participant_id")["imaginal_start"]
    probs = pattern_inputs(patterns, truth)
    classified_probs = probs[probs["pattern"] != "insufficient_data"].set_index("participant_id")
    calibration = agreement.calibration_table(classified_probs, truth.set_index("participant_id")["true_pattern"])
    strips = {"rci": patterns.set_index("participant_id")["pattern"],
              "truth (simulated)": truth.set_index("participant_id")["true_pattern"]}
    return {
        "01_missingness": lambda: figures.plot_missingness(miss, labels=LABELS, caption=CAPTION),
        "01_trajectories_alliance": lambda: figures.plot_trajectories(sessions, "alliance", label=LABELS["alliance"],
                                                                      caption=CAPTION),
        "01_trajectories_pss_sr": lambda: figures.plot_trajectories(sessions, "pss_sr", label=LABELS["pss_sr"],
                                                                    caption=CAPTION),
        "02_prevalence": lambda: figures.plot_prevalence(describe.prevalence_table(patterns), caption=CAPTION),
        "02_rupture_timing": lambda: figures.plot_rupture_timing(eps, start, n_sessions=10, caption=CAPTION),
        "02_example_trajectories": lambda: figures.plot_example_trajectories(sessions, eps, patterns,
                                                                             label=LABELS["alliance"], caption=CAPTION),
        "02_confusion": lambda: figures.plot_confusion(table, caption=CAPTION),
        "02_pattern_probabilities": lambda: figures_patterns.plot_pattern_probabilities(probs, strips=strips,
                                                                                        caption=CAPTION),
        "02_pattern_calibration": lambda: figures_patterns.plot_calibration(calibration, caption=CAPTION),
        "03_growth_by_pattern": lambda: figures.plot_growth(predicted, sessions, classified, label=LABELS["pss_sr"],
                                                            caption=CAPTION),
        "03_growth_residuals": lambda: figures.plot_residuals(fitted, resid, caption=CAPTION),
        "04_forest_beta": lambda: figures.plot_forest(betas, paper_beta=0.44, caption=CAPTION),
        "05_bias_coverage": lambda: figures.plot_bias_coverage(power, caption=CAPTION),
        "05_power_curve": lambda: figures.plot_power_curve(power, caption=CAPTION),
    }


def measure(n: int, folder: Path) -> list[dict]:
    """Draw and save every figure at ``n`` clients; one row per figure."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, draw in inputs(n).items():
        tic = time.perf_counter()
        fig = draw()
        figures.save_figure(fig, name, folder)
        seconds = time.perf_counter() - tic
        figures.plt.close(fig)
        size = {ext: (folder / f"{name}.{ext}").stat().st_size for ext in ("png", "svg", "data.csv")}
        rows.append({"clients": n, "figure": name, "seconds": seconds, **size})
    return rows


def _mb(b: float) -> str:
    return f"{b / 1e6:.2f}"


def markdown(rows: list[dict]) -> str:
    lines = ["| clients | figure | seconds | PNG MB | SVG MB | data MB | total MB |", "|---|---|---|---|---|---|---|"]
    for n, grp in pd.DataFrame(rows).groupby("clients", sort=False):
        for r in grp.itertuples():
            total = r.png + r.svg + r._6
            lines.append(f"| {n:,} | {r.figure} | {r.seconds:.2f} | {_mb(r.png)} | {_mb(r.svg)} | {_mb(r._6)} | "
                         f"{_mb(total)} |")
        total = grp["png"].sum() + grp["svg"].sum() + grp["data.csv"].sum()
        lines.append(f"| {n:,} | **all {len(grp)}** | **{grp['seconds'].sum():.1f}** | {_mb(grp['png'].sum())} | "
                     f"{_mb(grp['svg'].sum())} | {_mb(grp['data.csv'].sum())} | **{_mb(total)}** |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[116, 10_000, 100_000])
    ap.add_argument("--keep", type=Path, help="keep the figures under DIR/<clients>/ (default: a temporary folder)")
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/results_figures.md")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        for n in args.sizes:
            rows += measure(n, base / str(n))
            print(markdown([r for r in rows if r["clients"] == n]), flush=True)
    table = markdown(rows)
    if not args.no_write:
        head = (f"# Figures at any N\n\n`benchmarks/bench_figures.py` on {platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}: seconds to draw and save each figure (PNG + SVG + data "
                "table), and the bytes written.\n\n")
        (ROOT / "benchmarks" / "results_figures.md").write_text(head + table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
