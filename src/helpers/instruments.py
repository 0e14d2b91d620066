"""The measurement instruments of a trial, as data: name, score range, reliability, labels.

The replication's defaults are the paper's instruments (:data:`DEFAULTS`): CALPAS-P for the
alliance (mean item score 1-7), PSS-SR for session-by-session and pre/post self-rated PTSD
severity (0-51), PSS-I for the interview (0-51) and the BDI (0-63). Another trial declares its
own in its dataset descriptor (:mod:`helpers.descriptor`); score ranges, the RCI's reliability,
thresholds (in the instrument's own points), axis titles and report text then follow them.

Each instrument fills one *role*; the role decides which contract columns it scores:

========== ==================================== =========================
role       contract columns                     default
========== ==================================== =========================
alliance   ``alliance``                         CALPAS-P, 1-7, r = .83
symptoms   ``pss_sr``, ``pss_sr_pre``, ``_post`` PSS-SR, 0-51
interview  ``pss_i_pre``, ``pss_i_post``        PSS-I, 0-51
depression ``bdi_pre``, ``bdi_post``            BDI, 0-63
========== ==================================== =========================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

#: Contract columns scored by each role's instrument.
ROLE_COLUMNS = {
    "alliance": ("alliance",),
    "symptoms": ("pss_sr", "pss_sr_pre", "pss_sr_post"),
    "interview": ("pss_i_pre", "pss_i_post"),
    "depression": ("bdi_pre", "bdi_post"),
}
#: What each role measures, for labels.
ROLE_CONSTRUCTS = {"alliance": "alliance", "symptoms": "PTSD severity", "interview": "PTSD severity (interview)",
                   "depression": "depression"}


class InstrumentError(ValueError):
    """An instrument declaration is incomplete or inconsistent (the message names the key).

    Attributes
    ----------
    key : str or None
        The declaration's key (``instruments.alliance.reliability``), when known.
    problem : str
        The message without the key.
    """

    def __init__(self, problem, key=None):
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}" if key else problem)


@dataclass(frozen=True)
class Instrument:
    """One instrument: what it is called and the scores it gives.

    Attributes
    ----------
    name : str
        As it should appear in text and axis titles (e.g. ``"WAI-SR"``).
    low, high : float
        Smallest and largest possible score (inclusive).
    score : str
        What a score is, e.g. ``"mean item score"`` or ``"total"``.
    reliability : float or None
        Test-retest or internal-consistency reliability, used by the RCI rupture criterion
        (alliance) -- with its source in ``reliability_source``.
    higher_is_better : bool
        True for alliance (higher = stronger), False for symptom scales.
    """

    name: str
    low: float
    high: float
    score: str = "total"
    reliability: float | None = None
    reliability_source: str = ""
    higher_is_better: bool = False

    def __post_init__(self):
        if not self.name:
            raise InstrumentError("an instrument needs a name")
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise InstrumentError(f"{self.name}: score range must be two numbers low < high, got {self.low}, {self.high}")
        if self.reliability is not None and not (0 < self.reliability < 1):
            raise InstrumentError(f"{self.name}: reliability must lie strictly between 0 and 1, got {self.reliability}")

    @property
    def range_text(self) -> str:
        return f"{self.low:g}-{self.high:g}"

    def label(self, construct: str = "") -> str:
        """Axis title, e.g. ``"CALPAS-P alliance (mean item score, 1-7)"``."""
        what = f" {construct}" if construct else ""
        return f"{self.name}{what} ({self.score}, {self.range_text})"

    def points(self, value: float, digits: int = 2) -> str:
        """A difference in the instrument's own points, e.g. ``"0.74 CALPAS-P points"``."""
        return f"{value:.{digits}f} {self.name} points"


CALPAS = Instrument("CALPAS-P", 1.0, 7.0, "mean item score", 0.83,
                    "Gaston (1991), total score; an assumption of this replication", True)
PSS_SR = Instrument("PSS-SR", 0.0, 51.0, "total")
PSS_I = Instrument("PSS-I", 0.0, 51.0, "total")
BDI = Instrument("BDI", 0.0, 63.0, "total")

#: The paper's instruments, by role.
DEFAULTS = {"alliance": CALPAS, "symptoms": PSS_SR, "interview": PSS_I, "depression": BDI}

#: Keys an instrument declaration may hold (in a dataset descriptor).
KEYS = ("name", "range", "score", "reliability", "reliability_source", "higher_is_better")


