"""helpers.models.mixed_anova_prepost (numpy, :func:`helpers.models.mixed_anova_2x2_within`)
against pingouin's mixed_anova, the independent implementation it replaces in notebook 03: the
same table (every number to 1e-10 relative or 1e-12 absolute, the same columns, dtypes and row
order) and the same warnings, on the project's data and on balanced and unbalanced designs with
2 and 3 between levels, missing scores and the edge cases; and hand-worked anchors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats

from helpers import models, paths
from helpers.contract import PATTERN_LABELS
from helpers.tables import read_table

from table_checks import assert_same_table, run_recording as _run  # noqa: E402 (tests/ is on sys.path)
COMMITTED = paths.ROOT / "data" / "processed"  # the default run's data (paths.PROCESSED is the tests' folder)


def _mixed_anova_prepost_pingouin(patterns, participants, *, outcome="pss_sr", pattern_col="pattern",
                                  warn=True):
    """mixed_anova_prepost as it was: the long table through pingouin.mixed_anova (the same
    listwise data, models.prepost_complete)."""
    pre, post = f"{outcome}_pre", f"{outcome}_post"
    d, n_dropped = models.prepost_complete(patterns, participants, outcome=outcome, pattern_col=pattern_col,
                                           warn=warn)
    long = d.melt(id_vars=["participant_id", "pattern"], value_vars=[pre, post], var_name="time",
                  value_name="score")
    long["time"] = long["time"].map({pre: "pre", post: "post"})
    long["score"] = long["score"].astype(float)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The inplace keyword", module="pingouin")
        table = pg.mixed_anova(data=long, dv="score", within="time", subject="participant_id", between="pattern")
    table["n"] = len(d)
    table["n_dropped"] = n_dropped
    table["outcome"] = outcome
    return table


def assert_same(patterns, participants, **kwargs):
    """Our table and warnings equal pingouin's; returns our table."""
    (got, got_warn) = _run(models.mixed_anova_prepost, patterns, participants, **kwargs)
    (want, want_warn) = _run(_mixed_anova_prepost_pingouin, patterns, participants, **kwargs)
    if isinstance(want, Exception):  # the same kind of failure and our own warnings (listwise)
        assert type(got) is type(want), f"pingouin failed ({want!r}), we gave {got!r}"
        assert [w for w in got_warn if w[0] != "RuntimeWarning"] == [w for w in want_warn if w[0] != "RuntimeWarning"]
        return got
    assert got_warn == want_warn
    assert_same_table(got, want)
    return got


