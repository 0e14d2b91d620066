"""Figures: one function per figure, drawn with seaborn, sized for print, bounded at any N.

Each ``plot_*`` function takes tidy tables and returns a matplotlib Figure drawn with seaborn
(matplotlib only where seaborn has no plot: precomputed error bars, the client sample as one
line collection); :func:`save_figure` writes it as PNG (300 dpi) and SVG into ``figures/``
atomically (no timestamps, fixed SVG ids), with the data it plots beside it
(``NAME.data.csv``, :func:`figure_data`). Pixels and SVG coordinates carry the last bits of
the machine's floating point; the data table is what ``make verify`` compares
(:mod:`helpers.compare`).

The rules every figure keeps (``tests/test_figures.py``):

* **Print size.** A figure is one column (:data:`SINGLE`, 3.5 in) or a page (:data:`DOUBLE`,
  7 in) wide and every text is at least :data:`MIN_FONT_PT` points at that width.
* **One look per meaning.** An alliance pattern has one colour (:data:`PATTERN_COLORS`); a
  rupture criterion has one colour, marker and line style in every figure
  (:func:`criterion_style`), from the Okabe & Ito (2008) colour-blind-safe palette.
* **Every series explained.** Each drawn series is named by a legend entry, or marked as
  explained by something else the reader sees (tick labels, cell numbers, a colour bar):
  :func:`artist_role`.
* **Bounded at any N.** Trajectory plots draw at most :data:`MAX_CLIENT_LINES` clients, a
  seeded random sample stated in the legend, over means computed from everyone; residual
  plots bin above :data:`BIN_ABOVE` points; so a 100,000-client trial gives figures and data
  tables of the same size as a 116-client one (``benchmarks/bench_figures.py``).
"""

from __future__ import annotations

import functools
import io
import textwrap
import weakref

# No backend is forced: notebooks use the inline backend (figures shown under their cell),
# scripts and tests without a display fall back to Agg by themselves.
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.collections import LineCollection, PathCollection, PolyCollection, QuadMesh
from matplotlib.colors import LogNorm, to_hex, to_rgba_array
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter
from matplotlib.transforms import Bbox
import numpy as np
import pandas as pd
from scipy import special

from helpers import multiverse, power_summary
from helpers.tables import atomic_write_bytes, atomic_write_text

# --------------------------------------------------------------------------------------------
# the look: sizes, palette, criteria
# --------------------------------------------------------------------------------------------
#: Printed widths (inches): one journal column, and the full page width.
SINGLE, DOUBLE = 3.5, 7.0
#: The smallest text on any figure, in points at its printed width.
MIN_FONT_PT = 8

#: Okabe & Ito (2008): eight colours told apart with every common colour-vision deficiency.
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7"}

#: One colour per alliance pattern, in every figure.
PATTERN_COLORS = {
    "no_rupture": OKABE_ITO["blue"],
    "repaired": OKABE_ITO["green"],
    "unrepaired": OKABE_ITO["vermillion"],
    "insufficient_data": "#999999",
}
#: "Any rupture" (repaired + unrepaired) in the prevalence bars: no pattern's, no criterion's colour.
ANY_RUPTURE_COLOR = "#808080"
#: Measures that are not patterns (missingness bars): greys, so they never read as a pattern.
MEASURE_COLORS = ["#404040", "#B0B0B0"]
#: Rupture and repair events marked on a trajectory.
RUPTURE_MARK = {"marker": "v", "color": "black", "markerfacecolor": "black", "markersize": 7}
REPAIR_MARK = {"marker": "^", "color": "black", "markerfacecolor": "white", "markersize": 7}


def _criterion(color, marker, linestyle, filled=True):
    return {"color": OKABE_ITO[color], "marker": marker, "linestyle": linestyle, "filled": filled}


#: One look per rupture criterion, in every figure that shows criteria. Eight colours cannot
#: separate ten series, so the SD family is coded as the reader thinks of it: colour and marker
#: shape = the SD's scale (within / between / stricter), k = 1 solid with a filled marker, k = 2
#: dashed with an open one. The model-based patterns (``model``) are open black hexagons on a dotted
#: line; the oracle (``true_pattern``) is black with a star.
CRITERION_STYLES = {
    "absolute_1": _criterion("orange", "o", "-"),
    "sd_k1_within": _criterion("sky_blue", "s", "-"),
    "sd_k1_between": _criterion("green", "^", "-"),
    "sd_k1_stricter": _criterion("blue", "D", "-"),
    "sd_k2_within": _criterion("sky_blue", "s", "--", filled=False),
    "sd_k2_between": _criterion("green", "^", "--", filled=False),
    "sd_k2_stricter": _criterion("blue", "D", "--", filled=False),
    "rci": _criterion("vermillion", "v", "-"),
    "sudden": _criterion("purple", "P", "-"),
    # the model-based patterns (helpers.pattern_model): not a threshold, so its own line style
    "model": _criterion("black", "h", ":", filled=False),
    power_summary.TRUE_PATTERN: _criterion("black", "*", "-"),
}
#: A run's own criterion that matches no preset ("sd (this run)", e.g. k = 1.5).
OTHER_CRITERION = {"color": "#6E6E6E", "marker": "X", "linestyle": "-.", "filled": True}


def criterion_style(name: str) -> dict:
    """Colour, marker and line style of a rupture criterion, the same in every figure.

    Returns keyword arguments for :meth:`matplotlib.axes.Axes.plot` and ``errorbar``.

    >>> criterion_style("rci")["color"], criterion_style("sd_k2_within")["markerfacecolor"]
    ('#D55E00', 'white')
    >>> criterion_style("sd (this run)")["marker"]
    'X'
    """
    s = CRITERION_STYLES.get(name, OTHER_CRITERION)
    return {"color": s["color"], "marker": s["marker"], "linestyle": s["linestyle"],
            "markerfacecolor": s["color"] if s["filled"] else "white", "markeredgecolor": s["color"]}


def criterion_order(names) -> list:
    """Criteria in one order in every figure: the presets' (absolute, SD k = 1, SD k = 2, RCI,
    sudden), then a run's own, the oracle last.

    >>> criterion_order(["true_pattern", "rci", "sd (this run)", "absolute_1"])
    ['absolute_1', 'rci', 'sd (this run)', 'true_pattern']
    """
    rank = {name: i for i, name in enumerate(CRITERION_STYLES)}
    last = rank[power_summary.TRUE_PATTERN]
    return sorted(dict.fromkeys(names), key=lambda name: rank.get(name, last - 0.5))


