"""Regenerate the shipped example datasets (``make example``).

``data/raw/example/`` is the default simulated trial (seed 20131106, 116 participants, 10
sessions) in the contract's long format -- *without* the truth table, because real data has
none. ``data/raw/example_other_trial/`` is another trial as a researcher would hold it:
simulated, 60 clients, 12 sessions, alliance on a 1-5 scale (WAI-SR-like), symptoms on a 0-80
scale (PCL-5-like), gender coded 1/2, no MDD or childhood-abuse columns, one wide Excel
workbook with its own column names whose first sheet is a codebook, declared by its
``dataset.yaml``. Both let a user try the own-data route end to end::

    python -m helpers.pipeline --set data_source=data/raw/example
    python -m helpers.pipeline --set data_source=data/raw/example_other_trial
"""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pandas as pd

from helpers import contract, paths, simulate
from helpers.table_io import atomic_write_bytes, write_table

SEED = 20131106


def write_example(folder=None, seed: int = SEED) -> list:
    folder = folder or paths.EXAMPLE
    trial = simulate.simulate_trial(n_participants=116, n_sessions=10, seed=seed)
    return [
        write_table(trial.sessions, folder / "sessions.csv", columns=contract.SESSION_COLUMNS),
        write_table(trial.participants, folder / "participants.csv", columns=contract.PARTICIPANT_COLUMNS),
    ]


OTHER_TRIAL = "example_other_trial"
OTHER_SEED = 20240601


def other_trial_table(seed: int = OTHER_SEED):
    """The other trial's wide table: one row per client, the researcher's own column names."""

    trial = simulate.simulate_trial(n_participants=60, n_sessions=12, seed=seed)
    wide = trial.sessions.pivot(index="participant_id", columns="session")
    out = pd.DataFrame({"ID": [f"P{int(i):03d}" for i in range(101, 101 + len(wide))]}, index=wide.index)
    # CALPAS 1-7 -> a 1-5 scale, PSS 0-51 -> a 0-80 scale: linear maps, rounded as item means / totals are
    for s in wide["alliance"].columns:
        out[f"WAI_{s}"] = (1 + (wide[("alliance", s)] - 1) * 4 / 6).round(2)
    for s in wide["pss_sr"].columns:
        out[f"PCL_{s}"] = (wide[("pss_sr", s)] * 80 / 51).round(0)
    p = trial.participants.set_index("participant_id").loc[wide.index]
    out["PCL_pre"] = (p["pss_sr_pre"] * 80 / 51).round(0).to_numpy()
    out["PCL_post"] = (p["pss_sr_post"] * 80 / 51).round(0).to_numpy()
    out["gender"] = np.where(p["female"].astype(bool), 2, 1)
    out["Age"] = p["age"].round(0).to_numpy()
    return out.reset_index(drop=True)


def write_other_trial(folder=None, seed: int = OTHER_SEED) -> list:
    """Write ``trial.xlsx`` (sheets ``codebook`` then ``data``) into the other trial's folder.
    Its ``dataset.yaml`` is written by hand and committed beside it."""


    folder = folder or paths.RAW / OTHER_TRIAL
    table = other_trial_table(seed)
    codebook = pd.DataFrame({
        "variable": ["ID", "WAI_1 ... WAI_12", "PCL_1 ... PCL_12", "PCL_pre", "PCL_post", "gender", "Age"],
        "label": ["client id", "WAI-SR alliance, mean item score 1-5, session 1-12",
                  "PCL-5 PTSD severity 0-80, session 1-12", "PCL-5 before treatment", "PCL-5 after treatment",
                  "1 = male, 2 = female", "years"],
    })

    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as xl:
        codebook.to_excel(xl, sheet_name="codebook", index=False)
        table.to_excel(xl, sheet_name="data", index=False)
    return [atomic_write_bytes(folder / "trial.xlsx", _stable_xlsx(buf.getvalue()))]


def _stable_xlsx(data: bytes) -> bytes:
    """The workbook with fixed timestamps (openpyxl writes the current time), so that
    regenerating it gives the same bytes."""
    src, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "docProps/core.xml":
                body = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b"2024-06-01T00:00:00Z", body)
            info = zipfile.ZipInfo(item.filename, date_time=(2024, 6, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(info, body)
    return out.getvalue()


if __name__ == "__main__":
    for path in write_example() + write_other_trial():
        print(path)
