"""The run specification: resolved once, right on any trial, stored and read back as it was."""

import numpy as np
import pandas as pd
import pytest

from helpers import checks, instruments, paths, runspec, simulate
from helpers.contract import DataValidationError


def _params(**overrides):
    return {**runspec.load_params(), **overrides}


def _own_trial(folder, *, instruments_yaml, scale=(1.0, 1.0), n=40, seed=5, n_sessions=10):
    """A small simulated trial written as a researcher's own: long CSVs and a descriptor.
    ``scale`` maps CALPAS 1-7 linearly onto another alliance range (low, span / 6)."""
    trial = simulate.simulate_trial(n_participants=n, n_sessions=n_sessions, seed=seed)
    s = trial.sessions.copy()
    s["alliance"] = (scale[0] + (s["alliance"] - 1) * scale[1]).round(3)
    s.to_csv(folder / "sessions.csv", index=False)
    trial.participants.to_csv(folder / "participants.csv", index=False)
    (folder / "dataset.yaml").write_text(
        "name: Own trial\nfiles: {sessions: sessions.csv, participants: participants.csv}\nlayout: long\n"
        + instruments_yaml, encoding="utf-8")
    return folder


def test_the_default_run_resolves_the_papers_instruments_and_the_rci_from_the_data():
    spec, trial = runspec.resolve(_params())
    assert spec.default_run and spec.same_design and spec.simulated
    assert spec.origins == {role: "simulated" for role in instruments.DEFAULTS}
    first = trial.sessions.dropna(subset=["alliance"]).groupby("participant_id")["alliance"].first()
    sd = first.std(ddof=1)  # the RCI's SD, computed here independently
    thr = spec.criterion["threshold"]
    assert thr["sd"] == pytest.approx(sd, rel=1e-9)  # run.json keeps 10 significant digits
    assert thr["threshold"] == pytest.approx(1.96 * sd * np.sqrt(2 * (1 - 0.83)), rel=1e-9)
    assert spec.criterion["reliability"] == 0.83 and "Gaston" in spec.criterion["reliability_source"]
    assert spec.presets["default"] == "rci" and spec.presets["criteria"]["rci"]["reliability"] == 0.83
    assert "0.74 CALPAS-P points" in spec.criterion_markdown()


def test_run_json_round_trips(tmp_path):
    spec, trial = runspec.resolve(_params(), root=tmp_path)
    runspec.write(spec, trial)
    back = runspec.load(tmp_path)
    assert back == spec and back.root == tmp_path
    assert list(back.presets["criteria"]) == list(spec.presets["criteria"])  # order kept
    assert str(tmp_path) not in (tmp_path / "data/processed/run.json").read_text()


def test_another_output_root_neither_reads_nor_moves_the_users_current_run(tmp_path, monkeypatch):
    # a test session (nbval re-executing the notebooks by hand) points REPLICATION_OUTPUT_ROOT
    # at a temporary folder: a user's interactive run beside the repository's outputs must not
    # leak into it, nor be replaced as the current run by it
    monkeypatch.delenv(runspec.ENV_SPEC, raising=False)
    monkeypatch.setenv("REPLICATION_OUTPUT_ROOT", str(tmp_path / "user"))
    runspec.open_run(fresh=True, data_source="simulate")
    users = runspec.open_run(criterion="sd", k=1.0)
    pointer = tmp_path / "user" / "runs" / runspec.CURRENT
    before = pointer.read_text(encoding="utf-8")
    assert users.root == tmp_path / "user" / "runs" / "simulated-criterion-sd-k-1.0"
    monkeypatch.setenv("REPLICATION_OUTPUT_ROOT", str(tmp_path / "tests"))
    base = runspec.open_run(fresh=True, data_source="simulate")
    assert base.root == tmp_path / "tests" and runspec.open_run(outcome="pss_i") == base
    other = runspec.open_run(criterion="sd", k=1.0)
    assert other.root == tmp_path / "tests" / "runs" / "simulated-criterion-sd-k-1.0"
    assert pointer.read_text(encoding="utf-8") == before