def criterion_label(name: str) -> str:
    """How a criterion is named on a figure: ``sd_k1_within`` -> ``sd k1 within``."""
    return name.replace("_", " ")


#: At most this many individual client trajectories are drawn (a seeded random sample above).
MAX_CLIENT_LINES = 150
#: Seed of that sample: the same clients on every run.
SAMPLE_SEED = 0
#: Residual plots show points up to this many residuals and a 2-D histogram above.
BIN_ABOVE = 2000
#: A normal Q-Q plot shows at most this many ordered residuals (evenly spaced in rank).
QQ_POINTS = 1000

_FONTS = {"font.size": 9, "axes.labelsize": 9, "axes.titlesize": 9, "figure.titlesize": 9,
          "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8, "legend.title_fontsize": 8}
#: The project's settings over seaborn's "ticks" style and "paper" context (:func:`rc`).
STYLE = {
    **_FONTS,
    "font.sans-serif": ["DejaVu Sans"],  # ships with matplotlib: the same glyphs on every machine
    "text.parse_math": False,  # a "$" in a name from the data is text, never mathtext
    "svg.hashsalt": "alliance-replication",  # stable SVG element ids
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
}

#: seaborn, imported at the first figure rather than with this module: it loads scipy.stats
#: and statsmodels (~1 s), and the notebooks import helpers.figures at their top
#: (tests/test_imports.py keeps that import light). Set by :func:`rc`, which every plotting
#: function calls first (:func:`styled`).
sns = None


@functools.cache
def rc() -> dict:
    """The look of every figure: seaborn's "ticks" style and "paper" context with
    :data:`STYLE` over them (every text at least :data:`MIN_FONT_PT`). Applied by each plotting
    function, never set globally: a notebook's own matplotlib and seaborn settings are left alone."""
    global sns
    import seaborn

    sns = seaborn
    return {**seaborn.axes_style("ticks"), **seaborn.plotting_context("paper"), **STYLE}


def styled(plot):
    """Draw (and save) under :func:`rc`, restoring only the settings it changed (not
    ``plt.rc_context``, which restores every setting: the backend's ``interactive`` flag, set
    when the first figure resolves the backend, would be undone and later figures never shown)."""
    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        settings = rc()
        before = {key: plt.rcParams[key] for key in settings}
        plt.rcParams.update(settings)
        try:
            return plot(*args, **kwargs)
        finally:
            plt.rcParams.update(before)
    return wrapper


# --------------------------------------------------------------------------------------------
# what each drawn series means (for legends and the tests)
# --------------------------------------------------------------------------------------------
_ROLES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def artist_role(artist) -> dict:
    """What a drawn series stands for, beyond its legend label: ``criterion`` (its name) and
    ``explained`` (what explains it when no legend entry does: "y tick labels", ...)."""
    return _ROLES.get(artist, {})


def _mark(artists, **role) -> None:
    for artist in artists:
        _ROLES.setdefault(artist, {}).update(role)


def _drawn(ax) -> list:
    return [*ax.lines, *ax.collections, *ax.patches, *ax.images]


def _draw_as(ax, draw, *, label: str = "", **role) -> list:
    """Call ``draw()`` (a seaborn or matplotlib call on ``ax``); every artist it adds gets the
    legend ``label`` and the ``role``. Returns the new artists."""
    before = {id(a) for a in _drawn(ax)}
    draw()
    new = [a for a in _drawn(ax) if id(a) not in before]
    for artist in new:
        if label:
            artist.set_label(label)
    _mark(new, **role)
    return new


def _errorbar(ax, x, y, *, label: str = "", role=None, **kwargs) -> list:
    """``ax.errorbar`` whose line, caps and bars all carry ``label`` and ``role``; the bars
    take the line style of a criterion (k = 2 dashed) so that it shows on the bars too."""
    linestyle = kwargs.pop("linestyle", "-")
    new = _draw_as(ax, lambda: ax.errorbar(x, y, linestyle="none", **kwargs), label=label, **(role or {}))
    for artist in new:
        if isinstance(artist, LineCollection):
            artist.set_linestyle(linestyle)
    return new


def _proxy(label: str, **style) -> Line2D:
    """A legend entry that looks like the series it names."""
    return Line2D([], [], label=label, **style)


def _figure_legend(fig, handles, *, ncol: int = 1) -> None:
    """The legend below the axes, inside the figure's printed width (constrained layout)."""
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, handlelength=2.4, columnspacing=1.2)


def _legend(fig, ax, handles, own_figure: bool) -> None:
    """Below the axes when the figure is this function's own; inside a caller's axes otherwise
    (where the fewest points are, found once: :func:`_keep_best_legend_place`)."""
    if own_figure:
        _figure_legend(fig, handles)
    else:
        ax.legend(handles=handles, loc="best")


def _apa(value: float) -> str:
    """A coefficient bounded by 1 in APA style: no leading zero (``.44``, ``−.12``)."""
    text = f"{abs(value):.2f}"
    return ("−" if value < 0 else "") + (text[1:] if text.startswith("0") else text)


def _chars(width_in: float, size: float = 9) -> int:
    """Characters of DejaVu Sans that fit ``width_in`` at ``size`` points (about 0.58 em each)."""
    return max(20, int(width_in * 72 / (0.58 * size)))


def _title(text: str, caption: str, width_in: float) -> str:
    """A title with the run's caption (`` · SIMULATED DATA``): on one line when it fits
    ``width_in``, otherwise the title wrapped and the caption on a line of its own."""
    if len(text + caption) <= _chars(width_in):
        return text + caption
    lines = textwrap.wrap(text, _chars(width_in), break_on_hyphens=False)
    return "\n".join(lines + ([caption.lstrip(" ·")] if caption else []))


def _figure(width: float, height: float, ncols: int = 1, **kwargs):
    return plt.subplots(1, ncols, figsize=(width, height), layout="constrained", **kwargs)


def _n(value) -> str:
    """A count with thousands separators (100,000)."""
    return f"{int(value):,}"


