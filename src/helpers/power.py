"""Replications of the power study: simulated trials analysed under every rupture criterion.

For each sample size ``N`` and replication ``r`` a trial is simulated with a seed that depends
only on ``(N, r)`` (:func:`replication_seed`). The replications of one sample size are analysed
together (:func:`replicate_batch`): simulated straight into arrays, stacked as R x N clients,
their patterns detected under every preset (:func:`helpers.episodes.detect_grouped`, the
trial-level quantities computed per trial) and, as an oracle, taken from the truth; each is
scored against the truth and used in the paper's regression
(:func:`helpers.ols.ols_unrepaired_batch`). :func:`run_replications` runs them in chunks, in
this process or on Dask. The power of the growth model's interaction is :func:`growth_power`.
Summaries are in :mod:`helpers.power_summary`, the whole study in :mod:`helpers.study`; the
design decisions (seeds, paired design, the true beta, execution) in ``docs/power.md``. The
one-at-a-time reference the batched route is tested against is ``tests/oracles/power.py``.
"""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm  # the text bar (stderr); tqdm.auto would want ipywidgets in notebooks

from helpers import episodes, growth, lmm, pattern_model, simulate
from helpers.contract import INSUFFICIENT, PATTERN_LABELS, SESSION_COLUMNS, TRUE_PATTERN
from helpers.instruments import CALPAS
from helpers.ols import FIT_KEYS, ols_unrepaired_batch

#: The model-based patterns (helpers.pattern_model) as a criterion of the study.
MODEL = "model"

#: Spawn keys reserved for the reference trial and the bootstrap (N = 0 is never a sample size).
REFERENCE_KEY = (0, 0)
BOOTSTRAP_KEY = (0, 1)
GROWTH_REFERENCE_KEY = (0, 2)

#: The simulator draws CALPAS-P alliance ratings (1-7): the reliability its RCI presets use.
SIMULATED_RELIABILITY = CALPAS.reliability

#: A study simulating at most this many clients in all (replications + reference trial) runs
#: in this process when no scheduler is given. Batched, one process handles about 40,000
#: clients/s (197 replications/s, bench_power.py), so the default study (R = 400: ~510,000
#: clients with the reference trial) takes ~13 s: about what two Dask workers would take once
#: the cluster's start-up and shutdown are counted -- and an in-process run is deterministic
#: in its output, where a LocalCluster's shutdown sometimes logs heartbeat warnings into the
#: notebook. The full study (params/power_full.yaml, R = 2000) runs on Dask.
IN_PROCESS_MAX_CLIENTS = 1_000_000

#: Columns of one replication x criterion row (see :func:`replicate_batch`).
MC_ROW_COLUMNS = [
    "n_participants", "rep", "seed", "preset", "n_classifiable", "n_analysed", "n_unrepaired",
    "estimable", "b", "se", "b_ci_low", "b_ci_high", "p", "se_hc3", "b_hc3_ci_low",
    "b_hc3_ci_high", "p_hc3", "beta", "beta_se", "beta_ci_low",
    "beta_ci_high", "kappa",
    "agreement", *[f"sens_{p}" for p in PATTERN_LABELS], *[f"spec_{p}" for p in PATTERN_LABELS],
    "n_warnings", "warnings",
]
FAILURE_COLUMNS = ["n_participants", "rep", "seed", "error"]
#: The regression's numbers in a row of :data:`MC_ROW_COLUMNS`.
_ROW_FIT_KEYS = [k for k in FIT_KEYS if k != "t"]
#: Codes of the detected patterns (:data:`helpers.episodes.PATTERN_CODES`).
_CODE = {label: i for i, label in enumerate(episodes.PATTERN_CODES)}


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
        default :func:`helpers.episodes.presets` with the simulated alliance's reliability
        (:data:`SIMULATED_RELIABILITY`).
    knobs : dict
        Simulator knobs (:class:`helpers.simulate.Knobs`) changed from the calibrated default.
    reference_n : int
        Clients in the reference trial that gives the true beta.
    model_replications : int
        The first this many replications of each of ``model_sizes`` are analysed by the
        model-based patterns too (criterion :data:`MODEL`, :func:`model_rows`); 0 = not at all.
        A fit costs about as much as all the threshold criteria of a hundred trials, so the
        study's budget allows only a few.
    model_sizes : tuple of int
        Sample sizes at which the model-based patterns are run.
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
    model_replications: int = 0
    model_sizes: tuple = (116,)

    def __post_init__(self):
        sizes = tuple(int(n) for n in self.sample_sizes)
        if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
            raise ValueError(f"sample_sizes must be distinct positive integers, got {self.sample_sizes}")
        if int(self.replications) < 1:
            raise ValueError(f"replications must be >= 1, got {self.replications}")
        object.__setattr__(self, "sample_sizes", tuple(sorted(sizes)))
        object.__setattr__(self, "replications", int(self.replications))
        object.__setattr__(self, "presets", dict(self.presets or episodes.presets(SIMULATED_RELIABILITY)))
        if TRUE_PATTERN in self.presets or MODEL in self.presets:
            raise ValueError(f"{TRUE_PATTERN!r} and {MODEL!r} are reserved; rename that preset")

    @property
    def criteria(self) -> list:
        """Preset names in order, then the model-based patterns (when run), then the oracle."""
        return [*self.presets, *([MODEL] if self.model_replications else []), TRUE_PATTERN]


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


