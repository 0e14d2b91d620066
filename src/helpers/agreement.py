"""How well detected alliance patterns recover the true ones (simulated data only).

Confusion matrix, per-pattern sensitivity and specificity (one pattern against the rest,
Wilson 95% CIs) and Cohen's kappa with its large-sample SE.

References
----------
Cohen, J. (1960). A coefficient of agreement for nominal scales. Educational and
Psychological Measurement, 20(1), 37-46.
Fleiss, J. L., Cohen, J., & Everitt, B. S. (1969). Large sample standard errors of kappa and
weighted kappa. Psychological Bulletin, 72(5), 323-327.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special  # the normal quantile as scipy.stats computes it, without scipy.stats (0.5 s)

from helpers.contract import INSUFFICIENT, PATTERN_LABELS, TRUE_PATTERN
from helpers.describe import proportion_ci


def confusion(detected: pd.Series, truth: pd.Series, labels=PATTERN_LABELS) -> pd.DataFrame:
    """Counts with true patterns as rows and detected patterns as columns.

    ``detected`` and ``truth`` are aligned on their index (participant id); participants
    missing from either, or with a label outside ``labels`` (e.g. insufficient_data), are
    left out.
    """
    both = pd.concat({"truth": truth, "detected": detected}, axis=1, join="inner")
    both = both[both["truth"].isin(labels) & both["detected"].isin(labels)]
    table = pd.crosstab(pd.Categorical(both["truth"], categories=labels),
                        pd.Categorical(both["detected"], categories=labels), dropna=False)
    table.index.name, table.columns.name = "true pattern", "detected pattern"
    return table


def pattern_accuracy(table: pd.DataFrame) -> pd.DataFrame:
    """Sensitivity and specificity of each detected pattern, one against the rest.

    Returns
    -------
    DataFrame with pattern, sensitivity, sens_low, sens_high, n_true, specificity,
    spec_low, spec_high, n_other (proportions, Wilson 95% CIs; the notebooks show percent).
    """
    m = table.to_numpy()
    rows = []
    for i, name in enumerate(table.index):
        tp, n_true = m[i, i], m[i].sum()
        tn = m.sum() - m[i].sum() - m[:, i].sum() + tp
        n_other = m.sum() - n_true
        sens = proportion_ci(tp, n_true, percent=False)
        spec = proportion_ci(tn, n_other, percent=False)
        rows.append([name, *sens, int(n_true), *spec, int(n_other)])
    return pd.DataFrame(rows, columns=["pattern", "sensitivity", "sens_low", "sens_high", "n_true",
                                       "specificity", "spec_low", "spec_high", "n_other"])


def cohen_kappa(table: pd.DataFrame, level=0.95) -> dict:
    """Cohen's kappa of a square confusion table with the Fleiss-Cohen-Everitt (1969) SE.

    Returns
    -------
    dict with kappa, se, ci_low, ci_high, n, observed (agreement), expected.

    Examples
    --------
    >>> t = pd.DataFrame([[20, 5], [10, 15]])
    >>> round(cohen_kappa(t)["kappa"], 4)
    0.4
    """
    m = np.asarray(table, dtype=float)
    n = m.sum()
    if n == 0:
        return dict(kappa=np.nan, se=np.nan, ci_low=np.nan, ci_high=np.nan, n=0, observed=np.nan, expected=np.nan)
    p = m / n
    rows, cols = p.sum(1), p.sum(0)
    po, pe = np.trace(p), float(rows @ cols)
    kappa = (po - pe) / (1 - pe) if pe < 1 else np.nan
    # Fleiss, Cohen & Everitt (1969), eq. 13: SE of kappa when kappa is not assumed zero.
    diag = sum(p[i, i] * (1 - (rows[i] + cols[i]) * (1 - kappa)) ** 2 for i in range(len(p)))
    off = (1 - kappa) ** 2 * sum(p[i, j] * (cols[i] + rows[j]) ** 2
                                 for i in range(len(p)) for j in range(len(p)) if i != j)
    var = (diag + off - (kappa - pe * (1 - kappa)) ** 2) / (n * (1 - pe) ** 2)
    se = float(np.sqrt(max(var, 0.0)))
    z = special.ndtri(0.5 + level / 2)  # what stats.norm.ppf computes, to the bit
    return dict(kappa=float(kappa), se=se, ci_low=float(kappa - z * se), ci_high=float(kappa + z * se),
                n=int(n), observed=float(po), expected=pe)


def true_patterns(truth: pd.DataFrame, patterns: pd.DataFrame) -> pd.DataFrame:
    """The generative truth's patterns of the clients the detection could classify, as a
    ``participant_id, pattern`` table (simulated data): the paper's tests run on the same
    clients with the true patterns instead of the detected ones.

    >>> truth = pd.DataFrame({"participant_id": ["a", "b"], "true_pattern": ["repaired", "unrepaired"]})
    >>> detected = pd.DataFrame({"participant_id": ["a", "b"], "pattern": ["no_rupture", "insufficient_data"]})
    >>> true_patterns(truth, detected).to_dict("records")
    [{'participant_id': 'a', 'pattern': 'repaired'}]
    """
    keep = patterns.loc[patterns["pattern"] != INSUFFICIENT, "participant_id"]
    out = truth.rename(columns={TRUE_PATTERN: "pattern"})[["participant_id", "pattern"]]
    return out[out["participant_id"].isin(keep)].reset_index(drop=True)
