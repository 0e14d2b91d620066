"""Tests of helpers.pattern_growth: the growth model's interaction pooled over pattern imputations.

References: the power study's CR2 row of the growth model on the true patterns
(``power.growth_replicate_batch``, whose CR2 is checked against clubSandwich in
test_growth_power.py), the table route's REML fit (``growth.fit_growth``), and Barnard-Rubin's
df at B = 0 by hand.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from helpers import growth, power
from helpers.contract import INSUFFICIENT, PATTERN_LABELS
from helpers.pattern_growth import SLOPE_COLUMNS, _impute, unrepaired_slope
from helpers.pattern_model import fit_pattern_model
from helpers.simulate import simulate_trial

N, SEED_ROOT = 116, 20140101


@pytest.fixture(scope="module")
def trial_and_model():
    design = power.StudyDesign(sample_sizes=(N,), replications=1, seed=SEED_ROOT)
    key = power.replication_keys(design)[0]
    trial = simulate_trial(N, design.n_sessions, key[2])
    model = fit_pattern_model(trial.sessions, reliability=power.SIMULATED_RELIABILITY)
    return design, key, trial, model


def _hard_model(model, truth):
    """``model`` with every classifiable client's probabilities 0/1 at its true pattern (and
    an unrepaired one's rupture at its true session)."""
    probs = model.probabilities.copy()
    t = truth.set_index("participant_id").reindex(probs["participant_id"])
    cls = (probs["pattern"] != INSUFFICIENT).to_numpy()
    onehot = np.stack([(t["true_pattern"] == p).to_numpy(float) for p in PATTERN_LABELS], axis=1)
    probs[["p_no_rupture", "p_repaired", "p_unrepaired"]] = onehot
    probs.loc[cls, "pattern"] = t["true_pattern"].to_numpy()[cls]
    at = np.zeros_like(model.unrepaired_at)
    unrep = np.flatnonzero(onehot[:, 2] == 1)
    # the pattern-setting rupture is the last one listed
    sess = [int(str(t["rupture_sessions"].iloc[i]).split(";")[-1]) for i in unrep]
    at[unrep, np.array(sess) - 1] = 1.0
    return dataclasses.replace(model, probabilities=probs, unrepaired_at=at)


def test_certain_patterns_give_one_cr2_fit(trial_and_model):
    design, key, trial, model = trial_and_model
    hard = _hard_model(model, trial.truth)
    pooled = unrepaired_slope(hard, trial.sessions, n_imputations=5, seed=3, burn_in=10, thin=2).iloc[0]
    rows, failures = power.growth_replicate_batch(design, [key], criterion="true_pattern")
    assert not failures
    ref = rows[0]
    assert pooled["b"] == pytest.approx(ref["estimate"], rel=1e-9)
    assert pooled["se"] == pytest.approx(ref["se_cr2"], rel=1e-9)
    assert pooled["fmi"] == 0.0
    nu = ref["df_cr2"]
    assert pooled["df"] == pytest.approx(nu * (nu + 1) / (nu + 3), rel=1e-9)  # Barnard-Rubin at B = 0
    assert pooled["expected_n_unrepaired"] == ref["n_unrepaired"]
    # the table route's REML estimate of the same model
    pats = hard.probabilities[["participant_id", "pattern"]]
    fit = growth.fit_growth(trial.sessions, pats, warn=False)
    assert pooled["b"] == pytest.approx(fit.fixed.set_index("term").loc["time:unrepaired", "estimate"], rel=1e-6)
    # and the hard-patterns route: the one CR2 test itself
    one = unrepaired_slope(None, trial.sessions, pats).iloc[0]
    assert one["b"] == pytest.approx(ref["estimate"], rel=1e-9) and one["df"] == pytest.approx(nu, rel=1e-9)
    assert one["n_imputations"] == 1 and one["fmi"] == 0.0


def test_same_seed_same_result_other_seed_other(trial_and_model):
    _, _, trial, model = trial_and_model
    kw = dict(n_imputations=4, burn_in=20, thin=2)
    a = unrepaired_slope(model, trial.sessions, seed=11, **kw)
    b = unrepaired_slope(model, trial.sessions, seed=11, **kw)
    c = unrepaired_slope(model, trial.sessions, seed=12, **kw)
    assert list(a.columns) == SLOPE_COLUMNS
    pd.testing.assert_frame_equal(a, b)
    assert a["b"].iloc[0] != c["b"].iloc[0]
    assert 0 < a["fmi"].iloc[0] < 1


def test_the_course_is_in_the_imputation_model(trial_and_model):
    """With the same alliance-only probability for everyone, the clients whose course turns up
    after an early unrepaired rupture are drawn unrepaired far more often than that, and the
    clients without a rupture less often."""
    _, _, trial, model = trial_and_model
    probs = model.probabilities.copy()
    cls = (probs["pattern"] != INSUFFICIENT).to_numpy()
    probs[["p_no_rupture", "p_repaired", "p_unrepaired"]] = [0.6, 0.25, 0.15]
    at = np.zeros_like(model.unrepaired_at)
    at[:, 1:6] = 0.15 / 5  # the rupture equally likely at sessions 2-6
    flat = dataclasses.replace(model, probabilities=probs, unrepaired_at=at)
    from helpers.pattern_model import wide_scores

    ids, sess, scores = wide_scores(trial.sessions, "participant_id", "session", "pss_sr")
    z = _impute(flat, scores, sess.astype(float), 200, np.random.default_rng(5), 200, 2)
    rate = (z == 2).mean(axis=0)
    t = trial.truth.set_index("participant_id").reindex(ids)
    first = t["rupture_sessions"].astype(str).str.split(";").str[-1]
    early_unrep = cls & (t["true_pattern"] == "unrepaired").to_numpy() & (pd.to_numeric(first, errors="coerce") <= 5).to_numpy()
    none = cls & (t["true_pattern"] == "no_rupture").to_numpy()
    assert early_unrep.sum() >= 3
    assert rate[early_unrep].mean() > 2 * 0.15
    assert rate[none].mean() < 0.15
    assert np.all(z[:, ~cls] == -1)


def test_inputs_are_checked(trial_and_model):
    _, _, trial, model = trial_and_model
    with pytest.raises(ValueError, match="n_imputations"):
        unrepaired_slope(model, trial.sessions, n_imputations=1)
    with pytest.raises(ValueError, match="pattern model or hard patterns"):
        unrepaired_slope(None, trial.sessions)
    other = trial.sessions[trial.sessions["participant_id"] != "P001"]
    with pytest.raises(ValueError, match="not fitted to these"):
        unrepaired_slope(model, other)


def test_a_failed_completed_fit_is_warned_and_gives_nan(trial_and_model, monkeypatch):
    _, _, trial, model = trial_and_model
    real = growth.fit_growth_lean

    def first_fails(designs, **kw):
        out = real(designs, **kw)
        return [np.linalg.LinAlgError("Matrix is not positive definite"), *out[1:]]

    monkeypatch.setattr(growth, "fit_growth_lean", first_fails)
    with pytest.warns(UserWarning, match="growth model failed"):
        r = unrepaired_slope(model, trial.sessions, n_imputations=3, seed=2, burn_in=10, thin=2).iloc[0]
    assert np.isnan(r["b"]) and np.isnan(r["se"]) and r["n_failed"] >= 1
