"""The data contract shared by simulated and real trials (see ``data/README.md``).

``sessions``: one row per participant x session (long format).
``participants``: one row per participant.
``truth``: only for simulated data; the generative truth per participant.

Everything that breaks the contract raises :class:`DataValidationError`, whose message
names the file, the column, the rule and the first offending rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

#: Columns of the ``sessions`` table, in their fixed order.
SESSION_COLUMNS = ["participant_id", "session", "alliance", "pss_sr"]

#: Columns of the ``participants`` table, in their fixed order.
PARTICIPANT_COLUMNS = [
    "participant_id",
    "pss_sr_pre",
    "pss_sr_post",
    "pss_i_pre",
    "pss_i_post",
    "bdi_pre",
    "bdi_post",
    "mdd",
    "child_abuse",
    "female",
    "caucasian",
    "age",
]

#: Columns of the ``truth`` table (simulated data only), in their fixed order.
#: ``rupture_sessions`` / ``repair_sessions`` are ';'-separated session numbers ('' if none).
TRUTH_COLUMNS = [
    "participant_id",
    "true_pattern",
    "n_true_ruptures",
    "rupture_sessions",
    "repair_sessions",
    "imaginal_start",
    "dropout_after",
]

#: Allowed range (inclusive) of every score column, by column name.
SCORE_RANGES = {
    "alliance": (1.0, 7.0),  # CALPAS-P mean item score
    "pss_sr": (0.0, 51.0),  # PSS-SR total, 17 items 0-3
    "pss_sr_pre": (0.0, 51.0),
    "pss_sr_post": (0.0, 51.0),
    "pss_i_pre": (0.0, 51.0),
    "pss_i_post": (0.0, 51.0),
    "bdi_pre": (0.0, 63.0),
    "bdi_post": (0.0, 63.0),
    "age": (18.0, 65.0),  # parent trial's inclusion criterion
}

BOOL_COLUMNS = ["mdd", "child_abuse", "female", "caucasian"]

#: Alliance patterns of classifiable clients, in display order.
PATTERN_LABELS = ["no_rupture", "repaired", "unrepaired"]
#: The pattern of a client with too few alliance ratings to be classified.
INSUFFICIENT = "insufficient_data"
#: The truth table's pattern column; also the name of the power study's oracle "criterion"
#: (the true patterns of the classifiable clients).
TRUE_PATTERN = "true_pattern"


class DataValidationError(ValueError):
    """A table breaks the data contract.

    The message names the file, the column, the rule that was broken and the first
    offending rows, so a user can fix the input without reading a pandas traceback.
    """

    def __init__(self, file, column, rule, rows=None, *, n_bad=None):
        self.file = str(file)
        self.column = column
        self.rule = rule
        self.rows = rows
        # File-level problems (empty, unreadable, wrong encoding) have no column.
        msg = f"{self.file}: column {column!r}: {rule}" if column is not None else f"{self.file}: {rule}"
        if n_bad is not None:
            msg += f" ({n_bad} offending row{'s' if n_bad != 1 else ''})"
        if rows is not None and len(rows):
            msg += "\nfirst offending rows:\n" + str(rows)
        super().__init__(msg)


@dataclass
class Trial:
    """One trial's data in the contract's long format.

    Attributes
    ----------
    sessions : DataFrame
        ``SESSION_COLUMNS``; one row per participant x session.
    participants : DataFrame
        ``PARTICIPANT_COLUMNS``; one row per participant.
    truth : DataFrame or None
        ``TRUTH_COLUMNS`` for simulated data, ``None`` for real data.
    source : str
        Where the data came from ("simulated (seed=...)" or the input paths).
    meta : dict
        Anything else worth recording (simulation knobs, loader mapping, n_sessions).
    """

    sessions: pd.DataFrame
    participants: pd.DataFrame
    truth: pd.DataFrame | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        return self.truth is not None

    @property
    def n_sessions(self) -> int:
        return int(self.meta.get("n_sessions", self.sessions["session"].max()))