# --------------------------------------------------------------------------------------------
# saving and the data table
# --------------------------------------------------------------------------------------------
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
#: ``value``: the colour-mapped number of a cell (2-D histogram, heat map, image).
FIGURE_DATA_COLUMNS = ["axes", "element", "kind", "label", "style", "point", "x", "y", "value", "text"]


def _colors(value) -> str:
    """A colour or an array of colours as sorted unique hex codes (``none`` when empty)."""
    try:
        rgba = to_rgba_array(value)
    except (ValueError, TypeError):
        return str(value)
    return "/".join(sorted({to_hex(c, keep_alpha=True) for c in rgba})) or "none"


def _style(artist) -> str:
    """Colour, width, line style, marker and alpha of an artist: what a reader sees of it.

    A colour-mapped artist (2-D histogram, heat map) is described by its colour map and its
    limits, not by the colour of every cell."""
    parts = []
    mapped = getattr(artist, "get_array", None) and artist.get_array() is not None
    if mapped:
        low, high = artist.get_clim()
        parts.append(f"cmap={artist.get_cmap().name} clim={low:.9g}/{high:.9g}")
    for attr in ("get_color", "get_facecolor", "get_edgecolor"):
        if hasattr(artist, attr) and not (mapped and attr == "get_facecolor"):
            parts.append(f"{attr[4:]}={_colors(getattr(artist, attr)())}")
    for attr in ("get_linewidth", "get_linestyle", "get_marker", "get_alpha"):
        if hasattr(artist, attr):
            value = getattr(artist, attr)()
            if isinstance(value, (list, tuple, np.ndarray)):
                value = "/".join(sorted({str(v) for v in np.ravel(np.asarray(value, dtype=object))}))
            parts.append(f"{attr[4:]}={value}")
    return " ".join(parts)


def _mesh_cells(artist) -> np.ndarray:
    """Cell centres and values of a QuadMesh (n x 3), masked (empty) cells left out."""
    corners = np.asarray(artist.get_coordinates(), float)
    centres = (corners[:-1, :-1] + corners[1:, 1:]) / 2
    values = np.ma.asarray(artist.get_array()).reshape(centres.shape[:2])
    keep = ~np.ma.getmaskarray(values)
    return np.column_stack([centres[keep], np.ma.getdata(values)[keep]])


def _points(artist) -> np.ndarray:
    """The data an artist draws (n x 3: x, y, value), in the axes' data units."""
    def xy(a):
        a = np.asarray(a, float).reshape(-1, 2)
        return np.column_stack([a, np.full(len(a), np.nan)])

    if isinstance(artist, Line2D):
        return xy(artist.get_xydata())
    if isinstance(artist, LineCollection):
        segs = artist.get_segments()
        return xy(np.concatenate(segs)) if len(segs) else np.empty((0, 3))
    if isinstance(artist, PathCollection):
        return xy(artist.get_offsets())
    if isinstance(artist, QuadMesh):
        return _mesh_cells(artist)
    if isinstance(artist, PolyCollection):
        paths = artist.get_paths()
        return xy(np.concatenate([p.vertices for p in paths])) if paths else np.empty((0, 3))
    if isinstance(artist, Patch):
        return xy(artist.get_patch_transform().transform(artist.get_path().vertices))
    if isinstance(artist, AxesImage):
        values = np.asarray(artist.get_array(), float)
        rows, cols = np.indices(values.shape[:2])
        return np.column_stack([cols.ravel(), rows.ravel(), values.reshape(-1)])
    return np.empty((0, 3))


def _texts(ax) -> list:
    """(element, Text) of everything written on an axes that a reader sees."""
    texts = [("title", ax.title), ("title", ax._left_title), ("title", ax._right_title),
             ("xlabel", ax.xaxis.label), ("ylabel", ax.yaxis.label)]
    texts += [("xtick", t) for t in ax.get_xticklabels()] + [("ytick", t) for t in ax.get_yticklabels()]
    texts += [("annotation", t) for t in ax.texts]
    legend = ax.get_legend()
    return texts + [("legend", t) for t in (legend.get_texts() if legend else [])]


def figure_data(fig, *, draw: bool = True) -> pd.DataFrame:
    """What a figure shows, as a tidy table: one row per plotted point and per text.

    Every axes' lines, markers, bands, error bars, bars, images and 2-D histograms contribute
    their points in data units (``x``, ``y``; ``value`` for a colour-mapped cell) with their
    label and style (colour, width, line style, marker); titles, axis labels, tick labels,
    legend entries (of the axes and of the figure) and annotations contribute their text;
    axis limits are rows too (``draw=False``: the figure has just been drawn, as by
    :func:`save_figure`, so its texts are current). Written beside each saved figure, it is what
    ``make verify`` compares: two machines draw the same data with pixels that differ in their
    last bits.

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
            rows.append([ax_i, element, kind, label, style, 0, np.nan, np.nan, np.nan, text])
        for k, (x, y, value) in enumerate(pts if pts is not None else []):
            rows.append([ax_i, element, kind, label, style, k, x, y, value, text])

    figure_texts = [fig._suptitle, *fig.texts] + [t for legend in fig.legends for t in legend.get_texts()]
    for t in figure_texts:
        if t is not None and t.get_text():
            add(-1, "figure", "text", text=t.get_text())
    for ax_i, ax in enumerate(fig.axes):
        for el, artist in enumerate(_drawn(ax)):
            label = artist.get_label()
            add(ax_i, el, type(artist).__name__, "" if label.startswith("_") else label, _style(artist),
                _points(artist))
        add(ax_i, "xlim", "limits", pts=[(*ax.get_xlim(), np.nan)])
        add(ax_i, "ylim", "limits", pts=[(*ax.get_ylim(), np.nan)])
        for element, t in _texts(ax):
            if t.get_text():
                add(ax_i, element, "text", text=t.get_text())
    return pd.DataFrame(rows, columns=FIGURE_DATA_COLUMNS)


# --------------------------------------------------------------------------------------------
# notebook 01: the trial
# --------------------------------------------------------------------------------------------
@styled
def plot_missingness(miss: pd.DataFrame, *, labels: dict, caption: str = ""):
    """Percent missing per session, one bar per measure side by side (from describe.missingness),
    so that two measures missing at the same sessions both show; ``labels``: measure -> legend
    text (the instruments' names)."""
    fig, ax = _figure(SINGLE, 2.9)
    d = miss.assign(label=[labels.get(m, m) for m in miss["measure"]])
    order = list(dict.fromkeys(d["label"]))
    palette = dict(zip(order, MEASURE_COLORS * len(order)))
    sns.barplot(d, x="session", y="pct_missing", hue="label", hue_order=order, palette=palette, legend=False,
                errorbar=None, saturation=1, edgecolor="black", linewidth=0.4, ax=ax)
    for container, label in zip(ax.containers, order):  # seaborn draws one container per measure
        for bar in container:
            bar.set_label(label)
    ax.set(xlabel="session", ylabel="missing (% of participants)", ylim=(0, 100))
    n = int(miss["n_participants"].iloc[0]) if len(miss) else 0
    ax.set_title(_title(f"Missing data by session (N = {_n(n)})", caption, SINGLE))
    _figure_legend(fig, [Patch(facecolor=palette[lab], edgecolor="black", linewidth=0.4, label=lab) for lab in order])
    return fig


def sample_clients(ids, max_lines: int = MAX_CLIENT_LINES, seed: int = SAMPLE_SEED) -> np.ndarray:
    """The clients whose trajectories are drawn: all of them up to ``max_lines``, otherwise a
    random ``max_lines`` of them (``seed``: the same clients on every run), in id order.

    >>> sample_clients(["b", "a", "c"], max_lines=5).tolist()
    ['a', 'b', 'c']
    >>> len(sample_clients([f"P{i}" for i in range(1000)], max_lines=10))
    10
    """
    ids = np.sort(pd.unique(np.asarray(ids, dtype=object)))
    if len(ids) <= max_lines:
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, size=max_lines, replace=False))


