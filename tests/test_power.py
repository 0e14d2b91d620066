"""Tests of the power study (helpers.power, helpers.power_summary, helpers.study).

Independent checks: seeds against numpy's own SeedSequence.spawn; the batched replications
against the one-at-a-time reference of tests/oracles/power.py (loop detection, statsmodels,
helpers.agreement), edge cases included; the agreement statistics against helpers.agreement and
the scalar rule; the performance measures on a hand-worked table and on a fake replication with
a known normal distribution (exact bias, coverage and power); N for 80% power on an exact
normal power curve. Dask: 1 vs 2 local workers give byte-identical tables, a real external
cluster (`dask scheduler` + two `dask worker` processes on 127.0.0.1) gives the same tables as
the in-process run, and a failing replication is reported with its seed and counted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import agreement, episodes, power, power_summary, simulate
from helpers.contract import PATTERN_LABELS
from helpers.study import run_study
from helpers.table_io import write_table
from oracles import power as oracle

# The fake replication functions below run on Dask workers, which cannot import this test
# module: ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TINY = dict(sample_sizes=[40, 80], replications=4, reference_n=3000, seed=7,
            presets={"rci": {"criterion": "rci"}, "absolute_1": {"criterion": "absolute", "cutoff": 1.0}})
DASK_BIN = Path(sys.executable).with_name("dask")


def _write_all(study, folder) -> dict:
    out = {}
    for stem, (table, sort) in study.tables().items():
        path = write_table(table, Path(folder) / f"{stem}.csv", sort_by=sort)
        out[stem] = path.read_bytes()
    return out


# ------------------------------------------------------------------------------------ seeds
def test_replication_seed_is_the_spawned_child_and_independent_of_order():
    root = 20140101
    for n, r in [(60, 0), (116, 3), (400, 19)]:
        child = np.random.SeedSequence(root).spawn(n + 1)[n].spawn(r + 1)[r]
        assert power.replication_seed(root, n, r) == int(child.generate_state(1, dtype=np.uint64)[0])
    keys = [(n, r) for n in (60, 116, 200) for r in range(10)]
    forward = {k: power.replication_seed(root, *k) for k in keys}
    shuffled = keys[:]
    random.Random(1).shuffle(shuffled)
    assert {k: power.replication_seed(root, *k) for k in shuffled} == forward
    assert len(set(forward.values())) == len(keys)
    # R = 20 is the first 20 replications of R = 1000; a new size leaves the others alone.
    small = power.replication_keys(power.StudyDesign(sample_sizes=[60], replications=3, seed=root))
    big = power.replication_keys(power.StudyDesign(sample_sizes=[30, 60], replications=5, seed=root))
    assert set(small) <= set(big)


# ------------------------------------------------------------------------ lean statistics
@pytest.mark.parametrize("seed", [4, 5])
def test_agreement_many_matches_the_agreement_module(seed):
    trial = simulate.simulate_trial(116, 10, seed=seed)
    pats = episodes.classify_participants(episodes.detect_episodes(trial.sessions), trial.sessions)
    det = pats.set_index("participant_id")["pattern"]
    true = trial.truth.set_index("participant_id")["true_pattern"]
    table = agreement.confusion(det, true)
    acc = agreement.pattern_accuracy(table).set_index("pattern")
    lean = {k: float(v[0]) for k, v in power.agreement_many(table.to_numpy()[None]).items()}
    assert lean["kappa"] == pytest.approx(agreement.cohen_kappa(table)["kappa"], rel=1e-12)
    for pattern in acc.index:
        assert lean[f"sens_{pattern}"] == pytest.approx(acc.loc[pattern, "sensitivity"], rel=1e-12)
        assert lean[f"spec_{pattern}"] == pytest.approx(acc.loc[pattern, "specificity"], rel=1e-12)


# --------------------------------------------------------------- performance measures
def _hand_table():
    """Four replications of one criterion at N = 50, theta = 0.5 (worked by hand below)."""
    design = power.StudyDesign(sample_sizes=[50], replications=5, presets={"x": {"criterion": "rci"}})
    base = dict(n_participants=50, preset="x", n_classifiable=40, n_analysed=30, n_unrepaired=5,
                estimable=True, b=np.nan, b_ci_low=np.nan, b_ci_high=np.nan, p_hc3=1.0,
                b_hc3_ci_low=np.nan, b_hc3_ci_high=np.nan, beta_se=0.1)
    betas = [0.3, 0.5, 0.6, 0.8]
    lows = [0.1, 0.45, 0.55, 0.35]      # CIs: [.1,.5] yes, [.45,.55] yes, [.55,.65] no, [.35,1.25] yes
    highs = [0.5, 0.55, 0.65, 1.25]
    ps = [0.2, 0.01, 0.04, 0.001]
    rows = [{**base, "rep": i, "seed": i, "beta": b, "beta_ci_low": lo, "beta_ci_high": hi, "p": p}
            for i, (b, lo, hi, p) in enumerate(zip(betas, lows, highs, ps))]
    rows.append({**base, "rep": 4, "seed": 4, "estimable": False, "beta": np.nan, "beta_ci_low": np.nan,
                 "beta_ci_high": np.nan, "p": np.nan})
    failures = pd.DataFrame([{"n_participants": 50, "rep": 5, "seed": 5, "error": "boom"}])
    return design, pd.DataFrame(rows), failures


def test_summarise_beta_on_a_hand_worked_case():
    design, reps, failures = _hand_table()
    out = power_summary.summarise_beta(reps, failures, design, theta=0.5)
    row = out[out["preset"] == "x"].iloc[0]
    # 5 successful + 1 failed replication; 4 estimable betas .3 .5 .6 .8: mean .55, SD sqrt(.0433...)
    assert (row["n_replications"], row["n_failed"], row["n_not_estimable"]) == (6, 1, 1)
    sd = math.sqrt(((0.3 - .55) ** 2 + (0.5 - .55) ** 2 + (0.6 - .55) ** 2 + (0.8 - .55) ** 2) / 3)
    assert row["beta_mean"] == pytest.approx(0.55)
    assert row["bias"] == pytest.approx(0.05)
    assert row["bias_mcse"] == pytest.approx(sd / 2)
    assert row["emp_se"] == pytest.approx(sd)
    assert row["emp_se_mcse"] == pytest.approx(sd / math.sqrt(6))
    assert row["diff_vs_paper"] == pytest.approx(0.55 - 0.44)  # the published beta (helpers.paper)
    assert row["rmse"] == pytest.approx(math.sqrt((0.04 + 0 + 0.01 + 0.09) / 4))
    assert row["coverage"] == pytest.approx(0.75)
    assert row["coverage_mcse"] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    # power over the 5 successful replications; the non-estimable one counts as not significant
    assert row["power"] == pytest.approx(3 / 5)
    assert row["power_mcse"] == pytest.approx(math.sqrt(0.6 * 0.4 / 5))


def fake_normal(design, n_participants, rep, seed):
    """beta ~ Normal(theta, sigma), sigma = 1 / sqrt(n); 95% CI and two-sided p from z."""
    theta, sigma = 0.3, 1 / math.sqrt(n_participants)
    rng = np.random.default_rng(seed)
    beta = theta if rep < 0 else rng.normal(theta, sigma)
    z = stats.norm.ppf(0.975)
    row = dict(n_participants=n_participants, rep=rep, seed=seed, n_classifiable=n_participants,
               n_analysed=n_participants, n_unrepaired=1, estimable=True, b=beta, se=sigma,
               b_ci_low=beta - z * sigma, b_ci_high=beta + z * sigma, p=2 * stats.norm.sf(abs(beta) / sigma),
               se_hc3=sigma, b_hc3_ci_low=beta - z * sigma, b_hc3_ci_high=beta + z * sigma,
               p_hc3=2 * stats.norm.sf(abs(beta) / sigma), beta=beta, beta_se=sigma,
               beta_ci_low=beta - z * sigma, beta_ci_high=beta + z * sigma, kappa=1.0, agreement=1.0,
               n_warnings=0, warnings="")
    return [{**row, "preset": name} for name in design.criteria]


def fake_normal_batch(design, n_participants, tasks):
    """:func:`fake_normal` of every task, as ``power.replicate_batch`` answers."""
    return [row for task in tasks for row in fake_normal(design, *task)], []


def test_performance_measures_on_a_known_normal_distribution():
    study = run_study(sample_sizes=[50, 100], replications=3000, seed=11, reference_n=10,
                      presets={"fake": {}}, replicate=fake_normal_batch, scheduler="synchronous",
                      progress=False)
    assert study.theta == 0.3
    for row in study.beta.itertuples():
        sigma = 1 / math.sqrt(row.n_participants)
        exact_power = stats.norm.cdf(0.3 / sigma - 1.96) + stats.norm.cdf(-0.3 / sigma - 1.96)
        assert abs(row.bias) < 4 * row.bias_mcse
        assert abs(row.emp_se - sigma) < 4 * row.emp_se_mcse
        assert abs(row.coverage - 0.95) < 4 * row.coverage_mcse
        assert abs(row.power - exact_power) < 4 * math.sqrt(exact_power * (1 - exact_power) / 3000)


def test_interpolated_n_recovers_an_exact_normal_power_curve():
    delta, za = 0.25, stats.norm.ppf(0.975)
    exact = ((stats.norm.ppf(0.8) + za) / delta) ** 2          # 125.6
    sizes = np.array([60, 116, 200, 400])
    curve = stats.norm.cdf(delta * np.sqrt(sizes) - za)
    n, status, lo, hi = power_summary.interpolate_n(sizes, curve, [10**9] * 4)
    assert (status, lo, hi) == ("interpolated", 116, 200) and n == pytest.approx(exact, rel=1e-9)
    n, status, _, _ = power_summary.interpolate_n(sizes[2:], curve[2:], [10**9] * 2)
    assert status == "extrapolated below smallest N" and n == pytest.approx(exact, rel=1e-9)
    n, status, _, _ = power_summary.interpolate_n(sizes[:1], curve[:1], [10**9])
    assert status == "extrapolated above largest N" and n == pytest.approx(exact, rel=1e-9)


# ------------------------------------------------------------------------------- Dask
def test_small_studies_run_in_process_large_ones_on_dask():
    assert power.runs_in_process(power.StudyDesign(**TINY))
    default = power.StudyDesign(sample_sizes=[60, 116, 200, 400], replications=400)
    assert power.runs_in_process(default)  # the default run: no cluster, no cluster logs
    full = power.StudyDesign(sample_sizes=[60, 116, 200, 400], replications=2000)  # params/power_full.yaml
    assert not power.runs_in_process(full)


@pytest.mark.slow  # Dask: starts local workers / an external cluster
def test_one_and_two_local_workers_give_byte_identical_tables(tmp_path, monkeypatch):
    monkeypatch.setattr(power, "IN_PROCESS_MAX_CLIENTS", 0)  # TINY is small: force Dask
    one = run_study(**TINY, n_workers=1, chunk_size=1, progress=False)
    two = run_study(**TINY, n_workers=2, progress=False)
    local = run_study(**TINY, scheduler="synchronous", progress=False)
    a, b, c = (_write_all(s, tmp_path / name) for s, name in ((one, "one"), (two, "two"), (local, "sync")))
    assert a == b == c
    assert len(one.replications) == 2 * 4 * 3 and one.failures.empty
    assert one.beta["n_replications"].eq(4).all()


def failing_replicate(design, n_participants, tasks):
    """The real replications, except that replication (40, 1) fails."""
    bad = [t for t in tasks if t[:2] == (40, 1)]
    rows, failures = power.replicate_batch(design, n_participants, [t for t in tasks if t not in bad])
    failures += [{"n_participants": 40, "rep": 1, "seed": t[2], "error": f"RuntimeError: injected failure at seed "
                  f"{t[2]}"} for t in bad]
    return rows, failures


@pytest.mark.slow  # Dask: starts a local worker
def test_a_failing_replication_is_reported_with_its_seed_and_counted(monkeypatch):
    monkeypatch.setattr(power, "IN_PROCESS_MAX_CLIENTS", 0)  # through a Dask worker
    with pytest.warns(UserWarning, match=r"1 of 8 replications failed.*N=40 rep=1 seed="):
        study = run_study(**TINY, n_workers=1, replicate=failing_replicate, progress=False)
    seed = power.replication_seed(TINY["seed"], 40, 1)
    assert study.failures.to_dict("records") == [
        {"n_participants": 40, "rep": 1, "seed": seed, "error": f"RuntimeError: injected failure at seed {seed}"}]
    assert str(seed) in study.warnings[0]
    beta = study.beta.set_index(["n_participants", "preset"])
    assert beta.loc[(40, "rci"), "n_failed"] == 1 and beta.loc[(80, "rci"), "n_failed"] == 0
    assert beta.loc[(40, "rci"), "n_replications"] == 4     # 3 that ran + 1 failed, none dropped
    assert (study.replications["n_participants"] == 40).sum() == 3 * 3
    assert study.accuracy.set_index(["n_participants", "preset"]).loc[(40, "rci"), "n_failed"] == 1


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


@pytest.mark.slow  # Dask: starts local workers / an external cluster
def test_an_existing_cluster_gives_the_same_tables_as_a_local_run(tmp_path):
    from distributed import Client

    sched_file = tmp_path / "scheduler.json"
    procs = []
    try:
        procs.append(subprocess.Popen(
            [str(DASK_BIN), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(sched_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while not sched_file.exists() or not sched_file.read_text().strip():
            assert procs[0].poll() is None, "dask scheduler exited"
            assert time.monotonic() < deadline, "dask scheduler did not start within 60 s"
            time.sleep(0.2)
        time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for i in range(2):
            procs.append(subprocess.Popen(
                [str(DASK_BIN), "worker", address, "--host", "127.0.0.1", "--nworkers", "1",
                 "--nthreads", "1", "--no-dashboard", "--name", f"test-worker-{i}",
                 "--local-directory", str(tmp_path / f"worker-{i}")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(address, set_as_default=False, timeout="30s") as client:
            client.wait_for_workers(2, timeout=90)
        remote = run_study(**TINY, scheduler=address, progress=False)
        local = run_study(**TINY, scheduler="synchronous", progress=False)
        assert _write_all(remote, tmp_path / "remote") == _write_all(local, tmp_path / "local")
    finally:
        _stop(procs)
    assert all(p.poll() is not None for p in procs)


# ------------------------------------------------------------------------------- growth power
def test_growth_power_uses_each_keys_trial_and_summarises_it():
    design = power.StudyDesign(sample_sizes=[60], replications=3, seed=11)
    summary, reps = power.growth_power(design)
    # each row is the replication's own trial: the reference on that key alone gives the same numbers
    key = power.replication_keys(design)[1]
    alone = oracle.growth_replicate(design, *key)[0]
    row = reps[reps["rep"] == key[1]].iloc[0]
    # the same optimiser path as fit_growth's (tests/test_growth_power.py): the same bits
    assert row["seed"] == key[2] and row["p"] == alone["p"] and row["estimate"] == alone["estimate"]
    s = summary.iloc[0]
    assert s["n_fitted"] == 3 and s["power"] == pytest.approx((reps["p"] < 0.05).mean())
    assert s["power_mcse"] == pytest.approx(math.sqrt(s["power"] * (1 - s["power"]) / 3))


# ------------------------------------------------------------------------------- batched
def _assert_rows_equal(ref, bat):
    a, b = pd.DataFrame(ref), pd.DataFrame(bat)
    assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
    for col in a.columns:
        if a[col].dtype.kind == "f":
            # batched SVD / inverse against statsmodels' pinv: 1e-10 relative (1e-10 absolute
            # for CI bounds that cross zero); NaN exactly where the reference has NaN
            np.testing.assert_allclose(b[col].to_numpy(), a[col].to_numpy(), rtol=1e-10, atol=1e-10,
                                       equal_nan=True, err_msg=col)
        else:
            assert a[col].tolist() == b[col].tolist(), col


EDGE_PRESETS = {**episodes.presets(power.SIMULATED_RELIABILITY),
                "absolute_huge": {"criterion": "absolute", "cutoff": 100.0}}


def test_batched_replications_equal_the_one_at_a_time_reference():
    design = power.StudyDesign(sample_sizes=[12, 50], replications=4, seed=21, presets=EDGE_PRESETS)
    tasks = power.replication_keys(design)
    ref_rows, ref_fail = oracle.run(design, tasks)
    rows, fail = power.run_chunk(design, tasks)  # batched per sample size
    assert ref_fail == fail == []
    _assert_rows_equal(ref_rows, rows)
    got = pd.DataFrame(rows)
    # edge cases are in there: a criterion that finds no unrepaired client (not estimable)
    assert not got.loc[got["preset"] == "absolute_huge", "estimable"].any()
    assert (got["n_unrepaired"] == 0).sum() > 5
    # sd_* criteria: between-client SD differs per replication (trial-level quantity per trial)
    assert got[got["preset"] == "rci"]["n_unrepaired"].nunique() > 1


def _trial_arrays(design, trial):
    """What power.replication_arrays must give, from the simulated tables: the long sessions
    table pivoted to a wide alliance matrix (participants sorted), and per client the outcome
    and the true pattern's index."""
    wide = trial.sessions.pivot(index="participant_id", columns="session", values="alliance").sort_index()
    part = trial.participants.set_index("participant_id").reindex(wide.index)
    truth = trial.truth.set_index("participant_id")["true_pattern"].reindex(wide.index)
    return {"labels": wide.columns.to_numpy(dtype=np.int64), "alliance": wide.to_numpy(dtype=float),
            "pre": part[f"{design.outcome}_pre"].to_numpy(dtype=float),
            "post": part[f"{design.outcome}_post"].to_numpy(dtype=float),
            "truth": truth.map({p: i for i, p in enumerate(episodes.PATTERN_CODES)}).to_numpy(dtype=np.int64)}


