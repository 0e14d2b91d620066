"""Robustness and power of the rupture criteria: a simulation study with known truth, on Dask.

With simulated data the true alliance pattern of every client is known, so the project can
say how well each rupture criterion (:func:`helpers.ruptures.presets`) recovers it, how far
the paper's unrepaired-rupture beta estimated under it is from the true effect, and how many
clients a new trial needs. For every sample size ``N`` in ``sample_sizes`` and replication
``r = 0..R-1`` one trial is simulated (:func:`helpers.simulate.simulate_trial`, the calibrated
default model unless ``knobs`` say otherwise), the patterns are detected under every preset
and, as an oracle, taken from the truth; each is scored against the truth and used in the
paper's regression (post ~ pre + unrepaired). The summaries are in
:mod:`helpers.power_summary`.

Design decisions
----------------
* **Seeds.** Replication ``(N, r)`` uses the seed sequence
  ``SeedSequence(seed, spawn_key=(N, r))``, i.e. ``SeedSequence(seed).spawn(N + 1)[N]
  .spawn(r + 1)[r]``, turned into one 64-bit integer (:func:`replication_seed`) that is
  passed to ``simulate_trial`` and reported with the replication. It depends only on the
  key, so results are identical whatever the number of workers, the chunking or the order
  in which tasks finish; a study with R = 20 is the first 20 replications of one with R =
  1000; adding a sample size does not change the others. Keys with ``N = 0`` are reserved:
  ``(0, 0)`` seeds the large reference trial (:func:`reference_values`), ``(0, 1)`` the
  bootstrap of :func:`helpers.power_summary.n_for_power`.
* **The same simulated trial is analysed under every preset** (paired design): differences
  between criteria are not blurred by different data.
* **True value of the beta.** ``theta`` = the standardised beta of the TRUE unrepaired
  pattern (post ~ pre + true unrepaired, classifiable clients with pre and post scores) in
  one very large simulated trial (``reference_n`` clients, 200,000 by default): the
  population value that a criterion with perfect detection would estimate. About .585 for
  the default model, larger than the paper's .45 because detection errors attenuate the
  effect (the simulator is calibrated so that the DETECTED beta under the default criterion
  averages .45 at N = 116). The summaries report the bias against ``theta`` and,
  separately, the difference from the paper's .45; the large-sample (population) beta of each
  preset is reported too, so finite-sample bias and attenuation by misclassification can be
  told apart.
* **Execution.** Replications are grouped into chunks (one Dask task each); a chunk runs the
  replications one by one and catches each one's exception, so a failed replication comes
  back with its key, seed and error text, is counted (``n_failed``) and warned about; a
  chunk lost with its worker is recorded as failed replications the same way. Results are
  sorted by key before anything is aggregated, so no floating-point sum depends on which
  worker finished first.
* **Cluster.** By default a :class:`distributed.LocalCluster` (processes, one thread each,
  ``n_workers`` or one per core, no dashboard, logs at WARNING) is started and closed by
  :func:`run_study` with context managers (closed after an exception too). With
  ``scheduler="tcp://host:port"`` a :class:`distributed.Client` connects to an existing
  cluster and nothing local is started; its workers need this package installed
  (``pip install -e .``) in the same versions. ``scheduler="synchronous"`` runs everything in
  the calling process (debugging, small tests).

References
----------
Long, J. S., & Ervin, L. H. (2000). Using heteroscedasticity consistent standard errors in the
linear regression model. The American Statistician, 54(3), 217-224.
MacKinnon, J. G., & White, H. (1985). Some heteroskedasticity-consistent covariance matrix
estimators with improved finite sample properties. Journal of Econometrics, 29(3), 305-325.
Morris, T. P., White, I. R., & Crowther, M. J. (2019). Using simulation studies to evaluate
statistical methods. Statistics in Medicine, 38(11), 2074-2102.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from helpers import paper, ruptures, simulate
from helpers.contract import PATTERNS

#: Name of the oracle "criterion": the true patterns of the classifiable clients.
TRUE_PATTERN = "true_pattern"
#: The paper's standardised beta of an unrepaired rupture.
PAPER_BETA = paper.BETA["beta"]
#: Spawn keys reserved for the reference trial and the bootstrap (N = 0 is never a sample size).
REFERENCE_KEY = (0, 0)
BOOTSTRAP_KEY = (0, 1)

#: Columns of one replication x criterion row (see :func:`fit_stage`).
REPLICATION_COLUMNS = [
    "n_participants", "rep", "seed", "preset", "n_classifiable", "n_analysed", "n_unrepaired",
    "estimable", "b", "se", "b_ci_low", "b_ci_high", "p", "se_hc3", "b_hc3_ci_low",
    "b_hc3_ci_high", "p_hc3", "beta", "beta_se", "beta_ci_low",
    "beta_ci_high", "kappa",
    "agreement", *[f"sens_{p}" for p in PATTERNS], *[f"spec_{p}" for p in PATTERNS],
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
        Criterion name -> keyword arguments of :func:`helpers.ruptures.detect_episodes`;
        default :func:`helpers.ruptures.presets`.
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
        object.__setattr__(self, "presets", dict(self.presets or ruptures.presets()))
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
    """Pattern of every client under every preset.

    Returns
    -------
    patterns : dict
        preset -> Series of patterns indexed by participant_id.
    messages : list of str
        Warnings of the detection, prefixed by the preset (also counted per row).
    """
    out, messages = {}, []
    for name, kw in design.presets.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            episodes = ruptures.detect_episodes(sessions, repair_window=design.repair_window,
                                                tolerance=design.tolerance, **kw)
            pats = ruptures.classify_participants(episodes, sessions, min_sessions=design.min_sessions)
        messages += [f"{name}: {w.message}" for w in caught]
        out[name] = pats.set_index("participant_id")["pattern"]
    return out, messages


def ols_unrepaired(post, pre, flag, level: float = 0.95) -> dict:
    """The paper's regression ``post ~ pre + flag`` by least squares, for the flag's term.

    A lean twin of :func:`helpers.models.outcome_regression` (model A) for thousands of
    replications; ``tests/test_power.py`` checks it against the statsmodels version.

    Parameters
    ----------
    post, pre, flag : array-like of float
        Complete cases only (no NaN); ``flag`` is 0/1.
    level : float
        Confidence level of the intervals.

    Returns
    -------
    dict
        n, b, se, b_ci_low, b_ci_high, t, df, p (two-sided), the same with the HC3
        heteroscedasticity-consistent SE (se_hc3, b_hc3_ci_low, b_hc3_ci_high, p_hc3; t on the
        residual df, as statsmodels' ``cov_type="HC3"``; NaN when a client has leverage 1,
        e.g. the only unrepaired one), beta (``b * sd(flag) / sd(post)``),
        beta_se, beta_ci_low, beta_ci_high (SE and CI of b scaled the same way) and estimable
        (False, with NaNs, when the flag is constant or n < 4).

    Notes
    -----
    Why HC3 as well: in the simulated trials the residual SD of the unrepaired clients is about
    twice the others' (symptoms worsen after the rupture at person-specific rates), and the
    unrepaired group is small; the classical OLS SE then understates the SE of the group
    difference, and its CIs cover less than 95%. HC3 (MacKinnon & White, 1985; Long &
    Ervin, 2000) does not assume equal variances.

    Examples
    --------
    >>> r = ols_unrepaired([3.0, 5.0, 4.0, 8.0, 9.0], [1.0, 2.0, 3.0, 4.0, 5.0], [0, 0, 0, 1, 1])
    >>> round(r["b"], 4), r["df"]
    (3.0, 2)
    """
    y, x, g = (np.asarray(v, dtype=float) for v in (post, pre, flag))
    n = y.size
    res = dict.fromkeys(["b", "se", "b_ci_low", "b_ci_high", "t", "p", "se_hc3", "b_hc3_ci_low",
                         "b_hc3_ci_high", "p_hc3", "beta", "beta_se", "beta_ci_low", "beta_ci_high"],
                        np.nan)
    res.update(n=n, df=n - 3, estimable=False)
    if n < 4 or np.all(g == g[0]):
        return res
    X = np.column_stack([np.ones(n), x, g])
    coef, _, rank, _ = np.linalg.lstsq(X, y, rcond=None)
    if rank < 3:
        return res
    resid = y - X @ coef
    df = n - 3
    sigma2 = float(resid @ resid) / df
    xtx_inv = np.linalg.inv(X.T @ X)
    b, se = float(coef[2]), float(np.sqrt(sigma2 * xtx_inv[2, 2]))
    # HC3: (X'X)^-1 X' diag(e_i^2 / (1 - h_i)^2) X (X'X)^-1, h_i the leverages.
    # A client with leverage 1 (the only one in a group) leaves HC3 undefined: NaN.
    lev = np.einsum("ij,jk,ik->i", X, xtx_inv, X)
    row = X @ xtx_inv[:, 2]
    se_hc3 = (float(np.sqrt(np.sum(row**2 * resid**2 / (1 - lev) ** 2)))
              if np.all(lev < 1 - 1e-10) else np.nan)
    t = b / se if se > 0 else np.nan
    t_hc3 = b / se_hc3 if se_hc3 > 0 else np.nan
    scale = float(np.std(g, ddof=1) / np.std(y, ddof=1))
    crit = float(stats.t.ppf(0.5 + level / 2, df))
    half = crit * se
    res.update(b=b, se=se, b_ci_low=b - half, b_ci_high=b + half, t=t,
               p=float(2 * stats.t.sf(abs(t), df)), se_hc3=se_hc3, b_hc3_ci_low=b - crit * se_hc3,
               b_hc3_ci_high=b + crit * se_hc3, p_hc3=float(2 * stats.t.sf(abs(t_hc3), df)),
               beta=b * scale,
               beta_se=se * scale, beta_ci_low=(b - half) * scale, beta_ci_high=(b + half) * scale,
               estimable=True)
    return res


def agreement_stats(true, detected, labels=PATTERNS) -> dict:
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
    t = np.array([code.get(v, -1) for v in true])
    d = np.array([code.get(v, -1) for v in detected])
    ok = (t >= 0) & (d >= 0)
    k = len(labels)
    m = np.bincount(k * t[ok] + d[ok], minlength=k * k).reshape(k, k).astype(float)
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


def fit_stage(design: StudyDesign, trial, patterns: dict, *, n_participants=None, rep=None,
              seed=None, messages=()) -> list:
    """Score every criterion's patterns against the truth and fit the paper's regression.

    Classifiable clients (at least ``min_sessions`` alliance ratings; the same set under every
    preset) enter the agreement statistics; those with pre and post ``outcome`` scores enter
    the regression. The oracle row uses the true patterns of the same clients.

    Returns
    -------
    list of dict
        One row per criterion (:data:`REPLICATION_COLUMNS`).
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
    all_patterns[TRUE_PATTERN] = np.where(classifiable, truth, "insufficient_data")
    rows = []
    for name, pats in all_patterns.items():
        cls = pats != "insufficient_data"
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