def _sample_text(n_shown: int, n_total: int, seed: int) -> str:
    if n_shown == n_total:
        return f"one client (all {_n(n_total)})"
    return f"one client (random {_n(n_shown)} of {_n(n_total)}, seed {seed})"


def _client_lines(ax, data: pd.DataFrame, column: str, color: str, label: str) -> None:
    """The sampled clients' trajectories as one line collection (one artist, not one per client)."""
    data = data.sort_values(["participant_id", "session"], kind="mergesort")
    xy = data[["session", column]].to_numpy(float)
    starts = np.flatnonzero(data["participant_id"].ne(data["participant_id"].shift()).to_numpy())[1:]
    color = "#8C8C8C" if color == "black" else color  # under a black mean, clients in grey
    lines = LineCollection(np.split(xy, starts), colors=color, linewidths=0.5, alpha=0.35, label=label)
    ax.add_collection(lines)


def _trajectory_groups(data: pd.DataFrame, patterns: pd.DataFrame | None) -> tuple[pd.DataFrame, dict]:
    """Each observed score with its group: its client's pattern, or ``all``; group -> colour."""
    if patterns is None:
        return data.assign(group="all"), {"all": "black"}  # client lines grey (_client_lines), mean black
    data = data.assign(group=data["participant_id"].map(patterns.set_index("participant_id")["pattern"]))
    present = set(data["group"].dropna())
    return data[data["group"].isin(PATTERN_COLORS)], {p: c for p, c in PATTERN_COLORS.items() if p in present}


def _group_label(group: str, n: int) -> str:
    who = f"all {_n(n)} clients" if group == "all" else f"{group.replace('_', ' ')}, n = {_n(n)}"
    return f"mean per session, 95% CI ({who})"


@styled
def plot_trajectories(sessions: pd.DataFrame, column: str, *, label: str, patterns: pd.DataFrame | None = None,
                      caption: str = "", ax=None, max_lines: int = MAX_CLIENT_LINES, seed: int = SAMPLE_SEED):
    """Mean per session with its 95% CI (mean ± 1.96 SE, from every client) over individual
    trajectories (thin lines: every client up to ``max_lines``, otherwise a random sample of
    them, :func:`sample_clients`, stated in the legend); coloured by pattern when ``patterns``
    is given. ``label``: the axis title of ``column`` (its instrument, construct and range)."""
    own = ax is None
    fig, ax = _figure(SINGLE, 3.1) if own else (ax.figure, ax)
    data, colors = _trajectory_groups(sessions[["participant_id", "session", column]].dropna(), patterns)
    shown = sample_clients(data["participant_id"], max_lines, seed)
    clients = _sample_text(len(shown), data["participant_id"].nunique(), seed)
    clients += ", in its pattern's colour" if patterns is not None else ""
    sample = data[data["participant_id"].isin(shown)]
    handles = [_proxy(clients, color="grey", linewidth=0.5)]
    for group, color in colors.items():
        _client_lines(ax, sample[sample["group"] == group], column, color, clients)
        grp = data[data["group"] == group]
        mean = _group_label(group, grp["participant_id"].nunique())
        _draw_as(ax, lambda grp=grp, color=color: sns.lineplot(
            grp, x="session", y=column, errorbar=("se", 1.96), color=color, linewidth=2, legend=False, ax=ax), label=mean)
        handles.append(_proxy(mean, color=color, linewidth=2))
    ax.set(xlabel="session", ylabel=label.replace(" (", "\n("), xticks=sorted(sessions["session"].unique()))
    ax.set_title(_title(f"{label.split(' (')[0]} by session (N = {_n(data['participant_id'].nunique())})",
                        caption, SINGLE))
    ax.autoscale_view()  # the client lines were added as a collection
    _legend(fig, ax, handles, own)
    return fig


