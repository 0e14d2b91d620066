"""Figures: one function per figure, a colour-blind-safe palette, and deterministic saving.

Each ``plot_*`` function takes tidy tables and returns a matplotlib Figure; :func:`save_figure`
writes it as PNG (300 dpi) and SVG into ``figures/`` atomically (no timestamps, fixed SVG ids),
with the data it plots beside it (``NAME.data.csv``, :func:`figure_data`). Pixels and SVG
coordinates carry the last bits of the machine's floating point; the data table is what
``make verify`` compares (:mod:`helpers.compare`).
"""

from __future__ import annotations

import functools
import io

# No backend is forced: notebooks use the inline backend (figures shown under their cell),
# scripts and tests without a display fall back to Agg by themselves.
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.colors import to_hex, to_rgba_array
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import Bbox
import numpy as np
import pandas as pd
from scipy import special

from helpers import power_summary
from helpers.tables import atomic_write_bytes, atomic_write_text

#: Okabe & Ito (2008) colour-blind-safe colours, one per alliance pattern.
PATTERN_COLORS = {
    "no_rupture": "#0072B2",  # blue
    "repaired": "#009E73",  # bluish green
    "unrepaired": "#D55E00",  # vermillion
    "insufficient_data": "#999999",  # grey
}
#: The look of every figure, applied by each plotting function (not set at import: a
#: notebook's own matplotlib settings are left alone).
STYLE = {
    "svg.hashsalt": "alliance-replication",  # stable SVG element ids
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def styled(plot):
    """Draw (and save) under :data:`STYLE`, restoring only the settings it changed (not
    ``plt.rc_context``, which restores every setting: the backend's ``interactive`` flag, set
    when the first figure resolves the backend, would be undone and later figures never shown)."""
    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        before = {key: plt.rcParams[key] for key in STYLE}
        plt.rcParams.update(STYLE)
        try:
            return plot(*args, **kwargs)
        finally:
            plt.rcParams.update(before)
    return wrapper


def _keep_best_legend_place(fig) -> None:
    """Search a ``loc="best"`` legend's place once, at the next draw, and keep it.

    Matplotlib searches the place with the fewest overlapping points at every draw: a figure
    saved as PNG and SVG, tabulated and shown inline is drawn six times, and with a hundred
    trajectories each search costs more than the drawing. The place found at the first draw
    (the PNG's, with the final layout) is kept as the legend's fixed location code, which is
    where every later search would put it."""
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None or legend._loc != 0:  # 0: "best"
            continue

        def find_once(width, height, renderer, legend=legend, find=legend._find_best_position):
            x, y = find(width, height, renderer)
            box = Bbox.from_bounds(0, 0, width, height)
            for code in range(1, len(legend.codes)):
                if np.array_equal(legend._get_anchored_bbox(code, box, legend.get_bbox_to_anchor(), renderer), (x, y)):
                    legend._loc_real = code  # the place "best" chose, as a fixed location
                    break
            del legend._find_best_position  # back to the class's search (for another figure state)
            return x, y

        legend._find_best_position = find_once


@styled
def save_figure(fig, name: str, folder) -> list:
    """Write ``fig`` as ``name.png`` (300 dpi) and ``name.svg``, atomically, without dates,
    and the data it shows as ``name.data.csv`` (:func:`figure_data`).

    A legend placed at ``loc="best"`` keeps the place found for the PNG from then on (drawn
    there in the SVG and inline too) instead of searching it again at every draw."""
    folder = Path(folder)
    _keep_best_legend_place(fig)
    written = []
    for fmt, meta in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=meta, bbox_inches="tight")
        written.append(atomic_write_bytes(folder / f"{name}.{fmt}", buf.getvalue()))
    text = figure_data(fig, draw=False).to_csv(index=False, float_format=FIGURE_DATA_FORMAT, lineterminator="\n")
    written.append(atomic_write_text(folder / f"{name}.data.csv", text))
    return written


#: Figure data keep 9 significant digits: data coordinates, not layout.
FIGURE_DATA_FORMAT = "%.9g"
FIGURE_DATA_COLUMNS = ["axes", "element", "kind", "label", "style", "point", "x", "y", "text"]


def _colors(value) -> str:
    """A colour or an array of colours as sorted unique hex codes (``none`` when empty)."""
    try:
        rgba = to_rgba_array(value)
    except (ValueError, TypeError):
        return str(value)
    return "/".join(sorted({to_hex(c, keep_alpha=True) for c in rgba})) or "none"


