"""Tests of helpers.data: loading, converting and validating a user's own trial data.

Every input is a small hand-made table written to ``tmp_path``; the expected tables are
written out by hand below (not produced by the loader), so a wrong conversion fails.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import contract, data
from helpers.data import DataValidationError, DataWarning, load_trial

NA = np.nan

# --------------------------------------------------------------------------------------
# Hand-made trial: 3 participants x 3 sessions. P10's session 3 has no scores at all (a row
# of missing values), P02 has a missing alliance and a missing PSS-SR.
# --------------------------------------------------------------------------------------
EXPECTED_SESSIONS = pd.DataFrame(
    {
        "participant_id": pd.Series(["P01"] * 3 + ["P02"] * 3 + ["P10"] * 3, dtype="str"),
        "session": np.array([1, 2, 3] * 3, dtype="int64"),
        "alliance": [5.5, 6.0, 6.25, 4.0, NA, 3.5, 7.0, 1.0, NA],
        "pss_sr": [30.0, 28.0, 21.5, 40.0, 41.0, NA, 12.0, 10.0, NA],
    }
)

EXPECTED_PARTICIPANTS = pd.DataFrame(
    {
        "participant_id": pd.Series(["P01", "P02", "P10"], dtype="str"),
        "pss_sr_pre": [31.0, 45.0, 20.0],
        "pss_sr_post": [15.0, NA, 9.0],
        "pss_i_pre": [29.0, 38.0, 18.0],
        "pss_i_post": [14.0, NA, 8.0],
        "bdi_pre": [22.0, 30.0, 10.0],
        "bdi_post": [8.0, NA, 4.0],
        "mdd": pd.array([True, False, pd.NA], dtype="boolean"),
        "child_abuse": pd.array([False, True, False], dtype="boolean"),
        "female": pd.array([True, False, True], dtype="boolean"),
        "caucasian": pd.array([True, pd.NA, False], dtype="boolean"),
        "age": [34.0, 52.5, 18.0],
    }
)


def long_sessions() -> pd.DataFrame:
    """The sessions as a user might store them: long, rows not in sorted order."""
    df = EXPECTED_SESSIONS.astype({"participant_id": object}).copy()
    return df.iloc[[8, 0, 4, 2, 6, 1, 3, 5, 7]].reset_index(drop=True)


def wide_sessions(style="_s") -> pd.DataFrame:
    """The same sessions in wide layout, written out by hand (not with the loader)."""
    cols = {"participant_id": ["P02", "P10", "P01"]}
    rows = {"P01": (0, 1, 2), "P02": (3, 4, 5), "P10": (6, 7, 8)}
    for measure in ("alliance", "pss_sr"):
        for s in (1, 2, 3):
            cols[f"{measure}{style}{s}"] = [
                EXPECTED_SESSIONS[measure].iloc[rows[pid][s - 1]] for pid in cols["participant_id"]
            ]
    return pd.DataFrame(cols)


def participants_table() -> pd.DataFrame:
    df = EXPECTED_PARTICIPANTS.astype({c: object for c in contract.BOOL_COLUMNS}).copy()
    df["participant_id"] = df["participant_id"].astype(object)
    for c in contract.BOOL_COLUMNS:
        df[c] = [None if v is pd.NA else bool(v) for v in EXPECTED_PARTICIPANTS[c]]
    return df.iloc[[2, 0, 1]].reset_index(drop=True)


def write(df: pd.DataFrame, path, **csv_kw):
    """Write ``df`` in the format named by the suffix of ``path``."""
    path = os.fspath(path)
    if path.endswith((".csv", ".txt")):
        df.to_csv(path, index=False, **csv_kw)
    elif path.endswith(".xlsx"):
        df.to_excel(path, index=False, engine="openpyxl")
    elif path.endswith(".sav"):
        import pyreadstat

        out = df.copy()
        for c in out.columns:
            if c in contract.BOOL_COLUMNS:  # SPSS has no booleans: 1/0 codes
                out[c] = [NA if v is None else float(v) for v in out[c]]
        pyreadstat.write_sav(out, path, **csv_kw)
    else:
        raise ValueError(path)
    return path


def assert_trial_equal(trial, sessions=EXPECTED_SESSIONS, participants=EXPECTED_PARTICIPANTS):
    pd.testing.assert_frame_equal(trial.sessions, sessions)
    pd.testing.assert_frame_equal(trial.participants, participants)


@pytest.fixture
def good(tmp_path):
    s = write(long_sessions(), tmp_path / "sessions.csv")
    p = write(participants_table(), tmp_path / "participants.csv")
    return s, p


# --------------------------------------------------------------------------------------
# Good inputs
# --------------------------------------------------------------------------------------
def test_long_csv_gives_contract_tables(good):
    trial = load_trial(*good)
    assert_trial_equal(trial)
    assert list(trial.sessions.columns) == contract.SESSION_COLUMNS
    assert list(trial.participants.columns) == contract.PARTICIPANT_COLUMNS
    assert trial.truth is None and not trial.simulated
    assert trial.n_sessions == 3 and trial.meta["layout"] == "long"
    assert trial.meta["read"][good[0]]["delimiter"] == ","


@pytest.mark.parametrize("fmt", ["csv", "txt", "xlsx", "sav"])
@pytest.mark.parametrize("layout", ["long", "wide"])
def test_formats_and_layouts_round_trip(tmp_path, fmt, layout):
    sessions = long_sessions() if layout == "long" else wide_sessions()
    s = write(sessions, tmp_path / f"s.{fmt}")
    p = write(participants_table(), tmp_path / f"p.{fmt}")
    trial = load_trial(s, p)
    assert_trial_equal(trial)
    assert trial.meta["layout"] == layout
    forced = load_trial(s, p, layout=layout)
    assert_trial_equal(forced)


@pytest.mark.parametrize("style", ["_s", "_", ""])
def test_wide_column_styles(tmp_path, style):
    s = write(wide_sessions(style), tmp_path / "s.csv")
    p = write(participants_table(), tmp_path / "p.csv")
    assert_trial_equal(load_trial(s, p))


def test_wide_sessions_of_zero_padded_names(tmp_path):
    df = wide_sessions().rename(columns=lambda c: re.sub(r"_s(\d)$", r"_s0\1", c))
    assert "alliance_s01" in df.columns
    s = write(df, tmp_path / "s.csv")
    p = write(participants_table(), tmp_path / "p.csv")
    assert_trial_equal(load_trial(s, p))


def test_one_wide_file_holds_both_tables(tmp_path):
    both = wide_sessions().merge(participants_table(), on="participant_id")
    f = write(both, tmp_path / "trial.sav")
    trial = load_trial(f, f)
    assert_trial_equal(trial)
    assert "pss_sr_pre" in trial.meta["extra_columns"]["sessions"]
    assert "alliance_s1" in trial.meta["extra_columns"]["participants"]


def test_folder_input(tmp_path, good):
    (tmp_path / "notes.md").write_text("ignored")
    trial = load_trial(tmp_path)
    assert_trial_equal(trial)
    assert trial.meta["files"]["sessions"].endswith("sessions.csv")


def test_folder_with_two_sessions_files_is_an_error(tmp_path, good):
    write(long_sessions(), tmp_path / "sessions.xlsx")
    with pytest.raises(DataValidationError, match=r"exactly one sessions\.\*"):
        load_trial(tmp_path)


def test_folder_without_participants_is_an_error(tmp_path):
    write(long_sessions(), tmp_path / "sessions.csv")
    with pytest.raises(DataValidationError, match=r"exactly one participants\.\*.*none"):
        load_trial(tmp_path)


def test_sessions_file_without_participants_is_an_error(good):
    with pytest.raises(DataValidationError, match="no participants table") as exc:
        load_trial(good[0])
    assert "sessions.csv" in str(exc.value)


def test_missing_path_raises_file_not_found(tmp_path, good):
    with pytest.raises(FileNotFoundError):
        load_trial(tmp_path / "nope.csv", good[1])


def test_excel_and_spss_numeric_ids_become_whole_number_text(tmp_path):
    s = long_sessions().assign(participant_id=lambda d: d["participant_id"].str[1:].astype(int))
    p = participants_table().assign(
        participant_id=lambda d: d["participant_id"].str[1:].astype(float)  # SPSS stores floats
    )
    new_ids = {"P01": "1", "P02": "2", "P10": "10"}
    # ids are text, so "10" sorts before "2": P01, P10, P02
    exp_s = EXPECTED_SESSIONS.iloc[[0, 1, 2, 6, 7, 8, 3, 4, 5]].reset_index(drop=True)
    exp_s["participant_id"] = exp_s["participant_id"].map(new_ids).astype("str")
    exp_p = EXPECTED_PARTICIPANTS.iloc[[0, 2, 1]].reset_index(drop=True)
    exp_p["participant_id"] = exp_p["participant_id"].map(new_ids).astype("str")
    trial = load_trial(write(s, tmp_path / "s.xlsx"), write(p, tmp_path / "p.sav"))
    assert_trial_equal(trial, exp_s, exp_p)
    assert trial.participants["participant_id"].tolist() == ["1", "10", "2"]


def test_spss_value_labels_are_ignored_codes_used(tmp_path):
    s = write(long_sessions(), tmp_path / "s.sav")
    p = write(participants_table(), tmp_path / "p.sav",
              variable_value_labels={"female": {0: "male", 1: "female"},
                                     "mdd": {0: "no", 1: "yes"}})
    trial = load_trial(s, p)
    assert_trial_equal(trial)
    assert trial.meta["read"][p]["value_labels_ignored"] == ["female", "mdd"]


def test_missing_value_tokens(tmp_path):
    text = ("participant_id,session,alliance,pss_sr\n"
            "a,1,NA,.\n" "a,2,, 30 \n" "a,3,nan,N/A\n")
    (tmp_path / "s.csv").write_text(text)
    write(pd.DataFrame({"participant_id": ["a"], "pss_sr_pre": [30]}), tmp_path / "p.csv")
    with pytest.warns(DataWarning):
        trial = load_trial(tmp_path / "s.csv", tmp_path / "p.csv")
    assert trial.sessions["alliance"].isna().all()
    assert trial.sessions["pss_sr"].tolist()[1] == 30.0
    assert np.isnan(trial.sessions["pss_sr"].tolist()[0])


def test_blank_lines_and_trailing_delimiters_are_ignored(tmp_path):
    text = ("participant_id;session;alliance;pss_sr;\n" "a;1;5,5;30;\n" ";;;;\n" "\n"
            "a;2;6;29;\n" ";;;;\n")
    (tmp_path / "s.csv").write_text(text)
    write(participants_table().iloc[:0].pipe(lambda d: pd.concat(
        [d, pd.DataFrame({"participant_id": ["a"], "pss_sr_pre": [31.0]})])), tmp_path / "p.csv")
    trial = load_trial(tmp_path / "s.csv", tmp_path / "p.csv")
    assert trial.sessions["alliance"].tolist() == [5.5, 6.0]
    assert trial.meta["read"][str(tmp_path / "s.csv")]["decimal"] == ","


def test_bool_spellings(tmp_path):
    p = pd.DataFrame({
        "participant_id": list("abcdefghijkl"),
        "pss_sr_pre": [20] * 12,
        "mdd": ["True", "false", "TRUE", "1", "0", "yes", "No", "Y", "n", "", "1.0", "NA"],
    })
    with pytest.warns(DataWarning, match="child_abuse"):
        out = data.validate_participants(p, file="p_table")
    expected = [True, False, True, True, False, True, False, True, False, pd.NA, True, pd.NA]
    assert out["mdd"].dtype == "boolean"
    assert out["mdd"].tolist() == expected


def test_missing_optional_columns_warn_and_are_recorded(tmp_path):
    s = write(long_sessions().drop(columns="pss_sr"), tmp_path / "s.csv")
    # "Age" is not the contract's "age": it is dropped, and the warning points at it.
    p = participants_table()[["participant_id", "pss_sr_pre", "female", "age"]]
    p = write(p.rename(columns={"age": "Age"}), tmp_path / "p.csv")
    with pytest.warns(DataWarning) as record:
        trial = load_trial(s, p)
    messages = " ".join(str(w.message) for w in record)
    assert "pss_sr" in messages and "bdi_post" in messages and "'Age'" in messages
    assert trial.meta["missing_columns"]["sessions"] == ["pss_sr"]
    assert "age" in trial.meta["missing_columns"]["participants"]
    assert trial.meta["extra_columns"]["participants"] == ["Age"]
    assert trial.meta["warnings"] and len(trial.meta["warnings"]) == 2
    assert trial.sessions["pss_sr"].isna().all() and trial.sessions["pss_sr"].dtype == "float64"
    assert trial.participants["mdd"].dtype == "boolean" and trial.participants["mdd"].isna().all()
    assert trial.participants["female"].tolist() == [True, False, True]


def test_extra_columns_dropped_and_listed(tmp_path):
    s = write(long_sessions().assign(therapist="T1", wai=3.0), tmp_path / "s.csv")
    p = write(participants_table().assign(site="CWRU"), tmp_path / "p.csv")
    trial = load_trial(s, p)
    assert_trial_equal(trial)
    assert trial.meta["extra_columns"] == {"sessions": ["therapist", "wai"],
                                           "participants": ["site"]}


def test_several_sheets_warn(tmp_path):
    path = tmp_path / "s.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as xl:
        long_sessions().to_excel(xl, sheet_name="alliance", index=False)
        pd.DataFrame({"x": [1]}).to_excel(xl, sheet_name="notes", index=False)
    p = write(participants_table(), tmp_path / "p.csv")
    with pytest.warns(DataWarning, match="several sheets"):
        trial = load_trial(path, p)
    assert_trial_equal(trial)
    assert trial.meta["read"][str(path)]["sheet"] == "alliance"


# --------------------------------------------------------------------------------------
# Encodings and dialects
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, dialect",
    [
        ({"encoding": "utf-8-sig"}, {"delimiter": ",", "decimal": ".", "bom": True}),
        ({"sep": ";", "decimal": ","}, {"delimiter": ";", "decimal": ","}),
        ({"sep": ";", "decimal": ",", "encoding": "utf-8-sig"},
         {"delimiter": ";", "decimal": ",", "bom": True}),
        ({"sep": "\t", "encoding": "utf-16"}, {"delimiter": "\t", "encoding": "utf-16"}),
    ],
    ids=["bom", "semicolon-decimal-comma", "bom-semicolon", "excel-unicode-text"],
)
def test_dialects_load_like_the_clean_csv(tmp_path, kw, dialect):
    s = write(long_sessions(), tmp_path / "s.csv", **kw)
    p = write(participants_table(), tmp_path / "p.csv", **kw)
    trial = load_trial(s, p)
    assert_trial_equal(trial)
    for f in (s, p):
        read = trial.meta["read"][f]
        assert {k: read[k] for k in dialect} == dialect


def test_semicolon_file_really_has_decimal_commas(tmp_path):
    s = write(long_sessions(), tmp_path / "s.csv", sep=";", decimal=",")
    assert "5,5" in open(s, encoding="utf-8").read()  # the test exercises what it claims


def test_non_utf8_file_is_refused_with_position(tmp_path, good):
    path = tmp_path / "latin.csv"
    path.write_bytes("participant_id,session,alliance,pss_sr\nRen\u00e9,1,5,30\n".encode("cp1252"))
    with pytest.raises(DataValidationError) as exc:
        load_trial(path, good[1])
    msg = str(exc.value)
    assert "latin.csv" in msg and "UTF-8" in msg and "0xe9" in msg
    assert "byte position 42" in msg and "line 2" in msg and "cp1252" in msg


def test_explicit_encoding_is_used_and_recorded(tmp_path):
    s = tmp_path / "s.csv"
    s.write_bytes("participant_id,session,alliance,pss_sr\nRen\u00e9,1,5,30\n".encode("cp1252"))
    p = tmp_path / "p.csv"
    p.write_bytes("participant_id,pss_sr_pre\nRen\u00e9,30\n".encode("cp1252"))
    with pytest.warns(DataWarning):
        trial = load_trial(s, p, encoding="cp1252")
    assert trial.sessions["participant_id"].tolist() == ["Ren\u00e9"]
    assert trial.meta["read"][str(s)]["encoding"] == "cp1252"


def test_input_files_are_not_changed(tmp_path):
    paths = [
        write(long_sessions(), tmp_path / "s.csv", sep=";", decimal=",", encoding="utf-8-sig"),
        write(participants_table(), tmp_path / "p.xlsx"),
        write(wide_sessions(), tmp_path / "w.sav"),
    ]
    before = {p: (hashlib.sha256(open(p, "rb").read()).hexdigest(), os.stat(p).st_mtime_ns)
              for p in paths}
    listing = sorted(os.listdir(tmp_path))
    load_trial(paths[0], paths[1])
    load_trial(paths[2], paths[1])
    after = {p: (hashlib.sha256(open(p, "rb").read()).hexdigest(), os.stat(p).st_mtime_ns)
             for p in paths}
    assert after == before
    assert sorted(os.listdir(tmp_path)) == listing  # no side files (locks, caches) either


# --------------------------------------------------------------------------------------
# Mapping
# --------------------------------------------------------------------------------------
def test_flat_mapping(tmp_path):
    s = write(long_sessions().rename(columns={"participant_id": "ID", "alliance": "calpas"}),
              tmp_path / "s.csv")
    p = write(participants_table().rename(columns={"participant_id": "ID", "age": "Alter"}),
              tmp_path / "p.csv")
    mapping = {"participant_id": "ID", "alliance": "calpas", "age": "Alter"}
    trial = load_trial(s, p, mapping=mapping)
    assert_trial_equal(trial)
    assert trial.meta["mapping"]["sessions"] == {"ID": "participant_id", "calpas": "alliance"}


def test_nested_mapping_and_wide_stems(tmp_path):
    w = wide_sessions().rename(columns=lambda c: c.replace("alliance", "CALPAS"))
    s = write(w.rename(columns={"participant_id": "client"}), tmp_path / "s.xlsx")
    p = write(participants_table().rename(columns={"participant_id": "ID"}), tmp_path / "p.csv")
    mapping = {"sessions": {"participant_id": "client", "alliance": "CALPAS"},
               "participants": {"participant_id": "ID"}}
    trial = load_trial(s, p, mapping=mapping)
    assert_trial_equal(trial)
    assert trial.meta["mapping"]["sessions"]["CALPAS_s2"] == "alliance_s2"


def test_mapping_key_not_found_is_named(good):
    with pytest.raises(DataValidationError, match="column named by the mapping not found") as exc:
        load_trial(*good, mapping={"alliance": "calpas_total"})
    assert "'calpas_total'" in str(exc.value) and "sessions.csv" in str(exc.value)


def test_nested_mapping_key_must_be_in_its_own_table(good):
    with pytest.raises(DataValidationError, match="column named by the mapping not found") as exc:
        load_trial(*good, mapping={"participants": {"alliance": "alliance"}})
    assert "participants.csv" in str(exc.value)


def test_mapping_target_outside_contract(good):
    with pytest.raises(DataValidationError, match="not a column of the data contract"):
        load_trial(*good, mapping={"calpas": "other"})


def test_a_reversed_mapping_is_named_with_the_fix(good):
    with pytest.raises(DataValidationError, match=r"looks reversed.*\{'alliance': 'calpas'\}"):
        load_trial(*good, mapping={"calpas": "alliance"})


def test_mapping_onto_existing_column(good):
    with pytest.raises(DataValidationError, match="duplicate column name after applying"):
        load_trial(*good, mapping={"alliance": "pss_sr"})


def test_missing_column_error_suggests_mapping(tmp_path):
    s = write(long_sessions().rename(columns={"alliance": "Alliance"}), tmp_path / "s.csv")
    p = write(participants_table(), tmp_path / "p.csv")
    with pytest.raises(DataValidationError, match=r"mapping=\{'alliance': 'Alliance'\}"):
        load_trial(s, p)


# --------------------------------------------------------------------------------------
# Bad inputs: each breaks one rule; the message names file, column and rule
# --------------------------------------------------------------------------------------
def _set(df, row, col, value):
    df = df.astype({col: object}) if col in df.columns else df
    df.loc[row, col] = value
    return df


BAD_TABLES = [
    # (id, table, change, column, rule phrase, load_trial kwargs)
    ("no-alliance", "s", lambda d: d.drop(columns="alliance"), "alliance",
     "missing required column", {}),
    ("no-id", "s", lambda d: d.drop(columns="participant_id"), "participant_id",
     "missing required column", {}),
    ("no-session", "s", lambda d: d.drop(columns="session"), "session",
     "missing required column", {"layout": "long"}),
    ("no-layout", "s", lambda d: d.drop(columns="session"), "session",
     "neither a 'session' column", {}),
    ("no-pss_sr_pre", "p", lambda d: d.drop(columns="pss_sr_pre"), "pss_sr_pre",
     "missing required column", {}),
    ("non-numeric", "s", lambda d: _set(d, 3, "alliance", "high"), "alliance",
     "non-numeric score", {}),
    ("non-numeric-underscore", "s", lambda d: _set(d, 3, "pss_sr", "3_0"), "pss_sr",
     "non-numeric score", {}),
    ("alliance>7", "s", lambda d: _set(d, 3, "alliance", 7.5), "alliance",
     "score out of range [1, 7]", {}),
    ("alliance<1", "s", lambda d: _set(d, 3, "alliance", 0), "alliance",
     "score out of range [1, 7]", {}),
    ("pss_sr>51", "s", lambda d: _set(d, 0, "pss_sr", 52), "pss_sr",
     "score out of range [0, 51]", {}),
    ("bdi>63", "p", lambda d: _set(d, 0, "bdi_pre", 64), "bdi_pre",
     "score out of range [0, 63]", {}),
    ("age<18", "p", lambda d: _set(d, 0, "age", 17), "age", "score out of range [18, 65]", {}),
    ("pss_i-negative", "p", lambda d: _set(d, 1, "pss_i_post", -1), "pss_i_post",
     "score out of range", {}),
    ("sentinel-999", "s", lambda d: _set(d, 2, "pss_sr", -999), "pss_sr",
     "score out of range", {}),
    ("infinite", "s", lambda d: _set(d, 2, "alliance", "inf"), "alliance", "non-numeric", {}),
    ("duplicate-session", "s", lambda d: _set(d, 5, "session", 1), "session",
     "duplicate participant_id x session", {}),
    ("duplicate-after-strip", "s", lambda d: _set(d, 4, "participant_id", " P01 "), "session",
     "duplicate participant_id x session", {}),
    ("session-0", "s", lambda d: _set(d, 1, "session", 0), "session",
     "session is not a positive integer", {}),
    ("session-negative", "s", lambda d: _set(d, 1, "session", -1), "session",
     "session is not a positive integer", {}),
    ("session-fraction", "s", lambda d: _set(d, 1, "session", 2.5), "session",
     "session is not a positive integer", {}),
    ("session-text", "s", lambda d: _set(d, 1, "session", "x"), "session",
     "session is not a positive integer", {}),
    ("session-missing", "s", lambda d: _set(d, 1, "session", None), "session",
     "session is not a positive integer", {}),
    ("session>n", "s", lambda d: d, "session", "session beyond n_sessions=2",
     {"n_sessions": 2}),
    ("blank-id-sessions", "s", lambda d: _set(d, 4, "participant_id", "  "), "participant_id",
     "empty participant_id", {}),
    ("missing-id-participants", "p", lambda d: _set(d, 1, "participant_id", None),
     "participant_id", "empty participant_id", {}),
    ("duplicate-participant", "p", lambda d: pd.concat([d, d.iloc[[1]]]), "participant_id",
     "duplicate participant_id", {}),
    ("bool-maybe", "p", lambda d: _set(d, 0, "female", "maybe"), "female",
     "not interpretable as yes/no", {}),
    ("bool-2", "p", lambda d: _set(d, 0, "mdd", 2), "mdd", "not interpretable as yes/no", {}),
    ("only-in-sessions", "p", lambda d: d.iloc[1:], "participant_id",
     "participant ids in s.csv but not in p.csv (1 participant): ['P10']", {}),
    ("only-in-participants", "s", lambda d: d.loc[d["participant_id"] != "P02"],
     "participant_id", "participant ids in p.csv but not in s.csv (1 participant): ['P02']", {}),
    ("ambiguous-layout", "s", lambda d: d.assign(alliance_s1=5.0), "session",
     "ambiguous layout", {}),
]


@pytest.mark.parametrize("case", BAD_TABLES, ids=[c[0] for c in BAD_TABLES])
def test_bad_table_raises_naming_file_column_rule(tmp_path, case):
    _, table, change, column, phrase, kwargs = case
    s, p = long_sessions(), participants_table()
    if table == "s":
        s = change(s)
    else:
        p = change(p)
    s_path, p_path = write(s, tmp_path / "s.csv"), write(p, tmp_path / "p.csv")
    with pytest.raises(DataValidationError) as exc:
        load_trial(s_path, p_path, **kwargs)
    msg = str(exc.value)
    bad_file = {"s": "s.csv", "p": "p.csv"}[table]
    if case[0] == "only-in-sessions":
        bad_file = "p.csv"  # the file the ids are missing from
    if case[0] == "only-in-participants":
        bad_file = "s.csv"
    assert bad_file in msg.splitlines()[0]
    assert f"column {column!r}" in msg
    assert phrase in msg
    assert exc.value.column == column


def test_offending_rows_are_labelled_by_file_line(tmp_path):
    s = long_sessions()
    s = _set(_set(s, 3, "alliance", "high"), 6, "alliance", "low")
    s_path, p_path = write(s, tmp_path / "s.csv"), write(participants_table(), tmp_path / "p.csv")
    with pytest.raises(DataValidationError) as exc:
        load_trial(s_path, p_path)
    rows = exc.value.rows
    # DataFrame row 3 is on line 5 of the file (line 1 = header)
    assert rows.index.name == "line" and rows.index.tolist() == [5, 8]
    assert rows["alliance"].tolist() == ["high", "low"]
    assert "(2 offending rows)" in str(exc.value)


def test_at_most_five_rows_shown(tmp_path):
    s = long_sessions().assign(alliance="x")
    s_path, p_path = write(s, tmp_path / "s.csv"), write(participants_table(), tmp_path / "p.csv")
    with pytest.raises(DataValidationError, match=r"\(9 offending rows\)") as exc:
        load_trial(s_path, p_path)
    assert len(exc.value.rows) == 5


def test_excel_errors_use_sheet_row_numbers(tmp_path):
    s = _set(long_sessions(), 0, "pss_sr", 99)
    s_path, p_path = write(s, tmp_path / "s.xlsx"), write(participants_table(), tmp_path / "p.csv")
    with pytest.raises(DataValidationError, match="out of range") as exc:
        load_trial(s_path, p_path)
    assert exc.value.rows.index.name == "row" and exc.value.rows.index.tolist() == [2]


def test_spss_errors_use_case_numbers(tmp_path):
    p = _set(participants_table(), 2, "bdi_post", 70.0).astype({"bdi_post": float})
    s_path, p_path = write(long_sessions(), tmp_path / "s.csv"), write(p, tmp_path / "p.sav")
    with pytest.raises(DataValidationError, match="'bdi_post'") as exc:
        load_trial(s_path, p_path)
    assert exc.value.rows.index.name == "case" and exc.value.rows.index.tolist() == [3]


BAD_WIDE = [
    ("session-0-column", lambda d: d.assign(alliance_s0=5.0), "alliance_s0",
     "session is not a positive integer", {}),
    ("two-columns-one-session", lambda d: d.assign(alliance_1=5.0), "alliance_1",
     "duplicate participant_id x session", {}),
    ("duplicate-participant-row", lambda d: pd.concat([d, d.iloc[[0]]]), "participant_id",
     "duplicate participant_id x session", {}),
    ("beyond-n", lambda d: d, "alliance_s3", "session beyond n_sessions=2", {"n_sessions": 2}),
    ("out-of-range", lambda d: _set(d, 1, "pss_sr_s2", 60), "pss_sr_s2", "out of range", {}),
    ("no-alliance", lambda d: d.drop(columns=[c for c in d if c.startswith("alliance")]),
     "alliance_s1", "missing required column", {"layout": "wide"}),
]


@pytest.mark.parametrize("case", BAD_WIDE, ids=[c[0] for c in BAD_WIDE])
def test_bad_wide_table(tmp_path, case):
    _, change, column, phrase, kwargs = case
    s_path = write(change(wide_sessions()), tmp_path / "w.csv")
    p_path = write(participants_table(), tmp_path / "p.csv")
    with pytest.raises(DataValidationError) as exc:
        load_trial(s_path, p_path, **kwargs)
    msg = str(exc.value)
    assert "w.csv" in msg and f"column {column!r}" in msg and phrase in msg


def _xlsx_bytes(tmp_path):
    return open(write(long_sessions(), tmp_path / "real.xlsx"), "rb").read()


BAD_FILES = [
    # (id, file name, content (bytes or callable(tmp_path) -> bytes), rule phrase)
    ("zero-bytes", "s.csv", b"", "empty file (0 bytes)"),
    ("only-blank", "s.csv", b"\n  \n\n", "empty file"),
    ("header-only", "s.csv", b"participant_id,session,alliance,pss_sr\n", "empty file"),
    ("binary-garbage", "s.csv", bytes(range(256)) * 4, "unparseable file"),
    ("xlsx-named-csv", "s.csv", _xlsx_bytes, "looks like a zip archive"),
    ("pdf-named-csv", "s.txt", b"%PDF-1.4\n...", "looks like a PDF"),
    ("ragged-row", "s.csv", b"participant_id,session,alliance,pss_sr\nP01,1,5,30,7\n",
     "line 2 has 5 fields but the header has 4"),
    ("bad-quote", "s.csv", b'participant_id,session,alliance,pss_sr\nP01,1,"5"x,30\n',
     "unparseable file: line 2"),
    ("ambiguous-delimiter", "s.csv", b"participant_id;session,alliance\nP01;1,5\nP01,2;5\n",
     "cannot tell the delimiter"),
    ("duplicate-header", "s.csv", b"participant_id,session,alliance,alliance\nP01,1,5,5\n",
     "duplicate column name"),
    ("unnamed-column-with-data", "s.csv", b"participant_id,session,alliance,\nP01,1,5,7\n",
     "column without a name"),
    ("mixed-decimals", "s.csv",
     b"participant_id;session;alliance;pss_sr\nP01;1;5,5;30\nP01;2;5.5;30.5\n",
     "mixed decimal separators"),
    ("corrupted-xlsx", "s.xlsx", lambda t: _xlsx_bytes(t)[:300], "unparseable file"),
    ("text-named-xlsx", "s.xlsx", b"participant_id,session\nP01,1\n", "unparseable file"),
    ("empty-xlsx", "s.xlsx", b"", "empty file (0 bytes)"),
    ("corrupted-sav", "s.sav", b"$FL2@(#) garbage" + bytes(200), "unparseable file"),
    ("unsupported-xls", "s.xls", b"\xd0\xcf\x11\xe0", "unsupported file format"),
]


@pytest.mark.parametrize("case", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_file_raises_naming_file_and_rule(tmp_path, case):
    _, name, content, phrase = case
    path = tmp_path / name
    path.write_bytes(content(tmp_path) if callable(content) else content)
    p_path = write(participants_table(), tmp_path / "p.csv")
    with pytest.raises(DataValidationError) as exc:
        load_trial(path, p_path)
    msg = str(exc.value)
    assert name in msg.splitlines()[0] and phrase in msg


def test_parser_errors_are_chained_not_swallowed(tmp_path):
    path = tmp_path / "s.xlsx"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataValidationError) as exc:
        load_trial(path, write(participants_table(), tmp_path / "p.csv"))
    assert exc.value.__cause__ is not None


def test_empty_sav(tmp_path):
    s = write(long_sessions().iloc[:0].astype({"participant_id": str}), tmp_path / "s.sav")
    with pytest.raises(DataValidationError, match="empty file"):
        load_trial(s, write(participants_table(), tmp_path / "p.csv"))


def test_bad_arguments(good):
    with pytest.raises(ValueError, match="layout"):
        load_trial(*good, layout="tall")
    with pytest.raises(TypeError, match="mapping"):
        load_trial(*good, mapping=[("a", "b")])


# --------------------------------------------------------------------------------------
# In-memory validation and saving
# --------------------------------------------------------------------------------------
def test_validate_in_memory_tables():
    s = data.validate_sessions(long_sessions())
    p = data.validate_participants(participants_table())
    pd.testing.assert_frame_equal(s, EXPECTED_SESSIONS)
    pd.testing.assert_frame_equal(p, EXPECTED_PARTICIPANTS)
    pd.testing.assert_frame_equal(data.validate_sessions(wide_sessions()), EXPECTED_SESSIONS)


def test_validate_in_memory_errors_name_the_table():
    bad = _set(long_sessions(), 2, "alliance", 8.0)
    rule = r"simulated sessions: column 'alliance': score out of range"
    with pytest.raises(DataValidationError, match=rule):
        data.validate_sessions(bad, file="simulated sessions")


def test_validate_trial_checks_agreement():
    trial = contract.Trial(long_sessions(), participants_table().iloc[:2])
    with pytest.raises(DataValidationError, match=r"\['P02'\]"):
        data.validate_trial(trial)
    ok = data.validate_trial(contract.Trial(long_sessions(), participants_table(),
                                            meta={"n_sessions": 3}))
    assert_trial_equal(ok)
    with pytest.raises(DataValidationError, match="beyond n_sessions=2"):
        data.validate_trial(contract.Trial(long_sessions(), participants_table(),
                                           meta={"n_sessions": 2}))


def test_save_trial_round_trip_with_truth(tmp_path):
    truth = pd.DataFrame({
        "participant_id": pd.Series(["P01", "P02", "P10"], dtype="str"),
        "true_pattern": ["no_rupture", "repaired", "unrepaired"],
        "n_true_ruptures": np.array([0, 1, 2], dtype="int64"),
        "rupture_sessions": ["", "3", "2;5"],
        "repair_sessions": ["", "4", ""],
        "imaginal_start": np.array([3, 2, 3], dtype="int64"),
        "dropout_after": [NA, 8.0, NA],
    })
    trial = contract.Trial(EXPECTED_SESSIONS, EXPECTED_PARTICIPANTS, truth, "hand-made")
    paths = data.save_trial(trial, tmp_path / "out")
    assert [p.name for p in paths] == ["sessions.csv", "participants.csv", "truth.csv"]
    back = load_trial(tmp_path / "out")
    assert_trial_equal(back)
    pd.testing.assert_frame_equal(back.truth, truth.astype({"true_pattern": "str",
                                                            "rupture_sessions": "str",
                                                            "repair_sessions": "str"}))
    assert back.simulated
    # Deterministic: a second save writes the same bytes.
    first = (tmp_path / "out" / "sessions.csv").read_bytes()
    data.save_trial(back, tmp_path / "out")
    assert (tmp_path / "out" / "sessions.csv").read_bytes() == first


def test_reexports():
    assert data.DataValidationError is contract.DataValidationError
    assert data.Trial is contract.Trial
    assert issubclass(DataValidationError, ValueError)


def test_no_warning_for_complete_data(good):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trial = load_trial(*good)
    assert trial.meta["warnings"] == []


def test_cross_table_error_shows_file_lines_of_the_other_table(tmp_path):
    s_path = write(long_sessions(), tmp_path / "s.csv")
    p_path = write(participants_table().iloc[1:], tmp_path / "p.csv")  # P10 left out
    with pytest.raises(DataValidationError) as exc:
        load_trial(s_path, p_path)
    assert exc.value.file.endswith("p.csv")
    # P10's rows are lines 2, 6 and 10 of s.csv (rows 0, 4, 8 of long_sessions())
    assert exc.value.rows.index.tolist() == [2, 6, 10]
    assert exc.value.rows.index.name == "line"


def test_simulated_trial_survives_save_load_and_wide(tmp_path):
    from helpers import simulate

    trial = simulate.simulate_trial(n_participants=20, n_sessions=10, seed=7)
    data.save_trial(trial, tmp_path / "sim")
    back = load_trial(tmp_path / "sim", n_sessions=10)
    # The loader's yes/no columns are nullable "boolean" (real data has missing values).
    expected_p = trial.participants.astype({c: "boolean" for c in contract.BOOL_COLUMNS})
    pd.testing.assert_frame_equal(back.sessions, trial.sessions)
    pd.testing.assert_frame_equal(back.participants, expected_p)
    pd.testing.assert_frame_equal(back.truth, trial.truth)
    # The same sessions pivoted to wide by pandas load back to the same long table.
    wide = trial.sessions.pivot(index="participant_id", columns="session",
                                values=["alliance", "pss_sr"])
    wide.columns = [f"{m}_s{k}" for m, k in wide.columns]
    w_path = write(wide.reset_index(), tmp_path / "wide.xlsx")
    again = load_trial(w_path, tmp_path / "sim" / "participants.csv", n_sessions=10)
    pd.testing.assert_frame_equal(again.sessions, trial.sessions)


# --------------------------------------------------------------------------------------
# Property: any valid long table survives every CSV dialect and the wide layout unchanged
# --------------------------------------------------------------------------------------


@st.composite
def valid_sessions(draw):
    ids = draw(st.lists(st.text("ABCxyz0123456789", min_size=1, max_size=4), min_size=1,
                        max_size=6, unique=True))
    rows = []
    for pid in ids:
        for s in draw(st.sets(st.integers(1, 10), min_size=1, max_size=10)):
            alliance = draw(st.one_of(st.none(), st.integers(100, 700).map(lambda v: v / 100)))
            pss = draw(st.one_of(st.none(), st.integers(0, 51).map(float)))
            rows.append((pid, s, alliance, pss))
    return pd.DataFrame(rows, columns=contract.SESSION_COLUMNS)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(df=valid_sessions(), dialect=st.sampled_from(
    [{}, {"sep": ";", "decimal": ","}, {"encoding": "utf-8-sig"}, {"sep": "\t"}]))
def test_property_any_valid_table_round_trips(tmp_path, df, dialect):
    s = write(df.sample(frac=1, random_state=0), tmp_path / "s.csv", **dialect)
    ids = df["participant_id"].unique()
    p = write(pd.DataFrame({"participant_id": ids, "pss_sr_pre": 20.0}), tmp_path / "p.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the optional participants columns
        trial = load_trial(s, p, n_sessions=10)
    expected = (df.sort_values(["participant_id", "session"]).reset_index(drop=True)
                .astype({"participant_id": "str", "session": "int64",
                         "alliance": "float64", "pss_sr": "float64"}))
    pd.testing.assert_frame_equal(trial.sessions, expected)
    # Wide, pivoted by pandas: the full grid of the observed sessions, no other change.
    wide = df.pivot(index="participant_id", columns="session", values=["alliance", "pss_sr"])
    wide.columns = [f"{m}_s{k}" for m, k in wide.columns]
    w = write(wide.reset_index(), tmp_path / "w.csv", **dialect)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        from_wide = load_trial(w, p).sessions
    grid = from_wide.merge(expected, on=["participant_id", "session"], how="left",
                           suffixes=("", "_long"))
    pd.testing.assert_series_equal(grid["alliance"], grid["alliance_long"], check_names=False)
    pd.testing.assert_series_equal(grid["pss_sr"], grid["pss_sr_long"], check_names=False)
    assert len(from_wide) == len(ids) * df["session"].nunique()


def test_save_trial_without_truth_removes_a_stale_truth_table(tmp_path):
    from helpers import simulate

    sim = simulate.simulate_trial(n_participants=5, seed=1)
    data.save_trial(sim, tmp_path)
    assert (tmp_path / "truth.csv").exists()
    real = data.Trial(sim.sessions, sim.participants, truth=None)
    written = data.save_trial(real, tmp_path)
    assert not (tmp_path / "truth.csv").exists()
    assert [p.name for p in written] == ["sessions.csv", "participants.csv"]