# --------------------------------------------------------------------------------------------
# notebook 02: rupture-repair episodes
# --------------------------------------------------------------------------------------------
@styled
def plot_prevalence(prev: pd.DataFrame, *, caption: str = "", ax=None):
    """Detected prevalence of each pattern (bars, 95% Wilson CI) beside the paper's value
    (diamonds), from describe.prevalence_table."""
    own = ax is None
    fig, ax = _figure(SINGLE, 3.2) if own else (ax.figure, ax)
    prev = prev.reset_index(drop=True).assign(name=lambda d: d["quantity"].str.replace("_", "\n"))
    palette = {n: PATTERN_COLORS.get(q, ANY_RUPTURE_COLOR) for n, q in zip(prev["name"], prev["quantity"])}
    this_run, paper = "this run (bar, 95% Wilson CI)", "paper (McLaughlin et al., 2014)"
    _draw_as(ax, lambda: sns.barplot(prev, x="name", y="estimate", hue="name", palette=palette, legend=False,
                                     errorbar=None, saturation=1, edgecolor="none", ax=ax), label=this_run)
    _errorbar(ax, np.arange(len(prev)), prev["estimate"], label=this_run, fmt="none", color="black", capsize=3,
              elinewidth=1, yerr=[prev["estimate"] - prev["ci_low"], prev["ci_high"] - prev["estimate"]])
    _draw_as(ax, lambda: sns.scatterplot(x=np.arange(len(prev)), y=prev["paper"], marker="D", color="black", s=30,
                                         zorder=3, legend=False, ax=ax), label=paper)
    ax.set(xlabel="", ylabel="% of classifiable clients", ylim=(0, 100))
    n = int(prev["n"].iloc[0]) if len(prev) else 0
    ax.set_title(_title(f"Alliance patterns (N = {_n(n)} classifiable)", caption, SINGLE))
    handles = [Patch(facecolor="#BBBBBB", label=this_run), _proxy(paper, marker="D", color="black", linestyle="none")]
    _legend(fig, ax, handles, own)
    return fig


_REPAIRED_LATER = {"repaired later": PATTERN_COLORS["repaired"], "not repaired": PATTERN_COLORS["unrepaired"]}


@styled
def plot_rupture_timing(episodes: pd.DataFrame, imaginal_start, *, n_sessions: int, caption: str = ""):
    """Number of ruptures by session, relative to the start of imaginal exposure, stacked by
    whether the rupture was repaired later (the repaired and unrepaired patterns' colours).

    ``imaginal_start`` is a session number, or a Series of per-participant start sessions
    (simulated data); the x axis is then rupture session minus that participant's start."""
    fig, ax = _figure(SINGLE, 2.8)
    per_client = isinstance(imaginal_start, pd.Series)
    if per_client:
        x = episodes["rupture_session"] - episodes["participant_id"].map(imaginal_start)
        line, xlabel = -0.5, "sessions from the start of imaginal exposure"
    else:
        x = episodes["rupture_session"]
        line, xlabel = imaginal_start - 0.5, "session of the rupture"
        ax.set_xticks(range(1, n_sessions + 1))
    fate = np.where(episodes["repaired"].astype(bool), *_REPAIRED_LATER)
    if len(episodes):  # seaborn needs data to map the colours
        sns.histplot(x=np.asarray(x), hue=fate, hue_order=list(_REPAIRED_LATER), palette=_REPAIRED_LATER,
                     discrete=True, multiple="stack", alpha=1, edgecolor="white", legend=False, ax=ax)
    by_color = {to_hex(c): label for label, c in _REPAIRED_LATER.items()}
    for bar in ax.patches:  # each bar named by its colour (seaborn draws one container per level)
        bar.set_label(by_color[to_hex(bar.get_facecolor())])
    starts = "imaginal exposure starts"
    ax.axvline(line, color="black", linestyle="--", linewidth=1, label=starts)
    ax.set(xlabel=xlabel, ylabel="number of ruptures")
    ax.set_title(_title(f"When ruptures happen ({_n(len(episodes))} ruptures in "
                        f"{_n(episodes['participant_id'].nunique())} clients)", caption, SINGLE))
    handles = [Patch(facecolor=c, label=label) for label, c in _REPAIRED_LATER.items()]
    _figure_legend(fig, [*handles, _proxy(starts, color="black", linestyle="--", linewidth=1)], ncol=2)
    return fig


#: The example clients of a panel: one line style and marker each (the colour is the pattern's).
_CLIENT_STYLES = [{"linestyle": "-", "marker": "o"}, {"linestyle": (0, (4, 2)), "marker": "s"},
                  {"linestyle": (0, (1, 1.5)), "marker": "D"}]
_RUPTURE = "rupture (session of the drop)"
_REPAIR = "repair (back to the pre-rupture level)"


def _example_panel(ax, sessions, episodes, ids, color) -> list:
    """One pattern's example clients: lines in the pattern's colour told apart by line style
    and marker, ruptures and repairs marked in black. Returns the clients' lines."""
    people = sessions[sessions["participant_id"].isin(ids) & sessions["alliance"].notna()]
    lines = []
    for pid, style in zip(ids, _CLIENT_STYLES * len(ids)):
        lines += _draw_as(ax, lambda pid=pid, style=style: sns.lineplot(
            people[people["participant_id"] == pid], x="session", y="alliance", estimator=None, color=color,
            markersize=3.5, linewidth=1, legend=False, ax=ax, **style), label=pid)
    score = people.set_index(["participant_id", "session"])["alliance"]
    eps = episodes[episodes["participant_id"].isin(ids)]
    rep = eps[eps["repaired"].astype(bool)]
    events = ((zip(eps["participant_id"], eps["rupture_session"]), RUPTURE_MARK, _RUPTURE),
              (zip(rep["participant_id"], rep["repair_session"].astype(int)), REPAIR_MARK, _REPAIR))
    for points, mark, label in events:
        where = [k for k in points if k in score.index]
        ax.plot([s for _, s in where], [score[k] for k in where], linestyle="none", zorder=3, label=label, **mark)
    return lines


def _legend_columns(labels, width_in: float, handlelength: float = 2.0) -> int:
    """How many legend entries of ``labels`` fit side by side in ``width_in`` at 8 pt."""
    entry_em = handlelength + 0.8 + 0.8 + 0.62 * max((len(t) for t in labels), default=1)  # pads, glyphs
    return max(1, min(len(labels), int(width_in * 72 / 8 / entry_em)))


def _headroom(axes, fraction: float = 0.3) -> None:
    """Room above the data of shared-y ``axes`` for a legend, without showing values the scale
    may not have: ticks and the left spine stop at the data's upper limit."""
    low, high = axes[0].get_ylim()
    axes[0].set_yticks([t for t in axes[0].get_yticks() if low <= t <= high])
    axes[0].set_ylim(low, high + fraction * (high - low))
    for ax in axes:
        ax.spines["left"].set_bounds(low, high)