def test_a_run_recorded_before_a_parameter_existed_has_its_default(tmp_path, monkeypatch, capsys):
    # after an update adds a parameter, the current run's run.json lacks it: the notebooks run by
    # hand with the default parameters are still the default run, not a new "simulated" one
    import json

    monkeypatch.delenv(runspec.ENV_SPEC, raising=False)
    monkeypatch.setenv("REPLICATION_OUTPUT_ROOT", str(tmp_path))
    base = runspec.open_run(fresh=True, data_source="simulate")
    other = runspec.open_run(criterion="sd", k=1.0)  # the current run, recorded before the update
    capsys.readouterr()
    path = runspec.spec_path(other.root)
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["params"].pop("settings_reference_n") == 20000
    path.write_text(json.dumps(stored), encoding="utf-8")
    back = runspec.open_run(criterion="rci", k=2.0)  # notebook 02 by hand, at its defaults
    assert back == base and capsys.readouterr().out == ""
    assert sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir()) == [other.root.name]


def test_a_declared_instrument_is_used_everywhere(tmp_path):
    _own_trial(tmp_path, scale=(1.0, 4 / 6), instruments_yaml=(
        "instruments:\n  alliance: {name: WAI-SR, range: [1, 5], reliability: 0.9, reliability_source: manual}\n"
        "  symptoms: {name: PCL-5, range: [0, 80]}\n"))
    spec, _ = runspec.resolve(_params(data_source=str(tmp_path)))
    assert spec.instruments["alliance"].name == "WAI-SR" and spec.criterion["reliability"] == 0.9
    assert spec.criterion["reliability_source"] == "manual"
    assert spec.presets["criteria"]["rci"]["reliability"] == 0.9  # the multiverse uses the run's reliability
    assert spec.presets["criteria"]["sudden"]["reliability"] == 0.9
    assert spec.axis_label("alliance") == "WAI-SR alliance (mean item score, 1-5)"
    assert spec.origins["alliance"] == "declared" and spec.defaulted == ["interview", "depression"]
    assert not spec.same_design and spec.root == paths.runs_root() / "own-trial"


def test_an_undeclared_role_is_a_default_the_run_says_so(tmp_path):
    _own_trial(tmp_path, instruments_yaml="instruments:\n  alliance: {name: CALPAS-P, range: [1, 7], reliability: 0.8}\n")
    spec, _ = runspec.resolve(_params(data_source=str(tmp_path)))
    assert "symptoms" in spec.defaulted and "alliance" not in spec.defaulted
    assert "the replication's default" in spec.instruments_markdown()


def test_a_missing_reliability_fails_before_any_notebook_and_names_the_fix(tmp_path):
    _own_trial(tmp_path, instruments_yaml="instruments:\n  alliance: {name: HAq-II, range: [1, 7]}\n")
    with pytest.raises(checks.ParameterError, match=r"reliability.*HAq-II.*instruments.alliance.reliability"):
        runspec.resolve(_params(data_source=str(tmp_path)))
    spec, _ = runspec.resolve(_params(data_source=str(tmp_path), criterion="absolute"))
    assert spec.presets["left_out"] == ["rci", "sudden"] and "rci" not in spec.presets["criteria"]


def test_the_pattern_model_takes_the_runs_reliability_and_its_smallest_drop_from_the_data():
    from helpers import pattern_model

    spec, trial = runspec.resolve(_params())
    m = spec.pattern_model
    assert m["fitted"] and m["reliability"] == spec.criterion["reliability"] == 0.83
    wide = trial.sessions.pivot(index="participant_id", columns="session", values="alliance").to_numpy()
    assert m["min_drop"] == pytest.approx(pattern_model.default_min_drop(wide, 0.83), rel=1e-9)
    assert m["sd"] == pytest.approx(spec.criterion["threshold"]["sd"], rel=1e-9)  # the RCI's SD of first ratings
    assert (m["seed"], m["min_sessions"], m["repair_max"]) == (spec.params["seed"], 6, 3)
    assert "0.52 CALPAS-P points" in spec.pattern_model_markdown()
    # --set reliability reaches the model as it reaches the criterion
    other, _ = runspec.resolve(_params(reliability=0.7))
    assert other.pattern_model["reliability"] == 0.7
    assert other.pattern_model["min_drop"] == pytest.approx(m["min_drop"] * np.sqrt(0.3 / 0.17), rel=1e-8)


def test_without_a_reliability_the_pattern_model_is_not_fitted_and_says_why(tmp_path):
    _own_trial(tmp_path, instruments_yaml="instruments:\n  alliance: {name: HAq-II, range: [1, 7]}\n")
    spec, _ = runspec.resolve(_params(data_source=str(tmp_path), criterion="absolute"))
    assert not spec.pattern_model["fitted"] and spec.pattern_model["min_drop"] is None
    assert "HAq-II declares none" in spec.pattern_model_markdown()
    assert runspec.RunSpec.from_json(spec.to_json(), tmp_path).pattern_model == spec.pattern_model


