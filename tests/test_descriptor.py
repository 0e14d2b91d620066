"""Dataset descriptors and instruments: another trial declared once, read without renaming by
hand; every mistake named by file, key or column, with the fix."""

import shutil
import warnings

import pandas as pd
import pytest

from helpers import descriptor, instruments, paths
from helpers.contract import DataValidationError
from helpers.data import DataWarning

OTHER = paths.RAW / "example_other_trial"


def _load(source):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trial = descriptor.load_dataset(source)
    return trial, [str(w.message) for w in caught]


def test_the_worked_example_loads_as_declared():
    trial, messages = _load(OTHER)
    assert trial.source == "Other trial (simulated example)"
    assert trial.participants["participant_id"].nunique() == 60
    assert sorted(trial.sessions["session"].unique()) == list(range(1, 13))
    assert trial.meta["n_sessions"] == 12  # inferred: the descriptor does not say
    raw = pd.read_excel(OTHER / "trial.xlsx", sheet_name="data")
    # codes: gender 2 -> female; scales kept in their own points (PCL-5 up to 80, WAI-SR 1-5)
    assert trial.participants.set_index("participant_id")["female"].to_dict() == \
        dict(zip(raw["ID"], raw["gender"] == 2))
    assert trial.participants["pss_sr_pre"].max() == raw["PCL_pre"].max() > 51
    assert trial.sessions["alliance"].max() <= 5
    assert trial.meta["instruments"]["alliance"]["name"] == "WAI-SR"
    assert {"mdd", "child_abuse", "pss_i_pre", "pss_i_post"} <= set(trial.meta["absent"])
    assert "alliance" in trial.meta["measures"] and "alliance_s1" not in trial.meta["measures"]
    assert any("measures not in this dataset" in m for m in messages)


def _copy(tmp_path, edit=None, table=None):
    folder = tmp_path / "trial"
    shutil.copytree(OTHER, folder)
    if edit:
        text = (folder / "dataset.yaml").read_text()
        for old, new in edit.items():
            assert old in text, old
            text = text.replace(old, new)
        (folder / "dataset.yaml").write_text(text)
    if table is not None:
        with pd.ExcelWriter(folder / "trial.xlsx") as xl:
            pd.DataFrame({"variable": ["x"], "label": ["y"]}).to_excel(xl, sheet_name="codebook", index=False)
            table.to_excel(xl, sheet_name="data", index=False)
    return folder


@pytest.mark.parametrize("edit, key, words", [
    ({"layout: wide": "layout: wide\nsessons: 3"}, "sessons", "unknown key"),
    ({"name: Other trial (simulated example)": "name: ''"}, "name", "give the dataset a name"),
    ({"  sessions: trial.xlsx": "  sessions: trail.xlsx"}, "files.sessions", "file not found"),
    ({"layout: wide": "layout: broad"}, "layout", "not one of auto, long, wide"),
    ({"  age: Age": "  years: Age"}, "columns.years", "not a contract column"),
    ({"range: [0, 80]": "range: [80, 0]"}, "instruments.symptoms", "low < high"),
    ({"reliability: 0.90": "reliability: 90"}, "instruments.alliance", "strictly between 0 and 1"),
    ({"female: {1: false, 2: true}": "female: {1: m, 2: f}"}, "codes.female", "true, false or null"),
    ({"layout: wide": "layout: wide\nn_sessions: 0"}, "n_sessions", "positive whole number"),
])
def test_descriptor_mistakes_name_the_key_and_the_fix(tmp_path, edit, key, words):
    folder = _copy(tmp_path, edit)
    with pytest.raises(descriptor.DescriptorError) as err:
        descriptor.load_dataset(folder)
    assert err.value.key == key and words in str(err.value) and "dataset.yaml" in str(err.value)


def test_a_missing_column_is_named_with_the_closest_ones(tmp_path):
    folder = _copy(tmp_path, {"  age: Age": "  age: AGE_years"})
    with pytest.raises(DataValidationError, match=r"columns.age not found; did you mean \[.*'Age'"):
        descriptor.load_dataset(folder)


def _table():
    return pd.read_excel(OTHER / "trial.xlsx", sheet_name="data")


def test_a_value_without_a_code_is_an_error(tmp_path):
    t = _table()
    t.loc[3, "gender"] = 3
    with pytest.raises(DataValidationError, match=r"'gender'.*\['3'\] have no code in codes.female"):
        descriptor.load_dataset(_copy(tmp_path, table=t))