def _failure(task, exc) -> dict:
    """A failed replication's record: its key, seed and error, as the study reports it."""
    n, rep, seed = task
    return {"n_participants": n, "rep": rep, "seed": seed, "error": f"{type(exc).__name__}: {exc}"}


# --------------------------------------------------------------------------------------------
# the replications of one sample size: simulate -> detect -> fit, together
# --------------------------------------------------------------------------------------------
def agreement_many(m, labels=PATTERN_LABELS) -> dict:
    """Cohen's kappa, percent agreement and per-pattern sensitivity / specificity
    (proportions) of every confusion matrix ``m[g]`` (truth x detected counts, shape G x k x k):
    arrays of length G (:func:`helpers.agreement.cohen_kappa` and
    :func:`~helpers.agreement.pattern_accuracy` for many trials).

    The entries are counts, so every sum is exact whatever its order: a trial's numbers do not
    depend on the other trials of its batch (tests/test_power.py).

    Examples
    --------
    >>> s = agreement_many([[[1, 0, 0], [1, 1, 0], [0, 0, 0]]])  # truth x detected
    >>> round(float(s["kappa"][0]), 4), float(s["sens_repaired"][0])
    (0.4, 0.5)
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


def _simulate_tasks(design: StudyDesign, tasks) -> tuple[list, list]:
    """The arrays of each task's replication, ``[(task, arrays)]``, and the failed ones as
    :data:`FAILURE_COLUMNS` rows (a failed replication is reported with its key, never dropped)."""
    arrays, failures = [], []
    for task in tasks:
        try:
            arrays.append((task, replication_arrays(design, task[0], task[2])))
        except Exception as exc:  # noqa: BLE001 -- a failed replication, reported with its key
            failures.append(_failure(task, exc))
    return arrays, failures


def replication_arrays(design: StudyDesign, n_participants: int, seed: int) -> dict:
    """The trial of replication ``seed`` as the study reads it, straight from the simulator's
    arrays (:func:`helpers.simulate.simulate_arrays`, the numbers of ``simulate_trial``):
    ``labels`` (sessions 1..n_sessions), ``alliance`` (clients x sessions, NaN where missed),
    ``pre`` and ``post`` (the outcome), ``truth`` (the true pattern, an index into
    :data:`helpers.episodes.PATTERN_CODES`); clients in participant-id order. What pivoting the
    simulated long tables gives (tests/test_power.py)."""
    arr = simulate.simulate_arrays(n_participants, design.n_sessions, seed=seed, **design.knobs)
    return {"labels": np.arange(1, design.n_sessions + 1, dtype=np.int64),
            "alliance": arr["alliance"].astype(float), "pre": arr[f"{design.outcome}_pre"].astype(float),
            "post": arr[f"{design.outcome}_post"].astype(float), "truth": arr["pattern"].astype(np.int64)}


@dataclass
class Stacked:
    """Trials of one sample size, simulated and detected together (:func:`analyse_batch`).

    Attributes
    ----------
    tasks : list of tuple
        ``(n, rep, seed)`` of each trial, in stacking order.
    starts : ndarray
        Trial ``g`` is clients ``starts[g]:starts[g + 1]``.
    alliance, pre, post, truth : ndarray
        Per client, as :func:`replication_arrays` gives them.
    codes : dict
        Criterion -> each client's pattern (an index into
        :data:`helpers.episodes.PATTERN_CODES`): every preset, then :data:`TRUE_PATTERN`, the
        truth of the classifiable clients.
    messages : list of list of str
        Per trial, the detection's ``"<preset>: <message>"`` messages.
    """

    tasks: list
    starts: np.ndarray
    alliance: np.ndarray
    pre: np.ndarray
    post: np.ndarray
    truth: np.ndarray
    codes: dict
    messages: list

    def select(self, keep) -> Stacked:
        """The trials ``keep`` (a boolean per trial) alone."""
        sizes = np.diff(self.starts)
        rows = np.repeat(np.asarray(keep, dtype=bool), sizes)
        kept = [g for g in range(len(self.tasks)) if keep[g]]
        return Stacked([self.tasks[g] for g in kept], np.cumsum([0, *sizes[kept]]),
                       self.alliance[rows], self.pre[rows], self.post[rows], self.truth[rows],
                       {name: c[rows] for name, c in self.codes.items()},
                       [self.messages[g] for g in kept])


def analyse_batch(design: StudyDesign, tasks, *, presets=None) -> tuple[Stacked | None, list]:
    """Simulate the replications ``tasks`` (``(n, rep, seed)``, all of one sample size) and
    detect every client's pattern under every preset, the trials stacked.

    A replication whose simulation raises, or on which a preset raises (e.g. the RCI's SD is
    undefined), is a failure: its key, seed and error, as it fails alone; invalid presets fail
    every replication.

    Returns
    -------
    stacked : Stacked or None
        The replications that did not fail (None: none).
    failures : list of dict
        :data:`FAILURE_COLUMNS`.
    """
    presets = design.presets if presets is None else presets
    arrays, failures = _simulate_tasks(design, tasks)
    if not arrays:
        return None, failures
    starts = np.cumsum([0] + [a["alliance"].shape[0] for _, a in arrays])
    cat = {key: np.concatenate([a[key] for _, a in arrays]) for key in ("alliance", "pre", "post", "truth")}
    try:
        codes, messages, errors = episodes.detect_grouped(
            cat["alliance"], arrays[0][1]["labels"], starts, presets, min_sessions=design.min_sessions,
            repair_window=design.repair_window, tolerance=design.tolerance)
    except Exception as exc:  # noqa: BLE001 -- invalid presets: every replication fails alike
        return None, failures + [_failure(task, exc) for task, _ in arrays]
    classifiable = (~np.isnan(cat["alliance"])).sum(axis=1) >= design.min_sessions
    codes[TRUE_PATTERN] = np.where(classifiable, cat["truth"], _CODE[INSUFFICIENT])
    stacked = Stacked([t for t, _ in arrays], starts, cat["alliance"], cat["pre"], cat["post"], cat["truth"],
                      codes, messages)
    failures += [_failure(stacked.tasks[g], exc) for g, exc in sorted(errors.items())]
    if not errors:
        return stacked, failures
    keep = [g not in errors for g in range(len(arrays))]
    return (stacked.select(keep) if any(keep) else None), failures


def fit_batch(design: StudyDesign, stacked: Stacked) -> list:
    """Every trial x criterion of ``stacked``: agreement of the patterns with the truth
    (classifiable clients) and the paper's regression (those with pre and post scores), one
    row each (:data:`MC_ROW_COLUMNS`), trials in stacking order, criteria in the design's."""
    G, k = len(stacked.tasks), len(PATTERN_LABELS)
    group = np.repeat(np.arange(G), np.diff(stacked.starts))
    complete = ~np.isnan(stacked.pre) & ~np.isnan(stacked.post)
    names = list(stacked.codes)
    m = int(np.diff(stacked.starts).max())  # one regression per trial x criterion, padded to the largest
    Y, P, F = (np.zeros((len(names), G, m)) for _ in range(3))
    n_used = np.zeros((len(names), G), dtype=np.int64)
    n_cls, acc = {}, {}
    for c, name in enumerate(names):
        d = stacked.codes[name]
        cls = d != _CODE[INSUFFICIENT]
        ui = np.flatnonzero(cls & complete)
        n_used[c] = np.bincount(group[ui], minlength=G)
        pos = np.arange(ui.size) - np.repeat(np.cumsum(n_used[c]) - n_used[c], n_used[c])
        Y[c, group[ui], pos] = stacked.post[ui]
        P[c, group[ui], pos] = stacked.pre[ui]
        F[c, group[ui], pos] = (d[ui] == _CODE["unrepaired"]).astype(float)
        ok = (stacked.truth < k) & (d < k)
        mat = np.bincount(group[ok] * k * k + k * stacked.truth[ok] + d[ok], minlength=G * k * k)
        n_cls[name], acc[name] = np.bincount(group[cls], minlength=G), agreement_many(mat.reshape(G, k, k))
    fit = ols_unrepaired_batch(Y.reshape(-1, m), P.reshape(-1, m), F.reshape(-1, m), n_used.ravel())
    n_unrep = F.sum(axis=2)
    rows = []
    for g, (n, rep, seed) in enumerate(stacked.tasks):
        for c, name in enumerate(names):
            own = [msg for msg in stacked.messages[g] if msg.startswith(f"{name}: ")]
            rows.append({
                "n_participants": n, "rep": rep, "seed": seed, "preset": name,
                "n_classifiable": int(n_cls[name][g]), "n_analysed": int(n_used[c, g]),
                "n_unrepaired": int(n_unrep[c, g]), "estimable": bool(fit["estimable"][c * G + g]),
                **{key: float(fit[key][c * G + g]) for key in _ROW_FIT_KEYS},
                **{key: float(v[g]) for key, v in acc[name].items()}, "n_warnings": len(own),
                "warnings": " | ".join(own),
            })
    return rows


