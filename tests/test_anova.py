"""helpers.models.mixed_anova_prepost: pingouin's mixed ANOVA on the pre/post scores, checked
against anchors that need no ANOVA library -- with two within levels the interaction F is the
one-way F of the changes, the pattern F the one-way F of the subjects' means (scipy.stats), a
2 x 2 design worked by hand -- and for what the function adds: listwise deletion (warned and
counted), its columns, and a clear error when nobody has both scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import models
from helpers.contract import PATTERN_LABELS


def _design(sizes, seed, *, effect=(0.0, 0.0, 0.0), scale=1.0):
    """patterns + participants: ``sizes`` clients per pattern, scores ~ N(30, 7), post falling by
    8 points plus ``effect`` per pattern."""
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


@pytest.mark.parametrize("sizes", [(10, 10), (10, 10, 10), (30, 7), (40, 12, 5), (3, 2, 9), (60, 1, 1)])
@pytest.mark.parametrize("seed", range(2))
def test_effects_equal_oneway_anovas_of_changes_and_means(sizes, seed):
    # two within levels: the time x pattern F is the one-way F of the changes, the pattern F
    # the one-way F of the subjects' means; SS_total = between + its error + time + interaction
    # + within error
    patterns, participants = _design(sizes, seed, effect=(0.0, 1.0, 6.0))
    table = models.mixed_anova_prepost(patterns, participants).set_index("Source")
    pre, post = participants["pss_sr_pre"].to_numpy(), participants["pss_sr_post"].to_numpy()
    groups = [patterns["pattern"].to_numpy() == g for g in PATTERN_LABELS[: len(sizes)]]
    f_inter, p_inter = stats.f_oneway(*[(post - pre)[g] for g in groups])
    f_betw, p_betw = stats.f_oneway(*[((post + pre) / 2)[g] for g in groups])
    assert table.loc["Interaction", "F"] == pytest.approx(f_inter, rel=1e-10)
    assert table.loc["Interaction", "p_unc"] == pytest.approx(p_inter, rel=1e-9)
    assert table.loc["pattern", "F"] == pytest.approx(f_betw, rel=1e-10)
    assert table.loc["pattern", "p_unc"] == pytest.approx(p_betw, rel=1e-9)
    assert (table["DF2"] == sum(sizes) - len(sizes)).all() and table["eps"].tolist()[1:] == [1.0, 1.0]
    assert table["DF1"].tolist() == [len(sizes) - 1, 1, len(sizes) - 1]
    ss, err = table["SS"], table["SS"] / table["np2"] - table["SS"]
    both = np.concatenate([pre, post])
    assert ss.sum() + err["pattern"] + err["time"] == pytest.approx(((both - both.mean()) ** 2).sum(), rel=1e-12)


def test_hand_worked_two_by_two():
    # x: changes 1, 2, 0 (mean 1); y: 5, 3, 4 (mean 4); within-group SS of the changes 2 + 2 on
    # 4 df -> one-way F of the changes = (3 * 1.5^2 * 2 / 1) / (4 / 4) = 13.5
    ids = list("abcdef")
    patterns = pd.DataFrame({"participant_id": ids, "pattern": ["no_rupture"] * 3 + ["unrepaired"] * 3})
    participants = pd.DataFrame({"participant_id": ids, "pss_sr_pre": [1.0, 2, 3, 4, 5, 6],
                                 "pss_sr_post": [2.0, 4, 3, 9, 8, 10]})
    t = models.mixed_anova_prepost(patterns, participants).set_index("Source")
    assert t.loc["Interaction", "F"] == pytest.approx(13.5, rel=1e-12)
    # time: mean change 2.5, SS_time = 2 * 6 * (2.5 / 2)^2 = 18.75; its error is half the
    # within-group SS of the changes, 4 / 2 = 2, on 4 df -> F = 18.75 / 0.5
    assert t.loc["time", "SS"] == pytest.approx(18.75, rel=1e-12)
    assert t.loc["time", "F"] == pytest.approx(37.5, rel=1e-12)
    assert t.loc["pattern", "DF2"] == 4 and t.loc["time", "np2"] == pytest.approx(18.75 / 20.75, rel=1e-12)


def test_missing_scores_and_rows_dropped_listwise_and_counted():
    patterns, participants = _design((15, 9, 6), 7)
    participants.loc[[0, 4], "pss_sr_post"] = np.nan
    participants.loc[9, "pss_sr_pre"] = np.nan
    participants = participants.drop(index=12)  # no row at all
    extra = pd.DataFrame({"participant_id": ["x1", "x2"], "pattern": ["insufficient_data", "repaired"]})
    patterns = pd.concat([patterns, extra], ignore_index=True)  # x2: classifiable, no scores
    with pytest.warns(UserWarning, match="5 classifiable participants without both pss_sr_pre and pss_sr_post"):
        got = models.mixed_anova_prepost(patterns, participants)
    assert (got["n_dropped"] == 5).all() and (got["n"] == 30 - 4).all() and (got["outcome"] == "pss_sr").all()
    assert list(got.columns) == ["Source", "SS", "DF1", "DF2", "MS", "F", "p_unc", "np2", "eps", "n", "n_dropped",
                                 "outcome"]
    assert got["Source"].tolist() == ["pattern", "time", "Interaction"]
    kept = models.prepost_complete(patterns, participants, warn=False)[0]
    assert models.mixed_anova_prepost(kept, participants, warn=False)["SS"].tolist() == pytest.approx(
        got["SS"].tolist(), rel=1e-12)


def test_nobody_with_both_scores_is_an_error_that_says_so():
    patterns, participants = _design((3, 3), 3)
    participants["pss_sr_post"] = np.nan
    with pytest.warns(UserWarning, match="left out"), pytest.raises(ValueError, match="no subject with scores"):
        models.mixed_anova_prepost(patterns, participants)


def test_pingouins_own_deprecation_notice_is_not_shown_but_ours_are(recwarn):
    patterns, participants = _design((10, 10), 1)
    models.mixed_anova_prepost(patterns, participants)
    assert [w for w in recwarn if "inplace" in str(w.message)] == []
