"""The bootstrap CI of Cramer's V: multinomial tables of cells, the bootstrap of clients it
replaces (same distribution), and registry-sized tables (no overflow, memory by cells)."""

import numpy as np
import pandas as pd
import pytest

from helpers import models, report
from helpers.contract import INSUFFICIENT


def _resampling_clients(patterns, participants, by, *, n_boot, seed=20131106, level=0.95):
    """The implementation before multinomial tables (kept as the reference): n_boot x n
    resampled client indices, one table per resample."""
    d = models.pattern_by(patterns, participants, by, "pattern", (INSUFFICIENT,)).dropna()
    rows = pd.Categorical(d["pattern"]).codes.astype(np.int64)
    cols = pd.Categorical(d[by].astype(str)).codes.astype(np.int64)
    n = len(d)
    r, c = rows.max() + 1, cols.max() + 1
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    cells = rows[idx] * c + cols[idx]
    counts = np.stack([np.bincount(row, minlength=r * c) for row in cells]).reshape(n_boot, r, c)
    expected = counts.sum(2, keepdims=True) * counts.sum(1, keepdims=True) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.nansum(np.where(expected > 0, (counts - expected) ** 2 / expected, 0.0), axis=(1, 2))
    v = np.sqrt(chi2 / (n * (min(r, c) - 1)))
    a = (1 - level) / 2
    return float(np.quantile(v, a)), float(np.quantile(v, 1 - a))


def _trial(n, seed, p_unrepaired=0.2, skew=0.0):
    rng = np.random.default_rng(seed)
    ids = [f"P{i}" for i in range(n)]
    pattern = rng.choice(["no_rupture", "repaired", "unrepaired"], n, p=[0.55, 1 - 0.55 - p_unrepaired, p_unrepaired])
    mdd = rng.random(n) < 0.35 + skew * (pattern == "unrepaired")
    return (pd.DataFrame({"participant_id": ids, "pattern": pattern}),
            pd.DataFrame({"participant_id": ids, "mdd": mdd}))


@pytest.mark.parametrize("n, seed, skew", [(81, 1, 0.0), (90, 2, 0.3), (60, 3, 0.0)])
def test_multinomial_tables_give_the_bootstrap_of_clients(n, seed, skew):
    """Both draw from one distribution: with many resamples their percentiles agree to
    Monte-Carlo error (about 0.002 here); a bootstrap of the wrong table would not."""
    patterns, parts = _trial(n, seed, skew=skew)
    for level in (0.95, 0.5):
        new = report.cramers_v_ci(patterns, parts, "mdd", n_boot=40_000, level=level)
        old = _resampling_clients(patterns, parts, "mdd", n_boot=40_000, level=level)
        assert new == pytest.approx(old, abs=0.01), (level, new, old)


def test_a_registry_sized_table_neither_overflows_nor_grows_with_n():
    # 20,000 clients crashed the resampling of clients (an int8 overflow) and asked for
    # n_boot x n integers; 200,000 clients cost what 81 do now
    for n in (20_000, 200_000):
        patterns, parts = _trial(n, 5, skew=0.1)
        table = pd.crosstab(patterns["pattern"], parts["mdd"]).to_numpy(float)
        expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
        v = np.sqrt(((table - expected) ** 2 / expected).sum() / n)
        lo, hi = report.cramers_v_ci(patterns, parts, "mdd")
        assert np.isfinite([lo, hi]).all() and lo <= v <= hi and hi - lo < 0.05


def test_a_table_with_one_row_or_column_has_no_interval():
    patterns, parts = _trial(40, 6)
    parts["mdd"] = True
    assert np.isnan(report.cramers_v_ci(patterns, parts, "mdd")).all()