def replicate_batch(design: StudyDesign, n_participants: int, tasks) -> tuple[list, list]:
    """The replications ``tasks`` (``(n, rep, seed)``, all of size ``n_participants``):
    :func:`analyse_batch`, then :func:`fit_batch`.

    Returns
    -------
    rows, failures : list of dict
        Rows (:data:`MC_ROW_COLUMNS`) in the order of ``tasks``, criteria in the design's order;
        failed replications (:data:`FAILURE_COLUMNS`).
    """
    stacked, failures = analyse_batch(design, tasks)
    return (fit_batch(design, stacked) if stacked is not None else []), failures


def model_rows(design: StudyDesign, tasks, *, n_imputations=10, burn_in=100, thin=5) -> tuple[list, list]:
    """The criterion :data:`MODEL` of the replications ``tasks`` (``(n, rep, seed)``): the
    pattern model fitted to every trial at once (:func:`helpers.pattern_model.fit_pattern_arrays`,
    reliability :data:`SIMULATED_RELIABILITY`), its most probable patterns scored against the
    truth, and the effect of an unrepaired rupture by multiple imputation
    (:func:`helpers.pattern_model.unrepaired_effect_arrays`, HC3 within each completed data
    set, Rubin's rules; each trial's imputations seeded by its replication seed).

    A row has :data:`MC_ROW_COLUMNS`: b, se, its CI and p are the pooled estimate (Barnard-Rubin
    df); the HC3 columns repeat them (the pooled inference is the HC3 one); beta and its CI
    are pooled likewise, beta_se is the pooled SE of beta; n_unrepaired counts the most
    probable patterns. ``n_imputations``, ``burn_in`` and ``thin`` are the imputation's (fewer
    sweeps than :func:`~helpers.pattern_model.unrepaired_effect`'s defaults: the study's
    budget).
    """

    rows = []
    arrays, failures = _simulate_tasks(design, tasks)
    if not arrays:
        return rows, failures
    starts = np.cumsum([0] + [a["alliance"].shape[0] for _, a in arrays])[:-1]
    models = pattern_model.fit_pattern_arrays(np.vstack([a["alliance"] for _, a in arrays]), starts=starts,
                                              reliability=SIMULATED_RELIABILITY, min_sessions=design.min_sessions)
    eff = pattern_model.unrepaired_effect_arrays(
        models, [a["pre"] for _, a in arrays], [a["post"] for _, a in arrays], seeds=[t[2] for t, _ in arrays],
        n_imputations=n_imputations, burn_in=burn_in, thin=thin)
    k = len(PATTERN_LABELS)
    mats = []
    for (task, a), mod in zip(arrays, models):
        det = np.array([_CODE[p] for p in mod.probabilities["pattern"]])
        ok = (det < k) & (a["truth"] < k)
        mats.append(np.bincount(k * a["truth"][ok] + det[ok], minlength=k * k).reshape(k, k))
    acc = agreement_many(np.array(mats))
    for g, ((task, a), mod) in enumerate(zip(arrays, models)):
        e = eff.iloc[g]
        det = mod.probabilities["pattern"].to_numpy()
        used = (det != INSUFFICIENT) & ~np.isnan(a["pre"]) & ~np.isnan(a["post"])
        fit = {"b": e["b"], "se": e["se"], "b_ci_low": e["ci_low"], "b_ci_high": e["ci_high"], "p": e["p"],
               "beta": e["beta"], "beta_se": e["beta_se"], "beta_ci_low": e["beta_ci_low"],
               "beta_ci_high": e["beta_ci_high"]}
        fit.update(se_hc3=fit["se"], b_hc3_ci_low=fit["b_ci_low"], b_hc3_ci_high=fit["b_ci_high"], p_hc3=fit["p"])
        rows.append({
            "n_participants": task[0], "rep": task[1], "seed": task[2], "preset": MODEL,
            "n_classifiable": int((det != INSUFFICIENT).sum()), "n_analysed": int(e["n"]),
            "n_unrepaired": int(((det == "unrepaired") & used).sum()), "estimable": bool(np.isfinite(e["b"])),
            **{key: float(fit[key]) for key in _ROW_FIT_KEYS},
            **{key: float(v[g]) for key, v in acc.items()}, "n_warnings": 0, "warnings": "",
        })
    return rows, failures


