"""The paper's analyses on what a dataset has: a missing measure is said in words, never a crash.

Another trial may lack the MDD diagnosis, the childhood-abuse history or the PSS-I interview,
or have a pattern with too few clients for a test. These functions run what can be run and
put a sentence (``note``) where a result cannot be had, so that notebooks and the report show
"not available: no `mdd` column" instead of a traceback.
"""

from __future__ import annotations

import pandas as pd

from helpers import models

#: The paper's two tests of association with the alliance pattern.
CHI2_BYS = ("mdd", "child_abuse")
#: Post-treatment outcomes of the paper's regression, primary first.
OUTCOMES = ("pss_i", "pss_sr")


def has_column(table: pd.DataFrame, column: str) -> bool:
    """The table holds ``column`` with at least one observed value."""
    return column in table.columns and bool(table[column].notna().any())


def not_available(column: str) -> str:
    """The sentence a result shows when the data lack ``column``."""
    return f"not available: no `{column}` column in the data"


def chi2_by(patterns: pd.DataFrame, participants: pd.DataFrame, bys=CHI2_BYS, **kwargs) -> pd.DataFrame:
    """:func:`helpers.models.pattern_chi2` for each of ``bys``, with a row saying why for those
    the data cannot test: the column is absent (or all missing), or it has too few levels or
    patterns. The ``note`` column is left out when every test ran (the default run's table).

    >>> import pandas as pd
    >>> pats = pd.DataFrame({"participant_id": list("abcd"), "pattern": ["no_rupture", "repaired"] * 2})
    >>> chi2_by(pats, pd.DataFrame({"participant_id": list("abcd")}))[["by", "note"]].to_dict("records")[0]
    {'by': 'mdd', 'note': 'not available: no `mdd` column in the data'}
    """
    rows = []
    for by in bys:
        if not has_column(participants, by):
            rows.append(pd.DataFrame({"by": [by], "note": [not_available(by)]}))
            continue
        try:
            rows.append(models.pattern_chi2(patterns, participants, by=by, **kwargs).assign(note=""))
        except ValueError as exc:  # too few patterns or levels: the reason is the result
            rows.append(pd.DataFrame({"by": [by], "note": [f"not estimable: {exc}"]}))
    out = pd.concat(rows, ignore_index=True)
    return out.drop(columns="note") if not out["note"].astype(bool).any() else out


def regression_outcomes(participants: pd.DataFrame, preferred: str) -> tuple[list[str], str, str]:
    """The outcomes the paper's regression can use (pre and post observed), the one to report
    (``preferred`` when available, else the first available), and a note when it had to change
    or when none can be used.

    >>> import pandas as pd
    >>> p = pd.DataFrame({"pss_sr_pre": [1.0], "pss_sr_post": [2.0]})
    >>> regression_outcomes(p, "pss_i")
    (['pss_sr'], 'pss_sr', 'no PSS-I (pss_i_pre, pss_i_post) in the data: the β is estimated on pss_sr')
    >>> regression_outcomes(p[["pss_sr_pre"]], "pss_i")[0]
    []
    """
    usable = [o for o in OUTCOMES if has_column(participants, f"{o}_pre") and has_column(participants, f"{o}_post")]
    if not usable:
        return [], preferred, ("no outcome with both pre- and post-treatment scores (pss_i_pre/_post or "
                               "pss_sr_pre/_post) in the data: the paper's regression and the pre/post ANOVA "
                               "cannot be estimated")
    if preferred in usable:
        return usable, preferred, ""
    name = preferred.replace("_", "-").upper()
    return usable, usable[0], (f"no {name} ({preferred}_pre, {preferred}_post) in the data: the β is estimated on "
                               f"{usable[0]}")


def regressions(patterns: pd.DataFrame, participants: pd.DataFrame, outcomes, **kwargs) -> pd.DataFrame:
    """:func:`helpers.models.outcome_regression` for each outcome, stacked; an empty table
    with the same columns when there is none."""
    tables = [models.outcome_regression(patterns, participants, outcome=o, **kwargs) for o in outcomes]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=models.REGRESSION_COLUMNS)


def prepost_anova(patterns: pd.DataFrame, participants: pd.DataFrame, outcomes, **kwargs) -> pd.DataFrame:
    """:func:`helpers.models.mixed_anova_prepost` on PSS-SR when the data have pre and post
    scores (the paper's measure of change), else an empty table with a ``note``."""
    if "pss_sr" in outcomes:
        return models.mixed_anova_prepost(patterns, participants, outcome="pss_sr", **kwargs)
    return pd.DataFrame({"note": ["not available: no pss_sr_pre and pss_sr_post in the data"]})