def _style(artist) -> str:
    """Colour, width, line style, marker and alpha of an artist: what a reader sees of it."""
    parts = []
    for attr in ("get_color", "get_facecolor", "get_edgecolor"):
        if hasattr(artist, attr):
            parts.append(f"{attr[4:]}={_colors(getattr(artist, attr)())}")
    for attr in ("get_linewidth", "get_linestyle", "get_marker", "get_alpha"):
        if hasattr(artist, attr):
            value = getattr(artist, attr)()
            if isinstance(value, (list, tuple, np.ndarray)):
                value = "/".join(sorted({str(v) for v in np.ravel(np.asarray(value, dtype=object))}))
            parts.append(f"{attr[4:]}={value}")
    return " ".join(parts)


def _points(artist) -> np.ndarray:
    """The data coordinates an artist draws (n x 2), in the axes' data units."""
    if isinstance(artist, Line2D):
        return np.asarray(artist.get_xydata(), float).reshape(-1, 2)
    if isinstance(artist, LineCollection):
        segs = artist.get_segments()
        return np.concatenate(segs).reshape(-1, 2) if len(segs) else np.empty((0, 2))
    if isinstance(artist, PathCollection):
        return np.asarray(artist.get_offsets(), float).reshape(-1, 2)
    if isinstance(artist, PolyCollection):
        paths = artist.get_paths()
        return np.concatenate([p.vertices for p in paths]).reshape(-1, 2) if paths else np.empty((0, 2))
    if isinstance(artist, Patch):
        return artist.get_patch_transform().transform(artist.get_path().vertices).reshape(-1, 2)
    if isinstance(artist, AxesImage):
        values = np.asarray(artist.get_array(), float).ravel()  # row by row
        return np.column_stack([np.arange(values.size), values])
    return np.empty((0, 2))


def figure_data(fig, *, draw: bool = True) -> pd.DataFrame:
    """What a figure shows, as a tidy table: one row per plotted point and per text.

    Every axes' lines, markers, bands, error bars, bars and images contribute their points in
    data units (``x``, ``y``) with their label and style (colour, width, line style, marker);
    titles, axis labels, tick labels, legend entries and annotations contribute their text;
    axis limits are rows too (``draw=False``: the figure has just been drawn, as by
    :func:`save_figure`, so its texts are current). Written beside each saved figure, it is what ``make verify``
    compares: two machines draw the same data with pixels that differ in their last bits.

    Examples
    --------
    >>> fig, ax = plt.subplots()
    >>> _ = ax.plot([1, 2], [3.5, 4.0], label="mean")
    >>> _ = ax.set_title("N = 2")
    >>> d = figure_data(fig)
    >>> d.loc[d["kind"] == "Line2D", ["x", "y"]].to_numpy().tolist()
    [[1.0, 3.5], [2.0, 4.0]]
    >>> "N = 2" in set(d["text"])
    True
    >>> plt.close(fig)
    """
    if draw:  # tick labels and legend texts exist only once drawn (no pixels needed)
        fig.draw_without_rendering()
    rows = []

    def add(ax_i, element, kind, label="", style="", pts=None, text=""):
        if pts is None or not len(pts):
            rows.append([ax_i, element, kind, label, style, 0, np.nan, np.nan, text])
        for k, (x, y) in enumerate(pts if pts is not None else []):
            rows.append([ax_i, element, kind, label, style, k, x, y, text])

    for t in (fig._suptitle, *fig.texts):
        if t is not None and t.get_text():
            add(-1, "figure", "text", text=t.get_text())
    for ax_i, ax in enumerate(fig.axes):
        artists = [*ax.lines, *ax.collections, *ax.patches, *ax.images]
        for el, artist in enumerate(artists):
            label = artist.get_label()
            add(ax_i, el, type(artist).__name__, "" if label.startswith("_") else label, _style(artist),
                _points(artist))
        add(ax_i, "xlim", "limits", pts=[ax.get_xlim()])
        add(ax_i, "ylim", "limits", pts=[ax.get_ylim()])
        texts = [("title", ax.title), ("title", ax._left_title), ("title", ax._right_title),
                 ("xlabel", ax.xaxis.label), ("ylabel", ax.yaxis.label)]
        texts += [("xtick", t) for t in ax.get_xticklabels()] + [("ytick", t) for t in ax.get_yticklabels()]
        texts += [("annotation", t) for t in ax.texts]
        legend = ax.get_legend()
        texts += [("legend", t) for t in (legend.get_texts() if legend else [])]
        for element, t in texts:
            if t.get_text():
                add(ax_i, element, "text", text=t.get_text())
    return pd.DataFrame(rows, columns=FIGURE_DATA_COLUMNS)


