"""Replications of the power study: one simulated trial analysed under every rupture criterion.

For each sample size ``N`` and replication ``r`` a trial is simulated with a seed that depends
only on ``(N, r)`` (:func:`replication_seed`), its patterns are detected under every preset and,
as an oracle, taken from the truth (:func:`analyse_trial`, which the calibration shares); each is
scored against the truth and used in the paper's regression (:func:`helpers.ols.ols_unrepaired`).
:func:`run_replications` runs them in chunks on Dask. Summaries are in
:mod:`helpers.power_summary`, the whole study in :mod:`helpers.study`; the design decisions
(seeds, paired design, the true beta, execution) in ``docs/power.md``.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers import episodes, simulate
from helpers.contract import INSUFFICIENT, PATTERN_LABELS, TRUE_PATTERN
from helpers.ols import ols_unrepaired

#: Spawn keys reserved for the reference trial and the bootstrap (N = 0 is never a sample size).
REFERENCE_KEY = (0, 0)
BOOTSTRAP_KEY = (0, 1)

#: A study simulating at most this many clients in all (replications + reference trial) runs
#: in this process when no scheduler is given. Batched, one process handles about 40,000
#: clients/s (197 replications/s, bench_power.py), so the default study (R = 400: ~510,000
#: clients with the reference trial) takes ~13 s: about what two Dask workers would take once
#: the cluster's start-up and shutdown are counted -- and an in-process run is deterministic
#: in its output, where a LocalCluster's shutdown sometimes logs heartbeat warnings into the
#: notebook. The full study (params/power_full.yaml, R = 2000) runs on Dask.
IN_PROCESS_MAX_CLIENTS = 1_000_000

#: Columns of one replication x criterion row (see :func:`fit_stage`).
MC_ROW_COLUMNS = [
    "n_participants", "rep", "seed", "preset", "n_classifiable", "n_analysed", "n_unrepaired",
    "estimable", "b", "se", "b_ci_low", "b_ci_high", "p", "se_hc3", "b_hc3_ci_low",
    "b_hc3_ci_high", "p_hc3", "beta", "beta_se", "beta_ci_low",
    "beta_ci_high", "kappa",
    "agreement", *[f"sens_{p}" for p in PATTERN_LABELS], *[f"spec_{p}" for p in PATTERN_LABELS],
    "n_warnings", "warnings",
]
FAILURE_COLUMNS = ["n_participants", "rep", "seed", "error"]


@dataclass(frozen=True)
class StudyDesign:
    """Everything a replication needs; shipped to the workers.

    Parameters
    ----------
    sample_sizes : tuple of int
        Numbers of enrolled clients per simulated trial.
    replications : int
        Replications (simulated trials) per sample size.
    seed : int
        Root seed; every replication's seed is spawned from it (:func:`replication_seed`).
    n_sessions, min_sessions, repair_window, tolerance, outcome
        As in ``params/default.yaml``.
    presets : dict, optional
        Criterion name -> keyword arguments of :func:`helpers.episodes.detect_episodes`;
        default :func:`helpers.episodes.presets`.
    knobs : dict
        Simulator knobs (:class:`helpers.simulate.Knobs`) changed from the calibrated default.
    reference_n : int
        Clients in the reference trial that gives the true beta.
    """

    sample_sizes: tuple = (60, 116, 200, 400)
    replications: int = 20
    seed: int = 20140101
    n_sessions: int = 10
    min_sessions: int = 6
    repair_window: int | None = None
    tolerance: float = 0.0
    outcome: str = "pss_i"
    presets: dict | None = None
    knobs: dict = field(default_factory=dict)
    reference_n: int = 200_000

    def __post_init__(self):
        sizes = tuple(int(n) for n in self.sample_sizes)
        if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
            raise ValueError(f"sample_sizes must be distinct positive integers, got {self.sample_sizes}")
        if int(self.replications) < 1:
            raise ValueError(f"replications must be >= 1, got {self.replications}")
        object.__setattr__(self, "sample_sizes", tuple(sorted(sizes)))
        object.__setattr__(self, "replications", int(self.replications))
        object.__setattr__(self, "presets", dict(self.presets or episodes.presets()))
        if TRUE_PATTERN in self.presets:
            raise ValueError(f"{TRUE_PATTERN!r} is reserved for the oracle; rename that preset")

    @property
    def criteria(self) -> list:
        """Preset names in order, then the oracle."""
        return [*self.presets, TRUE_PATTERN]


# --------------------------------------------------------------------------------------------
# seeds
# --------------------------------------------------------------------------------------------
def replication_seed(root_seed: int, n_participants: int, rep: int) -> int:
    """Seed of replication ``rep`` at sample size ``n_participants``.

    The 64-bit state of ``SeedSequence(root_seed, spawn_key=(n_participants, rep))`` -- the
    same sequence as ``SeedSequence(root_seed).spawn(n_participants + 1)[n_participants]
    .spawn(rep + 1)[rep]`` -- so it depends on nothing but the key.

    Examples
    --------
    >>> replication_seed(1, 116, 0) == replication_seed(1, 116, 0) != replication_seed(1, 116, 1)
    True
    """
    ss = np.random.SeedSequence(int(root_seed), spawn_key=(int(n_participants), int(rep)))
    return int(ss.generate_state(1, dtype=np.uint64)[0])


def replication_keys(design: StudyDesign) -> list:
    """``(n_participants, rep, seed)`` of every replication, sorted by size then rep."""
    return [(n, r, replication_seed(design.seed, n, r))
            for n in design.sample_sizes for r in range(design.replications)]


# --------------------------------------------------------------------------------------------
# one replication: simulate -> detect -> fit
# --------------------------------------------------------------------------------------------
def simulate_stage(design: StudyDesign, n_participants: int, seed: int):
    """The simulated trial of one replication (:class:`helpers.contract.Trial`)."""
    return simulate.simulate_trial(n_participants, design.n_sessions, seed=seed, **design.knobs)


def detect_stage(design: StudyDesign, sessions: pd.DataFrame) -> tuple[dict, list]:
    """Pattern of every client under every preset (:func:`helpers.episodes.detect_by_preset`).

    Returns
    -------
    patterns : dict
        preset -> Series of patterns indexed by participant_id.
    messages : list of str
        Warnings of the detection, prefixed by the preset (also counted per row).
    """
    messages = []
    found = episodes.detect_by_preset(sessions, design.presets, min_sessions=design.min_sessions,
                                      repair_window=design.repair_window, tolerance=design.tolerance,
                                      record=messages)
    return {name: pats.set_index("participant_id")["pattern"] for name, (_, pats) in found.items()}, messages


def agreement_stats(true, detected, labels=PATTERN_LABELS) -> dict:
    """Cohen's kappa, percent agreement and per-pattern sensitivity / specificity (proportions).

    Lean twin of :func:`helpers.agreement.confusion`, :func:`~helpers.agreement.cohen_kappa`
    and :func:`~helpers.agreement.pattern_accuracy` (checked against them in the tests): only
    pairs where both labels are in ``labels`` count.

    Examples
    --------
    >>> s = agreement_stats(["no_rupture", "repaired", "repaired"], ["no_rupture", "repaired", "no_rupture"])
    >>> round(s["kappa"], 4), s["sens_repaired"]
    (0.4, 0.5)
    """
    code = {lab: i for i, lab in enumerate(labels)}
    t = np.array([code.get(v, -1) for v in true], dtype=np.int64)  # int even when empty
    d = np.array([code.get(v, -1) for v in detected], dtype=np.int64)
    ok = (t >= 0) & (d >= 0)
    k = len(labels)
    m = np.bincount(k * t[ok] + d[ok], minlength=k * k).reshape(k, k).astype(float)
    return {key: float(v[0]) for key, v in _agreement_many(m[None], labels).items()}


def _agreement_many(m, labels=PATTERN_LABELS) -> dict:
    """The statistics of :func:`agreement_stats` for every confusion matrix ``m[g]`` (truth x
    detected counts, shape G x k x k) at once: arrays of length G.

    The entries are counts, so every sum is exact whatever its order: a trial's numbers do not
    depend on the other trials of its batch (tests/test_power.py).
    """
    m = np.asarray(m, dtype=float)
    n = m.sum(axis=(1, 2))
    rows, cols = m.sum(axis=2), m.sum(axis=1)
    diag = np.einsum("gii->gi", m)
    nan = np.full(n.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        po = diag.sum(axis=1) / n
        pe = (rows * cols).sum(axis=1) / n**2
        out = {"kappa": np.where((n > 0) & (pe < 1), (po - pe) / (1 - pe), nan),
               "agreement": np.where(n > 0, po, nan)}
        for i, lab in enumerate(labels):
            n_true = rows[:, i]
            tn = n - n_true - cols[:, i] + diag[:, i]
            out[f"sens_{lab}"] = np.where(n_true > 0, diag[:, i] / n_true, nan)
            out[f"spec_{lab}"] = np.where(n - n_true > 0, tn / (n - n_true), nan)
    return out


def fit_stage(design: StudyDesign, trial, patterns: dict, *, n_participants=None, rep=None,
              seed=None, messages=()) -> list:
    """Score every criterion's patterns against the truth and fit the paper's regression.

    Classifiable clients (at least ``min_sessions`` alliance ratings; the same set under every
    preset) enter the agreement statistics; those with pre and post ``outcome`` scores enter
    the regression. The oracle row uses the true patterns of the same clients.

    Returns
    -------
    list of dict
        One row per criterion (:data:`MC_ROW_COLUMNS`).
    """
    ids = np.sort(trial.sessions["participant_id"].unique())
    part = trial.participants.set_index("participant_id").reindex(ids)
    truth = trial.truth.set_index("participant_id")["true_pattern"].reindex(ids).to_numpy(dtype=object)
    pre = part[f"{design.outcome}_pre"].to_numpy(dtype=float)
    post = part[f"{design.outcome}_post"].to_numpy(dtype=float)
    complete = ~np.isnan(pre) & ~np.isnan(post)
    all_patterns = {name: pd.Series(p).reindex(ids).to_numpy(dtype=object) for name, p in patterns.items()}
    # Classifiable = at least min_sessions alliance ratings: the same clients under every preset.
    n_obs = trial.sessions.groupby("participant_id")["alliance"].count().reindex(ids).to_numpy()
    classifiable = n_obs >= design.min_sessions
    all_patterns[TRUE_PATTERN] = np.where(classifiable, truth, INSUFFICIENT)
    rows = []
    for name, pats in all_patterns.items():
        cls = pats != INSUFFICIENT
        used = cls & complete
        flag = (pats[used] == "unrepaired").astype(float)
        fit = ols_unrepaired(post[used], pre[used], flag)
        acc = agreement_stats(truth[cls], pats[cls])
        own = [m for m in messages if m.startswith(f"{name}: ")]
        rows.append({
            "n_participants": n_participants, "rep": rep, "seed": seed, "preset": name,
            "n_classifiable": int(cls.sum()), "n_analysed": int(used.sum()),
            "n_unrepaired": int(flag.sum()), "estimable": fit["estimable"],
            **{k: fit[k] for k in ("b", "se", "b_ci_low", "b_ci_high", "p", "se_hc3", "b_hc3_ci_low",
                                   "b_hc3_ci_high", "p_hc3", "beta", "beta_se", "beta_ci_low",
                                   "beta_ci_high")},
            **acc, "n_warnings": len(own), "warnings": " | ".join(own),
        })
    return rows


def analyse_trial(design: StudyDesign, n_participants: int, seed: int, *, rep=None):
    """Simulate -> detect -> classify -> estimate: one trial under every criterion.

    The one trial-level chain of the project (the power study and :mod:`helpers.calibration`).

    Returns
    -------
    trial : helpers.contract.Trial
    patterns : dict
        preset -> Series of detected patterns indexed by participant_id.
    rows : list of dict
        One row per criterion and the oracle (:func:`fit_stage`).
    """
    trial = simulate_stage(design, n_participants, seed)
    patterns, messages = detect_stage(design, trial.sessions)
    rows = fit_stage(design, trial, patterns, n_participants=n_participants, rep=rep, seed=seed,
                     messages=messages)
    return trial, patterns, rows


def replicate_trial(design: StudyDesign, n_participants: int, rep: int, seed: int) -> list:
    """One replication: the :func:`fit_stage` rows of :func:`analyse_trial`."""
    return analyse_trial(design, n_participants, seed, rep=rep)[2]


def reference_values(design: StudyDesign, replicate=None) -> pd.DataFrame:
    """Large-sample (population) beta of every criterion and of the true pattern.

    One trial of ``design.reference_n`` clients seeded by :data:`REFERENCE_KEY` (rep = -1),
    run by ``replicate`` (default :func:`replicate_trial`); the row of :data:`TRUE_PATTERN` is
    the true value ``theta`` of the study.

    Returns
    -------
    DataFrame
        preset, beta (large-sample), beta_se (its sampling SE in the reference trial), b (the
        unstandardised coefficient, PSS points), kappa, n_participants, n_analysed, seed.
    """
    seed = replication_seed(design.seed, *REFERENCE_KEY)
    if replicate is None and BATCHED:
        # the batched route on one trial (the same rows to rounding, without 2 million
        # session rows in pandas); if it fails, the reference route raises the error itself
        rows, failures = replicate_batch(design, design.reference_n, [(design.reference_n, -1, seed)])
        if failures:
            rows = replicate_trial(design, design.reference_n, -1, seed)
    else:
        rows = (replicate or replicate_trial)(design, design.reference_n, -1, seed)
    cols = ["preset", "beta", "beta_se", "b", "kappa", "n_analysed"]
    # Rows stay in the design's order (presets, then the oracle).
    return pd.DataFrame(rows)[cols].assign(n_participants=design.reference_n, seed=seed)


# --------------------------------------------------------------------------------------------
# many replications of one sample size at once
# --------------------------------------------------------------------------------------------
#: Whether :func:`run_chunk` analyses the replications of a sample size together
#: (:func:`replicate_batch`) rather than one by one (:func:`replicate_trial`, the reference).
BATCHED = True

_FIT_KEYS = ("b", "se", "b_ci_low", "b_ci_high", "p", "se_hc3", "b_hc3_ci_low", "b_hc3_ci_high",
             "p_hc3", "beta", "beta_se", "beta_ci_low", "beta_ci_high")


def _replication_arrays(design: StudyDesign, n_participants: int, seed: int):
    """Session labels, wide alliance matrix (clients x sessions), pre and post outcome and true
    pattern of the trial of :func:`simulate_stage`, in participant-id order, straight from the
    simulator's arrays (:func:`helpers.simulate.simulate_arrays`): no long tables built only to
    be pivoted back. The simulated sessions table has a row for every client and session
    1..n_sessions (missing scores are NaN), so the wide matrix is the alliance array itself
    (tests/test_power.py checks this against the tables, pivoted)."""
    arr = simulate.simulate_arrays(n_participants, design.n_sessions, seed=seed, **design.knobs)
    labels = np.arange(1, design.n_sessions + 1, dtype=np.int64)
    truth = np.asarray(PATTERN_LABELS, dtype=object)[arr["pattern"]]
    return (labels, arr["alliance"].astype(float), arr[f"{design.outcome}_pre"].astype(float),
            arr[f"{design.outcome}_post"].astype(float), truth)


def replicate_batch(design: StudyDesign, n_participants: int, tasks) -> tuple[list, list]:
    """The replications ``tasks`` (``(n, rep, seed)``, all of size ``n_participants``) at once.

    Each trial is simulated from its own seed; the trials are stacked as one wide matrix of
    R x N clients and detected once per preset with the trial-level quantities (RCI SD, SD
    scales) computed per trial (:func:`helpers.episodes.detect_grouped`); the agreement
    statistics come from one confusion matrix per trial and criterion, the paper's regression
    from one batched least-squares fit (:func:`helpers.ols.ols_unrepaired_batch`). The rows
    equal those of :func:`replicate_trial` to rounding (tests/test_power.py). A replication
    that does not fit the batch (its simulation or a preset raises, its sessions differ from
    the others') runs through :func:`replicate_trial`, so that it fails -- or not -- exactly
    as it would alone; so does the whole batch if the batched detection warns.

    Returns
    -------
    rows, failures : list of dict
        As :func:`run_chunk`.
    """
    from helpers.ols import ols_unrepaired_batch

    items, alone = [], []
    for task in tasks:
        try:
            items.append((task, *_replication_arrays(design, task[0], task[2])))
        except Exception:  # noqa: BLE001 -- rerun alone: it fails there with its own error
            alone.append(task)
    if items:
        labels0 = items[0][1]
        same = [it for it in items if np.array_equal(it[1], labels0) and it[2].shape[1] == labels0.size]
        alone += [it[0] for it in items if not any(it is s for s in same)]
        items = same
    rows = []
    if items:
        import warnings

        starts = np.cumsum([0] + [it[2].shape[0] for it in items])
        X = np.vstack([it[2] for it in items])
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                codes, messages, failed = episodes.detect_grouped(
                    X, items[0][1], starts, design.presets, min_sessions=design.min_sessions,
                    repair_window=design.repair_window, tolerance=design.tolerance)
            if episodes.own_warnings(caught):
                raise RuntimeError("the batched detection warned")
        except Exception:  # noqa: BLE001 -- the reference path decides (and words the errors)
            return run_chunk(design, list(tasks), replicate_trial)
        keep = np.array([g not in failed for g in range(len(items))])
        alone += [it[0] for g, it in enumerate(items) if not keep[g]]
        rows = _fit_batch(design, items, starts, X, codes, messages, keep, ols_unrepaired_batch)
    r, f = run_chunk(design, alone, replicate_trial)
    order = {t[1]: i for i, t in enumerate(tasks)}
    rows = sorted(rows + r, key=lambda row: order.get(row["rep"], -1))
    return rows, f


def _fit_batch(design, items, starts, X, codes, messages, keep, ols_batch) -> list:
    """:func:`fit_stage` of the stacked trials (those with ``keep``)."""
    G = len(items)
    k = len(PATTERN_LABELS)
    code_of = {lab: i for i, lab in enumerate(episodes.PATTERN_CODES)}
    group = np.repeat(np.arange(G), np.diff(starts))
    pre = np.concatenate([it[3] for it in items])
    post = np.concatenate([it[4] for it in items])
    truth = np.concatenate([it[5] for it in items])
    t_code = np.array([code_of.get(v, len(code_of)) for v in truth], dtype=np.int64)
    complete = ~np.isnan(pre) & ~np.isnan(post)
    classifiable = (~np.isnan(X)).sum(axis=1) >= design.min_sessions
    all_codes = dict(codes)
    all_codes[TRUE_PATTERN] = np.where(classifiable, t_code, code_of[INSUFFICIENT])
    names = list(all_codes)
    C = len(names)
    # One regression per trial x criterion, each padded to the largest.
    m = int(np.diff(starts).max())
    shape = (C, G, m)
    Y, P, F = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    n_used = np.zeros((C, G), dtype=np.int64)
    stats_rows = {}
    for c, name in enumerate(names):
        d = all_codes[name]
        cls = d != code_of[INSUFFICIENT]
        used = cls & complete
        ui = np.flatnonzero(used)
        gu = group[ui]
        n_used[c] = np.bincount(gu, minlength=G)
        pos = np.arange(ui.size) - np.repeat(np.cumsum(n_used[c]) - n_used[c], n_used[c])
        Y[c, gu, pos] = post[ui]
        P[c, gu, pos] = pre[ui]
        F[c, gu, pos] = (d[ui] == code_of["unrepaired"]).astype(float)
        ok = (t_code < k) & (d < k)
        mat = np.bincount(group[ok] * k * k + k * t_code[ok] + d[ok], minlength=G * k * k)
        mat = mat.reshape(G, k, k).astype(float)
        stats_rows[name] = (np.bincount(group[cls], minlength=G), _agreement_many(mat))
    fit = ols_batch(Y.reshape(C * G, m), P.reshape(C * G, m), F.reshape(C * G, m), n_used.ravel())
    n_unrep = F.sum(axis=2)
    rows = []
    for g, it in enumerate(items):
        if not keep[g]:
            continue
        n, rep, seed = it[0]
        for c, name in enumerate(names):
            i = c * G + g
            n_cls, acc = stats_rows[name]
            own = [msg for msg in messages[g] if msg.startswith(f"{name}: ")]
            rows.append({
                "n_participants": n, "rep": rep, "seed": seed, "preset": name,
                "n_classifiable": int(n_cls[g]), "n_analysed": int(n_used[c, g]),
                "n_unrepaired": int(n_unrep[c, g]), "estimable": bool(fit["estimable"][i]),
                **{key: float(fit[key][i]) for key in _FIT_KEYS},
                **{key: float(v[g]) for key, v in acc.items()}, "n_warnings": len(own),
                "warnings": " | ".join(own),
            })
    return rows


# --------------------------------------------------------------------------------------------
# running replications: chunks, failures, Dask
# --------------------------------------------------------------------------------------------
def run_chunk(design: StudyDesign, tasks, replicate=None) -> tuple[list, list]:
    """Run ``tasks`` (``(n, rep, seed)`` tuples); an exception in one replication is caught
    and returned as a failure record (key, seed, error text) -- the others go on.

    Without ``replicate`` (and with :data:`BATCHED`) the replications of each sample size are
    analysed together (:func:`replicate_batch`); with it, one by one.
    """
    if replicate is None and BATCHED:
        rows, failures = [], []
        for n in dict.fromkeys(t[0] for t in tasks):
            r, f = replicate_batch(design, n, [t for t in tasks if t[0] == n])
            rows += r
            failures += f
        return rows, failures
    replicate = replicate or replicate_trial
    rows, failures = [], []
    for n, rep, seed in tasks:
        try:
            rows.extend(replicate(design, n, rep, seed))
        except Exception as exc:  # noqa: BLE001 -- reported, counted and warned, never dropped
            failures.append({"n_participants": n, "rep": rep, "seed": seed,
                             "error": f"{type(exc).__name__}: {exc}"})
    return rows, failures


def _chunks(tasks, n_workers, chunk_size=None) -> list:
    if chunk_size is None:
        # ~8 chunks per worker: balanced load and a smooth progress bar, little task overhead.
        chunk_size = max(1, min(50, math.ceil(len(tasks) / (8 * max(1, n_workers)))))
    return [tasks[i:i + chunk_size] for i in range(0, len(tasks), chunk_size)]


def _open_client(stack: ExitStack, scheduler, n_workers):
    """A dask.distributed Client, its cluster closed by ``stack`` (LocalCluster only)."""
    from distributed import Client, LocalCluster

    # Connection notices (INFO) of the client and of the worker processes, which inherit this
    # setting through the environment, are housekeeping, not results; warnings still show.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    if scheduler:
        return stack.enter_context(Client(scheduler, set_as_default=False, timeout="30s"))
    cluster = stack.enter_context(LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.WARNING))
    client = stack.enter_context(Client(cluster, set_as_default=False))
    # Workers are retired before the scheduler closes (the stack unwinds last-in first-out):
    # closing both at once races with the workers' heartbeat, which then logs a spurious
    # "Failed to communicate with scheduler" traceback into the notebook on some runs.
    stack.callback(lambda: client.retire_workers(close_workers=True))
    return client


class _NoBar:
    """Stands in for tqdm when progress is off: nothing is imported or written."""

    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress_bar(total, enabled):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm  # the text bar (stderr); tqdm.auto would want ipywidgets in notebooks

    return tqdm(total=total, unit="rep", desc="power study", leave=True)


def run_replications(design: StudyDesign, *, scheduler=None, n_workers=None, progress=True,
                     replicate=None, chunk_size=None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Run every replication of ``design`` and the reference trial.

    Parameters
    ----------
    design : StudyDesign
    scheduler : str, optional
        ``None``: run in this process when the study is small (at most
        :data:`IN_PROCESS_MAX_CLIENTS` simulated clients in all), otherwise start (and close) a LocalCluster; ``"tcp://host:port"``: use that existing
        cluster; ``"synchronous"``: always run in this process. Results are the same either
        way (every replication is seeded by its key).
    n_workers : int, optional
        LocalCluster workers; default one per core (``os.cpu_count()``).
    progress : bool
        Progress bar over replications (tqdm, on stderr); keep False in notebooks.
    replicate : callable, optional
        ``replicate(design, n_participants, rep, seed) -> list of row dicts``; default
        :func:`replicate_trial`. A hook for tests (e.g. a fake with a known distribution);
        it also runs the reference trial (``rep = -1``). It must be picklable.
    chunk_size : int, optional
        Replications per task; default about 8 tasks per worker. Does not change results.

    Returns
    -------
    replications, failures, reference : DataFrame
        Sorted by key (and preset); see :data:`MC_ROW_COLUMNS`, :data:`FAILURE_COLUMNS`
        and :func:`reference_values`.
    """
    tasks = replication_keys(design)
    n_workers = int(n_workers or os.cpu_count() or 1)
    if scheduler is None and runs_in_process(design, n_workers):
        scheduler = "synchronous"
    rows, failures = [], []
    bar = _progress_bar(len(tasks), progress)
    with ExitStack() as stack:
        stack.callback(bar.close)
        if scheduler == "synchronous":
            reference = reference_values(design, replicate)
            for chunk in _chunks(tasks, 1, chunk_size):
                r, f = run_chunk(design, chunk, replicate)
                rows += r
                failures += f
                bar.update(len(chunk))
        else:
            from distributed import as_completed

            client = _open_client(stack, scheduler, n_workers)
            if scheduler:  # size the chunks to the cluster we were given
                n_workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
            ref_future = client.submit(reference_values, design, replicate, pure=False)
            chunks = _chunks(tasks, n_workers, chunk_size)
            futures = {client.submit(run_chunk, design, chunk, replicate, pure=False): chunk
                       for chunk in chunks}
            for fut in as_completed(futures, loop=client.loop):
                chunk = futures[fut]
                try:
                    r, f = fut.result()
                except Exception as exc:  # noqa: BLE001 -- a lost worker: record every replication
                    r, f = [], [{"n_participants": n, "rep": rep, "seed": seed,
                                 "error": f"chunk lost: {type(exc).__name__}: {exc}"}
                                for n, rep, seed in chunk]
                rows += r
                failures += f
                bar.update(len(chunk))
            reference = ref_future.result()
    return _tidy_rows(rows, design), _tidy_failures(failures), reference


def runs_in_process(design: StudyDesign, n_workers: int = 1) -> bool:
    """Whether ``run_replications(scheduler=None)`` skips the LocalCluster (see there)."""
    clients = design.replications * sum(design.sample_sizes) + design.reference_n
    return clients <= IN_PROCESS_MAX_CLIENTS


def _tidy_rows(rows, design) -> pd.DataFrame:
    out = pd.DataFrame(rows)
    for col in MC_ROW_COLUMNS:
        if col not in out.columns:
            out[col] = np.nan
    out = out[MC_ROW_COLUMNS + [c for c in out.columns if c not in MC_ROW_COLUMNS]]
    order = {name: i for i, name in enumerate(design.criteria)}
    key = out["preset"].map(order).fillna(len(order))
    out = (out.assign(_order=key).sort_values(["n_participants", "rep", "_order", "preset"], kind="mergesort")
           .drop(columns="_order").reset_index(drop=True))
    if len(out):
        out["estimable"] = out["estimable"].astype(bool)
        out["warnings"] = out["warnings"].fillna("").astype(str)
        out["n_warnings"] = out["n_warnings"].fillna(0).astype(int)
    return out


def _tidy_failures(failures) -> pd.DataFrame:
    out = pd.DataFrame(failures, columns=FAILURE_COLUMNS)
    return out.sort_values(["n_participants", "rep"], kind="mergesort").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# power of the growth model's session x unrepaired interaction
# --------------------------------------------------------------------------------------------
GROWTH_TERM = "time:unrepaired"


def growth_replicate(design: StudyDesign, n_participants: int, rep: int, seed: int, *,
                     criterion="rci", outcome="pss_sr") -> list:
    """One replication of the growth-model power study: the same simulated trial as the
    replication ``(n_participants, rep)`` of the main study, patterns under ``criterion``
    (a preset of ``design``), and :func:`helpers.growth.fit_growth` (REML; a singular
    random-slope fit is refitted with a random intercept, as in notebook 03).

    Returns
    -------
    list of one dict
        n_participants, rep, seed, preset, n_analysed (clients in the model), n_unrepaired,
        estimate, se, df, t, p of :data:`GROWTH_TERM`, re_formula, simplified.
    """
    from helpers import growth  # the mixed model only when this study runs

    trial = simulate_stage(design, n_participants, seed)
    kw = design.presets[criterion]
    eps = episodes.detect_episodes(trial.sessions, repair_window=design.repair_window,
                                   tolerance=design.tolerance, **kw)
    pats = episodes.classify_participants(eps, trial.sessions, min_sessions=design.min_sessions)
    fit = growth.fit_growth(trial.sessions, pats, outcome=outcome, warn=False)
    row = {"n_participants": n_participants, "rep": rep, "seed": seed, "preset": criterion,
           "n_analysed": fit.n_groups, "n_unrepaired": fit.pattern_counts.get("unrepaired", 0),
           "re_formula": fit.re_formula, "simplified": fit.boundary_fit is not None}
    fx = fit.fixed.set_index("term")
    cols = ["estimate", "se", "df", "t", "p"]
    row.update({c: float(fx.loc[GROWTH_TERM, c]) if GROWTH_TERM in fx.index else np.nan
                for c in cols})
    return [row]


def growth_replicate_batch(design: StudyDesign, tasks, *, criterion="rci", outcome="pss_sr",
                           n_workers=None) -> tuple[list, list]:
    """The replications ``tasks`` (``(n, rep, seed)``) of :func:`growth_replicate`, at once.

    The same rows (tests/test_growth_power.py), without tables: each trial is simulated as
    arrays (:func:`helpers.simulate.simulate_arrays`, the numbers of ``simulate_trial``),
    the trials of a sample size are detected together under ``criterion``
    (:func:`helpers.episodes.detect_grouped`), each growth design is built from the wide
    outcome matrix (:func:`helpers.growth.growth_design`) and all models are fitted together
    (:func:`helpers.growth.fit_growth_lean`). A replication that does not fit this route --
    its simulation, detection or fit raises, its detection would warn, its fit would not be
    kept -- runs through :func:`growth_replicate` in this process, so that it fails (a
    failure record) or warns exactly as it would alone; so does every replication of a part
    in which anything warned.

    Parameters
    ----------
    design, tasks, criterion, outcome
        As :func:`growth_replicate`.
    n_workers : int, optional
        Processes sharing the batched route (forked; every replication's numbers are its
        own, so the rows do not depend on it). Default 1, this process: the default run
        already uses the second core for notebooks 01-04 beside 05 (:mod:`helpers.pipeline`),
        and forking a process that has threads (a notebook kernel) is a known hazard.
        Without ``fork`` or inside a daemon process (a Dask worker), this process alone.

    Returns
    -------
    rows, failures : list of dict
        As :func:`run_chunk` with :func:`growth_replicate`, rows in the order of ``tasks``.
    """
    import functools
    import multiprocessing

    tasks = [tuple(t) for t in tasks]
    n_workers = max(1, min(int(n_workers or 1), len(tasks)))
    if (n_workers > 1 and "fork" in multiprocessing.get_all_start_methods()
            and not multiprocessing.current_process().daemon):
        # interleaved parts: each holds every sample size, so the work is balanced
        parts = [tasks[w::n_workers] for w in range(n_workers)]
        try:
            import warnings
            from concurrent.futures import ProcessPoolExecutor

            with warnings.catch_warnings(), ProcessPoolExecutor(
                    n_workers - 1, mp_context=multiprocessing.get_context("fork")) as pool:
                # Python >= 3.12 warns on fork() in a process with threads (a notebook kernel);
                # the workers only compute with numpy and return their rows
                warnings.filterwarnings("ignore", message=r".*multi-threaded.*fork",
                                        category=DeprecationWarning)
                futures = [pool.submit(_growth_batched_part, design, part, criterion, outcome)
                           for part in parts[1:]]
                found = [_growth_batched_part(design, parts[0], criterion, outcome)]
                found += [f.result() for f in futures]
        except Exception:  # noqa: BLE001 -- no workers (e.g. a broken pool): this process alone
            found = [_growth_batched_part(design, tasks, criterion, outcome)]
    else:
        found = [_growth_batched_part(design, tasks, criterion, outcome)]
    rows, alone = {}, set()
    for part_rows, part_alone in found:
        rows.update(part_rows)
        alone |= part_alone
    reference = functools.partial(growth_replicate, criterion=criterion, outcome=outcome)
    r, failures = run_chunk(design, [t for t in tasks if t in alone], reference)
    for row in r:
        rows[(row["n_participants"], row["rep"], row["seed"])] = [row]
    return [row for t in tasks for row in rows.get(t, [])], failures


def _growth_batched_part(design: StudyDesign, tasks, criterion, outcome) -> tuple[dict, set]:
    """The batched route of :func:`growth_replicate_batch` for ``tasks``.

    Returns
    -------
    rows : dict
        task -> [row] of the replications it analysed.
    alone : set
        The tasks to run through :func:`growth_replicate` (all of them if anything warned:
        the reference, in the calling process, shows what it shows).
    """
    import warnings

    from helpers import growth
    from helpers.contract import SESSION_COLUMNS

    tasks = [tuple(t) for t in tasks]
    if outcome not in SESSION_COLUMNS[2:] or criterion not in design.presets:
        return {}, set(tasks)
    alone, fitted, designs = set(), {}, {}
    S = design.n_sessions
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sims = {}
        for task in tasks:
            try:
                arr = simulate.simulate_arrays(task[0], S, task[2], **design.knobs)
                # the wide matrices of the sessions table: every client x session 1..S
                if arr["alliance"].shape != (task[0], S) or arr[outcome].shape != (task[0], S):
                    raise ValueError("not one row per client and one column per session")
                sims[task] = arr
            except Exception:  # noqa: BLE001 -- alone, it fails with its own error
                alone.add(task)
        codes = {}
        for n in dict.fromkeys(t[0] for t in sims):
            group = [t for t in sims if t[0] == n]
            starts = np.cumsum([0] + [n] * len(group))
            try:
                with warnings.catch_warnings(record=True) as det_caught:
                    warnings.simplefilter("always")
                    found, messages, failed = episodes.detect_grouped(
                        np.vstack([sims[t]["alliance"] for t in group]), np.arange(1, S + 1),
                        starts, {criterion: design.presets[criterion]},
                        min_sessions=design.min_sessions, repair_window=design.repair_window,
                        tolerance=design.tolerance)
            except Exception:  # noqa: BLE001
                alone.update(group)
                continue
            if det_caught:
                alone.update(group)
                continue
            for g, task in enumerate(group):
                if g in failed or messages[g]:
                    alone.add(task)
                else:
                    codes[task] = found[criterion][starts[g]:starts[g + 1]]
        labels = np.array(episodes.PATTERN_CODES, dtype=object)
        for task, c in codes.items():
            try:
                designs[task] = growth.growth_design(sims[task][outcome], labels[c])
            except Exception:  # noqa: BLE001
                alone.add(task)
        keys = list(designs)
        for task, fit in zip(keys, growth.fit_growth_lean([designs[t] for t in keys])):
            if fit is None:
                alone.add(task)
            else:
                fitted[task] = fit
    if caught:
        return {}, set(tasks)
    rows = {}
    for task, res in fitted.items():
        n, rep, seed = task
        des, fit = designs[task], res["fit"]
        j = des["x_names"].index(GROWTH_TERM) if GROWTH_TERM in des["x_names"] else None
        row = {"n_participants": n, "rep": rep, "seed": seed, "preset": criterion,
               "n_analysed": fit.n_groups, "n_unrepaired": des["pattern_counts"]["unrepaired"],
               "re_formula": res["re_formula"], "simplified": res["simplified"]}
        row.update({c: float(getattr(fit, c)[j]) if j is not None else np.nan
                    for c in ("estimate", "se", "df", "t", "p")})
        rows[task] = [row]
    return rows, alone


def growth_power(design: StudyDesign, *, criterion="rci", outcome="pss_sr", alpha=0.05,
                 batched=True, n_workers=None):
    """Power of the growth model's session x unrepaired interaction per sample size.

    Every replication key of ``design`` (the same seeds, hence the same simulated trials, as
    the main study) is analysed as :func:`growth_replicate` analyses it: by default all
    together (:func:`growth_replicate_batch`: the same numbers, bit for bit; notebook 05's
    400 replications in ~1.5 s in one process instead of ~8 s, benchmarks/bench_growth_power.py);
    a replication that fails is counted, never dropped.

    Parameters
    ----------
    design : StudyDesign
    criterion : str
        Preset of ``design`` that defines the patterns (default: the project's ``"rci"``).
    outcome : str
        Session-level outcome of the growth model.
    alpha : float
        Two-sided level of the Satterthwaite t-test of :data:`GROWTH_TERM`.
    batched : bool
        :func:`growth_replicate_batch` (default) or :func:`growth_replicate` one replication
        at a time (the reference; the same rows).
    n_workers : int, optional
        Processes of the batched route (:func:`growth_replicate_batch`; default 1).

    Returns
    -------
    summary : DataFrame
        One row per sample size: n_participants, preset, term, n_replications, n_failed,
        n_fitted, n_simplified (random intercept only after a singular fit), power (share
        of fitted replications with p < alpha), power_mcse (``sqrt(power (1 - power) /
        n_fitted)``), mean_estimate, emp_se (SD of the estimates), mean_se.
    replications : DataFrame
        One row per replication (:func:`growth_replicate`).

    Examples
    --------
    >>> d = StudyDesign(sample_sizes=[60], replications=2, seed=3)
    >>> summary, reps = growth_power(d)
    >>> summary[["n_participants", "n_replications", "n_failed"]].values.tolist()
    [[60, 2, 0]]
    """
    import functools

    if batched:
        rows, failures = growth_replicate_batch(design, replication_keys(design), criterion=criterion,
                                                outcome=outcome, n_workers=n_workers)
    else:
        replicate = functools.partial(growth_replicate, criterion=criterion, outcome=outcome)
        rows, failures = run_chunk(design, replication_keys(design), replicate)
    reps = pd.DataFrame(rows)
    fails = _tidy_failures(failures)
    out = []
    for n in design.sample_sizes:
        r = reps[reps["n_participants"] == n] if len(reps) else reps
        p = r["p"].dropna() if len(r) else pd.Series(dtype=float)
        k = len(p)
        pw = float((p < alpha).mean()) if k else np.nan
        out.append({
            "n_participants": n, "preset": criterion, "term": GROWTH_TERM,
            "n_replications": design.replications,
            "n_failed": int((fails["n_participants"] == n).sum()), "n_fitted": k,
            "n_simplified": int(r["simplified"].sum()) if len(r) else 0,
            "power": pw, "power_mcse": float(np.sqrt(pw * (1 - pw) / k)) if k else np.nan,
            "mean_estimate": float(r["estimate"].mean()) if len(r) else np.nan,
            "emp_se": float(r["estimate"].std(ddof=1)) if len(r) > 1 else np.nan,
            "mean_se": float(r["se"].mean()) if len(r) else np.nan,
        })
    return pd.DataFrame(out), reps
