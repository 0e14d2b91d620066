"""A researcher's own trial end to end: declared once, analysed without a crash, never written
into tracked files; analyses the data cannot support say so in words."""

import shutil
import subprocess

import pandas as pd
import pytest

from helpers import paths, pipeline

OTHER = paths.RAW / "example_other_trial"


def _git_status():
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=paths.ROOT,
                          capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_the_worked_example_runs_end_to_end_and_leaves_git_status_as_it_was(capsys, monkeypatch):
    if not (paths.ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    monkeypatch.delenv("REPLICATION_OUTPUT_ROOT", raising=False)  # as a user runs it: into the repository's runs/
    run_dir = paths.ROOT / "runs" / "other-trial-simulated-example"
    existed = run_dir.exists()
    before = _git_status()
    try:
        assert pipeline.main(["--set", f"data_source={OTHER}", "--no-progress", "--wait"]) == 0  # never beside a user's run
        assert _git_status() == before  # nothing tracked changed, nothing untracked appeared
        err = capsys.readouterr().err
        assert "05_robustness_power skipped" in err and str(run_dir) in err
        table = pd.read_csv(run_dir / "results" / "tables" / "replication.csv").set_index("quantity")
        assert table.loc["N (PE clients)", "verdict"] == "different design"
        assert table.loc["pattern x MDD: chi-square", "verdict"] == "not available: no `mdd` column in the data"
        assert table.loc["unrepaired rupture -> post PCL-5: standardised beta", "n"] > 0  # on the self-report, named
        html = (run_dir / "results" / "report.html").read_text()
        assert "Other trial (simulated example)" in html and "UserWarning" not in html
        assert str(paths.ROOT) not in html  # no housekeeping paths
        episodes = (run_dir / "results" / "notebooks" / "02_rupture_repair.ipynb").read_text()
        assert "WAI-SR points" in episodes and "CALPAS" not in episodes.split("threshold")[1][:40]
    finally:
        if not existed:
            shutil.rmtree(run_dir, ignore_errors=True)


@pytest.mark.slow
def test_a_minimal_dataset_runs_and_each_missing_analysis_is_said(tmp_path):
    # sessions with alliance and symptoms; participants with the pre-treatment score only
    s = pd.read_csv(paths.EXAMPLE / "sessions.csv")
    p = pd.read_csv(paths.EXAMPLE / "participants.csv")[["participant_id", "pss_sr_pre"]]
    data = tmp_path / "minimal"
    data.mkdir()
    s.to_csv(data / "sessions.csv", index=False)
    p.to_csv(data / "participants.csv", index=False)
    out = tmp_path / "out"
    assert pipeline.main(["--set", f"data_source={data}", "--output-root", str(out), "--no-progress"]) == 0
    verdicts = pd.read_csv(out / "results" / "tables" / "replication.csv").set_index("quantity")["verdict"]
    assert verdicts["female (%)"] == "not available: no `female` column in the data"
    assert verdicts["age, mean (years)"] == "not available: no `age` column in the data"
    assert verdicts["pattern x childhood abuse: chi-square"] == "not available: no `child_abuse` column in the data"
    assert verdicts.filter(like="standardised beta").iloc[0] == \
        "not available: no outcome with pre- and post-treatment scores in the data"
    assert verdicts["unrepaired rupture (%)"] in ("consistent", "not consistent")  # the rupture analysis ran