@styled
def plot_missingness(miss: pd.DataFrame, *, labels: dict, caption: str = ""):
    """Percent missing per session, one line per measure (from describe.missingness);
    ``labels``: measure -> legend text (the instruments' names)."""
    fig, ax = plt.subplots(figsize=(5, 3))
    for measure, grp in miss.groupby("measure", sort=False):
        ax.plot(grp["session"], grp["pct_missing"], marker="o", label=labels.get(measure, measure))
    ax.set_xlabel("session")
    ax.set_ylabel("missing (% of participants)")
    ax.set_xticks(sorted(miss["session"].unique()))
    ax.set_ylim(0, 100)
    ax.legend(frameon=False, fontsize=7)
    n = int(miss["n_participants"].iloc[0]) if len(miss) else 0
    ax.set_title(f"Missing data by session (N = {n}){caption}", fontsize=9)
    fig.tight_layout()
    return fig


@styled
def plot_trajectories(sessions: pd.DataFrame, column: str, *, label: str, patterns: pd.DataFrame | None = None,
                      caption: str = "", ax=None):
    """Every participant's observed trajectory (thin lines) and the mean per session with
    its 95% CI (thick line); coloured by pattern when ``patterns`` is given. ``label``: the
    axis title of ``column`` (its instrument, construct and range)."""
    axis_title = label
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
    ax.set_ylabel(axis_title.replace(" (", "\n("))
    ax.set_xticks(sorted(sessions["session"].unique()))
    ax.legend(frameon=False, fontsize=7)
    n = sessions.loc[sessions[column].notna(), "participant_id"].nunique()
    ax.set_title(f"{axis_title.split(' (')[0]}: individual trajectories and\n"
                 f"mean per session with 95% CI (N = {n}){caption}", fontsize=8)
    fig.tight_layout()
    return fig


@styled
def plot_prevalence(prev: pd.DataFrame, *, caption: str = "", ax=None):
    """Detected prevalence of each pattern with 95% CI beside the paper's value
    (from describe.prevalence_table)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3))
    else:
        fig = ax.figure
    prev = prev.reset_index(drop=True)
    x = np.arange(len(prev))
    colors = [PATTERN_COLORS.get(q, "#CC79A7") for q in prev["quantity"]]
    ax.bar(x, prev["estimate"], color=colors, alpha=0.85, label="this run")
    ax.errorbar(x, prev["estimate"], yerr=[prev["estimate"] - prev["ci_low"], prev["ci_high"] - prev["estimate"]],
                fmt="none", ecolor="black", capsize=3, lw=1)
    ax.scatter(x, prev["paper"], marker="D", color="black", zorder=3, label="paper (McLaughlin et al., 2014)")
    ax.set_xticks(x, [q.replace("_", " ") for q in prev["quantity"]])
    ax.set_ylabel("% of classifiable clients")
    ax.set_ylim(0, 100)
    ax.legend(frameon=False, fontsize=7)
    n = int(prev["n"].iloc[0]) if len(prev) else 0
    ax.set_title(f"Alliance patterns: this run (bars, 95% Wilson CI) and the paper\n(N = {n} classifiable){caption}",
                 fontsize=8)
    fig.tight_layout()
    return fig


@styled
def plot_rupture_timing(episodes: pd.DataFrame, imaginal_start, *, n_sessions: int, caption: str = ""):
    """Number of ruptures by session, relative to the start of imaginal exposure.

    ``imaginal_start`` is a session number, or a Series of per-participant start sessions
    (simulated data); the x axis is then rupture session minus that participant's start."""
    fig, ax = plt.subplots(figsize=(5, 3))
    if isinstance(imaginal_start, pd.Series):
        rel = episodes["rupture_session"] - episodes["participant_id"].map(imaginal_start)
        ax.hist(rel, bins=np.arange(rel.min() - 0.5, rel.max() + 1.5) if len(rel) else 1,
                color=PATTERN_COLORS["unrepaired"], alpha=0.85)
        ax.axvline(-0.5, color="black", ls="--", lw=1)
        ax.set_xlabel("rupture session − session imaginal exposure started")
    else:
        ax.hist(episodes["rupture_session"], bins=np.arange(0.5, n_sessions + 1.5),
                color=PATTERN_COLORS["unrepaired"], alpha=0.85)
        ax.axvline(imaginal_start - 0.5, color="black", ls="--", lw=1, label="imaginal exposure starts")
        ax.set_xticks(range(1, n_sessions + 1))
        ax.set_xlabel("session of the rupture")
        ax.legend(frameon=False, fontsize=7)
    ax.set_ylabel("number of ruptures")
    ax.set_title(f"When ruptures happen ({len(episodes)} ruptures in "
                 f"{episodes['participant_id'].nunique()} clients){caption}", fontsize=8)
    fig.tight_layout()
    return fig


