"""Write the reference inputs of the lme4 parity tests of ``helpers.lmm``.

Three datasets, all in the growth-input layout (participant_id, session, pss_sr, pattern) that
``lmm_lme4.R`` turns into the growth model
``pss_sr ~ time * (repaired + unrepaired) + (1 + time | participant_id)``:

``lmm_trial1160_input.csv``
    A 1,160-client trial: ``helpers.simulate.simulate_trial(n_participants=1160,
    seed=20131106)``, patterns from ``helpers.ruptures`` with the default rupture criterion
    (``detect_episodes`` then ``classify_participants``), as the project's pipeline does.
``lmm_noslope_input.csv``
    116 clients x 10 sessions simulated here with numpy from a random-intercept-only truth
    (no slope variance), so that the random-slope fit is singular (lme4's ``isSingular``).
    Independent of ``helpers.simulate`` on purpose: the singular reference must not move when
    the simulator changes. The seed was chosen so that lme4's REML and ML fits are both
    singular (checked by ``lmm_lme4.R``, which records the flag).
``lmm_downdate_input.csv``
    A completed data set of the pattern model's multiple imputation on which the engine's
    optimiser once stepped to Lambda ~ 1e8 and raised (:func:`downdate_trial`); lme4 fits it.

Values are rounded to 6 decimals. Run from the repository root, then re-run
``Rscript tests/reference/lmm_lme4.R``::

    .venv/bin/python tests/reference/make_lmm_inputs.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
COLUMNS = ["participant_id", "session", "pss_sr", "pattern"]
PATTERN_PROBS = {"no_rupture": 0.49, "repaired": 0.25, "unrepaired": 0.16,
                 "insufficient_data": 0.10}
#: Level difference at session 5.5 and slope difference, by pattern.
PATTERN_EFFECTS = {"no_rupture": (0.0, 0.0), "repaired": (-1.0, -0.3),
                   "unrepaired": (2.0, 0.8), "insufficient_data": (1.0, 0.0)}
NOSLOPE_SEED = 5


def trial_1160(seed=20131106) -> pd.DataFrame:
    """Sessions of a simulated 1,160-client trial joined with their detected patterns."""
    from helpers import ruptures
    from helpers.simulate import simulate_trial

    trial = simulate_trial(n_participants=1160, seed=seed)
    episodes = ruptures.detect_episodes(trial.sessions)
    patterns = ruptures.classify_participants(episodes, trial.sessions)
    d = trial.sessions[["participant_id", "session", "pss_sr"]].merge(
        patterns[["participant_id", "pattern"]], on="participant_id", validate="many_to_one")
    return d[COLUMNS]


def no_slope_trial(seed=NOSLOPE_SEED, n=116, n_sessions=10, *, b0=26.0, b1=-1.5, sd0=7.0,
                   sd_e=4.0, p_missing=0.05) -> pd.DataFrame:
    """Random-intercept-only truth: every client has the same slope (by pattern)."""
    rng = np.random.default_rng(seed)
    names = list(PATTERN_PROBS)
    pattern = rng.choice(names, size=n, p=list(PATTERN_PROBS.values()))
    u0 = rng.normal(0.0, sd0, n)
    session = np.arange(1, n_sessions + 1)
    time = session - (1 + n_sessions) / 2
    rows = []
    for i in range(n):
        d0, d1 = PATTERN_EFFECTS[pattern[i]]
        y = b0 + d0 + u0[i] + (b1 + d1) * time + rng.normal(0.0, sd_e, n_sessions)
        y[rng.random(n_sessions) < p_missing] = np.nan
        rows += [(f"n{i + 1:04d}", int(s), v, pattern[i]) for s, v in zip(session, y)]
    return pd.DataFrame(rows, columns=COLUMNS)


def downdate_trial(rep=251, imputation_seed=None) -> pd.DataFrame:
    """A completed data set of the multiple-imputation validation on which ``helpers.lmm``
    used to raise ``LinAlgError`` (and lme4 fits without trouble).

    Power-study trial ``rep`` (116 clients, ``power.StudyDesign()``'s seeds, as
    ``benchmarks/validate_growth_mi.py``), its patterns the first completed data set of
    ``helpers.pattern_growth.unrepaired_slope`` (20 imputations, seeded by the trial's seed)
    whose growth fit failed there: BFGS's first quasi-Newton step went to Lambda ~ 1e8, where
    X'V^{-1}X cancels to rounding noise and its Cholesky factorisation failed. Only the
    classifiable clients enter (77 of 116). Rebuilt through the pattern model and the
    imputation, so a later change to either may pick another data set: the committed CSV is
    the reference, and ``tests/test_lmm.py`` checks that its fit still meets such a step.
    """
    import warnings

    from helpers import growth, pattern_growth, power, simulate
    from helpers.pattern_model import fit_pattern_model

    design = power.StudyDesign(sample_sizes=(116,), replications=rep + 1)
    n, _, seed = next(t for t in power.replication_keys(design) if t[1] == rep)
    trial = simulate.simulate_trial(n, design.n_sessions, seed, **design.knobs)
    model = fit_pattern_model(trial.sessions, reliability=power.SIMULATED_RELIABILITY,
                              min_sessions=design.min_sessions)
    designs = []
    real = growth.fit_growth_lean

    def keep(ds, **kw):
        designs.extend(ds)
        return real(ds, **kw)

    growth.fit_growth_lean = keep
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the failure is the point here
            pattern_growth.unrepaired_slope(model, trial.sessions, n_imputations=20, seed=seed)
    finally:
        growth.fit_growth_lean = real
    d = next(d for d in designs if _meets_unevaluable_step(d))
    names = list(d["x_names"])
    X = d["X"]
    pattern = np.where(X[:, names.index("unrepaired")] == 1, "unrepaired",
                       np.where(X[:, names.index("repaired")] == 1, "repaired", "no_rupture"))
    return pd.DataFrame({"participant_id": [f"c{int(g) + 1:03d}" for g in d["groups"]],
                         "session": (d["time"] + d["center"]).round().astype(int),
                         "pss_sr": d["y"], "pattern": pattern})[COLUMNS]


def _meets_unevaluable_step(design) -> bool:
    """Whether the REML fit of a growth design evaluates a theta where X'V^{-1}X is not
    numerically positive definite (``helpers.lmm._Problem._unevaluable``)."""
    from helpers import lmm

    hits = []
    real = lmm._Problem._unevaluable

    def count(self, lam):
        hits.append(lam)
        return real(self, lam)

    lmm._Problem._unevaluable = count
    try:
        lmm.fit_lmm_arrays(design["y"], design["X"], design["spec"].random_design(design["time"], "1 + time")[0],
                           design["groups"])
    finally:
        lmm._Problem._unevaluable = real
    return bool(hits)


def _write(d, name):
    path = HERE / name
    d.to_csv(path, index=False, float_format="%.6f", na_rep="NA", lineterminator="\n")
    return path


def main():
    return [_write(trial_1160(), "lmm_trial1160_input.csv"),
            _write(no_slope_trial(), "lmm_noslope_input.csv"),
            _write(downdate_trial(), "lmm_downdate_input.csv")]


if __name__ == "__main__":
    for p in main():
        print(p)