def test_a_criterion_that_is_no_preset_is_a_row_of_its_own():
    spec, _ = runspec.resolve(_params(criterion="sd", k=1.5))
    assert spec.presets["default"] == "sd (this run)"
    assert spec.presets["criteria"]["sd (this run)"] == {"criterion": "sd", "k": 1.5, "scale": "stricter"}


def test_no_observed_alliance_rating_is_refused_before_any_notebook(tmp_path):
    _own_trial(tmp_path, instruments_yaml="")
    s = pd.read_csv(tmp_path / "sessions.csv").assign(alliance=np.nan)
    s.to_csv(tmp_path / "sessions.csv", index=False)
    with pytest.raises(DataValidationError, match="no client has an observed alliance rating"):
        runspec.resolve(_params(data_source=str(tmp_path)))


def test_too_few_ratings_for_anybody_to_be_classified_is_refused():
    with pytest.raises(checks.ParameterError, match="min_sessions=5"):
        runspec.resolve(_params(n_sessions=5, min_sessions=6))


@pytest.mark.parametrize("declared, scale, warned", [
    ("[1, 7]", (1.0, 5 / 6), True),     # a 1-6 scale declared 1-7: ceiling at 6
    ("[1, 7]", (1.0, 4 / 6), True),     # a 1-5 scale declared 1-7: a third of the range unused
    ("[1, 6]", (1.0, 5 / 6), False),
])
def test_range_warnings_compare_observed_scores_with_the_declared_range(tmp_path, declared, scale, warned):
    _own_trial(tmp_path, scale=scale, n=80, instruments_yaml=(
        f"instruments:\n  alliance: {{name: X, range: {declared}, reliability: 0.8}}\n"))
    s = pd.read_csv(tmp_path / "sessions.csv")
    top = scale[0] + 6 * scale[1]  # clients at the scale's ceiling, as real ratings have
    s.loc[s.index[:30], "alliance"] = top
    s.to_csv(tmp_path / "sessions.csv", index=False)
    spec, _ = runspec.resolve(_params(data_source=str(tmp_path)))
    assert any("alliance scores" in w for w in spec.dataset["warnings"]) == warned


def test_valid_scores_of_a_clinical_sample_are_not_warned_about():
    # symptom scores that start high (an inclusion criterion) and never reach the maximum
    p = pd.DataFrame({"pss_sr_pre": np.linspace(33, 76, 50), "pss_sr_post": np.linspace(5, 70, 50)})
    pcl5 = instruments.Instrument("PCL-5", 0, 80)
    assert instruments.range_fit_warnings({"participants": p}, {"symptoms": pcl5}) == []


def test_the_runners_spec_is_the_notebooks(tmp_path, monkeypatch):
    spec, trial = runspec.resolve(_params(), root=tmp_path)
    runspec.write(spec, trial)
    monkeypatch.setenv(runspec.ENV_SPEC, str(runspec.spec_path(tmp_path)))
    assert runspec.open_run(criterion="rci") == spec
    with pytest.raises(ValueError, match="not the run's"):
        runspec.open_run(criterion="sd")


def test_a_notebook_run_by_hand_with_other_parameters_writes_under_runs(tmp_path, monkeypatch):
    monkeypatch.delenv(runspec.ENV_SPEC, raising=False)
    monkeypatch.setenv("REPLICATION_OUTPUT_ROOT", str(tmp_path / "published"))
    base = runspec.open_run(fresh=True, data_source="simulate")
    assert base.root == tmp_path / "published" and runspec.spec_path(base.root).is_file()
    assert runspec.open_run(criterion="rci") == base  # the same parameters: the same run
    (base.out.tables).mkdir(parents=True)
    (base.out.tables / "from_02.csv").write_text("x\n")  # an output of an earlier notebook
    other = runspec.open_run(criterion="sd", k=1.0)
    assert other.root == tmp_path / "published" / "runs" / "simulated-criterion-sd-k-1.0"
    assert (other.out.processed / "sessions.csv").is_file() and other.params["criterion"] == "sd"
    assert (other.out.tables / "from_02.csv").is_file()  # seeded: the next notebooks find their inputs
    assert runspec.load(tmp_path / "published") == base  # the published run is untouched
    # the next notebook run by hand, with its own parameters at their defaults, continues that run
    assert runspec.open_run(outcome="pss_i") == other
    # back to the default parameters: the published run again
    assert runspec.open_run(criterion="rci", k=2.0) == base
    assert runspec.open_run(outcome="pss_i") == base
