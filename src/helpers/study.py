"""The power study as a whole: replications (:mod:`helpers.power`) summarised
(:mod:`helpers.power_summary`) into the tables of notebook 05.

:func:`run_study` runs every replication and the reference trial, warns about failures and
detection warnings, takes the true beta from the reference trial and returns a
:class:`PowerStudy` holding the replications and their summaries. Design: ``docs/power.md``.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import pandas as pd

from helpers import power_summary
from helpers.contract import TRUE_PATTERN
from helpers.power import (BOOTSTRAP_KEY, StudyDesign, tidy_failures, tidy_replications, model_rows, replication_keys,
                           replication_seed, run_replications)


@dataclass
class PowerStudy:
    """Result of :func:`run_study`.

    Attributes
    ----------
    design : StudyDesign
    replications : DataFrame
        One row per replication x criterion (:data:`helpers.power.MC_ROW_COLUMNS`).
    failures : DataFrame
        Failed replications: n_participants, rep, seed, error.
    reference : DataFrame
        Large-sample beta per criterion (:func:`helpers.power.reference_values`).
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
        """``{file stem: (table, sort columns)}`` for :func:`helpers.table_io.write_table`."""
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
        See :func:`helpers.power.run_replications`.
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
    if design is None:
        design = StudyDesign(**design_kwargs)
    elif design_kwargs:
        design = dataclasses.replace(design, **design_kwargs)
    reps, failures, reference = run_replications(design, scheduler=scheduler, n_workers=n_workers,
                                                 progress=progress, replicate=replicate,
                                                 chunk_size=chunk_size)
    if design.model_replications:  # the model-based patterns on the first replications (same seeds)
        keys = [t for t in replication_keys(design)
                if t[0] in design.model_sizes and t[1] < design.model_replications]
        rows, model_failures = model_rows(design, keys)
        reps = tidy_replications([*reps.to_dict("records"), *rows], design)
        failures = tidy_failures([*failures.to_dict("records"), *model_failures])
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


#: The harder settings of the simulator (docs/simulation.md), one knob each.
HARDER_SETTINGS = {
    "heavy-tailed noise (t, df 3)": {"alliance_noise_df": 3.0},
    "AR(1) noise (0.5)": {"alliance_noise_ar": 0.5},
    "random-walk drift (SD 0.15)": {"alliance_drift_sd": 0.15},
    "gradual drops (all)": {"p_gradual_drop": 1.0},
    "second episode (p 0.5)": {"p_second_rupture": 0.5},
    "rupture-dependent dropout (HR 3)": {"dropout_rupture_hr": 3.0},
    "smaller ruptures (mean drop 0.9)": {"rupture_drop_mean": 0.9, "rupture_drop_sd": 0.3, "rupture_drop_min": 0.3},
}

#: Columns of :func:`run_settings`' table after ``setting`` and ``preset``.
SETTING_COLUMNS = ["n_replications", "n_failed", "kappa", "kappa_mcse", "sens_unrepaired", "spec_unrepaired",
                   "theta_b", "b_mean", "b_bias", "b_bias_mcse", "coverage_b_hc3", "coverage_b_hc3_mcse",
                   "power_hc3", "power_hc3_mcse"]


def run_settings(design: StudyDesign, settings=None, *, n_participants=116, replications=40, reference_n=50_000,
                 default=None) -> pd.DataFrame:
    """Accuracy and coverage of every criterion, the model-based patterns included, in each
    harder setting of the simulator.

    Each setting is ``design``'s world with one knob changed (:data:`HARDER_SETTINGS`):
    ``replications`` trials of ``n_participants`` clients on the study's own seeds (so every
    setting draws the same demographics, true patterns and symptoms: common random numbers),
    every preset, :data:`helpers.power.MODEL` and the oracle; the true-pattern b of the
    setting from one trial of ``reference_n`` clients (:func:`helpers.power.reference_values`).

    Parameters
    ----------
    design : StudyDesign
    settings : dict, optional
        Name -> knobs (default :data:`HARDER_SETTINGS`).
    n_participants, replications, reference_n : int
    default : PowerStudy, optional
        The study of the default world: its rows at ``n_participants`` are the table's first
        setting, "default" (each criterion with its own number of replications).

    Returns
    -------
    DataFrame
        setting, preset and :data:`SETTING_COLUMNS` (:func:`helpers.power_summary.summarise_beta`
        and :func:`~helpers.power_summary.summarise_accuracy`; for ``model`` the coverage and
        power are those of the multiply imputed estimate).
    """
    parts = []
    if default is not None:
        parts.append(("default", default.beta, default.accuracy))
    for name, knobs in (HARDER_SETTINGS if settings is None else settings).items():
        d = dataclasses.replace(design, knobs={**design.knobs, **knobs}, sample_sizes=(n_participants,),
                                replications=replications, reference_n=reference_n,
                                model_replications=replications, model_sizes=(n_participants,))
        s = run_study(d, progress=False, scheduler="synchronous")
        parts.append((name, s.beta, s.accuracy))
    out = []
    for name, beta, acc in parts:
        b = beta[beta["n_participants"] == n_participants].set_index("preset")
        a = acc[acc["n_participants"] == n_participants].set_index("preset")
        t = b.join(a[["kappa", "kappa_mcse", "sens_unrepaired", "spec_unrepaired"]], how="left")
        t = t.reset_index().assign(setting=name)
        out.append(t[["setting", "preset", *SETTING_COLUMNS]])
    return pd.concat(out, ignore_index=True)
