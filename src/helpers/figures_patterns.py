"""Figures of the pattern model (:mod:`helpers.pattern_model`): each client's pattern
probabilities, and their calibration against the truth of a simulated trial.

Drawn in the look of :mod:`helpers.figures` -- its print widths, pattern colours, legends and
the data table every saved figure carries (:func:`helpers.figures.save_figure`) -- and bounded
at any N: the probability figure shows at most :data:`MAX_COLUMNS` columns (consecutive clients
of the ordering averaged above it, stated on the axis), the calibration figure one point per
pattern and probability bin.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from helpers import figures
from helpers.contract import INSUFFICIENT, PATTERN_LABELS
from helpers.figures import DOUBLE, PATTERN_COLORS, SINGLE, _errorbar, _figure_legend, _n, _proxy, _title, styled

#: At most this many columns in :func:`plot_pattern_probabilities` (one per client up to it).
MAX_COLUMNS = 300
#: A label of a strip that is none of the three patterns (insufficient data, a missing label).
OTHER, OTHER_COLOR = "other (insufficient data, none)", PATTERN_COLORS[INSUFFICIENT]


def probability_order(probabilities: pd.DataFrame) -> pd.DataFrame:
    """The classifiable clients in the figure's order: by most probable pattern (no rupture,
    repaired, unrepaired), then from the surest to the least sure (the probability of that
    pattern, descending), ties by id -- so each pattern is a block and its uncertain clients
    sit at the block's end.

    >>> p = pd.DataFrame({"participant_id": ["a", "b", "c"], "pattern": ["unrepaired", "no_rupture", "unrepaired"],
    ...                   "p_no_rupture": [0.1, 0.8, 0.0], "p_repaired": [0.2, 0.1, 0.1],
    ...                   "p_unrepaired": [0.7, 0.1, 0.9]})
    >>> probability_order(p)["participant_id"].tolist()
    ['b', 'c', 'a']
    """
    d = probabilities[probabilities["pattern"].isin(PATTERN_LABELS)].copy()
    d["_rank"] = d["pattern"].map({label: i for i, label in enumerate(PATTERN_LABELS)})
    d["_sure"] = [row[f"p_{pat}"] for pat, (_, row) in zip(d["pattern"], d.iterrows())]
    d = d.sort_values(["_rank", "_sure", "participant_id"], ascending=[True, False, True], kind="mergesort")
    return d.drop(columns=["_rank", "_sure"]).reset_index(drop=True)


def _columns(sizes, most: int) -> np.ndarray:
    """Column of each client of consecutive blocks of ``sizes`` clients: one each up to ``most``
    clients in all; else each block gets columns in proportion to its size (at least one) and
    runs of its consecutive clients share them (run lengths differing by at most one), so that
    no column mixes two blocks.

    >>> _columns([3, 2], 10).tolist(), _columns([6, 2], 4).tolist()
    ([0, 1, 2, 3, 4], [0, 0, 1, 1, 2, 2, 3, 3])
    """
    sizes = [int(k) for k in sizes if k]
    n = sum(sizes)
    if n <= most:
        return np.arange(n)
    out, offset = [], 0
    for k in sizes:
        cols = max(1, (most * k) // n)
        out.append(offset + (np.arange(k) * cols) // k)
        offset += cols
    return np.concatenate(out)


def _stacked(ax, shares: np.ndarray, edges: np.ndarray, labels, colors) -> None:
    """Shares (columns x categories, rows summing to 1) stacked as steps, one artist per category."""
    bottom = np.zeros(shares.shape[0])
    for k, (label, color) in enumerate(zip(labels, colors)):
        top = bottom + shares[:, k]
        ax.stairs(top, edges, baseline=bottom, fill=True, color=color, linewidth=0, label=label)
        bottom = top


@styled
def plot_pattern_probabilities(probabilities: pd.DataFrame, *, strips: dict | None = None, caption: str = "",
                               max_columns: int = MAX_COLUMNS):
    """Each classifiable client's probabilities of no rupture, a repaired and an unrepaired
    rupture, stacked in the patterns' colours, clients ordered by :func:`probability_order`.

    Parameters
    ----------
    probabilities : DataFrame
        ``PatternModel.probabilities`` (participant_id, p_no_rupture, p_repaired,
        p_unrepaired, pattern); the unclassifiable are left out.
    strips : dict, optional
        Strip title -> Series (participant id -> pattern) drawn under the bars in the same
        order, e.g. the threshold criterion's patterns and the simulated truth: where a strip's
        colour differs from the bar's largest part, the two definitions disagree.
    caption : str
        The run's caption (`` · SIMULATED DATA``).
    max_columns : int
        Above this many clients, consecutive clients of the ordering share a column, which
        shows their mean probabilities (and, in a strip, the share of each label).
    """
    d = probability_order(probabilities)
    strips = strips or {}
    n = len(d)
    blocks = d.groupby("pattern", sort=False).size().reindex(PATTERN_LABELS, fill_value=0)
    col = _columns(blocks.to_numpy(), max_columns)
    n_cols = int(col.max()) + 1 if n else 0
    edges = np.arange(n_cols + 1, dtype=float)
    fig, axes = figures.plt.subplots(1 + len(strips), 1, figsize=(DOUBLE, 2.5 + 0.32 * len(strips)),
                                     layout="constrained", sharex=True,
                                     gridspec_kw={"height_ratios": [7] + [1] * len(strips)})
    axes = np.atleast_1d(axes)
    colors = [PATTERN_COLORS[p] for p in PATTERN_LABELS]
    names = [p.replace("_", " ") for p in PATTERN_LABELS]
    probs = d[[f"p_{p}" for p in PATTERN_LABELS]].to_numpy(float)
    counts = np.bincount(col, minlength=n_cols) if n else np.zeros(0, int)
    mean = np.column_stack([np.bincount(col, weights=probs[:, k], minlength=n_cols) for k in range(3)]) / np.maximum(
        counts, 1)[:, None] if n else np.zeros((0, 3))
    _stacked(axes[0], mean, edges, names, colors)
    axes[0].set(ylim=(0, 1), ylabel="probability", xlim=(0, max(n_cols, 1)))
    for ax, (title, labels) in zip(axes[1:], strips.items()):
        got = d["participant_id"].map(labels)
        onehot = np.column_stack([(got == p).to_numpy(float) for p in PATTERN_LABELS])
        other = 1.0 - onehot.sum(axis=1)
        kinds = [*names, OTHER] if other.any() else names  # "other" drawn only where a strip has it
        shares = np.column_stack([onehot, other])[:, :len(kinds)]
        shares = np.column_stack([np.bincount(col, weights=shares[:, k], minlength=n_cols)
                                  for k in range(len(kinds))]) / np.maximum(counts, 1)[:, None]
        _stacked(ax, shares, edges, kinds, [*colors, OTHER_COLOR])
        ax.set_yticks([0.5], [title])
        ax.set_ylim(0, 1)
        ax.tick_params(axis="y", length=0)
        for side in ("left", "bottom"):
            ax.spines[side].set_visible(False)
    # the blocks of the most probable pattern, named under the last axes
    starts = np.concatenate([[0], np.cumsum(blocks.to_numpy())])
    centres = [(col[s] + col[e - 1] + 1) / 2 for s, e in zip(starts[:-1], starts[1:]) if e > s]
    shown = [f"{p.replace('_', ' ')}\n(n = {_n(c)})" for p, c in blocks.items() if c]
    axes[-1].set_xticks(centres, shown)
    for boundary in starts[1:-1]:
        if 0 < boundary < n:
            figures._mark([ax.axvline(col[boundary], color="white", linewidth=1.2) for ax in axes],
                          explained="a gap between the blocks the x tick labels name")
    runs = np.bincount(col) if n else np.zeros(0, int)
    group = "" if n <= max_columns else f"; each column the mean of {_n(runs.min())}–{_n(runs.max())} clients"
    for ax in axes:
        ax.tick_params(axis="x", length=0)
    axes[-1].set_xlabel(f"clients by most probable pattern, surest first{group}")
    fig.suptitle(_title(f"Pattern probabilities of the {_n(n)} classifiable clients (pattern model)", caption, DOUBLE))
    handles = [Patch(facecolor=c, label=name) for c, name in zip(colors, names)]
    if any((~d["participant_id"].map(labels).isin(PATTERN_LABELS)).any() for labels in strips.values()):
        handles.append(Patch(facecolor=OTHER_COLOR, label=OTHER))
    _figure_legend(fig, handles, ncol=len(handles))
    return fig


@styled
def plot_calibration(table: pd.DataFrame, *, caption: str = ""):
    """A reliability (calibration) diagram of the pattern probabilities against the truth
    (:func:`helpers.agreement.calibration_table`), one panel per pattern: per probability bin,
    the share of the clients truly of that pattern (Wilson 95% CI) against their mean
    probability, with the number of clients beside each point; on the diagonal the
    probabilities are calibrated."""
    fig, axes = figures._figure(DOUBLE, 3.0, ncols=len(PATTERN_LABELS), sharey=True)
    perfect = "calibrated: share = probability"
    handles = [_proxy(perfect, color="#999999", linestyle="--", linewidth=1)]
    markers = dict(zip(PATTERN_LABELS, ("o", "s", "D")))
    for ax, pattern in zip(axes, PATTERN_LABELS):
        ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label=perfect)
        t = table[table["pattern"] == pattern]
        color, name = PATTERN_COLORS[pattern], pattern.replace("_", " ")
        label = f"{name} (Wilson 95% CI)"
        if len(t):
            _errorbar(ax, t["mean_predicted"], t["observed"], label=label, marker=markers[pattern], color=color,
                      markersize=4.5, capsize=2, elinewidth=1,
                      # Wilson's bound at 0 of n is 0 up to rounding (6.9e-18): no negative bar
                      yerr=np.clip([t["observed"] - t["ci_low"], t["ci_high"] - t["observed"]], 0, None))
            for x, y, n in zip(t["mean_predicted"], t["observed"], t["n"]):
                right, low = x < 0.75, y < 0.25  # the count beside the point, inside the panel
                ax.annotate(_n(n), (x, y), xytext=(5 if right else -5, 3 if low else -3), textcoords="offset points",
                            ha="left" if right else "right", va="bottom" if low else "top", fontsize=8, color=color)
            handles.append(_proxy(label, marker=markers[pattern], color=color, linestyle="none", markersize=4.5))
        n = int(t["n"].sum())
        ax.set_title(f"{name} (N = {_n(n)})", color=color)
        ax.set(xlim=(-0.04, 1.04), ylim=(-0.04, 1.04), xlabel="mean probability (bin)",
               xticks=[0, 0.5, 1], yticks=[0, 0.25, 0.5, 0.75, 1])
    axes[0].set_ylabel("share truly of the pattern")
    fig.suptitle(_title("Calibration of the pattern probabilities against the truth (numbers: clients per bin)",
                        caption, DOUBLE))
    _figure_legend(fig, handles, ncol=2)
    return fig
