"""Regenerate the shipped example dataset ``data/raw/example/`` (``make example``).

It is the default simulated trial (seed 20131106, 116 participants, 10 sessions) written in
the long format a user's own data would have -- *without* the truth table, because real
data has none. It exists so that a user can try the loader route end to end::

    python -m helpers.pipeline --set data_source=data/raw/example
"""

from __future__ import annotations

from helpers import contract, paths, simulate
from helpers.tables import write_table

SEED = 20131106


def write_example(folder=None, seed: int = SEED) -> list:
    folder = folder or paths.EXAMPLE
    trial = simulate.simulate_trial(n_participants=116, n_sessions=10, seed=seed)
    return [
        write_table(trial.sessions, folder / "sessions.csv", columns=contract.SESSION_COLUMNS),
        write_table(trial.participants, folder / "participants.csv", columns=contract.PARTICIPANT_COLUMNS),
    ]


if __name__ == "__main__":
    for path in write_example():
        print(path)