def _design(sizes, seed, *, effect=(0.0, 0.0, 0.0), extra=(), scale=1.0):
    """patterns + participants: ``sizes`` clients per pattern, scores ~ N(30, 7), post falling by
    8 points plus ``effect`` per pattern; ``extra`` rows of classifiable clients to drop."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(PATTERN_LABELS[: len(sizes)], sizes)
    n = len(labels)
    ids = [f"c{i:03d}" for i in rng.permutation(n)]  # ids not in pattern order
    shift = np.repeat(np.asarray(effect[: len(sizes)]), sizes)
    pre = rng.normal(30, 7, n) * scale
    post = (pre - 8 * scale + shift * scale + rng.normal(0, 5, n) * scale)
    patterns = pd.DataFrame({"participant_id": ids, "pattern": labels})
    participants = pd.DataFrame({"participant_id": ids, "pss_sr_pre": pre, "pss_sr_post": post})
    return patterns, participants


# --------------------------------------------------------------------------------------------
# against pingouin
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("outcome", ["pss_sr", "pss_i"])
def test_project_data_table_equals_pingouin_to_the_bit(outcome):
    patterns = read_table(COMMITTED / "patterns.csv")
    participants = read_table(COMMITTED / "participants.csv")
    got = assert_same(patterns, participants, outcome=outcome)
    assert got.equals(_mixed_anova_prepost_pingouin(patterns, participants, outcome=outcome, warn=False))
    assert got["Source"].tolist() == ["pattern", "time", "Interaction"]


@pytest.mark.parametrize("sizes", [(10, 10), (10, 10, 10), (25, 25, 25), (30, 7), (40, 12, 5), (3, 2, 9),
                                   (2, 2), (60, 1, 1)])
@pytest.mark.parametrize("seed", range(3))
def test_balanced_and_unbalanced_designs_equal_pingouin(sizes, seed):
    got = assert_same(*_design(sizes, seed, effect=(0.0, -2.0, 5.0)))
    assert got["DF1"].tolist() == [len(sizes) - 1, 1, len(sizes) - 1]


def test_missing_scores_and_rows_dropped_listwise_as_before():
    patterns, participants = _design((15, 9, 6), 7)
    participants.loc[[0, 4], "pss_sr_post"] = np.nan
    participants.loc[9, "pss_sr_pre"] = np.nan
    participants = participants.drop(index=12)  # no row at all
    extra = pd.DataFrame({"participant_id": ["x1", "x2"], "pattern": ["insufficient_data", "repaired"]})
    patterns = pd.concat([patterns, extra], ignore_index=True)  # x2: classifiable, no scores
    got = assert_same(patterns, participants)
    assert (got["n_dropped"] == 5).all() and (got["n"] == 30 - 4).all()


@pytest.mark.parametrize("case", ["one pattern", "one client per pattern", "nobody complete",
                                  "identical scores", "no change", "large scale"])
def test_edge_cases_equal_pingouin(case):
    if case == "one pattern":  # no between df: MS = SS / 0
        design = _design((12,), 1)
    elif case == "one client per pattern":  # no error df between subjects
        design = _design((1, 1, 1), 2)
    elif case == "nobody complete":
        patterns, participants = _design((3, 3), 3)
        participants["pss_sr_post"] = np.nan
        design = patterns, participants
    elif case == "identical scores":  # every SS zero: F and np2 NaN in every row, columns dropped
        patterns, participants = _design((4, 5), 4)
        participants[["pss_sr_pre", "pss_sr_post"]] = 20.0
        design = patterns, participants
    elif case == "no change":  # post = pre: no time effect, no interaction
        patterns, participants = _design((6, 5, 4), 5)
        participants["pss_sr_post"] = participants["pss_sr_pre"]
        design = patterns, participants
    else:
        design = _design((8, 6, 5), 6, scale=1e5)
    assert_same(*design)


# --------------------------------------------------------------------------------------------
# anchors that need neither implementation
# --------------------------------------------------------------------------------------------
def test_interaction_and_between_effects_equal_oneway_anovas():
    # two within levels: the time x pattern F is the one-way F of the changes, the pattern F the
    # one-way F of the subjects' means, the time F the squared one-sample t of the changes
    # after removing the groups (its error is the interaction's)
    patterns, participants = _design((11, 8, 6), 9, effect=(0.0, 1.0, 6.0))
    table = models.mixed_anova_prepost(patterns, participants).set_index("Source")
    pre, post = participants["pss_sr_pre"].to_numpy(), participants["pss_sr_post"].to_numpy()
    groups = [patterns["pattern"].to_numpy() == g for g in PATTERN_LABELS]
    f_inter, p_inter = stats.f_oneway(*[(post - pre)[g] for g in groups])
    f_betw, p_betw = stats.f_oneway(*[((post + pre) / 2)[g] for g in groups])
    assert table.loc["Interaction", "F"] == pytest.approx(f_inter, rel=1e-10)
    assert table.loc["Interaction", "p_unc"] == pytest.approx(p_inter, rel=1e-9)
    assert table.loc["pattern", "F"] == pytest.approx(f_betw, rel=1e-10)
    assert table.loc["pattern", "p_unc"] == pytest.approx(p_betw, rel=1e-9)
    assert (table["DF2"] == 25 - 3).all() and table["eps"].tolist()[1:] == [1.0, 1.0]
    ss, err = table["SS"], table["SS"] / table["np2"] - table["SS"]
    total = ((np.concatenate([pre, post]) - np.concatenate([pre, post]).mean()) ** 2).sum()
    # SS_total = between + its error + time + interaction + within error
    assert ss.sum() + err["pattern"] + err["time"] == pytest.approx(total, rel=1e-12)


def test_hand_worked_two_by_two():
    # x: changes 1, 2, 0 (mean 1); y: 5, 3, 4 (mean 4); within-group SS of the changes 2 + 2 on
    # 4 df -> one-way F of the changes = (3 * 1.5^2 * 2 / 1) / (4 / 4) = 13.5
    t = models.mixed_anova_2x2_within(list("abcdef"), ["x"] * 3 + ["y"] * 3, [1.0, 2, 3, 4, 5, 6],
                                      [2.0, 4, 3, 9, 8, 10]).set_index("Source")
    assert t.loc["Interaction", "F"] == pytest.approx(13.5, rel=1e-12)
    # time: mean change 2.5, SS_time = 2 * 6 * (2.5 / 2)^2 = 18.75; its error is half the
    # within-group SS of the changes, 4 / 2 = 2, on 4 df -> F = 18.75 / 0.5
    assert t.loc["time", "SS"] == pytest.approx(18.75, rel=1e-12)
    assert t.loc["time", "F"] == pytest.approx(37.5, rel=1e-12)
    assert t.loc["pattern", "DF2"] == 4 and t.loc["time", "np2"] == pytest.approx(18.75 / 20.75, rel=1e-12)
