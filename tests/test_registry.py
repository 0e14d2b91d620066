"""A registry-sized trial through the own-data route: 20,000 clients crashed notebook 04 (an
int8 overflow in the bootstrap of Cramer's V); now the whole run ends and reports."""

import warnings

import numpy as np
import pandas as pd
import pytest

from helpers import descriptor, pipeline, simulate
from helpers.table_io import write_table

DESCRIPTOR = """name: Registry of 20000 clients
simulated: true
files: {sessions: sessions.csv, participants: participants.csv}
layout: long
columns: {participant_id: client, session: visit, alliance: calpas, female: gender}
codes:
  female: {1: false, 2: true}
"""


def _registry(folder, n):
    trial = simulate.simulate_trial(n_participants=n, n_sessions=10, seed=7)
    folder.mkdir()
    write_table(trial.sessions.rename(columns={"participant_id": "client", "session": "visit", "alliance": "calpas"}),
                folder / "sessions.csv", sort_by=["client", "visit"])
    parts = trial.participants.rename(columns={"participant_id": "client", "female": "gender"})
    parts["gender"] = np.where(parts["gender"].astype(bool), 2, 1)
    write_table(parts, folder / "participants.csv", sort_by=["client"])
    (folder / "dataset.yaml").write_text(DESCRIPTOR)
    return trial


def test_a_registry_loads_as_simulated(tmp_path):
    trial = _registry(tmp_path / "registry", 500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = descriptor.load(tmp_path / "registry", warn=False)
    assert len(loaded.sessions) == len(trial.sessions) == 5_000
    assert np.array_equal(loaded.sessions["alliance"].to_numpy(), trial.sessions["alliance"].round(6).to_numpy(),
                          equal_nan=True)


@pytest.mark.slow
def test_a_20000_client_registry_runs_end_to_end(tmp_path):
    _registry(tmp_path / "registry", 20_000)
    out = tmp_path / "out"
    assert pipeline.main(["--set", f"data_source={tmp_path / 'registry'}", "--output-root", str(out),
                          "--no-progress"]) == 0
    table = pd.read_csv(out / "results" / "tables" / "replication.csv").set_index("quantity")
    chi2 = table.loc["pattern x MDD: chi-square"]
    assert chi2["n"] > 10_000 and "bootstrap 95% CI" in chi2["statistic"]
    # above 10,000 clients the processed tables are compressed, and every later notebook read them
    processed = sorted(p.name for p in (out / "data" / "processed").iterdir())
    assert processed == ["episodes.csv.gz", "participants.csv.gz", "pattern_probabilities.csv.gz",
                         "patterns.csv.gz", "run.json", "sessions.csv.gz"]
