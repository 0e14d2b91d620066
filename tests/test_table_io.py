"""Deterministic, atomic table writing."""

import os
import stat

import numpy as np
import pandas as pd
import pytest

from helpers import table_io


def test_write_table_fixes_order_sort_and_float_format(tmp_path):
    df = pd.DataFrame({"session": [2, 1, 1], "participant_id": ["b", "b", "a"], "x": [1 / 3, np.nan, 2.0]})
    path = table_io.write_table(df, tmp_path / "t.csv", columns=["participant_id", "session", "x"])
    assert path.read_text() == "participant_id,session,x\na,1,2.000000\nb,1,\nb,2,0.333333\n"


def test_write_table_names_missing_columns(tmp_path):
    with pytest.raises(KeyError, match="nope"):
        table_io.write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv", columns=["a", "nope"])


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "t.csv"
    target.write_text("previous good table\n")

    # fails inside the write, after the temporary file was created
    with pytest.raises(TypeError):
        table_io.atomic_write_bytes(target, object())
    assert target.read_text() == "previous good table\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_written_files_are_readable_like_ordinary_files(tmp_path):
    path = table_io.atomic_write_text(tmp_path / "r.txt", "x\n")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_read_table_keeps_ids_as_text(tmp_path):
    (tmp_path / "t.csv").write_text("participant_id,score\n007,1.5\n")
    assert table_io.read_table(tmp_path / "t.csv")["participant_id"].tolist() == ["007"]


# ----------------------------------------------------------------------------- processed tables of large trials
def _csv_text(df):
    return "participant_id,x\na,\nb,0.500000\n"  # df as write_table writes it (sorted, 6 decimals)


def test_processed_tables_are_compressed_above_the_threshold_and_read_back(tmp_path):
    df = pd.DataFrame({"participant_id": ["b", "a"], "x": [0.5, np.nan]})
    small = table_io.write_processed(df, tmp_path, "t", n_participants=table_io.COMPRESS_ABOVE)
    assert small.name == "t.csv" and small.read_text() == "participant_id,x\na,\nb,0.500000\n"
    big = table_io.write_processed(df, tmp_path, "t", n_participants=table_io.COMPRESS_ABOVE + 1)
    assert big.name == "t.csv.gz" and not small.exists()  # the other form removed: one table, one file
    import gzip

    assert gzip.decompress(big.read_bytes()).decode() == _csv_text(df)
    pd.testing.assert_frame_equal(table_io.read_processed(tmp_path, "t"), table_io.read_table(big))
    assert table_io.read_processed(tmp_path, "t")["participant_id"].tolist() == ["a", "b"]
    assert table_io.read_processed(tmp_path, "absent") is None


def test_a_compressed_table_has_the_same_bytes_each_time(tmp_path):
    # no time stamp in the gzip header: two runs give byte-identical outputs (the manifest's hashes)
    df = pd.DataFrame({"participant_id": [f"P{i}" for i in range(50)], "x": np.arange(50) / 7})
    first = table_io.write_table(df, tmp_path / "a.csv.gz").read_bytes()
    os.utime(tmp_path / "a.csv.gz", (0, 0))
    assert table_io.write_table(df, tmp_path / "b.csv.gz").read_bytes() == first


def test_both_forms_of_one_processed_table_are_refused(tmp_path):
    (tmp_path / "t.csv").write_text("participant_id\na\n")
    table_io.write_table(pd.DataFrame({"participant_id": ["b"]}), tmp_path / "t.csv.gz")
    with pytest.raises(ValueError, match="both t.csv and t.csv.gz"):
        table_io.read_processed(tmp_path, "t")


def test_a_trial_saved_compressed_loads_back(tmp_path, monkeypatch):
    from helpers import data
    from helpers.simulate import simulate_trial

    trial = simulate_trial(30, 10, seed=4)
    monkeypatch.setattr(table_io, "COMPRESS_ABOVE", 20)
    written = data.save_trial(trial, tmp_path)
    assert [p.name for p in written] == ["sessions.csv.gz", "participants.csv.gz", "truth.csv.gz"]
    back = data.load_trial(tmp_path)
    assert len(back.sessions) == len(trial.sessions) and back.truth is not None
    np.testing.assert_allclose(back.sessions["alliance"], trial.sessions["alliance"].round(6), equal_nan=True)
    # real data saved over it: no stale truth of either form
    data.save_trial(data.Trial(trial.sessions, trial.participants, None), tmp_path)
    assert not list(tmp_path.glob("truth.*"))


def test_a_broken_gzip_file_is_refused_naming_it(tmp_path):
    from helpers import data
    from helpers.contract import DataValidationError

    (tmp_path / "sessions.csv.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(DataValidationError, match="sessions.csv.gz.*not a readable gzip file"):
        data.load_trial(tmp_path / "sessions.csv.gz", tmp_path / "sessions.csv.gz")