def from_mapping(role: str, spec, *, where: str = "instruments") -> Instrument:
    """An :class:`Instrument` from a descriptor's ``instruments.<role>`` mapping.

    ``spec`` holds ``name`` and ``range: [low, high]``, optionally ``score``, ``reliability``
    (required for the alliance when the RCI criterion is used), ``reliability_source`` and
    ``higher_is_better`` (default: True for the alliance, False otherwise). Unknown keys are
    an error, so a typo is never ignored.

    >>> from_mapping("alliance", {"name": "WAI-SR", "range": [1, 5], "score": "mean item score",
    ...                           "reliability": 0.9}).label("alliance")
    'WAI-SR alliance (mean item score, 1-5)'
    """
    if role not in ROLE_COLUMNS:
        raise InstrumentError(f"unknown role {role!r}; roles are {sorted(ROLE_COLUMNS)}", where)
    here = f"{where}.{role}"
    if not isinstance(spec, dict):
        raise InstrumentError(f"expected a mapping with name and range, e.g. {{name: PCL-5, range: [0, 80]}}, got "
                              f"{_kind(spec)}", here)
    unknown = sorted((k for k in spec if k not in KEYS), key=str)
    if unknown:
        raise InstrumentError(f"unknown key(s) {unknown}; allowed: {list(KEYS)}", here)
    for key in ("name", "range"):
        if key not in spec:
            raise InstrumentError(f"missing key {key!r} (e.g. name: PCL-5, range: [0, 80])", here)
    rng = spec["range"]
    if not (isinstance(rng, (list, tuple)) and len(rng) == 2 and all(_is_number(v) for v in rng)):
        raise InstrumentError(f"expected [low, high], two numbers, got {_kind(rng)}", f"{here}.range")
    for key in ("name", "score", "reliability_source"):
        if key in spec and not (isinstance(spec[key], str) and (spec[key].strip() or key != "name")):
            raise InstrumentError(f"expected text, got {_kind(spec[key])}" + (f"; quote it: {key}: '{spec[key]}'"
                                  if _is_number(spec[key]) else ""), f"{here}.{key}")
    reliability = spec.get("reliability")
    if reliability is not None and not _is_number(reliability):
        raise InstrumentError(f"expected a number strictly between 0 and 1 (e.g. 0.85) or no key, got "
                              f"{_kind(reliability)}", f"{here}.reliability")
    if "higher_is_better" in spec and not isinstance(spec["higher_is_better"], bool):
        raise InstrumentError(f"expected true or false, got {_kind(spec['higher_is_better'])}",
                              f"{here}.higher_is_better")
    try:
        return Instrument(name=spec["name"], low=float(rng[0]), high=float(rng[1]),
                          score=spec.get("score", "mean item score" if role == "alliance" else "total"),
                          reliability=None if reliability is None else float(reliability),
                          reliability_source=spec.get("reliability_source", ""),
                          higher_is_better=spec.get("higher_is_better", role == "alliance"))
    except InstrumentError as exc:
        raise InstrumentError(exc.problem, here) from None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value) -> str:
    """A value for a message: short, never the whole of a large value."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def resolve(declared: dict | None = None) -> dict:
    """Every role's instrument: the declared ones over :data:`DEFAULTS`."""
    out = dict(DEFAULTS)
    if declared is not None and not isinstance(declared, dict):
        raise InstrumentError(f"expected a mapping of role: instrument (e.g. alliance: {{name: WAI-SR, range: "
                              f"[1, 5]}}), got {_kind(declared)}", "instruments")
    for role, spec in (declared or {}).items():
        out[role] = spec if isinstance(spec, Instrument) else from_mapping(role, spec)
    return out


def score_ranges(instruments: dict) -> dict:
    """``{contract column: (low, high)}`` for every scored column.

    >>> score_ranges(DEFAULTS)["pss_sr_post"]
    (0.0, 51.0)
    """
    return {col: (inst.low, inst.high) for role, inst in instruments.items() for col in ROLE_COLUMNS[role]}


def range_fit_warnings(tables: dict, instruments: dict) -> list[str]:
    """Sentences for instruments whose observed scores do not fit the declared range.

    All of a role's columns are pooled (post-treatment symptom scores are lower by design, so a
    column alone would mislead). Two rules, each a hint to check the descriptor:

    * *narrower*: the observed maximum lies a third of the range or more below the declared
      maximum -- a 1-5 scale declared 1-7;
    * *ceiling*: at least 5 scores, and at least 1% of them, sit exactly at an observed maximum
      below the declared maximum, and none is higher -- a 1-6 scale declared 1-7 (ratings pile
      up at its ceiling, 6).

    A high minimum is never a warning: clinical samples start high on symptom scales (an
    inclusion criterion), and alliance ratings rarely reach the floor.

    >>> import pandas as pd
    >>> t = {"sessions": pd.DataFrame({"alliance": [6.0] * 20 + [3.5, 4.0, 5.5]})}
    >>> range_fit_warnings(t, DEFAULTS)[0][:59]
    'alliance scores (CALPAS-P, declared 1-7): 20 of 23 sit at 6'
    """
    out = []
    for role, inst in instruments.items():
        cols = [(t, c) for t in tables.values() for c in ROLE_COLUMNS[role] if c in t.columns]
        if not cols:
            continue
        x = np.concatenate([np.asarray(t[c], dtype=float) for t, c in cols])
        x = x[np.isfinite(x)]
        if len(x) < 10:
            continue
        top = x.max()
        at_top = int((x == top).sum())
        what = f"{ROLE_CONSTRUCTS[role]} scores ({inst.name}, declared {inst.range_text})"
        if top <= inst.high - (inst.high - inst.low) / 3:
            out.append(f"{what}: the highest observed is {top:g}, a third of the range or more below the "
                       f"declared maximum; is the scale narrower? Check instruments.{role}.range in the descriptor")
        elif top < inst.high and at_top >= max(5, 0.01 * len(x)):
            out.append(f"{what}: {at_top} of {len(x)} sit at {top:g} and none is higher, as at a scale's ceiling; "
                       f"is the maximum {top:g}? Check instruments.{role}.range in the descriptor")
    return out


def as_dict(instruments: dict) -> dict:
    """Plain ``{role: {field: value}}`` (for the manifest and the notebooks' parameters)."""
    return {role: dataclasses.asdict(inst) for role, inst in instruments.items()}


def from_dicts(stored: dict) -> dict:
    """The inverse of :func:`as_dict`, over :data:`DEFAULTS` for roles not stored.

    >>> from_dicts(as_dict(DEFAULTS)) == DEFAULTS
    True
    """
    return {**DEFAULTS, **{role: Instrument(**fields) for role, fields in (stored or {}).items()}}