@styled
def plot_example_trajectories(sessions: pd.DataFrame, episodes: pd.DataFrame, patterns: pd.DataFrame,
                              *, label: str, n_per_pattern: int = 3, caption: str = ""):
    """Alliance of a few clients per pattern, ruptures (▼) and repairs (▲) marked.

    Examples are the first ``n_per_pattern`` classified clients of each pattern in id order,
    so the choice is reproducible and does not cherry-pick."""
    shown = ["no_rupture", "repaired", "unrepaired"]
    fig, axes = _figure(DOUBLE, 3.0, ncols=len(shown), sharey=True)
    rows = 1
    for ax, name in zip(axes, shown):
        ids = sorted(patterns.loc[patterns["pattern"] == name, "participant_id"])[:n_per_pattern]
        lines = _example_panel(ax, sessions, episodes, ids, PATTERN_COLORS[name])
        n = int((patterns["pattern"] == name).sum())
        ax.set_title(f"{name.replace('_', ' ')} (showing {len(ids)} of {_n(n)})", color=PATTERN_COLORS[name])
        ax.set(xlabel="session", xticks=sorted(sessions["session"].unique())[::2])
        ncol = _legend_columns([str(i) for i in ids], (DOUBLE - 0.8) / len(shown))
        rows = max(rows, -(-len(ids) // ncol))
        ax.legend(handles=lines, loc="upper center", ncol=ncol, handlelength=2.0, columnspacing=0.8)
    _headroom(axes, 0.12 + 0.14 * rows)
    axes[0].set_ylabel(label.replace(" (", "\n("))
    fig.suptitle(f"Example alliance trajectories{caption}")
    _figure_legend(fig, [_proxy(_RUPTURE, linestyle="none", **RUPTURE_MARK),
                         _proxy(_REPAIR, linestyle="none", **REPAIR_MARK)], ncol=2)
    return fig


@styled
def plot_confusion(table: pd.DataFrame, *, caption: str = ""):
    """Detected versus true pattern counts (simulated data), as a seaborn heat map."""
    fig, ax = _figure(SINGLE, 3.0)
    names = table.rename(index=lambda c: c.replace("_", " "), columns=lambda c: c.replace("_", " "))
    _draw_as(ax, lambda: sns.heatmap(names, annot=True, fmt="d", cmap="Blues", cbar=False, square=True,
                                     linewidths=0.5, linecolor="white", annot_kws={"fontsize": 9}, ax=ax),
             explained="the count written in each cell")
    ax.set(xlabel="detected pattern", ylabel="true pattern")
    ax.tick_params(axis="y", rotation=0)
    ax.set_title(_title(f"Detected vs true pattern (N = {_n(table.to_numpy().sum())})", caption, SINGLE))
    return fig


# --------------------------------------------------------------------------------------------
# notebook 03: outcome models
# --------------------------------------------------------------------------------------------
_PREDICTION = "model prediction, 95% CI band"
_OBSERVED = "observed mean, 95% CI"
_OTHERS = "other patterns' predictions"


def _growth_panel(ax, name, predicted, obs, outcome) -> None:
    """One pattern: its prediction with CI band, its observed means, the others' predictions thin."""
    for other, grp in predicted.groupby("pattern", sort=False):
        if other != name:
            ax.plot(grp["session"], grp["estimate"], color=PATTERN_COLORS.get(other, "#555555"), linewidth=0.9,
                    alpha=0.7, label=_OTHERS)
    color = PATTERN_COLORS.get(name, "#555555")
    mine = predicted[predicted["pattern"] == name]
    ax.fill_between(mine["session"], mine["ci_low"], mine["ci_high"], color=color, alpha=0.2, linewidth=0,
                    label=_PREDICTION)
    ax.plot(mine["session"], mine["estimate"], color=color, linewidth=2, label=_PREDICTION)
    _draw_as(ax, lambda: sns.lineplot(obs[obs["pattern"] == name], x="session", y=outcome, errorbar=("se", 1.96),
                                      err_style="bars", marker="o", markersize=4, linestyle="none", color=color,
                                      err_kws={"capsize": 2, "linewidth": 0.8}, legend=False, ax=ax), label=_OBSERVED)


@styled
def plot_growth(predicted: pd.DataFrame, sessions: pd.DataFrame, patterns: pd.DataFrame, *,
                label: str, outcome: str = "pss_sr", caption: str = ""):
    """Model-predicted trajectory of each pattern (line, 95% CI band) over its observed means
    (points, mean ± 1.96 SE from every client), one panel per pattern so that no bands overlap,
    with the other patterns' predictions as thin lines for comparison. ``predicted`` comes from
    GrowthFit.predicted_trajectories()."""
    names = [p for p in PATTERN_COLORS if p in set(predicted["pattern"])]
    fig, axes = _figure(DOUBLE, 3.0, ncols=len(names), sharey=True, squeeze=False)
    obs = sessions[["participant_id", "session", outcome]].dropna()
    obs = obs.assign(pattern=obs["participant_id"].map(patterns.set_index("participant_id")["pattern"]))
    for ax, name in zip(axes[0], names):
        _growth_panel(ax, name, predicted, obs, outcome)
        n = int((patterns["pattern"] == name).sum())
        ax.set_title(f"{name.replace('_', ' ')} (n = {_n(n)})", color=PATTERN_COLORS.get(name, "black"))
        ax.set(xlabel="session", xticks=sorted(predicted["session"].unique())[::2])
    axes[0][0].set_ylabel(label.replace(" (", "\n("))
    fig.suptitle(f"PTSD severity by alliance pattern{caption}")
    _figure_legend(fig, [_proxy(_PREDICTION, color="#555555", linewidth=2),
                         _proxy(_OBSERVED, color="#555555", marker="o", markersize=4, linestyle="none"),
                         _proxy(_OTHERS, color="#555555", linewidth=0.9, alpha=0.7)], ncol=3)
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


def thin_ranks(n: int, most: int = QQ_POINTS) -> np.ndarray:
    """Ranks of the ordered values a Q-Q plot shows: all of them up to ``most``, otherwise
    ``most`` ranks evenly spaced from the smallest to the largest (both extremes kept).

    >>> thin_ranks(5).tolist(), thin_ranks(10, most=4).tolist()
    ([0, 1, 2, 3, 4], [0, 3, 6, 9])
    """
    if n <= most:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, most)).astype(int))


_RESIDUAL_POINT = {"marker": "o", "color": OKABE_ITO["blue"], "linestyle": "none", "alpha": 0.6}


