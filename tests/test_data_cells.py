"""The loader's column functions give what their rule gives cell by cell (helpers.data._cells).

Each rule is written once for one cell (``_cell_number``, ``_id_of``; the yes/no rule below is
the one the loader applied cell by cell before it read whole columns): every column function
must agree with it on every cell -- numbers bit for bit, the same cells refused -- for random
cells of every kind a file can hold and for the edge cases of the number grammar (spaces, signs,
exponents, decimal commas, NUL characters, non-ASCII digits and spaces, long cells), where the
bulk shortcuts could go wrong. The rules themselves are pinned by tests/test_data.py.
"""

from __future__ import annotations

import datetime
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.data import _cells
from helpers.data._readers import _Raw

NA_TOKENS = _cells.NA_TOKENS
_to_float_ref = _cells._cell_number
_missing_ref = _cells._missing
_id_ref = _cells._id_of


def _bool_ref(v):
    import numbers

    if _missing_ref(v):
        return pd.NA
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, numbers.Real):
        return {0.0: False, 1.0: True}.get(float(v))
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("true", "yes", "y", "1"):
            return True
        if s in ("false", "no", "n", "0"):
            return False
        num = _to_float_ref(s, ".")
        return {0.0: False, 1.0: True}.get(num) if num is not None else None
    return None


# ----------------------------------------------------------------------------- cells
NUMBERISH = "0123456789+-.eE ,"
ODD = "\t\n\r\x0b\x1c\x00\xa0\u2003\u0663\uff11_aAnNiIfF/#<>"
TRICKY = ["", " ", ".", "-", "+", "e5", "5e", "5e+", "1.e5", ".5", "5.", "-.5", "+5", "1e-5", "1E+05", "1.5.3",
          "--5", "1 5", " 5 ", "\t5\n", "\x1c5\x1f", "\xa05", "5\x00", "\x005", "\u0663", "\uff15", "1_0", "inf",
          "-inf", "nan", "NaN", " NA ", "n/a", "#N/A", "<NA>", "None", "NULL", "-nan", ".", "1,5", ",5", "1,5,0",
          "1.5,0", "1e999", "-0", "-0.0", "0" * 45, "1" + "0" * 39, " " * 41 + "5", "7" * 41, "١٢٣", "5e٣"]

cell_text = st.one_of(st.text(alphabet=NUMBERISH, max_size=10), st.text(alphabet=NUMBERISH + ODD, max_size=8),
                      st.sampled_from(TRICKY), st.sampled_from(sorted(NA_TOKENS)).map(str.upper))
cells = st.one_of(cell_text, cell_text, cell_text,
                  st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6), st.booleans(),
                  st.just(None), st.just(pd.NA), st.just(pd.NaT), st.just(np.float64(2.5)), st.just(np.int64(3)),
                  st.just(np.bool_(True)), st.just(datetime.datetime(2020, 1, 1)))


def _same_number(got: float, want) -> bool:
    """Equal to the bit (NaN with NaN, -0.0 apart from 0.0)."""
    return np.float64(got).tobytes() == np.float64(want).tobytes() or (math.isnan(got) and math.isnan(want))


def _check_numbers(values, decimal):
    got, bad = _cells._parse_numbers(np.array(values, dtype=object), decimal)
    for v, g, b in zip(values, got, bad):
        want = _to_float_ref(v, decimal)
        assert b == (want is None), (v, decimal, b)
        if want is not None:
            assert _same_number(g, want), (v, decimal, g, want)


@pytest.mark.parametrize("decimal", [".", ","])
def test_numbers_agree_with_the_cell_rule_on_the_edge_cases(decimal):
    _check_numbers(TRICKY, decimal)
    _check_numbers(TRICKY * 3 + [1, 2.5, None, True, math.nan], decimal)  # mixed with other kinds