def replicate_trial(design: StudyDesign, n_participants: int, rep: int, seed: int) -> list:
    """One replication: simulate a trial of ``n_participants`` with ``seed``, detect the
    patterns under every preset and score them (:func:`fit_stage` rows)."""
    trial = simulate_stage(design, n_participants, seed)
    patterns, messages = detect_stage(design, trial.sessions)
    return fit_stage(design, trial, patterns, n_participants=n_participants, rep=rep, seed=seed,
                     messages=messages)


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
    rows = (replicate or replicate_trial)(design, design.reference_n, -1, seed)
    cols = ["preset", "beta", "beta_se", "b", "kappa", "n_analysed"]
    # Rows stay in the design's order (presets, then the oracle).
    return pd.DataFrame(rows)[cols].assign(n_participants=design.reference_n, seed=seed)


# --------------------------------------------------------------------------------------------
# running replications: chunks, failures, Dask
# --------------------------------------------------------------------------------------------
def run_chunk(design: StudyDesign, tasks, replicate=None) -> tuple[list, list]:
    """Run ``tasks`` (``(n, rep, seed)`` tuples) one by one; an exception in one replication
    is caught and returned as a failure record (key, seed, error text) -- the others go on."""
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
        ``None``: start (and close) a LocalCluster; ``"tcp://host:port"``: use that existing
        cluster; ``"synchronous"``: run in this process.
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
        Sorted by key (and preset); see :data:`REPLICATION_COLUMNS`, :data:`FAILURE_COLUMNS`
        and :func:`reference_values`.
    """
    tasks = replication_keys(design)
    n_workers = int(n_workers or os.cpu_count() or 1)
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


def _tidy_rows(rows, design) -> pd.DataFrame:
    out = pd.DataFrame(rows)
    for col in REPLICATION_COLUMNS:
        if col not in out.columns:
            out[col] = np.nan
    out = out[REPLICATION_COLUMNS + [c for c in out.columns if c not in REPLICATION_COLUMNS]]
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
# the whole study
# --------------------------------------------------------------------------------------------
@dataclass
class PowerStudy:
    """Result of :func:`run_study`.

    Attributes
    ----------
    design : StudyDesign
    replications : DataFrame
        One row per replication x criterion (:data:`REPLICATION_COLUMNS`).
    failures : DataFrame
        Failed replications: n_participants, rep, seed, error.
    reference : DataFrame
        Large-sample beta per criterion (:func:`reference_values`).
    theta : float
        The true beta (large-sample beta of the true pattern).
    beta : DataFrame
        Bias, empirical SE, coverage and power per sample size x criterion
        (:func:`helpers.power_summary.summarise_beta`).
    accuracy : DataFrame
        Detection accuracy per sample size x preset
        (:func:`helpers.power_summary.summarise_accuracy`).
    n80 : DataFrame
        N for 80% power per test and criterion (:func:`helpers.power_summary.n_for_power`).
    warnings : list of str
        Every warning emitted by the run.
    """

    design: StudyDesign
    replications: pd.DataFrame
    failures: pd.DataFrame
    reference: pd.DataFrame
    theta: float
    beta: pd.DataFrame
    accuracy: pd.DataFrame
    n80: pd.DataFrame
    warnings: list = field(default_factory=list)

    def tables(self) -> dict:
        """``{file stem: (table, sort columns)}`` for :func:`helpers.tables.write_table`."""
        return {
            "power_beta": (self.beta, ["n_participants", "preset"]),
            "power_accuracy": (self.accuracy, ["n_participants", "preset"]),
            "power_n80": (self.n80, []),
            "power_reference": (self.reference, []),
            "power_failures": (self.failures, ["n_participants", "rep"]),
        }


def run_study(design: StudyDesign | None = None, *, scheduler=None, n_workers=None, progress=True,
              replicate=None, chunk_size=None, target_power: float = 0.8, alpha: float = 0.05,
              **design_kwargs) -> PowerStudy:
    """Run the simulation study and summarise it.

    Parameters
    ----------
    design : StudyDesign, optional
        Or its fields as keyword arguments (``sample_sizes``, ``replications``, ``seed``, ...).
    scheduler, n_workers, progress, replicate, chunk_size
        See :func:`run_replications`.
    target_power : float
        Power for which the needed N is interpolated.
    alpha : float
        Two-sided significance level of the power.

    Returns
    -------
    PowerStudy

    Warns
    -----
    UserWarning
        When replications failed (their keys, seeds and errors are in ``failures``) or the
        detection warned (counted per row in ``n_warnings``).

    Examples
    --------
    >>> study = run_study(sample_sizes=[40], replications=2, presets={"rci": {"criterion": "rci"}},
    ...                   reference_n=2000, scheduler="synchronous", progress=False)
    >>> study.beta[["n_participants", "preset", "n_replications", "n_failed"]].values.tolist()
    [[40, 'rci', 2, 0], [40, 'true_pattern', 2, 0]]
    """
    from helpers import power_summary

    if design is None:
        design = StudyDesign(**design_kwargs)
    elif design_kwargs:
        design = dataclasses.replace(design, **design_kwargs)
    reps, failures, reference = run_replications(design, scheduler=scheduler, n_workers=n_workers,
                                                 progress=progress, replicate=replicate,
                                                 chunk_size=chunk_size)
    messages = []
    if len(failures):
        shown = "; ".join(f"N={r.n_participants} rep={r.rep} seed={r.seed}: {r.error}"
                          for r in failures.head(5).itertuples())
        messages.append(f"power study: {len(failures)} of {len(replication_keys(design))} replications "
                        f"failed (counted in n_failed; all in .failures): {shown}")
    n_warned = int(reps["n_warnings"].sum()) if len(reps) else 0
    if n_warned:
        messages.append(f"power study: detection warned {n_warned} times (see n_warnings / warnings "
                        "of .replications)")
    for msg in messages:
        warnings.warn(msg, UserWarning, stacklevel=2)
    ref = reference.set_index("preset")
    theta = float(ref.loc[TRUE_PATTERN, "beta"])
    beta = power_summary.summarise_beta(reps, failures, design, theta=theta,
                                        theta_b=float(ref.loc[TRUE_PATTERN, "b"]), alpha=alpha,
                                        reference=reference)
    accuracy = power_summary.summarise_accuracy(reps, failures, design)
    n80 = power_summary.n_for_power(beta, target=target_power,
                                    seed=replication_seed(design.seed, *BOOTSTRAP_KEY))
    return PowerStudy(design, reps, failures, reference, theta, beta, accuracy, n80, messages)
