"""Figures: one function per figure, a colour-blind-safe palette, and deterministic saving.

Each ``plot_*`` function takes tidy tables and returns a matplotlib Figure; :func:`save_figure`
writes it as PNG (300 dpi) and SVG into ``figures/`` atomically and byte-reproducibly (no
timestamps, fixed SVG ids), so two runs give identical files.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display needed; notebooks still show figures inline
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from helpers import paths  # noqa: E402
from helpers.tables import atomic_write_bytes  # noqa: E402

#: Okabe & Ito (2008) colour-blind-safe colours, one per alliance pattern.
PATTERN_COLORS = {
    "no_rupture": "#0072B2",  # blue
    "repaired": "#009E73",  # bluish green
    "unrepaired": "#D55E00",  # vermillion
    "insufficient_data": "#999999",  # grey
}
MEASURE_LABELS = {
    "alliance": "CALPAS-P alliance (mean item score, 1-7)",
    "pss_sr": "PSS-SR PTSD severity (0-51)",
}

plt.rcParams.update({
    "svg.hashsalt": "alliance-replication",  # stable SVG element ids
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
})


def save_figure(fig, name: str, folder=None) -> list:
    """Write ``fig`` as ``name.png`` (300 dpi) and ``name.svg``, atomically, without dates."""
    folder = folder or paths.FIGURES
    written = []
    for fmt, meta in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=meta, bbox_inches="tight")
        written.append(atomic_write_bytes(folder / f"{name}.{fmt}", buf.getvalue()))
    return written


def plot_missingness(miss: pd.DataFrame, *, caption: str = ""):
    """Percent missing per session, one line per measure (from describe.missingness)."""
    fig, ax = plt.subplots(figsize=(5, 3))
    for measure, grp in miss.groupby("measure", sort=False):
        ax.plot(grp["session"], grp["pct_missing"], marker="o", label=MEASURE_LABELS.get(measure, measure))
    ax.set_xlabel("session")
    ax.set_ylabel("missing (% of participants)")
    ax.set_xticks(sorted(miss["session"].unique()))
    ax.set_ylim(0, 100)
    ax.legend(frameon=False, fontsize=7)
    n = int(miss["n_participants"].iloc[0]) if len(miss) else 0
    ax.set_title(f"Missing data by session (N = {n}){caption}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_trajectories(sessions: pd.DataFrame, column: str, *, patterns: pd.DataFrame | None = None,
                      caption: str = "", ax=None):
    """Every participant's observed trajectory (thin lines) and the mean per session with
    its 95% CI (thick line); coloured by pattern when ``patterns`` is given."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.2))
    else:
        fig = ax.figure
    data = sessions[["participant_id", "session", column]].dropna()
    groups = {"all": data}
    if patterns is not None:
        lab = patterns.set_index("participant_id")["pattern"]
        data = data.assign(pattern=data["participant_id"].map(lab))
        groups = {p: g for p, g in data.groupby("pattern", sort=False) if p in PATTERN_COLORS}
    for name, grp in groups.items():
        color = PATTERN_COLORS.get(name, "#555555")
        for _, person in grp.groupby("participant_id"):
            ax.plot(person["session"], person[column], color=color, alpha=0.12, lw=0.6)
        summary = grp.groupby("session")[column].agg(["mean", "std", "count"])
        half = 1.96 * summary["std"] / np.sqrt(summary["count"])
        label = f"{name} (n = {grp['participant_id'].nunique()})"
        ax.plot(summary.index, summary["mean"], color=color, lw=2, label=label)
        ax.fill_between(summary.index, summary["mean"] - half, summary["mean"] + half, color=color, alpha=0.25)
    ax.set_xlabel("session")
    ax.set_ylabel(MEASURE_LABELS.get(column, column).replace(" (", "\n("))
    ax.set_xticks(sorted(sessions["session"].unique()))
    ax.legend(frameon=False, fontsize=7)
    n = sessions.loc[sessions[column].notna(), "participant_id"].nunique()
    ax.set_title(f"{MEASURE_LABELS.get(column, column).split(' (')[0]}: individual trajectories and\n"
                 f"mean per session with 95% CI (N = {n}){caption}", fontsize=8)
    fig.tight_layout()
    return fig
