"""Assertions shared by the tests that compare our statistics tables with a reference library's
(statsmodels, pingouin): same columns, dtypes and index; numbers at the given tolerance."""

import warnings

import numpy as np
import pandas as pd

#: Our closed-form statistics against statsmodels / pingouin.
RTOL, ATOL = 1e-10, 1e-12


def assert_same_table(got, want, rtol=RTOL, atol=ATOL):
    assert list(got.columns) == list(want.columns)
    assert got.dtypes.to_dict() == want.dtypes.to_dict()
    assert got.index.equals(want.index)
    for col in want.columns:
        if pd.api.types.is_numeric_dtype(want[col]):
            np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=rtol,
                                       atol=atol, equal_nan=True, err_msg=col)
        else:
            assert got[col].tolist() == want[col].tolist(), col


def run_recording(fn, *args, **kwargs):
    """fn's result (or the exception it raised) and its warnings as (category name, message),
    sorted: what the comparison with the reference library's run looks at."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the failure is what is compared
            out = exc
    return out, sorted((w.category.__name__, str(w.message)) for w in caught)
