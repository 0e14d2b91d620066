"""Fail fast: parameters and data are checked before the first notebook, and each message
names the parameter (or file and key) and the fix."""

import pytest

from helpers import checks, paths, pipeline, runspec
from helpers.contract import DataValidationError
from helpers.descriptor import DescriptorError


def _params(**overrides):
    return {**pipeline.load_params(), **overrides}


def test_default_parameters_pass():
    spec, trial = runspec.resolve(_params())
    assert spec.default_run and trial.truth is not None


@pytest.mark.parametrize("key, value, words", [
    ("criterion", "RCI", "did you mean --set criterion=rci?"),
    ("criterion", "reliable", "is not one of ['absolute', 'sd', 'rci', 'sudden']"),
    ("outcome", "pcl", "is not one of ['pss_i', 'pss_sr']"),
    ("sd_scale", "strict", "did you mean --set sd_scale=stricter?"),
    ("reliability", 1.2, "expected a number > 0 and <= 0.999999 (or null)"),
    ("min_sessions", 2.5, "expected a whole number >= 2"),
    ("k", -1, "expected a number > 0"),
    ("power_sample_sizes", [5], "list of whole numbers >= 10"),
    ("settings_replications", 1, "expected a whole number >= 2 (or null)"),
    ("settings_reference_n", 50.5, "expected a whole number >= 100"),
])
def test_a_wrong_parameter_is_named_with_the_fix(key, value, words):
    with pytest.raises(checks.ParameterError) as err:
        checks.check_parameters(_params(**{key: value}))
    assert err.value.key == key and words in str(err.value)


def test_a_misspelt_data_folder_is_named_with_the_closest_one():
    with pytest.raises(FileNotFoundError, match=r"'data_source'.*example_other_trail does not exist; "
                                                r"did you mean .*example_other_trial"):
        runspec.resolve(_params(data_source=str(paths.RAW / "example_other_trail")))


def test_the_data_are_loaded_before_any_notebook(tmp_path):
    _, trial = runspec.resolve(_params(data_source=str(paths.RAW / "example_other_trial")))
    assert len(trial.participants) == 60
    (tmp_path / "dataset.yaml").write_text("name: x\nfiles: {sessions: a.csv, participants: a.csv}\n")
    with pytest.raises(DescriptorError, match="files.sessions: file not found"):
        runspec.resolve(_params(data_source=str(tmp_path)))
    (tmp_path / "dataset.yaml").unlink()
    (tmp_path / "sessions.csv").write_text("participant_id,session,alliance\n1,1,9\n")
    (tmp_path / "participants.csv").write_text("participant_id,pss_sr_pre\n1,20\n")
    with pytest.raises(DataValidationError, match="score out of range"):
        runspec.resolve(_params(data_source=str(tmp_path)))


def test_only_the_default_run_publishes_into_the_repository(monkeypatch):
    monkeypatch.delenv("REPLICATION_OUTPUT_ROOT", raising=False)
    assert runspec.resolve(_params())[0].root == paths.ROOT
    own = runspec.resolve(_params(data_source=str(paths.RAW / "example_other_trial")))[0].root
    assert own == paths.ROOT / "runs" / "other-trial-simulated-example"
    variant = runspec.resolve(_params(seed=7, criterion="sd"))[0].root
    assert variant == paths.ROOT / "runs" / "simulated-criterion-sd-seed-7"
    with pytest.raises(pipeline.PipelineError, match="only the default run"):
        pipeline.run(_params(seed=7), refresh_notebooks=True, output_root=paths.ROOT / "runs" / "x")


def test_help_lists_every_parameter_with_its_default():
    text = pipeline.parameter_help()
    for key, value in pipeline.load_params().items():
        assert f"  {key} (default " in text, key
