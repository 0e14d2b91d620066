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


# ----------------------------------------------------------------------------- probabilities vs truth
def _random_probabilities(n=200, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([0.6, 0.5, 0.4], size=n)
    ids = [f"c{i}" for i in range(n)]
    probs = pd.DataFrame(p, index=ids, columns=agreement.PROBABILITY_COLUMNS)
    truth = pd.Series(np.array(["no_rupture", "repaired", "unrepaired"])[
        (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)], index=ids)
    return probs, truth


def test_brier_score_by_hand_and_of_hard_labels():
    p = pd.DataFrame({"p_no_rupture": [0.7, 1.0], "p_repaired": [0.2, 0.0], "p_unrepaired": [0.1, 0.0]},
                     index=["a", "b"])
    truth = pd.Series({"a": "repaired", "b": "no_rupture", "z": "unrepaired"})
    # a: (0.7 - 0)^2 + (0.2 - 1)^2 + (0.1 - 0)^2 = 0.49 + 0.64 + 0.01 = 1.14; b: 0; z has no probabilities
    assert agreement.brier_scores(p, truth).to_dict() == pytest.approx({"a": 1.14, "b": 0.0})
    # hard labels: 0 when right, 2 when wrong -> the mean is twice the error rate
    labels = pd.Series({"a": "no_rupture", "b": "no_rupture", "c": "unrepaired", "d": "insufficient_data"})
    hard = agreement.brier_scores(agreement.one_hot(labels), pd.Series({"a": "repaired", "b": "no_rupture",
                                                                         "c": "unrepaired", "d": "repaired"}))
    assert hard.to_dict() == {"a": 2.0, "b": 0.0, "c": 0.0}  # d: unclassifiable, left out


def test_brier_score_equals_the_sum_of_one_against_the_rest_squared_errors():
    probs, truth = _random_probabilities()
    got = agreement.brier_scores(probs, truth)
    ref = sum((probs[f"p_{k}"] - (truth == k)) ** 2 for k in ("no_rupture", "repaired", "unrepaired"))
    assert np.allclose(got.to_numpy(), ref.loc[got.index].to_numpy(), rtol=0, atol=1e-12)


def test_calibration_table_bins_by_hand():
    probs, truth = _random_probabilities(seed=4)
    t = agreement.calibration_table(probs, truth, bins=4)
    for pattern in ("no_rupture", "repaired", "unrepaired"):
        p, hit = probs[f"p_{pattern}"], truth == pattern
        rows = t[t["pattern"] == pattern]
        assert rows["n"].sum() == len(probs)
        for r in rows.itertuples():
            inside = (p >= r.bin_low) & ((p < r.bin_high) | (r.bin_high == 1.0))
            assert r.n == inside.sum()
            assert r.mean_predicted == pytest.approx(p[inside].mean(), abs=1e-12)
            assert r.observed == pytest.approx(hit[inside].mean(), abs=1e-12)
            assert r.ci_low <= r.observed <= r.ci_high


def test_calibration_table_of_calibrated_probabilities_lies_near_the_diagonal():
    # outcomes drawn from the probabilities themselves: every well-filled bin's CI covers its mean probability
    probs, truth = _random_probabilities(n=4000, seed=5)
    t = agreement.calibration_table(probs, truth, bins=5)
    big = t[t["n"] >= 200]
    inside = (big["ci_low"] <= big["mean_predicted"]) & (big["mean_predicted"] <= big["ci_high"])
    assert inside.mean() >= 0.8 and len(big) >= 10


def test_calibration_table_rejects_a_bad_bin_count():
    probs, truth = _random_probabilities(n=5)
    with pytest.raises(ValueError, match="bins"):
        agreement.calibration_table(probs, truth, bins=0)


def test_definitions_agreement_rows():
    probs, truth = _random_probabilities(n=60, seed=2)
    probs["pattern"] = probs[agreement.PROBABILITY_COLUMNS].idxmax(axis=1).str[2:]
    probs.loc["c0", "pattern"] = "insufficient_data"
    threshold = truth.copy()
    threshold.iloc[:10] = "no_rupture"
    t = agreement.definitions_agreement(probs, threshold, name="rci", truth=truth).set_index("comparison")
    assert list(t.index) == ["model vs rci", "model vs truth", "rci vs truth", "model minus rci (Brier, paired)"]
    ref = agreement.cohen_kappa(agreement.confusion(probs["pattern"], threshold))
    assert t.loc["model vs rci", "kappa"] == pytest.approx(ref["kappa"], abs=1e-12)
    assert t.loc["model vs rci", "n"] == 59  # c0 is not classified by the model
    model = agreement.brier_scores(probs.drop(index="c0")[agreement.PROBABILITY_COLUMNS], truth)
    hard = agreement.brier_scores(agreement.one_hot(threshold), truth)
    assert t.loc["model vs truth", "brier"] == pytest.approx(model.mean(), abs=1e-12)
    assert t.loc["rci vs truth", "brier"] == pytest.approx(hard.mean(), abs=1e-12)
    diff = (model - hard).dropna()
    assert t.loc["model minus rci (Brier, paired)", "brier"] == pytest.approx(diff.mean(), abs=1e-12)
    assert t.loc["model minus rci (Brier, paired)", "n"] == 59
    # without the truth only the agreement of the two definitions
    assert list(agreement.definitions_agreement(probs, threshold, name="rci")["comparison"]) == ["model vs rci"]
