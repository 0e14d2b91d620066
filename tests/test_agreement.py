"""Detection accuracy: kappa against statsmodels and hand-worked values; sens/spec by hand."""

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.inter_rater import cohens_kappa as sm_kappa

from helpers import agreement


@pytest.mark.parametrize("table", [
    [[20, 5], [10, 15]],
    [[30, 4, 1], [3, 12, 2], [2, 3, 9]],
    [[50, 0, 0], [0, 20, 5], [1, 0, 10]],
])
def test_kappa_and_se_match_statsmodels(table):
    ours = agreement.cohen_kappa(pd.DataFrame(table))
    ref = sm_kappa(np.asarray(table))
    assert ours["kappa"] == pytest.approx(ref.kappa, abs=1e-12)
    assert ours["se"] == pytest.approx(ref.std_kappa, rel=1e-9)


def test_kappa_hand_worked():
    # po = 35/50 = .70; pe = .5*.6 + .5*.4 = .50; kappa = (.7 - .5)/(1 - .5) = .40
    k = agreement.cohen_kappa(pd.DataFrame([[20, 5], [10, 15]]))
    assert (k["observed"], k["expected"], k["kappa"], k["n"]) == pytest.approx((0.7, 0.5, 0.4, 50))


def test_confusion_aligns_on_participant_and_drops_unclassifiable():
    truth = pd.Series({"a": "no_rupture", "b": "repaired", "c": "unrepaired", "d": "repaired"})
    detected = pd.Series({"b": "repaired", "a": "repaired", "c": "insufficient_data", "d": "unrepaired",
                          "e": "no_rupture"})
    t = agreement.confusion(detected, truth)
    assert t.to_numpy().sum() == 3  # c (insufficient_data) and e (no truth) left out
    assert t.loc["no_rupture", "repaired"] == 1
    assert t.loc["repaired", "repaired"] == 1
    assert t.loc["repaired", "unrepaired"] == 1


def test_sensitivity_specificity_hand_worked():
    labels = ["no_rupture", "repaired", "unrepaired"]
    t = pd.DataFrame([[8, 2, 0], [1, 3, 1], [0, 0, 5]], index=labels, columns=labels)
    acc = agreement.pattern_accuracy(t).set_index("pattern")
    # repaired: TP 3 of 5 true repaired; TN = 20 - 5 (row) - 5 (column) + 3 = 13 of 15 others
    assert acc.loc["repaired", ["sensitivity", "specificity"]].tolist() == pytest.approx([0.6, 13 / 15])
    assert acc.loc["unrepaired", "sensitivity"] == 1
    assert acc.loc["unrepaired", ["n_true", "n_other"]].tolist() == [5, 15]