@styled
def plot_example_trajectories(sessions: pd.DataFrame, episodes: pd.DataFrame, patterns: pd.DataFrame,
                              *, label: str, n_per_pattern: int = 3, caption: str = ""):
    """Alliance of a few clients per pattern, ruptures (▼) and repairs (▲) marked.

    Examples are the first ``n_per_pattern`` classified clients of each pattern in id order,
    so the choice is reproducible and does not cherry-pick."""
    shown = ["no_rupture", "repaired", "unrepaired"]
    fig, axes = plt.subplots(1, len(shown), figsize=(9, 3), sharey=True)
    for ax, name in zip(axes, shown):
        ids = sorted(patterns.loc[patterns["pattern"] == name, "participant_id"])[:n_per_pattern]
        for pid in ids:
            person = sessions[(sessions["participant_id"] == pid) & sessions["alliance"].notna()]
            line, = ax.plot(person["session"], person["alliance"], marker="o", ms=3, lw=1, label=pid)
            eps = episodes[episodes["participant_id"] == pid]
            score = person.set_index("session")["alliance"]
            ax.scatter(eps["rupture_session"], score.reindex(eps["rupture_session"]), marker="v", s=50,
                       color=PATTERN_COLORS["unrepaired"], zorder=3)
            rep = eps.loc[eps["repaired"].astype(bool), "repair_session"].astype(int)
            ax.scatter(rep, score.reindex(rep), marker="^", s=50, color=PATTERN_COLORS["repaired"], zorder=3)
        n = int((patterns["pattern"] == name).sum())
        ax.set_title(f"{name.replace('_', ' ')} (showing {len(ids)} of {n})", fontsize=8,
                     color=PATTERN_COLORS[name])
        ax.set_xlabel("session")
        ax.legend(frameon=False, fontsize=6)
    axes[0].set_ylabel(label.replace(" (", "\n("))
    fig.suptitle(f"Example alliance trajectories: ▼ rupture, ▲ repair{caption}", fontsize=9)
    fig.tight_layout()
    return fig


@styled
def plot_confusion(table: pd.DataFrame, *, caption: str = ""):
    """Detected versus true pattern counts (simulated data)."""
    fig, ax = plt.subplots(figsize=(4, 3.2))
    m = table.to_numpy()
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(m.shape[1]), [c.replace("_", " ") for c in table.columns])
    ax.set_yticks(range(m.shape[0]), [c.replace("_", " ") for c in table.index])
    ax.set_xlabel("detected pattern")
    ax.set_ylabel("true pattern")
    ax.set_title(f"Detected vs true pattern (N = {int(m.sum())}){caption}", fontsize=8)
    fig.tight_layout()
    return fig


