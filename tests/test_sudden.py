"""Tests of helpers.sudden, the port of the R package suddengains: parity and properties.

Anchors are independent of the code under test: the published results of suddengains 0.7.2 on
its example data (tests/data/suddengains_sgdata.csv, see tests/data/README.md), suddengains'
own worked examples, and a plain per-participant loop implementation
(tests/oracles/ruptures.py) used as an oracle on random data. The sudden criterion inside
``detect_episodes`` is tested in tests/test_episodes.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from helpers import sudden
from oracles import ruptures as REF

ROOT = Path(__file__).resolve().parents[1]
SGDATA = ROOT / "tests" / "data" / "suddengains_sgdata.csv"
GRID = [1 + 0.25 * i for i in range(25)]  # exact in binary floating point
PROP = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])



def test_define_crit1_cutoff_matches_suddengains_readme():
    sg = pd.read_csv(SGDATA)
    sd = sg["bdi_s0"].std()
    assert sd == pytest.approx(6.396073, abs=1e-6)
    out = sudden.define_crit1_cutoff(sd, 0.931)
    assert out["standard_error_measurement"] == pytest.approx(1.680111, abs=1e-6)
    assert out["standard_error_difference"] == pytest.approx(2.376036, abs=1e-6)
    assert out["reliable_change_value"] == pytest.approx(4.65703, abs=1e-5)
    out = sudden.define_crit1_cutoff(10.5, 0.961)
    assert out["standard_error_measurement"] == pytest.approx(2.073584, abs=1e-6)
    assert out["standard_error_difference"] == pytest.approx(2.93249, abs=1e-5)
    assert out["reliable_change_value"] == pytest.approx(5.747681, abs=1e-6)
    assert sudden.rci_threshold(10.5, 0.961) == out["reliable_change_value"]
    with pytest.raises(ValueError, match="reliability"):
        sudden.define_crit1_cutoff(1.0, 1.0)


# --------------------------------------------------------------------------------------------
# suddengains parity
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sg_wide():
    sg = pd.read_csv(SGDATA).set_index("id")
    wide = sg[[f"bdi_s{i}" for i in range(1, 13)]]
    wide.columns = range(1, 13)
    return wide


PUBLISHED_GAINS = ("1_3 1_7 3_8 4_3 5_3 5_8 9_3 10_2 10_4 12_3 13_3 13_8 14_2 18_3 39_3 40_2 "
                   "40_5 40_8 41_6 41_9 42_5 42_8 43_5 43_7").split()


def test_suddengains_parity_bysg(sg_wide):
    assert sg_wide.shape == (43, 12)
    c = sudden.sudden_changes(sg_wide, direction="decrease", cutoff=7, pct=0.25, crit3=True,
                                crit3_adjust=True, crit3_alpha=0.05)
    assert list(c.columns) == sudden.SUDDEN_COLUMNS
    got = [f"{p}_{s}" for p, s in zip(c["participant_id"], c["pre_session"])]
    assert got == PUBLISHED_GAINS
    assert (c["post_session"] == c["pre_session"] + 1).all()
    # describe_sg(bysg): mean magnitude 11 (SD 3.43), 4 of 24 reversed (16.67%)
    assert round(c["magnitude"].mean(), 2) == 11.0
    assert round(c["magnitude"].std(), 2) == 3.43
    assert c["reversed"].sum() == 4
    assert round(100 * c["reversed"].mean(), 2) == 16.67
    # per-gain values from suddengains' own create_bysg test (test-create_bysg.R):
    # id_sg, sg_bdi_n, sg_bdi_n1, sg_magnitude, sg_reversal_value, sg_reversal
    expected = {
        "1_3": (34, 23, 11, 28.5, 1), "1_7": (29, 17, 12, 23, 0), "3_8": (35, 26, 9, 30.5, 0),
        "4_3": (32, 22, 10, 27, 1), "5_3": (36, 26, 10, 31, 0), "5_8": (19, 6, 13, 12.5, 0),
        "9_3": (32, 23, 9, 27.5, 0), "10_2": (35, 25, 10, 30, 0), "10_4": (25, 17, 8, 21, 0),
        "12_3": (31, 23, 8, 27, 1), "13_3": (36, 23, 13, 29.5, 0), "13_8": (18, 10, 8, 14, 0),
        "14_2": (37, 23, 14, 30, 0), "18_3": (35, 24, 11, 29.5, 0),
    }
    idx = c.assign(key=got).set_index("key")
    for key, (pre, post, mag, rv, rev) in expected.items():
        row = idx.loc[key]
        assert (row.pre_score, row.post_score, row.magnitude) == (pre, post, mag), key
        assert row.reversal_value == rv and bool(row.reversed) == bool(rev), key
    # critical values by available scores: 3 + 3 -> 2.776, 2 + 3 -> 3.182, 2 + 2 -> 4.303
    assert idx.loc["1_3", "critical_value"] == pytest.approx(2.776, abs=5e-4)
    assert (idx.loc["10_2", "n_pre"], idx.loc["10_2", "n_post"]) == (2, 3)
    assert idx.loc["10_2", "critical_value"] == pytest.approx(3.182, abs=5e-4)
    assert (idx.loc["14_2", "n_pre"], idx.loc["14_2", "n_post"]) == (2, 2)
    assert idx.loc["14_2", "critical_value"] == pytest.approx(4.303, abs=5e-4)


def test_suddengains_parity_byperson(sg_wide):
    c = sudden.sudden_changes(sg_wide, cutoff=7)
    bp = sudden.byperson(c, sg_wide.index, select="first")
    assert len(bp) == 43 and bp["participant_id"].tolist() == list(range(1, 44))
    has = bp[bp["n_changes"] > 0]
    # describe_sg(byperson): 15 people (34.88%), 8 with more than one, first gain
    # mean magnitude 11.4 (SD 3.98), 3 of 15 reversed (20%)
    assert len(has) == 15 and round(100 * len(has) / 43, 2) == 34.88
    assert (bp["n_changes"] > 1).sum() == 8
    assert round(has["magnitude"].mean(), 2) == 11.4
    assert round(has["magnitude"].std(), 2) == 3.98
    assert int(has["reversed"].sum()) == 3
    assert bp["n_changes"].sum() == 24
    # first / last / largest / smallest for participant 40 (gains at 2, 5, 8)
    for sel in ("first", "last", "largest", "smallest"):
        b = sudden.byperson(c, select=sel).set_index("participant_id")
        mine = c[c["participant_id"] == 40]
        if sel == "first":
            want = mine["pre_session"].min()
        elif sel == "last":
            want = mine["pre_session"].max()
        elif sel == "largest":
            want = mine.loc[mine["magnitude"] == mine["magnitude"].max(), "pre_session"].min()
        else:
            want = mine.loc[mine["magnitude"] == mine["magnitude"].min(), "pre_session"].min()
        assert b.loc[40, "pre_session"] == want, sel
        assert b.loc[40, "n_changes"] == 3


def test_check_interval_example_and_increase():
    # suddengains' check_interval example: pre 32, 31, 33 -> post 5, 6, 7 is a gain
    w = pd.DataFrame([[32, 31, 33, 5, 6, 7]], index=["x"], columns=range(1, 7))
    c = sudden.sudden_changes(w, cutoff=7)
    assert c["pre_session"].tolist() == [3] and c.iloc[0].magnitude == 28
    # only criterion 3
    assert len(sudden.sudden_changes(w, cutoff=None, pct=None)) == 1
    # increase: 10, 10, 10 -> 20, 21, 20: change 10 >= 7 and >= .25 * 10; crit 3 holds
    up = pd.DataFrame([[10, 10, 10, 20, 21, 20, 20]], index=["y"], columns=range(1, 8))
    c = sudden.sudden_changes(up, direction="increase", cutoff=7)
    assert c["pre_session"].tolist() == [3]
    assert c.iloc[0].magnitude == 10 and c.iloc[0].reversal_value == 15
    assert not c.iloc[0].reversed
    assert sudden.sudden_changes(up, direction="decrease", cutoff=7).empty
    # the relative criterion is mirrored: 20 -> 24 is +20% < 25%: not a sudden increase
    small = pd.DataFrame([[20, 20, 20, 24, 24, 24]], index=["z"], columns=range(1, 7))
    assert sudden.sudden_changes(small, direction="increase", cutoff=3).empty
    assert len(sudden.sudden_changes(small, direction="increase", cutoff=3, pct=0.2)) == 1



# --------------------------------------------------------------------------------------------
# Output shape, validation, warnings
# --------------------------------------------------------------------------------------------
def test_empty_result_has_columns():
    c = sudden.sudden_changes(pd.DataFrame([[5.0] * 6], columns=range(1, 7)), cutoff=1)
    assert c.empty and list(c.columns) == sudden.SUDDEN_COLUMNS


def test_invalid_arguments():
    with pytest.raises(ValueError, match="direction"):
        sudden.sudden_changes(pd.DataFrame([[1.0] * 5]), direction="down", cutoff=1)
    with pytest.raises(ValueError, match="at least one"):
        sudden.sudden_changes(pd.DataFrame([[1.0] * 5]), cutoff=None, pct=None, crit3=False)


def test_too_few_sessions_warns():
    with pytest.warns(UserWarning, match="no sudden change can be found"):
        sudden.sudden_changes(pd.DataFrame([[1.0, 2.0, 3.0]]), cutoff=1)


# --------------------------------------------------------------------------------------------
# Properties (hypothesis)
# --------------------------------------------------------------------------------------------
@PROP
@given(data=st.data(), direction=st.sampled_from(["decrease", "increase"]),
       cutoff=st.sampled_from([None, 0.5, 1.0, 2.0]), pct=st.sampled_from([None, 0.1, 0.25]),
       crit3=st.booleans(), adjust=st.booleans())
def test_sudden_changes_equals_loop_oracle(data, direction, cutoff, pct, crit3, adjust):
    assume(cutoff is not None or pct is not None or crit3)
    n = data.draw(st.integers(1, 8))
    T = data.draw(st.integers(4, 12))
    cells = data.draw(st.lists(st.one_of(st.sampled_from(GRID), st.just(np.nan)),
                               min_size=n * T, max_size=n * T))
    wide = pd.DataFrame(np.array(cells, dtype=float).reshape(n, T),
                        index=[f"q{i}" for i in range(n)], columns=range(1, T + 1))
    kw = dict(direction=direction, cutoff=cutoff, pct=pct, crit3=crit3, crit3_adjust=adjust)
    vec = sudden.sudden_changes(wide, **kw)
    loop = REF.loop_sudden_changes(wide, **kw)
    cols = ["participant_id", "pre_session", "post_session", "reversed"]
    assert vec[cols].astype(str).values.tolist() == loop[cols].astype(str).values.tolist()
    # exact by construction (no BLAS): both subtract the same two scores, once
    np.testing.assert_array_equal(vec["magnitude"].to_numpy(), loop["magnitude"].to_numpy())
