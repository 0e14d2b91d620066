"""fit_growth's array route equals its table route (growth_data + fit_mixed) bit for bit.

Exact by construction, on any machine: both routes build the same design (the same products of
the same columns) and hand the same arrays to the same engine in this process; what is compared
is two routes to one computation, never a result against numbers from another machine."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import growth

REFERENCE = Path(__file__).parent / "reference"


def _reference(name):
    d = pd.read_csv(REFERENCE / name, dtype={"participant_id": str})
    return (d[["participant_id", "session", "pss_sr"]],
            d.groupby("participant_id", as_index=False)["pattern"].first())


def _generated(n):
    spec = importlib.util.spec_from_file_location("make_growth_input",
                                                  REFERENCE / "make_growth_input.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.simulate_growth(n, 10, seed=20131106)


def _awkward():
    """Missing outcomes, unclassifiable participants, integer ids, one pattern absent."""
    sessions, patterns = _generated(40)
    sessions, patterns = sessions.copy(), patterns.copy()
    sessions.loc[sessions.index[::7], "pss_sr"] = np.nan
    patterns.loc[patterns.index[:3], "pattern"] = "unclassifiable"
    no_unrep = patterns.copy()
    no_unrep.loc[no_unrep["pattern"] == "unrepaired", "pattern"] = "repaired"
    ids = {p: i for i, p in enumerate(reversed(patterns["participant_id"]))}
    int_ses = sessions.assign(participant_id=sessions["participant_id"].map(ids))
    int_pat = patterns.assign(participant_id=patterns["participant_id"].map(ids))
    return {"missing": (sessions, patterns), "no_unrepaired": (sessions, no_unrep),
            "int_ids": (int_ses, int_pat)}


def _sets():
    sets = {name: _reference(name) for name in (
        "default_growth_input.csv", "growth_input.csv", "lmm_noslope_input.csv",
        "lmm_trial1160_input.csv")}
    sets["generated_116"] = _generated(116)
    sets.update(_awkward())
    return sets


SETS = _sets()
VARIANTS = {"default": {}, "ml": {"reml": False}, "no_interaction": {"interaction": False},
            "intercept_only": {"random_slope": False}, "keep": {"on_boundary": "keep"},
            "centre_1": {"time_center": 1}, "first": {"time_center": "first"}}
#: fit_growth's keywords that make up the model (GrowthSpec).
SPEC_KEYS = ("outcome", "time_center", "interaction", "random_slope")


def _spec(kw):
    return growth.GrowthSpec(**{k: v for k, v in kw.items() if k in SPEC_KEYS})


def _frame_bits(a, b):
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert list(a.dtypes) == list(b.dtypes)
    assert type(a.index) is type(b.index) and list(a.index) == list(b.index)
    for c in a.columns:
        u, v = a[c].to_numpy(), b[c].to_numpy()
        if u.dtype.kind == "f":
            assert u.tobytes() == v.tobytes(), c
        else:
            assert [repr(x) for x in u] == [repr(x) for x in v], c


def _same(a, b, path=""):
    assert type(a) is type(b), path
    if isinstance(a, pd.DataFrame):
        _frame_bits(a, b)
    elif isinstance(a, pd.Series):
        _frame_bits(a.to_frame(), b.to_frame())
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert a.tobytes() == b.tobytes() if a.dtype.kind == "f" else a.tolist() == b.tolist()
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            _same(u, v, f"{path}[{i}]")
    elif isinstance(a, float):
        assert np.float64(a).tobytes() == np.float64(b).tobytes(), path
    elif a is None or hasattr(a, "__dataclass_fields__"):
        if a is not None:
            for f in a.__dataclass_fields__:
                if f == "attempts" or (f == "optimizer" and isinstance(a.optimizer, dict)):
                    continue  # they hold the fit's run time: compared below without it
                else:
                    _same(getattr(a, f), getattr(b, f), f"{path}.{f}")
            if "attempts" in a.__dataclass_fields__:
                _same(a.attempts.drop(columns="seconds"), b.attempts.drop(columns="seconds"))
            if isinstance(getattr(a, "optimizer", None), dict):
                _same({k: v for k, v in a.optimizer.items() if k != "seconds"},
                      {k: v for k, v in b.optimizer.items() if k != "seconds"})
    else:
        assert a == b, path


def _run(func, sessions, patterns, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = func(sessions, patterns, **kw)
        except Exception as exc:  # noqa: BLE001 -- the same error either way
            return repr(exc), []
    return fit, [(str(w.message), w.category) for w in caught]


# every data set under every variant, except the large set, which two variants suffice for
CASES = [(name, variant) for name in sorted(SETS) for variant in sorted(VARIANTS)
         if name != "lmm_trial1160_input.csv" or variant in ("default", "ml")]


@pytest.mark.parametrize("name, variant", CASES)
def test_array_route_equals_table_route(name, variant):
    sessions, patterns = SETS[name]
    kw = VARIANTS[variant]
    spec = _spec(kw)
    assert growth._growth_arrays(sessions, patterns, spec, "pattern") is not None  # the array route is taken
    fast, fast_warn = _run(growth.fit_growth, sessions, patterns, **kw)
    slow, slow_warn = _run(lambda s, p, **k: growth._fit_growth_tables(s, p, spec, **k), sessions, patterns,
                           **{k: v for k, v in kw.items() if k not in SPEC_KEYS})
    _same(fast, slow)
    assert fast_warn == slow_warn
    if not isinstance(fast, str):
        _same(fast.predicted_trajectories(), slow.predicted_trajectories())
        _same(fast.fixed_at(3), slow.fixed_at(3))


def test_table_route_where_arrays_are_not_sure():
    sessions, patterns = SETS["generated_116"]
    mid = growth.GrowthSpec()
    assert growth._growth_arrays(sessions, patterns, growth.GrowthSpec(time_center="mean"), "pattern") is None
    twice = pd.concat([sessions, sessions.iloc[:1]], ignore_index=True)
    assert growth._growth_arrays(twice, patterns, mid, "pattern") is None
    gap = sessions.copy()
    gap.loc[0, "session"] = np.nan
    assert growth._growth_arrays(gap, patterns, mid, "pattern") is None
    dup = pd.concat([patterns, patterns.iloc[:1]], ignore_index=True)
    assert growth._growth_arrays(sessions, dup, mid, "pattern") is None
    with pytest.raises(pd.errors.MergeError):
        growth.fit_growth(sessions, dup)
    mean = growth.fit_growth(sessions, patterns, time_center="mean")
    _same(mean, growth._fit_growth_tables(sessions, patterns, growth.GrowthSpec(time_center="mean")))
    with pytest.raises(ValueError, match="on_boundary"):
        growth.fit_growth(sessions, patterns, on_boundary="drop")