def reference_values(design: StudyDesign, replicate=None) -> pd.DataFrame:
    """Large-sample (population) beta of every criterion and of the true pattern.

    One trial of ``design.reference_n`` clients seeded by :data:`REFERENCE_KEY` (rep = -1),
    run by ``replicate`` (default :func:`replicate_batch`, a batch of one); the row of
    :data:`TRUE_PATTERN` is the true value ``theta`` of the study.

    Returns
    -------
    DataFrame
        preset, beta (large-sample), beta_se (its sampling SE in the reference trial), b (the
        unstandardised coefficient, PSS points), kappa, n_participants, n_analysed, seed.

    Raises
    ------
    RuntimeError
        The reference trial failed (its error in the message).
    """
    seed = replication_seed(design.seed, *REFERENCE_KEY)
    rows, failures = (replicate or replicate_batch)(design, design.reference_n, [(design.reference_n, -1, seed)])
    if failures:
        raise RuntimeError(f"the reference trial (N = {design.reference_n}, seed {seed}) failed: "
                           f"{failures[0]['error']}")
    cols = ["preset", "beta", "beta_se", "b", "kappa", "n_analysed"]
    # Rows stay in the design's order (presets, then the oracle).
    return pd.DataFrame(rows)[cols].assign(n_participants=design.reference_n, seed=seed)


