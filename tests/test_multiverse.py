"""The multiverse with the pattern model's row and the censored repairs: each number against an
independent computation (the threshold rows unchanged by the model's row, the model's row the
model's own functions, the censoring rows statsmodels' regressions on the filtered clients)."""

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from helpers import describe, episodes, multiverse, pattern_model, simulate
from helpers.contract import INSUFFICIENT


@pytest.fixture(scope="module")
def trial():
    return simulate.simulate_trial(n_participants=116, seed=20131106)


@pytest.fixture(scope="module")
def model(trial):
    return pattern_model.fit_pattern_model(trial.sessions, reliability=0.83)


@pytest.fixture(scope="module")
def both(trial, model):
    presets = {k: v for k, v in episodes.presets(0.83).items() if k in ("absolute_1", "rci")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = multiverse.compute(trial.sessions, trial.participants, trial.truth, presets=presets)
        full = multiverse.compute(trial.sessions, trial.participants, trial.truth, presets=presets, model=model,
                                  seed=1, n_imputations=10)
    return plain, full


def test_the_model_row_leaves_the_criteria_rows_as_they_were(both):
    plain, full = both
    for name in ("prevalence", "beta", "table"):
        old, new = getattr(plain, name), getattr(full, name)
        new = new[new["preset"] != multiverse.MODEL].reset_index(drop=True)
        pd.testing.assert_frame_equal(old, new)
    # integer columns stay integers in the written tables although the model's row has none
    assert str(full.table["n_episodes"].dtype) == "Int64" and full.table["n_episodes"].isna().sum() == 1
    assert str(full.beta["n_unrepaired_analysed"].dtype) == "Int64"


def test_the_model_row_is_its_most_probable_patterns_and_its_imputed_beta(trial, model, both):
    _, full = both
    prev = full.prevalence[full.prevalence["preset"] == multiverse.MODEL].set_index("quantity")
    ref = describe.prevalence_table(model.probabilities).set_index("quantity")
    assert np.allclose(prev["estimate"], ref.loc[prev.index, "estimate"], atol=1e-12)
    effect = pattern_model.unrepaired_effect(model, trial.participants, seed=1, n_imputations=10).iloc[0]
    row = full.beta.set_index("preset").loc[multiverse.MODEL]
    assert row["estimand"] == multiverse.TRUE and row["se_type"] == "HC3, Rubin's rules (m = 10)"
    assert (row["beta"], row["fmi"], row["expected_n_unrepaired"]) == pytest.approx(
        (effect["beta"], effect["fmi"], effect["expected_n_unrepaired"]), abs=1e-12)
    classified = model.probabilities[model.probabilities["pattern"] != INSUFFICIENT]
    assert row["n_unrepaired"] == int((classified["pattern"] == "unrepaired").sum())
    assert pd.isna(row["n_unrepaired_analysed"])
    table = full.table.set_index("preset")
    assert table.loc[multiverse.MODEL, "estimand"] == multiverse.TRUE
    assert (table.drop(index=multiverse.MODEL)["estimand"] == multiverse.DETECTED).all()
    acc = full.accuracy.set_index("preset")
    assert acc.loc[multiverse.MODEL, "brier"] < acc.loc["rci", "brier"]  # probabilities, not hard labels


def test_every_criterion_counts_its_censored_unrepaired_clients(trial, both):
    _, full = both
    for name, (_, pats) in full.results.items():
        if name == multiverse.MODEL:
            continue
        classified = pats[pats["pattern"] != INSUFFICIENT]
        assert full.table.set_index("preset").loc[name, "n_unrepaired_censored"] == int(
            classified["unrepaired_censored"].sum())


def test_a_given_effect_is_the_model_row_as_computed_here(trial, model, both):
    _, full = both
    presets = {k: v for k, v in episodes.presets(0.83).items() if k in ("absolute_1", "rci")}
    effect = pattern_model.unrepaired_effect(model, trial.participants, seed=1, n_imputations=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        given = multiverse.compute(trial.sessions, trial.participants, trial.truth, presets=presets, model=model,
                                   effect=effect)
        for name in ("prevalence", "beta", "table"):
            pd.testing.assert_frame_equal(getattr(given, name), getattr(full, name))
        with pytest.raises(ValueError, match="pass it with model="):
            multiverse.compute(trial.sessions, trial.participants, presets=presets, effect=effect)


def test_the_summary_keeps_the_model_out_of_the_criteria_range(both):
    plain, full = both
    text = multiverse.summary_sentence(full.table)
    assert text.startswith(multiverse.summary_sentence(plain.table))
    assert "true pattern" in text and "Across the 2 criteria" in text


def test_beta_sensitivity_against_statsmodels_on_the_filtered_clients(trial, both):
    _, full = both
    _, pats = full.results["rci"]
    effect = pattern_model.unrepaired_effect(pattern_model.fit_pattern_model(trial.sessions, reliability=0.83),
                                             trial.participants, seed=1, n_imputations=10)
    t = multiverse.beta_sensitivity(pats, trial.participants, outcome="pss_i", criterion="rci", effect=effect)
    assert list(t["analysis"]) == ["paper's test"] * 2 + ["censored excluded"] * 2 + ["pattern model"]
    # the reference: statsmodels on the classifiable clients with both scores, censored ones left out or not
    d = pats[pats["pattern"] != INSUFFICIENT].merge(trial.participants, on="participant_id")
    d = d.dropna(subset=["pss_i_pre", "pss_i_post"]).assign(unrepaired=lambda x: (x["pattern"] == "unrepaired") * 1.0)
    kept = d[~d["unrepaired_censored"]]
    for rows, data in ((t.iloc[:2], d), (t.iloc[2:4], kept)):
        for r in rows.itertuples():
            fit = smf.ols("pss_i_post ~ pss_i_pre + unrepaired", data=data).fit(
                cov_type="HC3" if r.se_type == "HC3" else "nonrobust", use_t=True)
            assert (r.b, r.se, r.p, r.n) == (pytest.approx(fit.params["unrepaired"], rel=1e-9),
                                             pytest.approx(fit.bse["unrepaired"], rel=1e-9),
                                             pytest.approx(fit.pvalues["unrepaired"], rel=1e-9), len(data))
            assert r.n_unrepaired_analysed == int(data["unrepaired"].sum())
    assert t.iloc[2]["n_excluded"] == len(d) - len(kept) > 0
    model = t.iloc[4]
    assert model["estimand"] == multiverse.TRUE and model["b"] == pytest.approx(effect["b"].iloc[0], abs=1e-12)


def test_beta_sensitivity_without_an_outcome_says_so(trial, both):
    _, pats = both[1].results["rci"]
    t = multiverse.beta_sensitivity(pats, trial.participants, outcome=None, criterion="rci")
    assert len(t) == 1 and "not estimable" in t["note"].iloc[0]