@settings(max_examples=300, deadline=None)
@given(values=st.lists(cells, min_size=1, max_size=40), decimal=st.sampled_from([".", ","]))
def test_numbers_agree_with_the_cell_rule_on_random_cells(values, decimal):
    _check_numbers(values, decimal)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=200),
       fmt=st.sampled_from(["{!r}", "{:.6f}", "{:.17g}", "{:e}", " {} ", "{:+.3f}"]))
def test_printed_floats_are_read_back_to_the_bit(values, fmt):
    _check_numbers([fmt.format(v) for v in values], ".")


def test_a_column_larger_than_a_chunk_agrees_with_the_cell_rule():
    rng = np.random.default_rng(3)
    values = [f"{x:.6f}" for x in rng.random(300_000) * 6 + 1]
    values[123_456], values[299_999], values[7] = "high", "", " NA "
    got, bad = _cells._parse_numbers(np.array(values, dtype=object), ".")
    assert list(np.flatnonzero(bad)) == [123_456]
    assert np.isnan(got[[299_999, 7]]).all()
    keep = [i for i in range(len(values)) if i not in (123_456, 299_999, 7)]
    assert np.array_equal(got[keep], np.array([float(values[i]) for i in keep]))


# ----------------------------------------------------------------------------- ids and yes/no
def _raw(column, values):
    return _Raw(pd.DataFrame({"participant_id": ["x"] * len(values), column: values} if column != "participant_id"
                             else {"participant_id": values}, dtype=object), "t.csv", {"format": "csv"})


@settings(max_examples=200, deadline=None)
@given(values=st.lists(cells, min_size=1, max_size=30))
def test_ids_agree_with_the_cell_rule(values):
    want = [_id_ref(v) for v in values]
    if "" in want:
        with pytest.raises(ValueError, match="empty participant_id"):
            _cells._ids(_raw("participant_id", values))
    else:
        assert _cells._ids(_raw("participant_id", values)).tolist() == want


YES_NO = st.one_of(st.sampled_from(["yes", " No ", "Y", "n", "TRUE", "false", "1", "0", "1.0", "+1", "0e0", "2", "maybe",
                                    "", " ", "NA", "nan", "#N/A", "\u0661"]),
                   st.sampled_from([0, 1, 2, 0.0, 1.0, -0.0, 0.5, math.nan, True, False, None, pd.NA, np.bool_(False),
                                    np.int64(1), datetime.date(2020, 1, 1)]))


@settings(max_examples=200, deadline=None)
@given(values=st.lists(YES_NO, min_size=1, max_size=30))
def test_yes_no_agrees_with_the_cell_rule(values):
    want = [_bool_ref(v) for v in values]
    if any(w is None for w in want):
        with pytest.raises(ValueError, match="not interpretable as yes/no") as err:
            _cells._bools(_raw("mdd", values), "mdd")
        assert f"({sum(w is None for w in want)} offending row" in str(err.value)
    else:
        got = _cells._bools(_raw("mdd", values), "mdd")
        assert [None if g is pd.NA else bool(g) for g in got] == [None if w is pd.NA else w for w in want]


@pytest.mark.parametrize("cells_, decimal", [(["1,5", "2,25", ""], ","), (["1.5", "2", "x"], "."),
                                             (["1,5,0", "1.000,5"], "."), (["3", "4"], ".")])
def test_the_decimal_separator_is_chosen_as_before(cells_, decimal):
    raw = _Raw(pd.DataFrame({"a": cells_}, dtype=object), "t.csv", {"format": "csv"})
    assert _cells._choose_decimal(raw, ["a"]) == decimal


def test_mixed_decimal_separators_are_refused_as_before():
    raw = _Raw(pd.DataFrame({"participant_id": ["a", "b", "c"], "a": ["1,5", "2", "3,5"], "b": ["1", "2.5", "1"]},
                            dtype=object), "t.csv", {"format": "csv"})
    with pytest.raises(ValueError, match=r"mixed decimal separators.*'2.5'.*\(2 offending rows\)"):
        _cells._choose_decimal(raw, ["a", "b"])