# --------------------------------------------------------------------------------------------
# running replications: chunks, failures, Dask
# --------------------------------------------------------------------------------------------
def run_chunk(design: StudyDesign, tasks, replicate=None) -> tuple[list, list]:
    """Run ``tasks`` (``(n, rep, seed)`` tuples), the replications of each sample size together
    by ``replicate`` (default :func:`replicate_batch`; a test may pass another with its
    signature). A replication that fails is a failure record (key, seed, error text); the
    others go on.
    """
    replicate = replicate or replicate_batch
    rows, failures = [], []
    for n in dict.fromkeys(t[0] for t in tasks):
        batch = [t for t in tasks if t[0] == n]
        try:
            r, f = replicate(design, n, batch)
        except Exception as exc:  # noqa: BLE001 -- reported, counted and warned, never dropped
            r, f = [], [_failure(t, exc) for t in batch]
        rows += r
        failures += f
    return rows, failures


def _chunks(tasks, n_workers, chunk_size=None) -> list:
    if chunk_size is None:
        # ~8 chunks per worker: balanced load and a smooth progress bar, little task overhead.
        chunk_size = max(1, min(50, math.ceil(len(tasks) / (8 * max(1, n_workers)))))
    return [tasks[i:i + chunk_size] for i in range(0, len(tasks), chunk_size)]


def _open_client(stack: ExitStack, scheduler, n_workers):
    """A dask.distributed Client, its cluster closed by ``stack`` (LocalCluster only)."""
    from distributed import Client, LocalCluster  # 1 s to import: only when a cluster is used

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
    """Stands in for tqdm when progress is off: nothing is written."""

    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress_bar(total, enabled):
    if not enabled:
        return _NoBar()

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
        ``replicate(design, n_participants, tasks) -> (rows, failures)`` as
        :func:`replicate_batch` (the default). A hook for tests (e.g. a fake with a known
        distribution); it also runs the reference trial (``rep = -1``). It must be picklable.
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
            from distributed import as_completed  # (1 s to import, see _open_client)

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
    return tidy_replications(rows, design), tidy_failures(failures), reference


def runs_in_process(design: StudyDesign, n_workers: int = 1) -> bool:
    """Whether ``run_replications(scheduler=None)`` skips the LocalCluster (see there)."""
    clients = design.replications * sum(design.sample_sizes) + design.reference_n
    return clients <= IN_PROCESS_MAX_CLIENTS


def tidy_replications(rows, design) -> pd.DataFrame:
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


def tidy_failures(failures) -> pd.DataFrame:
    out = pd.DataFrame(failures, columns=FAILURE_COLUMNS)
    return out.sort_values(["n_participants", "rep"], kind="mergesort").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# power of the growth model's session x unrepaired interaction
# --------------------------------------------------------------------------------------------
GROWTH_TERM = growth.UNREPAIRED_SLOPE


