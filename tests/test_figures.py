"""The rules every figure keeps (``helpers.figures``): print size, one look per criterion and
per pattern, every series explained, bounded at any N, deterministic data tables.

Every figure of the pipeline is drawn from the inputs ``benchmarks/bench_figures.py`` builds
(a simulated trial, its episodes, straight-line stand-ins for the growth model; the forest and
power figures from the committed result tables), so the benchmark and the tests draw the same
figures. Nothing here depends on the plotting backend or on the last bits of a float: sizes,
colours, labels and counts are compared, never pixels.
"""

from __future__ import annotations

import importlib.util

import matplotlib.pyplot as plt
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_hex
from matplotlib.lines import Line2D
from matplotlib.text import Text
import numpy as np
import pandas as pd
import pytest

from helpers import figures, paths, simulate

_spec = importlib.util.spec_from_file_location("bench_figures", paths.ROOT / "benchmarks" / "bench_figures.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

CRITERION_FIGURES = ("04_forest_beta", "05_bias_coverage", "05_power_curve")


@pytest.fixture(scope="module")
def draws():
    """name -> a call drawing that figure (116 simulated clients)."""
    return bench.inputs(116)


@pytest.fixture(scope="module")
def drawn(draws):
    """name -> the drawn figure (closed at the end of the module)."""
    out = {}
    for name, draw in draws.items():
        out[name] = draw()
        out[name].draw_without_rendering()  # tick labels and legends exist once drawn
    yield out
    for fig in out.values():
        plt.close(fig)


def _legend_texts(fig) -> set:
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    return {t.get_text() for legend in legends for t in legend.get_texts()}


def _series(fig):
    """(axes index, artist) of everything drawn with data."""
    for i, ax in enumerate(fig.axes):
        for artist in figures._drawn(ax):
            if len(figures._points(artist)):
                yield i, artist


def _color(artist) -> str:
    """The colour a reader sees: a line's, a marker-only line's marker edge, a collection's edge."""
    marker_only = isinstance(artist, Line2D) and str(artist.get_linestyle()).lower() in ("none", "")
    get = (artist.get_markeredgecolor if marker_only else
           artist.get_color if hasattr(artist, "get_color") else artist.get_edgecolor)
    value = np.atleast_2d(get()) if not isinstance(get(), str) else [get()]
    return "/".join(sorted({to_hex(c) for c in value}))


# ----------------------------------------------------------------------------- print size
def test_every_figure_is_a_column_or_a_page_wide(drawn):
    for name, fig in drawn.items():
        width = fig.get_figwidth()
        assert width in (figures.SINGLE, figures.DOUBLE), (name, width)
        # nothing outside the printed width: printed at its width, a text keeps its size
        assert fig.get_tightbbox().width <= width + 0.02, (name, fig.get_tightbbox().width)


def test_every_text_is_at_least_8_pt(drawn):
    for name, fig in drawn.items():
        small = [(t.get_text(), t.get_fontsize()) for t in fig.findobj(Text)
                 if t.get_visible() and t.get_text().strip() and t.get_fontsize() < figures.MIN_FONT_PT]
        assert not small, (name, small[:5])


# ----------------------------------------------------------------------------- one look per meaning
def test_a_criterion_has_the_same_look_in_every_figure(drawn):
    seen = {}
    for name in CRITERION_FIGURES:
        for _, artist in _series(drawn[name]):
            criterion = figures.artist_role(artist).get("criterion")
            if criterion:
                seen.setdefault(criterion, set()).add((name, _color(artist)))
    assert len(seen) >= 10, sorted(seen)  # 9 named criteria and the true pattern
    for criterion, where in seen.items():
        colors = {c for _, c in where}
        assert colors == {figures.criterion_style(criterion)["color"].lower()}, (criterion, where)
        assert {n for n, _ in where} >= ({"04_forest_beta"} if criterion not in ("true_pattern", "model") else set()) | {
            "05_bias_coverage", "05_power_curve"}, (criterion, where)


def test_criteria_are_told_apart_by_colour_marker_or_line_style():
    looks = [(s["color"], s["marker"], s["linestyle"], s["filled"]) for s in figures.CRITERION_STYLES.values()]
    assert len(set(looks)) == len(looks)
    colors = {s["color"] for s in figures.CRITERION_STYLES.values()}
    assert colors <= set(figures.OKABE_ITO.values())
    # a criterion sharing a colour differs in marker fill and line style (k = 1 vs k = 2)
    for color in colors:
        same = [(s["linestyle"], s["filled"]) for s in figures.CRITERION_STYLES.values() if s["color"] == color]
        assert len(set(same)) == len(same), color
    assert figures.criterion_style("sd (this run)")["color"] not in colors  # a run's own criterion


def test_a_runs_own_criterion_gets_its_own_look_in_the_forest_plot(draws):
    betas = pd.read_csv(paths.ROOT / "results" / "tables" / "beta_by_criterion.csv")
    mine = betas[betas["preset"] == "rci"].assign(preset="sd (this run)")
    fig = figures.plot_forest(pd.concat([betas, mine]), paper_beta=0.44, default="sd (this run)")
    looks = {figures.artist_role(a)["criterion"]: _color(a) for _, a in _series(fig)
             if figures.artist_role(a).get("criterion")}
    assert looks["sd (this run)"] == figures.OTHER_CRITERION["color"].lower()
    assert looks["rci"] == figures.CRITERION_STYLES["rci"]["color"].lower()
    plt.close(fig)


def test_patterns_keep_their_colours(drawn):
    fig = drawn["03_growth_by_pattern"]
    for ax in fig.axes:
        pattern = ax.get_title().split(" (")[0].replace(" ", "_")
        assert to_hex(ax.title.get_color()) == figures.PATTERN_COLORS[pattern].lower()
        thick = [a for a in ax.lines if a.get_linewidth() == 2]
        assert {_color(a) for a in thick} == {figures.PATTERN_COLORS[pattern].lower()}


# ----------------------------------------------------------------------------- every series explained
def test_every_series_is_in_a_legend_or_explained(drawn):
    for name, fig in drawn.items():
        legend = _legend_texts(fig)
        for i, artist in _series(fig):
            explained = figures.artist_role(artist).get("explained")
            assert artist.get_label() in legend or explained, (name, i, type(artist).__name__, artist.get_label())


def test_reference_lines_differ_where_they_mean_different_things(drawn):
    fig = drawn["05_bias_coverage"]
    vertical = [a for ax in fig.axes for a in ax.lines if len(set(np.asarray(a.get_xdata(), float))) == 1
                and not figures.artist_role(a)]
    looks = {(a.get_label(), _color(a), str(a.get_linestyle())) for a in vertical}
    assert len(looks) == 3 and len({(c, s) for _, c, s in looks}) == 3, looks  # true β, paper's β, nominal .95
    assert {label for label, _, _ in looks} <= _legend_texts(fig)


def test_two_measures_missing_at_the_same_sessions_both_show(draws):
    miss = pd.DataFrame({"session": [1, 2, 1, 2], "measure": ["alliance", "alliance", "pss_sr", "pss_sr"],
                         "n_participants": 10, "n_observed": [10, 8, 10, 8], "pct_missing": [0.0, 20.0, 0.0, 20.0]})
    fig = figures.plot_missingness(miss, labels={"alliance": "A", "pss_sr": "B"})
    ax = fig.axes[0]
    spans = {label: [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches if p.get_label() == label]
             for label in ("A", "B")}
    for (a0, a1), (b0, b1) in zip(spans["A"], spans["B"]):
        assert a1 <= b0 or b1 <= a0  # side by side, never on top of each other
    plt.close(fig)


# ----------------------------------------------------------------------------- the forest plot's labels
def test_forest_labels_give_the_analysed_n_and_the_analysed_unrepaired_n():
    betas = pd.read_csv(paths.ROOT / "results" / "tables" / "beta_by_criterion.csv")
    betas = betas.assign(n=[60 + i for i in range(len(betas))], n_unrepaired=[90 + i for i in range(len(betas))],
                         n_unrepaired_analysed=[3 + i for i in range(len(betas))])
    fig = figures.plot_forest(betas, paper_beta=0.44, default="rci")
    fig.draw_without_rendering()
    labels = {t.get_text() for t in fig.axes[0].get_yticklabels()}
    for r in betas[betas.get("estimand", pd.Series("", index=betas.index)) != "true pattern"].itertuples():
        label = next(t for t in labels if t.startswith(figures.criterion_label(r.preset) + ":")
                     or t.startswith(figures.criterion_label(r.preset) + " (default):"))
        assert f"{r.n_unrepaired_analysed} unrepaired of n = {r.n} analysed" in label, label
        assert str(r.n_unrepaired) not in label  # the classified count is not the analysed one
    plt.close(fig)


# ----------------------------------------------------------------------------- bounded at any N
@pytest.fixture(scope="module")
def large_trial():
    return simulate.simulate_trial(n_participants=1500, seed=3).sessions


def test_trajectories_draw_a_stated_sample_of_clients_over_everyone_s_mean(large_trial):
    fig = figures.plot_trajectories(large_trial, "alliance", label="A (1-7)", max_lines=40)
    fig.draw_without_rendering()
    segments = sum(len(c.get_segments()) for ax in fig.axes for c in ax.collections if isinstance(c, LineCollection))
    assert segments == 40
    assert "one client (random 40 of 1,500, seed 0)" in _legend_texts(fig)
    mean = next(line for line in fig.axes[0].lines if line.get_label().startswith("mean per session"))
    expected = large_trial.groupby("session")["alliance"].mean().to_numpy()
    assert np.allclose(mean.get_ydata(), expected)  # from every client, not the sample
    plt.close(fig)


def test_the_client_sample_is_seeded_and_stated_when_everyone_is_drawn():
    ids = [f"P{i:04d}" for i in range(500)]
    assert figures.sample_clients(ids, 30, seed=1).tolist() == figures.sample_clients(ids[::-1], 30, seed=1).tolist()
    assert len(figures.sample_clients(ids, figures.MAX_CLIENT_LINES)) == figures.MAX_CLIENT_LINES
    assert figures._sample_text(116, 116, 0) == "one client (all 116)"


def test_residuals_are_binned_and_the_qq_plot_thinned_above_their_limits():
    rng = np.random.default_rng(0)
    n = figures.BIN_ABOVE * 5
    fig = figures.plot_residuals(rng.normal(20, 5, n), rng.normal(0, 3, n))
    points = [len(figures._points(a)) for ax in fig.axes for a in ax.collections if isinstance(a, PathCollection)]
    assert max(points) <= figures.QQ_POINTS
    assert any(type(a).__name__ == "QuadMesh" for a in fig.axes[0].collections)
    assert len(figures.figure_data(fig)) < 10_000
    plt.close(fig)


def test_pattern_probabilities_are_bounded_and_never_mix_two_blocks_in_a_column(large_trial):
    from helpers import episodes, figures_patterns

    trial = simulate.simulate_trial(n_participants=1500, seed=3)
    pats = episodes.classify_participants(episodes.detect_episodes(trial.sessions), trial.sessions)
    probs = bench.pattern_inputs(pats, trial.truth)
    fig = figures_patterns.plot_pattern_probabilities(probs, max_columns=120)
    fig.draw_without_rendering()
    steps = [a for a in fig.axes[0].patches]
    assert len(steps) == 3 and all(len(a.get_data().values) <= 120 + 3 for a in steps)
    ordered = figures_patterns.probability_order(probs)
    blocks = ordered.groupby("pattern", sort=False).size().reindex(["no_rupture", "repaired", "unrepaired"]).to_numpy()
    col = figures_patterns._columns(blocks, 120)
    owner = pd.Series(ordered["pattern"].to_numpy()).groupby(col).nunique()
    assert (owner == 1).all()  # every column holds clients of one most probable pattern
    assert "each column the mean of" in fig.axes[-1].get_xlabel()
    assert len(figures.figure_data(fig)) < 5_000
    plt.close(fig)


def test_the_forest_draws_a_true_pattern_row_apart_with_its_expected_count():
    betas = pd.read_csv(paths.ROOT / "results" / "tables" / "beta_by_criterion.csv")
    betas = betas[betas["preset"] != "model"].assign(estimand="detected pattern")
    model = pd.DataFrame([{"preset": "model", "beta": 0.5, "beta_ci_low": 0.2, "beta_ci_high": 0.8, "n": 70,
                           "n_unrepaired_analysed": np.nan, "expected_n_unrepaired": 10.94,
                           "estimand": "true pattern"}])
    fig = figures.plot_forest(pd.concat([betas, model], ignore_index=True), paper_beta=0.44, default="rci")
    fig.draw_without_rendering()
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks[-1] == "model (true-pattern β, MI): 10.9 expected unrepaired of n = 70"  # the bottom row
    roles = [figures.artist_role(a) for _, a in _series(fig)]
    assert "model" not in {r.get("criterion") for r in roles}  # not one more criterion in the cross-figure looks
    assert any("rule between the criteria" in r.get("explained", "") for r in roles)
    # the rule sits between the criteria and the model's row
    rule = [a for a in fig.axes[0].lines if "rule between" in figures.artist_role(a).get("explained", "")][0]
    assert rule.get_ydata()[0] == 0.5
    plt.close(fig)


# ----------------------------------------------------------------------------- deterministic
@pytest.mark.parametrize("name", ["01_trajectories_alliance", "02_example_trajectories", "03_growth_residuals",
                                  "04_forest_beta", "05_power_curve", "02_pattern_probabilities"])
def test_a_figure_s_data_table_is_the_same_on_every_run(draws, tmp_path, name):
    tables = []
    for run in ("a", "b"):
        fig = draws[name]()
        figures.save_figure(fig, name, tmp_path / run)
        plt.close(fig)
        tables.append((tmp_path / run / f"{name}.data.csv").read_bytes())
    assert tables[0] == tables[1]
