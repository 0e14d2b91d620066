"""How well detected alliance patterns recover the true ones (simulated data only), and how
two definitions of the patterns agree.

Confusion matrix, per-pattern sensitivity and specificity (one pattern against the rest,
Wilson 95% CIs) and Cohen's kappa with its large-sample SE. For pattern *probabilities*
(:mod:`helpers.pattern_model`): the Brier score against the truth (hard labels scored the same
way, as probabilities 0 and 1) and a reliability (calibration) table.

References
----------
Cohen, J. (1960). A coefficient of agreement for nominal scales. Educational and
Psychological Measurement, 20(1), 37-46.
Brier, G. W. (1950). Verification of forecasts expressed in terms of probability. Monthly
Weather Review, 78(1), 1-3.
Fleiss, J. L., Cohen, J., & Everitt, B. S. (1969). Large sample standard errors of kappa and
weighted kappa. Psychological Bulletin, 72(5), 323-327.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special  # the normal quantile as scipy.stats computes it, without scipy.stats (0.5 s)

from helpers.contract import INSUFFICIENT, PATTERN_LABELS, TRUE_PATTERN
from helpers.describe import mean_ci, proportion_ci


def confusion(detected: pd.Series, truth: pd.Series, labels=PATTERN_LABELS,
              names=("true pattern", "detected pattern")) -> pd.DataFrame:
    """Counts with true patterns as rows and detected patterns as columns.

    ``detected`` and ``truth`` are aligned on their index (participant id); participants
    missing from either, or with a label outside ``labels`` (e.g. insufficient_data), are
    left out. ``names`` names the rows and the columns (two definitions compared with each
    other: ``("rci", "model")``).
    """
    both = pd.concat({"truth": truth, "detected": detected}, axis=1, join="inner")
    both = both[both["truth"].isin(labels) & both["detected"].isin(labels)]
    table = pd.crosstab(pd.Categorical(both["truth"], categories=labels),
                        pd.Categorical(both["detected"], categories=labels), dropna=False)
    table.index.name, table.columns.name = names
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


# --------------------------------------------------------------------------------------------
# pattern probabilities against the truth
# --------------------------------------------------------------------------------------------
#: Columns of the pattern probabilities (:data:`helpers.pattern_model.PROBABILITY_COLUMNS`), in
#: the order of :data:`PATTERN_LABELS`.
PROBABILITY_COLUMNS = [f"p_{label}" for label in PATTERN_LABELS]


def one_hot(patterns: pd.Series, labels=PATTERN_LABELS) -> pd.DataFrame:
    """Hard labels as probabilities 0 and 1 (:data:`PROBABILITY_COLUMNS`), index kept; a label
    outside ``labels`` (insufficient data) gives a row of NaN.

    >>> one_hot(pd.Series({"a": "repaired"})).loc["a"].tolist()
    [0.0, 1.0, 0.0]
    """
    known = patterns.isin(labels).to_numpy()
    out = np.column_stack([(patterns == label).to_numpy(dtype=float) for label in labels])
    out[~known] = np.nan
    return pd.DataFrame(out, index=patterns.index, columns=[f"p_{label}" for label in labels])


def brier_scores(probabilities: pd.DataFrame, truth: pd.Series, labels=PATTERN_LABELS) -> pd.Series:
    """Each client's Brier score: the sum over the patterns of (probability - truth)^2, the
    truth as 0/1 (Brier, 1950). 0 is a certain right answer, 2 a certain wrong one; hard labels
    (:func:`one_hot`) score 0 or 2, so their mean is twice their error rate.

    ``probabilities`` (columns :data:`PROBABILITY_COLUMNS`) and ``truth`` are aligned on their
    index (participant id); clients missing from either, with a label outside ``labels`` or
    without probabilities are left out.

    >>> p = pd.DataFrame({"p_no_rupture": [0.7, 0.1], "p_repaired": [0.2, 0.1], "p_unrepaired": [0.1, 0.8]},
    ...                  index=["a", "b"])
    >>> brier_scores(p, pd.Series({"a": "no_rupture", "b": "repaired"})).round(2).tolist()
    [0.14, 1.46]
    """
    cols = [f"p_{label}" for label in labels]
    both = probabilities[cols].join(truth.rename("_truth"), how="inner")
    both = both[both["_truth"].isin(labels) & both[cols].notna().all(axis=1)]
    target = one_hot(both["_truth"], labels).to_numpy()
    return pd.Series(((both[cols].to_numpy() - target) ** 2).sum(axis=1), index=both.index, name="brier")


def calibration_table(probabilities: pd.DataFrame, truth: pd.Series, *, bins: int = 5,
                      labels=PATTERN_LABELS) -> pd.DataFrame:
    """A reliability (calibration) table: for each pattern, the clients binned by their
    probability of it (``bins`` equal-width bins of [0, 1], the last one closed), and per bin
    the mean probability against the share truly of that pattern, with its Wilson 95% CI.
    Calibrated probabilities lie on the diagonal: of the clients given .3, about 30% are.

    Returns
    -------
    DataFrame
        pattern, bin_low, bin_high, n (clients in the bin), mean_predicted, observed (a
        proportion), ci_low, ci_high; empty bins are left out. Clients are aligned as in
        :func:`brier_scores`.

    >>> p = pd.DataFrame({"p_no_rupture": [0.9, 0.85, 0.1], "p_repaired": [0.05, 0.1, 0.1],
    ...                   "p_unrepaired": [0.05, 0.05, 0.8]}, index=list("abc"))
    >>> t = calibration_table(p, pd.Series({"a": "no_rupture", "b": "repaired", "c": "unrepaired"}))
    >>> t[t["pattern"] == "no_rupture"][["bin_low", "n", "mean_predicted", "observed"]].round(3).values.tolist()
    [[0.0, 1.0, 0.1, 0.0], [0.8, 2.0, 0.875, 0.5]]
    """
    if isinstance(bins, bool) or int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive whole number, got {bins!r}")
    cols = [f"p_{label}" for label in labels]
    both = probabilities[cols].join(truth.rename("_truth"), how="inner")
    both = both[both["_truth"].isin(labels) & both[cols].notna().all(axis=1)]
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    rows = []
    for label, col in zip(labels, cols):
        prob = both[col].to_numpy()
        hit = (both["_truth"] == label).to_numpy()
        which = np.clip(np.searchsorted(edges, prob, side="right") - 1, 0, int(bins) - 1)
        for b in range(int(bins)):
            inside = which == b
            if not inside.any():
                continue
            observed, low, high = proportion_ci(int(hit[inside].sum()), int(inside.sum()), percent=False)
            rows.append([label, edges[b], edges[b + 1], int(inside.sum()), float(prob[inside].mean()),
                         observed, low, high])
    return pd.DataFrame(rows, columns=["pattern", "bin_low", "bin_high", "n", "mean_predicted", "observed",
                                       "ci_low", "ci_high"])


#: Columns of :func:`definitions_agreement`.
AGREEMENT_COLUMNS = ["comparison", "n", "kappa", "kappa_ci_low", "kappa_ci_high", "agreement_pct", "brier",
                     "brier_ci_low", "brier_ci_high"]


def definitions_agreement(probabilities: pd.DataFrame, patterns: pd.Series, *, name: str,
                          truth: pd.Series | None = None) -> pd.DataFrame:
    """How the model-based patterns agree with a threshold criterion's and, on simulated data,
    both with the truth.

    Parameters
    ----------
    probabilities : DataFrame
        Index participant id; ``pattern`` (the most probable pattern, or insufficient data)
        and :data:`PROBABILITY_COLUMNS`.
    patterns : Series
        The criterion's pattern per participant id.
    name : str
        The criterion's name, in the rows' labels.
    truth : Series, optional
        The true pattern per participant id (simulated data).

    Returns
    -------
    DataFrame
        :data:`AGREEMENT_COLUMNS`; rows ``model vs <name>`` (Cohen's kappa of the most
        probable patterns, with its 95% CI), and with ``truth``: ``model vs truth`` and
        ``<name> vs truth`` (kappa, and the mean Brier score with its t 95% CI: the model's
        probabilities, the criterion's hard labels), then ``model minus <name> (Brier, paired)``,
        the mean of the clients' differences with its t 95% CI. Every row is over the clients
        both sides classify (its ``n``).
    """
    model = probabilities["pattern"]
    rows = [_kappa_row(f"model vs {name}", confusion(model, patterns, names=(name, "model")))]
    if truth is not None:
        classified = probabilities[probabilities["pattern"].isin(PATTERN_LABELS)]
        scores = {"model": brier_scores(classified[PROBABILITY_COLUMNS], truth),
                  name: brier_scores(one_hot(patterns[patterns.isin(PATTERN_LABELS)]), truth)}
        for who, labels in (("model", model), (name, patterns)):
            m, low, high, _, _ = mean_ci(scores[who])
            rows.append({**_kappa_row(f"{who} vs truth", confusion(labels, truth)), "brier": m, "brier_ci_low": low,
                         "brier_ci_high": high})
        paired = (scores["model"] - scores[name]).dropna()  # aligned on the clients both score
        m, low, high, _, n = mean_ci(paired)
        rows.append({"comparison": f"model minus {name} (Brier, paired)", "n": n, "brier": m, "brier_ci_low": low,
                     "brier_ci_high": high})
    out = pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)
    out["n"] = out["n"].astype("Int64")
    return out


def _kappa_row(label: str, table: pd.DataFrame) -> dict:
    k = cohen_kappa(table)
    return {"comparison": label, "n": k["n"], "kappa": k["kappa"], "kappa_ci_low": k["ci_low"],
            "kappa_ci_high": k["ci_high"], "agreement_pct": 100 * k["observed"]}
