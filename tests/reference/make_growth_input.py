"""Small, self-contained generator of session-by-session PSS-SR growth data.

Used (1) to write ``growth_input.csv``, the dataset that ``growth_lme4.R`` fits with lme4 for
the parity test, and (2) by the convergence stress test, which draws many small datasets.
It is deliberately independent of ``helpers.simulate`` so that the reference table does not
move when the project's simulator changes.

Model (per participant i, session s = 1..n_sessions):
    pss_sr = b0 + u0_i + (b1 + d1[pattern] + u1_i) * (s - 5.5) + d0[pattern] + e
with (u0, u1) ~ N(0, [[sd0^2, rho sd0 sd1], [., sd1^2]]), e ~ N(0, sd_e^2), clipped to 0-51.
Patterns: no_rupture / repaired / unrepaired / insufficient_data with probabilities
(.49, .25, .16, .10). Missing data: scattered missing sessions (``p_missing``) and dropout
(a ``p_dropout`` share of participants stop after a random session 4-9).

Run ``python tests/reference/make_growth_input.py`` to rewrite growth_input.csv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PATTERN_PROBS = {"no_rupture": 0.49, "repaired": 0.25, "unrepaired": 0.16,
                 "insufficient_data": 0.10}
#: Level difference at session 5.5 and slope difference, by pattern.
PATTERN_EFFECTS = {"no_rupture": (0.0, 0.0), "repaired": (-1.0, -0.3),
                   "unrepaired": (2.0, 0.8), "insufficient_data": (1.0, 0.0)}


def simulate_growth(n_participants=116, n_sessions=10, *, seed=20131106, b0=26.0, b1=-1.5,
                    sd0=7.0, sd1=0.6, rho=-0.3, sd_e=4.0, p_missing=0.05, p_dropout=0.10):
    """Return ``(sessions, patterns)`` tables in the project's contract layout."""
    rng = np.random.default_rng(seed)
    ids = [f"g{i:04d}" for i in range(1, n_participants + 1)]
    names = list(PATTERN_PROBS)
    pattern = rng.choice(names, size=n_participants, p=list(PATTERN_PROBS.values()))
    cov = np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])
    u = rng.multivariate_normal([0.0, 0.0], cov, size=n_participants)
    session = np.arange(1, n_sessions + 1)
    time = session - (1 + n_sessions) / 2
    rows = []
    for i, pid in enumerate(ids):
        d0, d1 = PATTERN_EFFECTS[pattern[i]]
        mean = b0 + d0 + u[i, 0] + (b1 + d1 + u[i, 1]) * time
        y = np.clip(mean + rng.normal(0.0, sd_e, n_sessions), 0.0, 51.0)
        y[rng.random(n_sessions) < p_missing] = np.nan
        if rng.random() < p_dropout:
            y[rng.integers(4, n_sessions) :] = np.nan
        rows += [(pid, int(s), float(v)) for s, v in zip(session, y)]
    sessions = pd.DataFrame(rows, columns=["participant_id", "session", "pss_sr"])
    sessions.insert(2, "alliance", np.nan)  # not used by the growth model
    patterns = pd.DataFrame({"participant_id": ids, "pattern": pattern})
    return sessions, patterns


def main(path=Path(__file__).with_name("growth_input.csv")):
    sessions, patterns = simulate_growth()
    out = sessions.merge(patterns, on="participant_id")[
        ["participant_id", "session", "pss_sr", "pattern"]]
    out.to_csv(path, index=False, float_format="%.6f", na_rep="NA", lineterminator="\n")
    return path


if __name__ == "__main__":
    print(main())