def test_scores_are_checked_against_the_declared_instrument_and_the_sheet_is_named(tmp_path):
    t = _table()
    t.loc[0, "PCL_3"] = 81
    with pytest.raises(DataValidationError) as err:
        descriptor.load_dataset(_copy(tmp_path, table=t))
    assert "sheet 'data'" in str(err.value) and "score out of range [0, 80]" in str(err.value)


def test_a_scale_declared_wider_than_its_scores_is_warned_about(tmp_path):
    from helpers import runspec

    folder = _copy(tmp_path, {"range: [1, 5]": "range: [1, 7]"})
    spec, _ = runspec.resolve({**runspec.load_params(), "data_source": str(folder)})
    messages = spec.dataset["warnings"]
    assert any("alliance scores (WAI-SR, declared 1-7)" in m for m in messages), messages


def test_long_layout_with_session_labels(tmp_path):
    t = _table()
    long = t.melt(id_vars=["ID"], value_vars=[f"WAI_{s}" for s in range(1, 13)], var_name="visit",
                  value_name="wai")
    long["visit"] = "S" + long["visit"].str.replace("WAI_", "")
    folder = tmp_path / "long"
    folder.mkdir()
    long.to_csv(folder / "sessions.csv", index=False)
    t[["ID", "PCL_pre"]].to_csv(folder / "participants.csv", index=False)
    (folder / "dataset.yaml").write_text(
        "name: long trial\nfiles: {sessions: sessions.csv, participants: participants.csv}\nlayout: long\n"
        "columns: {participant_id: ID, session: visit, alliance: wai, pss_sr_pre: PCL_pre}\n"
        "session_labels: 'S{session}'\n"
        "instruments: {alliance: {name: WAI-SR, range: [1, 5]}, symptoms: {name: PCL-5, range: [0, 80]}}\n")
    trial, _ = _load(folder)
    assert sorted(trial.sessions["session"].unique()) == list(range(1, 13))
    text = (folder / "dataset.yaml").read_text().replace("session_labels: 'S{session}'\n", "")
    (folder / "dataset.yaml").write_text(text)
    with pytest.raises(DataValidationError, match="session"):
        descriptor.load_dataset(folder)


def test_ids_that_differ_between_files_show_both_spellings(tmp_path):
    t = _table()
    folder = tmp_path / "ids"
    folder.mkdir()
    t[["ID"] + [f"WAI_{s}" for s in range(1, 13)]].to_csv(folder / "sessions.csv", index=False)
    p = t[["ID", "PCL_pre"]].assign(ID=t["ID"].str.replace("P", "", regex=False))
    p.to_csv(folder / "participants.csv", index=False)
    (folder / "dataset.yaml").write_text(
        "name: ids\nfiles: {sessions: sessions.csv, participants: participants.csv}\nlayout: wide\n"
        "columns: {participant_id: ID, alliance: 'WAI_{session}', pss_sr_pre: PCL_pre}\n"
        "instruments: {alliance: {name: WAI-SR, range: [1, 5]}, symptoms: {name: PCL-5, range: [0, 80]}}\n")
    with pytest.raises(DataValidationError) as err:
        descriptor.load_dataset(folder)
    assert "P101" in str(err.value) and "'101'" in str(err.value)


def test_instruments_defaults_are_the_papers():
    assert instruments.DEFAULTS["alliance"].label("alliance") == "CALPAS-P alliance (mean item score, 1-7)"
    assert instruments.DEFAULTS["alliance"].reliability == 0.83
    assert instruments.score_ranges(instruments.DEFAULTS)["pss_i_post"] == (0.0, 51.0)
    with pytest.raises(instruments.InstrumentError, match="unknown key"):
        instruments.from_mapping("alliance", {"name": "X", "range": [1, 5], "reliabilty": 0.9})
    assert issubclass(DataWarning, UserWarning)


def test_session_labels_without_a_declaration_are_refused_with_the_hint(tmp_path):
    (tmp_path / "sessions.csv").write_text("participant_id,session,alliance\n1,S1,5\n1,S2,6\n")
    (tmp_path / "participants.csv").write_text("participant_id,pss_sr_pre\n1,20\n")
    with pytest.raises(DataValidationError, match=r"declaring session_labels: 'S\{session\}'"):
        descriptor.load(tmp_path)


def test_a_reversed_columns_entry_is_named_with_the_fix(tmp_path):
    folder = _copy(tmp_path, {"  participant_id: ID": "  ID: participant_id"})
    with pytest.raises(descriptor.DescriptorError, match=r"columns.ID: reversed.*write participant_id: ID"):
        descriptor.read_descriptor(folder / "dataset.yaml")