@pytest.mark.parametrize("knobs", [{}, {"p_unrepaired": 0.4, "dropout_hazard": 0.3, "p_missed_session": 0.3}])
def test_array_route_equals_the_table_route(knobs):
    """The batched study reads the simulator's arrays; they must be exactly what pivoting the
    simulated long tables gives (ids in order, every session a column, NaN where missed)."""
    design = power.StudyDesign(sample_sizes=[30], replications=1, seed=5, knobs=knobs)
    for n, seed in [(30, 1), (117, 2), (1001, 3)]:
        want = _trial_arrays(design, oracle.trial_of(design, n, seed))
        got = power.replication_arrays(design, n, seed)
        assert list(got) == list(want)
        for key in want:
            assert got[key].dtype == want[key].dtype, key
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def _edge_trials(design):
    """Trials with edge cases: no changes at all (between SD undefined, everybody insufficient),
    one client with an alliance score (the RCI fails), and ordinary ones."""
    out = []
    for rep in range(4):
        seed = power.replication_seed(design.seed, 30, rep)
        trial = oracle.trial_of(design, 30, seed)
        s = trial.sessions.copy()
        if rep == 1:    # one observed alliance score per client
            s.loc[s["session"] != 1, "alliance"] = np.nan
        elif rep == 2:  # a single client with alliance scores: the RCI's SD is undefined
            s.loc[s["participant_id"] != s["participant_id"].iloc[0], "alliance"] = np.nan
        out.append(((30, rep, seed), dataclasses.replace(trial, sessions=s)))
    return out


