"""Notebook conventions: warnings as sentences, the processed tables with what is known of the data."""

import subprocess
import sys

import pandas as pd

from helpers import figures, instruments, notebook, simulate


def test_warnings_are_shown_every_time_as_sentences_without_file_paths():
    code = ("import warnings; from helpers import notebook; notebook.setup()\n"
            "for _ in range(2): warnings.warn('5 rows dropped', UserWarning)\n")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert err == "Warning: 5 rows dropped\nWarning: 5 rows dropped\n"


def test_load_processed_carries_the_dataset_and_its_instruments(tmp_path):
    trial = simulate.simulate_trial(n_participants=20, n_sessions=10, seed=3)
    trial.sessions.to_csv(tmp_path / "sessions.csv", index=False)
    trial.participants.drop(columns=["mdd"]).to_csv(tmp_path / "participants.csv", index=False)
    trial.meta["absent"] = ["mdd"]
    trial.meta["instruments"] = {"alliance": {"name": "WAI-SR", "low": 1.0, "high": 5.0, "score": "mean item score",
                                              "reliability": 0.9, "reliability_source": "", "higher_is_better": True}}
    notebook.write_dataset_info(trial, tmp_path)
    try:
        p = notebook.load_processed(tmp_path)
        assert p.simulated and p.caption == " · SIMULATED DATA" and p.patterns is None
        assert p.instruments["alliance"].name == "WAI-SR" and p.instruments["symptoms"].name == "PSS-SR"
        assert not p.has("mdd") and p.has("pss_sr_pre")
        assert figures.MEASURE_LABELS["alliance"] == "WAI-SR alliance (mean item score, 1-5)"
        assert isinstance(p.sessions, pd.DataFrame) and len(p.participants) == 20
    finally:
        figures.use_instruments(instruments.DEFAULTS)  # other tests expect the paper's labels
    assert figures.MEASURE_LABELS["alliance"] == "CALPAS-P alliance (mean item score, 1-7)"
