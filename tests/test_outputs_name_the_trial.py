"""What a run says is right on any trial: every output a reader sees names the trial's own
instruments and ranges, never the replication's defaults, and the multiverse agrees with the
headline (issue 16's done-when).

Three trials: the shipped ``example_other_trial`` (WAI-SR 1-5, PCL-5 0-80, 12 sessions, wide
Excel) and a trial of this test's own in two layouts (HAq-II 1-6, PCL-5 0-80, CAPS-5 0-80,
14 sessions; wide CSV and long CSV with session labels), each run end to end by the runner.
"""

import json
import re

import nbformat
import numpy as np
import pandas as pd
import pytest

from helpers import paths, pipeline, simulate

#: The replication's default instruments and ranges: none may name this trial's measures.
DEFAULT_WORDS = re.compile(r"CALPAS|PSS-SR|PSS-I\b|\bBDI\b|\b0-51\b|\b1-7\b|\b0-63\b")
N_SESSIONS = 14


def _own_trial_wide(seed=11) -> pd.DataFrame:
    """One row per client: HAq-II (1-6) and PCL-5 (0-80) per session, pre/post PCL-5 and CAPS-5."""
    trial = simulate.simulate_trial(n_participants=70, n_sessions=N_SESSIONS, seed=seed)
    wide = trial.sessions.pivot(index="participant_id", columns="session")
    out = pd.DataFrame({"client": [f"C{i:03d}" for i in range(len(wide))]}, index=wide.index)
    for s in wide["alliance"].columns:
        out[f"HAQ{s}"] = (1 + (wide[("alliance", s)] - 1) * 5 / 6).round(2)
    for s in wide["pss_sr"].columns:
        out[f"PCL{s}"] = (wide[("pss_sr", s)] * 80 / 51).round(0)
    p = trial.participants.set_index("participant_id").loc[wide.index]
    for col, name in (("pss_sr_pre", "PCL_pre"), ("pss_sr_post", "PCL_post"), ("pss_i_pre", "CAPS_pre"),
                      ("pss_i_post", "CAPS_post")):
        out[name] = (p[col] * 80 / 51).round(0).to_numpy()
    out["sex"] = np.where(p["female"].astype(bool), "f", "m")
    out["age_years"] = p["age"].round(0).to_numpy()
    out["depressed"] = p["mdd"].astype(int).to_numpy()
    return out.reset_index(drop=True)


INSTRUMENTS = """instruments:
  alliance: {name: HAq-II, range: [1, 6], score: mean item score, reliability: 0.9, reliability_source: test value}
  symptoms: {name: PCL-5, range: [0, 80]}
  interview: {name: CAPS-5, range: [0, 80]}
codes:
  female: {f: true, m: false}
  mdd: {1: true, 0: false}
"""


def _write_wide(folder):
    folder.mkdir()
    _own_trial_wide().to_csv(folder / "trial.csv", index=False)
    (folder / "dataset.yaml").write_text(
        "name: Own trial wide\nfiles: {sessions: trial.csv, participants: trial.csv}\nlayout: wide\n"
        "columns: {participant_id: client, alliance: 'HAQ{session}', pss_sr: 'PCL{session}', pss_sr_pre: PCL_pre,\n"
        "          pss_sr_post: PCL_post, pss_i_pre: CAPS_pre, pss_i_post: CAPS_post, female: sex,\n"
        "          age: age_years, mdd: depressed}\n" + INSTRUMENTS, encoding="utf-8")
    return folder