def _residual_scatter(ax, fitted, residuals) -> list:
    """Residuals against fitted values: points up to BIN_ABOVE (returns their legend entry),
    a 2-D histogram with a colour bar above (explained by the bar; no entry)."""
    if len(residuals) <= BIN_ABOVE:
        label = "one residual per observation"
        _draw_as(ax, lambda: sns.scatterplot(x=fitted, y=residuals, s=8, alpha=0.4, color=OKABE_ITO["blue"],
                                             edgecolor="none", legend=False, ax=ax), label=label)
        return [_proxy(label, **_RESIDUAL_POINT)]
    # a log colour scale: the sparse tails, where misfit shows, stay visible beside the dense centre;
    # rasterized: the SVG holds one image of the cells, not 2,500 vector squares
    _draw_as(ax, lambda: sns.histplot(x=fitted, y=residuals, bins=50, cmap="Blues", cbar=True, norm=LogNorm(),
                                      vmin=None, vmax=None, rasterized=True, legend=False, ax=ax,
                                      cbar_kws={"label": "residuals per cell (log scale)"}),
             explained="the colour bar: residuals per cell")
    bar = ax.figure.axes[-1]  # the colour bar seaborn added
    _mark(_drawn(bar), explained="its own scale")
    # counts as plain numbers (1, 10, 100, 1,000): the default 10^k labels are mathtext, which STYLE turns off
    bar.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    bar.yaxis.set_minor_formatter(NullFormatter())
    return []


def _qq_panel(ax, residuals) -> list:
    """Normal Q-Q plot of at most QQ_POINTS ordered residuals and the least-squares line."""
    osm, osr, slope, intercept = normal_qq(residuals)
    keep = thin_ranks(len(osr))
    shown = ("ordered residuals" if len(keep) == len(osr)
             else f"{_n(len(keep))} of {_n(len(osr))} ordered residuals, evenly spaced in rank")
    _draw_as(ax, lambda: sns.scatterplot(x=osm[keep], y=osr[keep], s=8, alpha=0.5, color=OKABE_ITO["blue"],
                                         edgecolor="none", legend=False, ax=ax), label=shown)
    line = "least-squares line"
    ends = np.array([osm[0], osm[-1]]) if len(osm) else np.array([])
    ax.plot(ends, slope * ends + intercept, color="black", linewidth=0.8, label=line)
    ax.set(xlabel="normal quantile", ylabel="ordered residual", title="Normal Q-Q plot of residuals")
    return [_proxy(shown, **_RESIDUAL_POINT), _proxy(line, color="black", linewidth=0.8)]


@styled
def plot_residuals(fitted, residuals, *, caption: str = ""):
    """Residual diagnostics of a fitted model: residuals vs fitted (points; above
    :data:`BIN_ABOVE` residuals a 2-D histogram), and a normal Q-Q plot (at most
    :data:`QQ_POINTS` ordered residuals, evenly spaced in rank)."""
    fitted, residuals = np.asarray(fitted, float), np.asarray(residuals, float)
    fig, (a1, a2) = _figure(DOUBLE, 2.9, ncols=2)
    handles = _residual_scatter(a1, fitted, residuals)
    zero = "residual = 0"
    a1.axhline(0, color="black", linewidth=0.8, label=zero)
    a1.set(xlabel="fitted value", ylabel="residual")
    a1.set_title(_title(f"Residuals vs fitted (n = {_n(len(residuals))})", caption, DOUBLE / 2))
    handles += [_proxy(zero, color="black", linewidth=0.8), *_qq_panel(a2, residuals)]
    _figure_legend(fig, handles, ncol=len(handles))
    return fig


# --------------------------------------------------------------------------------------------
# notebook 04: the paper's test under every criterion
# --------------------------------------------------------------------------------------------
def _forest_label(row, default: str) -> str:
    """A forest plot row: the criterion, and the clients its regression analysed."""
    name = criterion_label(row.preset) + (" (default)" if row.preset == default and "(this run)" not in row.preset
                                          else "")
    return f"{name}: {int(row.n_unrepaired_analysed)} unrepaired of n = {int(row.n)} analysed"


def _criterion_rows(ax, x, y, names, xerr) -> None:
    """One point with its horizontal error bar per criterion, in the criterion's own look."""
    for xi, yi, name, low, high in zip(x, y, names, *xerr):
        style = criterion_style(name)
        _errorbar(ax, xi, yi, xerr=[[low], [high]], capsize=2, markersize=5, elinewidth=1.2, zorder=3,
                  label=criterion_label(name), role={"criterion": name, "explained": "y tick labels"}, **style)


@styled
def plot_forest(betas: pd.DataFrame, *, paper_beta: float, default: str = "rci", caption: str = "",
                true_pattern=None):
    """Forest plot of the unrepaired-rupture beta (95% CI) under every rupture criterion
    preset (from multiverse.beta_by_preset), with the paper's value as a dashed line. Each
    row names the clients the regression analysed (``n``) and the unrepaired clients among
    them (``n_unrepaired_analysed``).

    ``true_pattern`` names the rows that estimate the effect of the *true* pattern (the
    pattern model's β by multiple imputation; default: the rows whose ``estimand`` is
    :data:`helpers.multiverse.TRUE`): they are drawn below a rule, labelled as such with the expected
    number of unrepaired clients, and not read against the paper's detected-pattern value."""
    d = betas.dropna(subset=["beta"]).set_index("preset")
    if true_pattern is None:
        true_pattern = d.index[d["estimand"] == multiverse.TRUE] if "estimand" in d.columns else []
    model = d[d.index.isin(true_pattern)].reset_index()
    d = d[~d.index.isin(true_pattern)]
    d = d.loc[criterion_order(d.index)].reset_index()
    fig, ax = _figure(DOUBLE, 0.3 * (len(d) + len(model)) + 1.5)
    y = np.arange(len(d))[::-1] + len(model)
    _criterion_rows(ax, d["beta"], y, d["preset"], [d["beta"] - d["beta_ci_low"], d["beta_ci_high"] - d["beta"]])
    labels = [_forest_label(r, default) for r in d.itertuples()]
    for yi, r in zip(np.arange(len(model))[::-1], model.itertuples()):
        _errorbar(ax, r.beta, yi, xerr=[[r.beta - r.beta_ci_low], [r.beta_ci_high - r.beta]], capsize=2, markersize=5,
                  elinewidth=1.2, zorder=3, label=criterion_label(r.preset),
                  role={"explained": "y tick labels"}, **criterion_style(r.preset))
        labels.append(f"{criterion_label(r.preset)} (true-pattern β, MI): {r.expected_n_unrepaired:.1f} expected "
                      f"unrepaired of n = {int(r.n)}")
    if len(model):
        _mark([ax.axhline(len(model) - 0.5, color="#999999", linewidth=0.6, linestyle=":")],
              explained="a rule between the criteria and the true-pattern estimates the y tick labels name")
    paper, zero = f"paper: β = {_apa(paper_beta)} (McLaughlin et al., 2014)", "no effect: β = 0"
    ax.axvline(paper_beta, color="black", linestyle="--", linewidth=1, label=paper)
    ax.axvline(0, color="#999999", linewidth=0.8, label=zero)
    ax.set_yticks([*y, *np.arange(len(model))[::-1]], labels)
    for tick, name in zip(ax.get_yticklabels(), [*d["preset"], *model["preset"]]):
        tick.set_fontweight("bold" if name == default else "normal")
    rows = len(d) + len(model)
    ax.set(xlabel="standardised β of an unrepaired rupture\non post-treatment PTSD (95% CI)", ylim=(-0.7, rows - 0.3))
    fig.suptitle(_title("How the paper's test depends on the rupture criterion", caption, DOUBLE))
    _figure_legend(fig, [_proxy(paper, color="black", linestyle="--", linewidth=1),
                         _proxy(zero, color="#999999", linewidth=0.8)], ncol=2)
    return fig


