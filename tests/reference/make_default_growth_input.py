"""Write tests/reference/default_growth_input.csv from the committed default run.

Input of growth_lme4.R for the lme4 parity test on the project's own default simulated
trial (seed 20131106, default rupture criterion): data/processed/sessions.csv joined with
data/processed/patterns.csv (participant_id, session, pss_sr, pattern). Re-run after the
default run changes, then `Rscript tests/reference/growth_lme4.R
tests/reference/default_growth_input.csv tests/reference/default_growth_lme4.csv`.
"""

from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]

if __name__ == "__main__":
    sessions = pd.read_csv(ROOT / "data/processed/sessions.csv", dtype={"participant_id": str})
    patterns = pd.read_csv(ROOT / "data/processed/patterns.csv", dtype={"participant_id": str})
    d = sessions[["participant_id", "session", "pss_sr"]].merge(patterns[["participant_id", "pattern"]])
    d.to_csv(ROOT / "tests/reference/default_growth_input.csv", index=False, float_format="%.6f")