def growth_replicate_batch(design: StudyDesign, tasks, *, criterion="rci", outcome="pss_sr",
                           n_workers=None) -> tuple[list, list]:
    """The growth model of the replications ``tasks`` (``(n, rep, seed)``), all fitted at once.

    Each replication is the trial of the main study's replication with the same key: simulated
    as arrays (:func:`helpers.simulate.simulate_arrays`, the numbers of ``simulate_trial``),
    detected together with the others of its sample size under ``criterion`` (a preset of
    ``design``; :func:`helpers.episodes.detect_grouped`), its growth design built from the wide
    outcome matrix (:func:`helpers.growth.growth_design`) and every model optimised together
    (:func:`helpers.growth.fit_growth_lean`: REML, a singular random-slope fit refitted with a
    random intercept, as :func:`helpers.growth.fit_growth` on the trial's tables). A
    replication whose simulation, detection, design or fit fails is a failure record with the
    error the table route raises; the detection's messages about the data are warned.

    Parameters
    ----------
    design, tasks
    criterion : str
        Preset of ``design`` that defines the patterns.
    outcome : str
        Session-level outcome of the growth model.
    n_workers : int, optional
        Processes sharing the work (forked; every replication's numbers are its own, so the
        rows do not depend on it). Default 1, this process: the default run already uses the
        second core for notebooks 01-04 beside 05 (:mod:`helpers.pipeline`), and forking a
        process that has threads (a notebook kernel) is a known hazard. Without ``fork`` or
        inside a daemon process (a Dask worker), this process alone.

    Returns
    -------
    rows, failures : list of dict
        One row per fitted replication, in the order of ``tasks``: n_participants, rep, seed,
        preset, n_analysed (clients in the model), n_unrepaired, re_formula, simplified, and
        estimate, se, df, t, p of :data:`GROWTH_TERM` (NaN without an unrepaired client);
        failed replications (:data:`FAILURE_COLUMNS`).
    """
    if criterion not in design.presets and criterion != TRUE_PATTERN:
        raise ValueError(f"criterion {criterion!r} is not a preset of the design: {list(design.presets)}")
    if outcome not in SESSION_COLUMNS[2:]:
        raise ValueError(f"outcome must be a session-level column {SESSION_COLUMNS[2:]}, not {outcome!r}")
    tasks = [tuple(t) for t in tasks]
    n_workers = max(1, min(int(n_workers or 1), len(tasks)))
    part = functools.partial(_growth_part, design, criterion=criterion, outcome=outcome)
    if (n_workers > 1 and "fork" in multiprocessing.get_all_start_methods()
            and not multiprocessing.current_process().daemon):
        # interleaved parts: each holds every sample size, so the work is balanced
        parts = [tasks[w::n_workers] for w in range(n_workers)]
        with warnings.catch_warnings(), ProcessPoolExecutor(
                n_workers - 1, mp_context=multiprocessing.get_context("fork")) as pool:
            # Python >= 3.12 warns on fork() in a process with threads (a notebook kernel);
            # the workers only compute with numpy and return their rows
            warnings.filterwarnings("ignore", message=r".*multi-threaded.*fork", category=DeprecationWarning)
            futures = [pool.submit(part, p) for p in parts[1:]]
            found = [part(parts[0])] + [f.result() for f in futures]
    else:
        found = [part(tasks)]
    rows, failures = {}, []
    for part_rows, part_failures, caught in found:
        rows.update(part_rows)
        failures += part_failures
        for w in caught:  # a worker's warnings, shown here (a forked process's would be lost)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    order = {t: i for i, t in enumerate(tasks)}
    failures.sort(key=lambda f: order[(f["n_participants"], f["rep"], f["seed"])])
    return [rows[t] for t in tasks if t in rows], failures


def _growth_part(design: StudyDesign, tasks, *, criterion, outcome) -> tuple[dict, list, list]:
    """:func:`growth_replicate_batch` of ``tasks`` in this process: rows by task, failures and
    the warnings raised (returned, so that a forked worker's reach the caller)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows, failures = _growth_rows(design, tasks, criterion, outcome)
    return rows, failures, caught


def _growth_rows(design, tasks, criterion, outcome):
    stacked, failures = {}, []
    for n in dict.fromkeys(t[0] for t in tasks):
        found, fails = _growth_patterns(design, [t for t in tasks if t[0] == n], criterion, outcome)
        stacked.update(found)
        failures += fails
    designs, spec = {}, growth.GrowthSpec(outcome=outcome)
    for task, (y_wide, pattern) in stacked.items():
        try:
            designs[task] = growth.growth_design(y_wide, pattern, spec=spec)
        except Exception as exc:  # noqa: BLE001 -- as fit_growth fails on the trial
            failures.append(_failure(task, exc))
    rows = {}
    for task, res in zip(list(designs), growth.fit_growth_lean(list(designs.values()))):
        if isinstance(res, Exception):
            failures.append(_failure(task, res))
        else:
            rows[task] = _growth_row(task, criterion, designs[task], res)
    return rows, failures


def _growth_patterns(design, tasks, criterion, outcome):
    """Each replication's outcome matrix and detected patterns (one sample size, detected
    together); the detection's messages warned, as ``detect_episodes`` warns them."""
    arrays, failures = {}, []
    for task in tasks:
        try:
            arr = simulate.simulate_arrays(task[0], design.n_sessions, task[2], **design.knobs)
            arrays[task] = (arr["alliance"].astype(float), arr[outcome].astype(float), arr["pattern"])
        except Exception as exc:  # noqa: BLE001 -- a failed replication, reported with its key
            failures.append(_failure(task, exc))
    if not arrays:
        return {}, failures
    keys = list(arrays)
    labels = np.asarray(episodes.PATTERN_CODES, dtype=object)
    if criterion == TRUE_PATTERN:  # the oracle: the true patterns of the classifiable clients
        out = {}
        for task in keys:
            alliance, scores, truth = arrays[task]
            cls = (~np.isnan(alliance)).sum(axis=1) >= design.min_sessions
            out[task] = (scores, labels[np.where(cls, truth, _CODE[INSUFFICIENT])])
        return out, failures
    starts = np.cumsum([0] + [arrays[t][0].shape[0] for t in keys])
    try:
        codes, messages, errors = episodes.detect_grouped(
            np.vstack([arrays[t][0] for t in keys]), np.arange(1, design.n_sessions + 1), starts,
            {criterion: design.presets[criterion]}, min_sessions=design.min_sessions,
            repair_window=design.repair_window, tolerance=design.tolerance)
    except Exception as exc:  # noqa: BLE001 -- an invalid preset: every replication fails alike
        return {}, failures + [_failure(task, exc) for task in keys]
    out = {}
    for g, task in enumerate(keys):
        for msg in messages[g]:
            warnings.warn(msg.removeprefix(f"{criterion}: "), UserWarning, stacklevel=2)
        if g in errors:
            failures.append(_failure(task, errors[g]))
        else:
            out[task] = (arrays[task][1], labels[codes[criterion][starts[g]:starts[g + 1]]])
    return out, failures