def test_batched_edge_cases_warn_and_fail_as_the_reference(monkeypatch):
    design = power.StudyDesign(sample_sizes=[30], replications=4, seed=5, presets=EDGE_PRESETS)
    trials = dict(_edge_trials(design))

    def edge(seed):
        return next(t for k, t in trials.items() if k[2] == seed)

    monkeypatch.setattr(oracle, "trial_of", lambda d, n, seed: edge(seed))
    monkeypatch.setattr(power, "replication_arrays", lambda d, n, seed: _trial_arrays(d, edge(seed)))
    tasks = list(trials)
    ref_rows, ref_fail = oracle.run(design, tasks)
    rows, fail = power.run_chunk(design, tasks)
    assert fail == ref_fail and [f["rep"] for f in fail] == [2]
    assert "SD of the first observed scores" in fail[0]["error"] or "fewer than 2" in fail[0]["error"]
    _assert_rows_equal(ref_rows, rows)
    warned = pd.DataFrame(rows).query("rep == 1")
    assert warned["n_warnings"].sum() >= 4  # sd_k*_between / stricter: between SD undefined
    assert (warned["n_classifiable"] == 0).all() and not warned["estimable"].any()


def _agreement_one_matrix(m, labels=PATTERN_LABELS) -> dict:
    """The agreement statistics of one confusion matrix, scalar by scalar: the rule written out."""
    n = m.sum()
    out = {"kappa": np.nan, "agreement": np.nan}
    if n > 0:
        po = np.trace(m) / n
        pe = float(m.sum(1) @ m.sum(0)) / n**2
        out = {"kappa": float((po - pe) / (1 - pe)) if pe < 1 else np.nan, "agreement": float(po)}
    for i, lab in enumerate(labels):
        n_true = m[i].sum()
        tn = n - n_true - m[:, i].sum() + m[i, i]
        out[f"sens_{lab}"] = float(m[i, i] / n_true) if n_true else np.nan
        out[f"spec_{lab}"] = float(tn / (n - n_true)) if n - n_true else np.nan
    return out


def test_agreement_of_many_matrices_equals_one_at_a_time_to_the_bit():
    rng = np.random.default_rng(3)
    mats = rng.integers(0, 30, size=(400, 3, 3)).astype(float)
    mats[:40] *= rng.random((40, 3, 3)) < 0.3          # sparse: empty rows and columns
    mats[40:45] = 0.0                                   # nobody classifiable
    mats[45:50] = np.diag([5.0, 0.0, 0.0])              # one pattern only: pe = 1
    many = power.agreement_many(mats)
    for g in range(len(mats)):
        one = _agreement_one_matrix(mats[g])
        for key, value in one.items():
            assert (np.isnan(value) and np.isnan(many[key][g])) or value == many[key][g], (g, key)
