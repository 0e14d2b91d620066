"""The batched growth-model power study equals its one-at-a-time reference row by row.

``power.growth_replicate_batch`` (simulated arrays, stacked detection, designs built with
numpy, all mixed models optimised together by ``lmm.fit_lmm_lean``) against
``oracles.power.growth_replicate`` (tables, the loop detection, ``growth.fit_growth``) on the
same keys, including singular fits refitted with a random intercept, replications without an
unrepaired client and replications that fail.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from helpers import growth, lmm, power, simulate
from oracles import power as oracle

FLOATS = ["estimate", "se", "df", "t", "p", "se_cr2", "df_cr2", "p_cr2"]


def _reference(design, **kw):
    tasks = power.replication_keys(design)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reference designs below do not warn
        return oracle.run(design, tasks, lambda d, n, r, s: oracle.growth_replicate(d, n, r, s, **kw))


def _assert_same(ref, fast):
    a, b = pd.DataFrame(ref), pd.DataFrame(fast)
    # the batched rows add the CR2 test of the same fit (checked below against the full fit)
    extra = [c for c in ("se_cr2", "df_cr2", "p_cr2") if c not in a.columns]
    assert list(b.columns) == list(a.columns) + extra and len(a) == len(b) > 0
    for col in a.columns:
        if col in FLOATS:
            # in fact bit for bit (the same optimiser path); the brief's bound is 1e-9
            np.testing.assert_allclose(b[col].to_numpy(), a[col].to_numpy(), rtol=1e-9, atol=0,
                                       equal_nan=True, err_msg=col)
        else:
            assert a[col].tolist() == b[col].tolist(), col


@pytest.mark.parametrize("design, check", [
    # the notebook's kind of design
    (power.StudyDesign(sample_sizes=[40, 60], replications=6, seed=11), None),
    # no between-client spread of improvement: a singular random-slope fit, simplified
    (power.StudyDesign(sample_sizes=[40, 60], replications=6, seed=5,
                       knobs={"improvement_rate_sigma": 0.0}), "simplified"),
    # tiny trials: no unrepaired client, simplified fits, and fits that fail (one client)
    (power.StudyDesign(sample_sizes=[4, 12], replications=6, seed=7), "edges"),
])
def test_batched_growth_replications_equal_the_reference(design, check):
    ref_rows, ref_fail = _reference(design)
    rows, fail = power.growth_replicate_batch(design, power.replication_keys(design))
    _assert_same(ref_rows, rows)
    assert fail == ref_fail
    got = pd.DataFrame(rows)
    if check == "simplified":
        assert got["simplified"].any() and (got["re_formula"] == "1").any()
    if check == "edges":
        assert got["simplified"].any() and (got["n_unrepaired"] == 0).any()
        assert got["estimate"].isna().any()  # no unrepaired client: no interaction term
        assert fail and all(f["error"].startswith("ValueError") for f in fail)


def test_growth_power_summarises_the_reference_rows():
    design = power.StudyDesign(sample_sizes=[60], replications=4, seed=3)
    ref_rows, _ = _reference(design)
    summary, reps = power.growth_power(design)
    _assert_same(ref_rows, reps.to_dict("records"))
    ref = pd.DataFrame(ref_rows)
    row = summary.iloc[0]
    assert row["n_fitted"] == 4 and row["power"] == (ref["p"] < 0.05).mean()
    assert row["mean_estimate"] == pytest.approx(ref["estimate"].mean(), rel=1e-12)


def test_a_warning_inside_the_batch_is_shown_not_swallowed(monkeypatch):
    design = power.StudyDesign(sample_sizes=[40], replications=3, seed=11)
    ref_rows, _ = _reference(design)
    real = growth.fit_growth_lean

    def warns(designs, **kw):
        warnings.warn("something odd", RuntimeWarning)
        return real(designs, **kw)

    monkeypatch.setattr(growth, "fit_growth_lean", warns)
    for n_workers in (1, 2):  # in this process and from a forked worker
        with pytest.warns(RuntimeWarning, match="something odd"):
            rows, fail = power.growth_replicate_batch(design, power.replication_keys(design), n_workers=n_workers)
        assert fail == []
        _assert_same(ref_rows, rows)


def test_invalid_arguments_fail_at_once():
    design = power.StudyDesign(sample_sizes=[40], replications=2, seed=11)
    with pytest.raises(ValueError, match="not a preset"):
        power.growth_power(design, criterion="rci_90")
    with pytest.raises(ValueError, match="session-level"):
        power.growth_power(design, outcome="pss_i_post")


def test_growth_design_is_the_design_fit_growth_fits():
    trial = simulate.simulate_trial(60, 10, seed=4)
    arr = simulate.simulate_arrays(60, 10, seed=4)
    pats = np.where(np.arange(60) % 7 == 0, "insufficient_data",
                    np.array(["no_rupture", "repaired", "unrepaired"])[np.arange(60) % 3])
    table = pd.DataFrame({"participant_id": sorted(trial.sessions["participant_id"].unique()),
                          "pattern": pats})
    d, center, _ = growth.growth_data(trial.sessions, table)
    des = growth.growth_design(arr["pss_sr"], pats)
    X, names = lmm.design_matrix(d, lmm.expand_terms("time * (repaired + unrepaired)")[0], True, "Intercept")
    assert names == des["x_names"] and center == des["center"]
    # exact (no BLAS): the same columns and elementwise products
    assert np.array_equal(des["X"], X) and np.array_equal(des["y"], d["pss_sr"].to_numpy())
    assert np.array_equal(pd.factorize(d["participant_id"], sort=True)[0],
                          pd.factorize(des["groups"], sort=True)[0])


def test_stacked_evaluations_equal_each_problems_own_bit_for_bit():
    rng = np.random.default_rng(1)
    probs = []
    for k in range(7):
        n_groups = 20 + 9 * k
        groups = np.repeat(np.arange(n_groups), rng.integers(2, 9, n_groups))
        t = rng.normal(size=groups.size)
        X = np.column_stack([np.ones(groups.size), t, (groups % 3 == 0) * 1.0])
        y = X @ [1.0, 0.5, -1.0] + rng.normal(size=n_groups)[groups] * (1 + t) + rng.normal(size=groups.size)
        for Z in (X[:, :2], X[:, :1]):
            probs.append(lmm._Problem(y, X, np.ascontiguousarray(Z), groups, n_groups, True))
    for q in (1, 2):
        stack = lmm._Stack([p for p in probs if p.q == q])
        k = len(stack.rows)
        for idx in (np.arange(len(stack.probs)), np.array([1, 4, 5])):  # all, and a subset
            thetas = rng.normal(size=(len(idx), k))
            for i, theta, ev in zip(idx, thetas, stack.evaluate(idx, thetas)):
                # exact by construction: the stack runs each problem's operations on arrays of
                # the same shapes in the same order, in this process (what fit_lmm_lean relies on)
                own = stack.probs[i].evaluate(theta)
                assert set(own) <= set(ev)
                for key, value in own.items():
                    assert np.array_equal(np.asarray(ev[key]), np.asarray(value)), (q, key)
                # the criterion and its gradient, computed for the whole stack at once
                prob = stack.probs[i]
                assert ev["crit"] == prob.criterion(own)
                assert np.array_equal(ev["grad"], prob.criterion_gradient(own))


def test_lean_fits_equal_fit_lmm_arrays():
    rng = np.random.default_rng(2)
    models = []
    for n in (40, 80, 116):
        arr = simulate.simulate_arrays(n, 10, seed=n)
        pats = np.array(["no_rupture", "repaired", "unrepaired", "insufficient_data"])[rng.integers(0, 4, n)]
        des = growth.growth_design(arr["pss_sr"], pats)
        models += [(des["y"], des["X"], np.column_stack([np.ones(len(des["y"])), des["time"]]), des["groups"]),
                   (des["y"], des["X"], np.column_stack([np.ones(len(des["y"]))]), des["groups"])]
    models.append((np.ones(3), np.ones((3, 1)), np.ones((3, 1)), np.zeros(3)))  # one group: invalid
    lean = lmm.fit_lmm_lean(models)
    assert isinstance(lean[-1], ValueError)
    for model, fit in zip(models[:-1], lean[:-1]):
        ref = lmm.fit_lmm_arrays(*model)  # the same optimiser path, evaluations exact (above): the same bits
        for col in FLOATS[:5]:
            assert np.array_equal(getattr(fit, col), ref.fixed[col].to_numpy()), col
        assert np.array_equal(fit.theta, ref.theta) and fit.converged == ref.converged


def test_worker_processes_give_the_same_rows():
    design = power.StudyDesign(sample_sizes=[4, 40], replications=4, seed=7)
    tasks = power.replication_keys(design)
    alone_rows, alone_fail = power.growth_replicate_batch(design, tasks, n_workers=1)
    rows, fail = power.growth_replicate_batch(design, tasks, n_workers=2)  # a forked worker
    _assert_same(alone_rows, rows)
    assert fail == alone_fail and fail  # the n = 4 failures are counted either way


def test_the_rows_cr2_is_cr2_of_the_full_fit():
    from helpers import growth, lmm, mixed, simulate

    design = power.StudyDesign(sample_sizes=[80], replications=2, seed=3)
    rows, _ = power.growth_replicate_batch(design, power.replication_keys(design))
    for row in rows:
        arr = simulate.simulate_arrays(80, 10, row["seed"])
        codes, _, _ = power.episodes.detect_grouped(arr["alliance"].astype(float), np.arange(1, 11), [0, 80],
                                                    {"rci": design.presets["rci"]})
        labels = np.asarray(power.episodes.PATTERN_CODES, dtype=object)[codes["rci"]]
        des = growth.growth_design(arr["pss_sr"].astype(float), labels)
        Z = des["spec"].random_design(des["time"], row["re_formula"])[0]
        fit = lmm.fit_lmm_arrays(des["y"], des["X"], Z, des["groups"], x_names=des["x_names"])
        j = des["x_names"].index("time:unrepaired")
        cr2 = mixed.cr2_test(des["y"], des["X"], Z, des["groups"], fit.fixed["estimate"].to_numpy(),
                             fit.lambda_, fit.sigma, np.eye(len(des["x_names"]))[j])
        assert row["se_cr2"] == pytest.approx(cr2["se"][0], rel=1e-6)
        assert row["df_cr2"] == pytest.approx(cr2["df"][0], rel=1e-6)
        assert row["se_cr2"] > row["se"]  # the model SE is too small here (the gap)
