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
