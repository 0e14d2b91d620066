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
from helpers.power import BOOTSTRAP_KEY, StudyDesign, replication_keys, replication_seed, run_replications


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