def _growth_row(task, criterion, des, res) -> dict:
    n, rep, seed = task
    fit = res["fit"]
    j = des["x_names"].index(GROWTH_TERM) if GROWTH_TERM in des["x_names"] else None
    row = {"n_participants": n, "rep": rep, "seed": seed, "preset": criterion,
           "n_analysed": fit.n_groups, "n_unrepaired": des["pattern_counts"]["unrepaired"],
           "re_formula": res["re_formula"], "simplified": res["simplified"]}
    row.update({c: float(getattr(fit, c)[j]) if j is not None else np.nan for c in ("estimate", "se", "df", "t", "p")})
    row.update(dict.fromkeys(("se_cr2", "df_cr2", "p_cr2"), np.nan))
    if j is not None:  # the same fit's GLS estimate, with a cluster-robust SE (mixed.cr2_test)
        cr2 = growth.term_cr2(des, res, GROWTH_TERM)
        row.update(se_cr2=cr2["se"], df_cr2=cr2["df"], p_cr2=cr2["p"])
    return row


def growth_reference(design: StudyDesign, *, n_participants=20_000, outcome="pss_sr") -> dict:
    """The growth model's true-pattern interaction: :data:`GROWTH_TERM` of the growth model
    fitted with the TRUE patterns to one large simulated trial of ``design``'s world (seeded
    by :data:`GROWTH_REFERENCE_KEY`): the value a CI of the interaction should cover.

    Returns
    -------
    dict
        ``estimate``, ``se`` (the model SE in the reference trial), ``n_participants``,
        ``n_analysed``, ``seed``.
    """
    seed = replication_seed(design.seed, *GROWTH_REFERENCE_KEY)
    arr = simulate.simulate_arrays(n_participants, design.n_sessions, seed, **design.knobs)
    cls = (~np.isnan(arr["alliance"])).sum(axis=1) >= design.min_sessions
    labels = np.asarray(episodes.PATTERN_CODES, dtype=object)
    des = growth.growth_design(arr[outcome].astype(float), labels[np.where(cls, arr["pattern"], _CODE[INSUFFICIENT])])
    # one large model: the full fit (the stacked lean route is for many small ones)
    fit = lmm.fit_lmm_arrays(des["y"], des["X"], des["spec"].random_design(des["time"], "1 + time")[0],
                             des["groups"], x_names=des["x_names"])
    row = fit.fixed.set_index("term").loc[GROWTH_TERM]
    return {"estimate": float(row["estimate"]), "se": float(row["se"]), "n_participants": n_participants,
            "n_analysed": fit.n_groups, "seed": seed}