@styled
def plot_growth(predicted: pd.DataFrame, sessions: pd.DataFrame, patterns: pd.DataFrame, *,
                label: str, outcome: str = "pss_sr", caption: str = ""):
    """Model-predicted trajectories per pattern (line, 95% CI band) over observed means
    (points, 95% CI bars). ``predicted`` comes from GrowthFit.predicted_trajectories()."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    lab = patterns.set_index("participant_id")["pattern"]
    obs = sessions[["participant_id", "session", outcome]].dropna()
    obs = obs.assign(pattern=obs["participant_id"].map(lab))
    for name, grp in predicted.groupby("pattern", sort=False):
        color = PATTERN_COLORS.get(name, "#555555")
        n = int((patterns["pattern"] == name).sum())
        ax.plot(grp["session"], grp["estimate"], color=color, lw=2, label=f"{name.replace('_', ' ')} (n = {n})")
        ax.fill_between(grp["session"], grp["ci_low"], grp["ci_high"], color=color, alpha=0.2)
        means = obs[obs["pattern"] == name].groupby("session")[outcome].agg(["mean", "std", "count"])
        half = 1.96 * means["std"] / np.sqrt(means["count"])
        ax.errorbar(means.index + 0.08 * (list(PATTERN_COLORS).index(name) - 1), means["mean"], yerr=half,
                    fmt="o", ms=3, color=color, lw=0.8, capsize=2)
    ax.set_xlabel("session")
    ax.set_ylabel(label.replace(" (", "\n("))
    ax.set_xticks(sorted(predicted["session"].unique()))
    ax.legend(frameon=False, fontsize=7)
    ax.set_title("PTSD severity by alliance pattern: mixed-model prediction (line, 95% CI)\n"
                 f"over observed means (points, 95% CI){caption}", fontsize=8)
    fig.tight_layout()
    return fig


def normal_qq(values):
    """The points and line of a normal Q-Q plot: ``scipy.stats.probplot(values, dist="norm")``
    to the bit, without importing scipy.stats (0.5 s).

    Returns ``(osm, osr, slope, intercept)``: the normal quantiles of Filliben's uniform
    order-statistic medians, the sorted values, and the least-squares line through them
    (:func:`scipy.stats.linregress`'s arithmetic).

    >>> osm, osr, slope, intercept = normal_qq([0.5, -1.0, 2.0])
    >>> osr.tolist(), [round(float(v), 4) for v in osm], round(float(slope), 4)
    ([-1.0, 0.5, 2.0], [-0.8193, 0.0, 0.8193], 1.8308)
    """
    x = np.asarray(values)
    n = len(x)
    if n == 0:
        return x, x, np.nan, np.nan
    medians = np.empty(n, dtype=np.float64)
    medians[-1] = 0.5 ** (1.0 / n)
    medians[0] = 1 - medians[-1]
    medians[1:-1] = (np.arange(2, n) - 0.3175) / (n + 0.365)
    osm = special.ndtri(medians)  # stats.norm.ppf
    osr = np.sort(x)
    ssxm, ssxym, _, _ = np.cov(osm, osr, bias=1).flat
    slope = ssxym / ssxm
    return osm, osr, slope, np.mean(osr, None) - slope * np.mean(osm, None)


@styled
def plot_residuals(fitted, residuals, *, caption: str = ""):
    """Residual diagnostics of a fitted model: residuals vs fitted, and a normal Q-Q plot."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
    a1.scatter(fitted, residuals, s=6, alpha=0.4, color="#0072B2")
    a1.axhline(0, color="black", lw=0.8)
    a1.set_xlabel("fitted value")
    a1.set_ylabel("residual")
    a1.set_title(f"Residuals vs fitted (n = {len(residuals)}){caption}", fontsize=8)
    osm, osr, slope, intercept = normal_qq(residuals)
    a2.scatter(osm, osr, s=6, alpha=0.4, color="#0072B2")
    a2.plot(osm, slope * np.asarray(osm) + intercept, color="black", lw=0.8)
    a2.set_xlabel("normal quantile")
    a2.set_ylabel("ordered residual")
    a2.set_title("Normal Q-Q plot of residuals", fontsize=8)
    fig.tight_layout()
    return fig


@styled
def plot_forest(betas: pd.DataFrame, *, paper_beta: float, default: str = "rci", caption: str = ""):
    """Forest plot of the unrepaired-rupture beta (95% CI) under every rupture criterion
    preset (from multiverse.beta_by_preset), with the paper's value as a dashed line."""
    d = betas.dropna(subset=["beta"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(5.5, 0.35 * len(d) + 1.3))
    y = np.arange(len(d))[::-1]
    for yi, (_, r) in zip(y, d.iterrows()):
        color = PATTERN_COLORS["unrepaired"] if r["preset"] == default else "#555555"
        ax.plot([r["beta_ci_low"], r["beta_ci_high"]], [yi, yi], color=color, lw=1.5)
        ax.plot(r["beta"], yi, "s", color=color, ms=5)
    ax.axvline(paper_beta, color="black", ls="--", lw=1, label=f"paper: β = {paper_beta:.2f}")
    ax.axvline(0, color="#999999", lw=0.8)
    ax.set_yticks(y, [f"{r.preset}{' (default)' if r.preset == default else ''}  n = {int(r.n)}, "
                      f"{int(r.n_unrepaired)} unrepaired" for r in d.itertuples()], fontsize=7)
    ax.set_xlabel("standardised β of unrepaired rupture on post-treatment PTSD (95% CI)")
    ax.legend(frameon=False, fontsize=7, loc="best")  # where it hides the fewest intervals
    ax.set_title(f"How the paper's test depends on the rupture criterion{caption}", fontsize=8)
    fig.tight_layout()
    return fig


#: Okabe & Ito (2008) colours without black (black is the oracle), cycled with line styles.
_POWER_COLORS = ["#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442"]
_POWER_STYLES = ["-", "--", ":", "-."]
_POWER_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">"]


# --------------------------------------------------------------------------------------------
# the power study (notebook 05)
# --------------------------------------------------------------------------------------------
def _power_style(i, name):
    if name == power_summary.TRUE_PATTERN:
        return dict(color="black", linestyle="--", marker="*", linewidth=1.6)
    return dict(color=_POWER_COLORS[i % len(_POWER_COLORS)],
                linestyle=_POWER_STYLES[(i // len(_POWER_COLORS)) % len(_POWER_STYLES)],
                marker=_POWER_MARKERS[i % len(_POWER_MARKERS)], linewidth=1.1)


@styled
def plot_power_curve(beta_summary: pd.DataFrame, *, target: float = 0.8, caption: str = ""):
    """Power against N, one line per criterion, bars +-2 MC SE: the paper's OLS test (left)
    and the same test with HC3 standard errors (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(7.6, 3.6), sharey=True)
    presets = list(dict.fromkeys(beta_summary["preset"]))
    sizes = sorted(beta_summary["n_participants"].unique())
    alpha = beta_summary["alpha"].iloc[0]
    for ax, (test, col) in zip(axes, power_summary.TESTS.items()):
        for i, name in enumerate(presets):
            cell = beta_summary[beta_summary["preset"] == name].sort_values("n_participants")
            ax.errorbar(cell["n_participants"], cell[col], yerr=2 * cell[f"{col}_mcse"], capsize=2,
                        markersize=4, label=name.replace("_", " "), **_power_style(i, name))
        ax.axhline(target, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xticks(sizes)
        ax.set_xlabel("clients enrolled (N)")
        ax.set_title("OLS t test (the paper's)" if test == "ols" else "t test with HC3 SE", fontsize=8)
    axes[0].set_ylabel(f"power (p < {alpha:g})")
    axes[0].set_ylim(0, 1.02)
    r = int(beta_summary["n_replications"].min())
    fig.suptitle(f"Power of the unrepaired-rupture test by criterion (R = {r} per N){caption}", fontsize=9)
    axes[1].legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


@styled
def plot_bias_coverage(beta_summary: pd.DataFrame, *, at_n: int = 116, caption: str = ""):
    """Mean beta (+-1 empirical SE) and 95% CI coverage (+-2 MC SE) per criterion at one N."""
    n = power_summary.closest_size(beta_summary["n_participants"], at_n)
    cell = beta_summary[beta_summary["n_participants"] == n].reset_index(drop=True)
    y = np.arange(len(cell))[::-1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(6.8, 3.4), sharey=True)
    for i, row in cell.iterrows():
        st = _power_style(i, row["preset"])
        ax1.errorbar(row["beta_mean"], y[i], xerr=row["emp_se"], color=st["color"], marker=st["marker"],
                     capsize=2, markersize=4)
        ax2.errorbar(row["coverage"], y[i], xerr=2 * row["coverage_mcse"], color=st["color"],
                     marker=st["marker"], capsize=2, markersize=4)
    theta = float(cell["theta"].iloc[0])
    ax1.axvline(theta, color="black", linewidth=0.9, label=f"true beta {theta:.2f}")
    ax1.axvline(power_summary.PAPER_BETA, color="grey", linewidth=0.9, linestyle=":", label=f"paper {power_summary.PAPER_BETA:.2f}")
    ax1.set_yticks(y, [p.replace("_", " ") for p in cell["preset"]])
    ax1.set_xlabel("standardised beta (mean +- empirical SE)")
    ax2.axvline(0.95, color="black", linewidth=0.9)
    ax2.set_xlabel("95% CI coverage of the true beta")
    ax2.set_xlim(-0.02, 1.02)
    r = int(cell["n_replications"].min())
    fig.suptitle(f"Unrepaired-rupture beta by criterion, N = {n} (R = {r}){caption}", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.legend(*ax1.get_legend_handles_labels(), loc="lower center", ncol=2, frameon=False, fontsize=7)
    return fig