# --------------------------------------------------------------------------------------------
# notebook 05: the power study
# --------------------------------------------------------------------------------------------
def _power_panel(ax, beta_summary, col, presets) -> list:
    """Power against N per criterion (seaborn lines), with ±2 MC SE bars; returns the lines."""
    lines = []
    for name in presets:
        cell = beta_summary[beta_summary["preset"] == name].sort_values("n_participants")
        style = criterion_style(name)
        role = {"criterion": name}
        _errorbar(ax, cell["n_participants"], cell[col], yerr=2 * cell[f"{col}_mcse"], fmt="none", capsize=2,
                  color=style["color"], elinewidth=0.8, label=criterion_label(name), role=role,
                  linestyle=style["linestyle"])
        width = 1.6 if name == power_summary.TRUE_PATTERN else 1.1
        new = _draw_as(ax, lambda cell=cell, style=style, width=width: sns.lineplot(
            cell, x="n_participants", y=col, estimator=None, errorbar=None, markersize=5, linewidth=width,
            legend=False, ax=ax, **style), label=criterion_label(name), **role)
        lines += [a for a in new if isinstance(a, Line2D)]
    return lines


@styled
def plot_power_curve(beta_summary: pd.DataFrame, *, target: float = 0.8, caption: str = ""):
    """Power against N, one line per criterion (:func:`criterion_style`), bars ±2 MC SE: the
    paper's OLS test (left) and the same test with HC3 standard errors (right)."""
    fig, axes = _figure(DOUBLE, 3.9, ncols=2, sharey=True)
    presets = criterion_order(beta_summary["preset"])
    alpha = beta_summary["alpha"].iloc[0]
    goal = f"target power {_apa(target)}"
    for ax, (test, col) in zip(axes, power_summary.TESTS.items()):
        lines = _power_panel(ax, beta_summary, col, presets)
        ax.axhline(target, color="grey", linewidth=0.8, linestyle=(0, (1, 2)), label=goal)
        ax.set(xlabel="clients enrolled (N)", xticks=sorted(beta_summary["n_participants"].unique()))
        ax.set_title("OLS t test (the paper's)" if test == "ols" else "t test with HC3 SE")
    axes[0].set(ylabel=f"power (p < {alpha:g})", ylim=(0, 1.02))
    r = int(beta_summary["n_replications"].min())
    fig.suptitle(_title(f"Power of the unrepaired-rupture test by criterion (R = {r} per N; bars ±2 MC SE)", caption,
                        DOUBLE))
    _figure_legend(fig, [*lines, _proxy(goal, color="grey", linewidth=0.8, linestyle=(0, (1, 2)))], ncol=4)
    return fig


@styled
def plot_bias_coverage(beta_summary: pd.DataFrame, *, at_n: int = 116, caption: str = ""):
    """Mean beta (±1 empirical SE) and 95% CI coverage (±2 MC SE) per criterion at one N,
    each criterion in its own look (:func:`criterion_style`); the reference lines differ in
    style and are all in the legend: the true β, the paper's β and the nominal coverage."""
    n = power_summary.closest_size(beta_summary["n_participants"], at_n)
    cell = beta_summary[beta_summary["n_participants"] == n].set_index("preset")
    cell = cell.loc[criterion_order(cell.index)].reset_index()
    y = np.arange(len(cell))[::-1]
    fig, (ax1, ax2) = _figure(DOUBLE, 0.28 * len(cell) + 1.6, ncols=2, sharey=True)
    _criterion_rows(ax1, cell["beta_mean"], y, cell["preset"], [cell["emp_se"], cell["emp_se"]])
    _criterion_rows(ax2, cell["coverage"], y, cell["preset"], [2 * cell["coverage_mcse"], 2 * cell["coverage_mcse"]])
    theta = float(cell["theta"].iloc[0])
    lines = [(ax1, theta, f"true β = {_apa(theta)}", {"color": "black", "linestyle": "-"}),
             (ax1, power_summary.PAPER_BETA, f"paper's β = {_apa(power_summary.PAPER_BETA)}",
              {"color": "grey", "linestyle": ":"}),
             (ax2, 0.95, "nominal coverage .95", {"color": "black", "linestyle": "--"})]
    for ax, x, label, style in lines:
        ax.axvline(x, linewidth=0.9, label=label, **style)
    ax1.set_yticks(y, [criterion_label(p) for p in cell["preset"]])
    ax1.set_xlabel("standardised β (mean ± empirical SE)")
    ax2.set(xlabel="95% CI coverage of the true β (± 2 MC SE)", xlim=(-0.02, 1.02))
    r = int(cell["n_replications"].min())
    fig.suptitle(f"Unrepaired-rupture β by criterion, N = {n} (R = {r}){caption}")
    _figure_legend(fig, [_proxy(label, linewidth=0.9, **style) for _, _, label, style in lines], ncol=3)
    return fig