def _write_long(folder):
    folder.mkdir()
    t = _own_trial_wide()
    long = pd.concat([pd.DataFrame({"client": t["client"], "visit": f"V{s}", "haq": t[f"HAQ{s}"],
                                    "pcl": t[f"PCL{s}"]}) for s in range(1, N_SESSIONS + 1)])
    long.to_csv(folder / "sessions.csv", index=False)
    t.drop(columns=[c for c in t.columns if re.fullmatch(r"(HAQ|PCL)\d+", c)]).to_csv(
        folder / "participants.csv", index=False)
    (folder / "dataset.yaml").write_text(
        "name: Own trial long\nfiles: {sessions: sessions.csv, participants: participants.csv}\nlayout: long\n"
        "session_labels: 'V{session}'\n"
        "columns: {participant_id: client, session: visit, alliance: haq, pss_sr: pcl, pss_sr_pre: PCL_pre,\n"
        "          pss_sr_post: PCL_post, pss_i_pre: CAPS_pre, pss_i_post: CAPS_post, female: sex,\n"
        "          age: age_years, mdd: depressed}\n" + INSTRUMENTS, encoding="utf-8")
    return folder


def _texts(root):
    """Every output a reader sees, as (where, text): the report's text, every output of the
    executed notebooks, every figure's data table (titles, labels, legends, ticks)."""
    html = (root / "results" / "report.html").read_text(encoding="utf-8")
    yield "results/report.html", re.sub(r"data:image/[^\"']+", "", html)
    for nb_path in sorted((root / "results" / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        for i, cell in enumerate(nb.cells):
            for out in cell.get("outputs", []):
                texts = [out.get("text", "")] + [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
                for text in texts:
                    yield f"{nb_path.name} cell {i}", "".join(text)
    for data in sorted((root / "figures").glob("*.data.csv")):
        yield f"figures/{data.name}", data.read_text(encoding="utf-8")


def _run(source, out):
    assert pipeline.main(["--set", f"data_source={source}", "--output-root", str(out), "--no-progress"]) == 0


def _check(root, names):
    leaks = [(where, m.group(0), text[max(0, m.start() - 60):m.end() + 40])
             for where, text in _texts(root) for m in DEFAULT_WORDS.finditer(text)]
    assert not leaks, leaks[:10]
    report = (root / "results" / "report.html").read_text(encoding="utf-8")
    for name in names:
        assert name in report, name
    # the multiverse's row of the run's criterion is the headline
    spec = json.loads((root / "data" / "processed" / "run.json").read_text(encoding="utf-8"))
    mv = pd.read_csv(root / "results" / "tables" / "multiverse.csv").set_index("preset").loc[spec["presets"]["default"]]
    prevalence = pd.read_csv(root / "results" / "tables" / "prevalence.csv").set_index("quantity")["estimate"]
    for pattern in ("no_rupture", "repaired", "unrepaired"):
        assert mv[f"{pattern}_pct"] == pytest.approx(prevalence[pattern], abs=1e-6)
    regression = pd.read_csv(root / "results" / "tables" / "outcome_regression.csv")
    head = regression[(regression["outcome"] == spec["outcome"]["used"]) & (regression["model"] == "A")
                      & (regression["term"] == "unrepaired")].iloc[0]
    assert mv["beta"] == pytest.approx(head["beta"], abs=1e-6) and mv["n_beta"] == head["n"]


@pytest.mark.slow
def test_the_shipped_other_trial_names_its_own_instruments(tmp_path):
    _run(paths.RAW / "example_other_trial", tmp_path / "out")
    _check(tmp_path / "out", ["WAI-SR", "PCL-5", "0.43 WAI-SR points"])


@pytest.mark.slow
@pytest.mark.parametrize("write", [_write_wide, _write_long], ids=["wide", "long"])
def test_an_own_trial_in_either_layout_names_its_own_instruments(tmp_path, write):
    source = write(tmp_path / "trial")
    _run(source, tmp_path / "out")
    _check(tmp_path / "out", ["HAq-II", "PCL-5", "CAPS-5", "r = .90", "14 sessions"])
    spec = json.loads((tmp_path / "out" / "data" / "processed" / "run.json").read_text(encoding="utf-8"))
    assert spec["dataset"]["n_sessions"] == N_SESSIONS and spec["outcome"]["name"] == "CAPS-5"