def summarise_growth(reps: pd.DataFrame, failures: pd.DataFrame, design: StudyDesign, *, theta=np.nan,
                     alpha=0.05, by=("n_participants", "preset")) -> pd.DataFrame:
    """Power and coverage of the growth model's interaction per group of replications.

    Columns: ``by``, n_replications, n_failed, n_fitted, n_simplified, power / power_mcse (the
    model's Satterthwaite t-test), power_cr2 / power_cr2_mcse (the CR2 test with
    Bell-McCaffrey df), mean_estimate, emp_se, mean_se, mean_se_cr2, theta, bias, coverage /
    coverage_mcse (the model's CI contains ``theta``) and coverage_cr2 / coverage_cr2_mcse.
    """
    from scipy import special  # stdtrit: the t quantile as scipy.stats computes it

    out = []
    keys = reps[list(by)].drop_duplicates().itertuples(index=False) if len(reps) else []
    for key in keys:
        sel = np.ones(len(reps), dtype=bool)
        for col, val in zip(by, key):
            sel &= (reps[col] == val).to_numpy()
        r = reps[sel]
        ok = r["p"].notna().to_numpy()
        k = int(ok.sum())
        est, se, df = (r[c].to_numpy(float)[ok] for c in ("estimate", "se", "df"))
        se2, df2 = r["se_cr2"].to_numpy(float)[ok], r["df_cr2"].to_numpy(float)[ok]
        cover = np.abs(est - theta) <= special.stdtrit(df, 0.975) * se
        cover2 = np.abs(est - theta) <= special.stdtrit(df2, 0.975) * se2
        n = dict(zip(by, key)).get("n_participants")
        row = dict(zip(by, key))

        def share(x):
            p = float(np.mean(x)) if k else np.nan
            return p, float(np.sqrt(p * (1 - p) / k)) if k else np.nan

        pw, pw_se = share(r["p"].to_numpy(float)[ok] < alpha)
        pw2, pw2_se = share(r["p_cr2"].to_numpy(float)[ok] < alpha)
        cv, cv_se = share(cover)
        cv2, cv2_se = share(cover2)
        row.update({
            "term": GROWTH_TERM, "n_replications": int(sel.sum()) + int(
                (failures["n_participants"] == n).sum() if len(failures) and n is not None else 0),
            "n_failed": int((failures["n_participants"] == n).sum()) if len(failures) and n is not None else 0,
            "n_fitted": k, "n_simplified": int(r["simplified"].sum()),
            "power": pw, "power_mcse": pw_se, "power_cr2": pw2, "power_cr2_mcse": pw2_se,
            "mean_estimate": float(est.mean()) if k else np.nan,
            "emp_se": float(est.std(ddof=1)) if k > 1 else np.nan,
            "mean_se": float(se.mean()) if k else np.nan, "mean_se_cr2": float(se2.mean()) if k else np.nan,
            "theta": theta, "bias": float(est.mean()) - theta if k else np.nan,
            "coverage": cv, "coverage_mcse": cv_se, "coverage_cr2": cv2, "coverage_cr2_mcse": cv2_se,
        })
        out.append(row)
    return pd.DataFrame(out)


def growth_power(design: StudyDesign, *, criterion="rci", outcome="pss_sr", alpha=0.05, n_workers=None,
                 theta=np.nan):
    """Power of the growth model's session x unrepaired interaction per sample size.

    Every replication key of ``design`` (the same seeds, hence the same simulated trials, as
    the main study) is analysed by :func:`growth_replicate_batch` (notebook 05's 400
    replications in ~1.5 s in one process, benchmarks/bench_growth_power.py); a replication
    that fails is counted, never dropped.

    Parameters
    ----------
    design : StudyDesign
    criterion : str
        Preset of ``design`` that defines the patterns (default: the project's ``"rci"``).
    outcome : str
        Session-level outcome of the growth model.
    alpha : float
        Two-sided level of the Satterthwaite t-test of :data:`GROWTH_TERM`.
    n_workers : int, optional
        Processes of :func:`growth_replicate_batch` (default 1).
    theta : float, optional
        The true-pattern interaction (:func:`growth_reference`): adds its coverage and the
        CR2 test's power (:func:`summarise_growth`).

    Returns
    -------
    summary : DataFrame
        One row per sample size: n_participants, preset, term, n_replications, n_failed,
        n_fitted, n_simplified (random intercept only after a singular fit), power (share
        of fitted replications with p < alpha), power_mcse (``sqrt(power (1 - power) /
        n_fitted)``), mean_estimate, emp_se (SD of the estimates), mean_se; then, from
        :func:`summarise_growth`, power_cr2, power_cr2_mcse, mean_se_cr2, theta, bias,
        coverage, coverage_mcse, coverage_cr2, coverage_cr2_mcse.
    replications : DataFrame
        One row per fitted replication (:func:`growth_replicate_batch`).

    Examples
    --------
    >>> d = StudyDesign(sample_sizes=[60], replications=2, seed=3)
    >>> summary, reps = growth_power(d)
    >>> summary[["n_participants", "n_replications", "n_failed"]].values.tolist()
    [[60, 2, 0]]
    """
    rows, failures = growth_replicate_batch(design, replication_keys(design), criterion=criterion,
                                            outcome=outcome, n_workers=n_workers)
    reps = pd.DataFrame(rows)
    fails = tidy_failures(failures)
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
    table = pd.DataFrame(out)
    if len(reps):
        extra = summarise_growth(reps, fails, design, theta=theta, alpha=alpha, by=("n_participants",))
        cols = ["power_cr2", "power_cr2_mcse", "mean_se_cr2", "theta", "bias", "coverage", "coverage_mcse",
                "coverage_cr2", "coverage_cr2_mcse"]
        table = table.merge(extra[["n_participants", *cols]], on="n_participants", how="left")
    return table, reps
