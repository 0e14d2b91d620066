"""Checks of a run's parameters and data before the first notebook starts.

A run that would fail in notebook 03 because of a typo in ``--set criterion=RCI`` or a
misspelt data folder should fail at once, with a message that names the parameter and the
``--set`` (or descriptor key) that fixes it. :func:`check_parameters` checks each parameter's
value; :func:`check_exists` that the data exist; :func:`check_trial` what the notebooks need
of the loaded data. :func:`helpers.runspec.resolve` calls them, before the first notebook.
"""

from __future__ import annotations

import difflib
import numbers
from pathlib import Path

from helpers.episodes import CRITERIA, SD_SCALES, needs_reliability
from helpers.contract import DataValidationError


class ParameterError(ValueError):
    """A parameter's value is wrong; the message names the parameter and the fix."""

    def __init__(self, key, problem):
        self.key = key
        super().__init__(f"parameter {key!r}: {problem}")


#: Allowed values of the parameters that take a word.
CHOICES = {
    "criterion": tuple(CRITERIA),
    "sd_scale": SD_SCALES,
    "outcome": ("pss_i", "pss_sr"),
}


def _choice(params, key):
    value, allowed = params.get(key), CHOICES[key]
    if value in allowed:
        return
    close = difflib.get_close_matches(str(value).lower(), allowed, n=1, cutoff=0.5)
    hint = f"; did you mean --set {key}={close[0]}?" if close else ""
    raise ParameterError(key, f"{value!r} is not one of {list(allowed)}{hint}")


def _number(params, key, *, low=None, high=None, integer=False, optional=False, open_low=False):
    value = params.get(key)
    if value is None and optional:
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and low is not None:
        ok = value > low if open_low else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        what = "a whole number" if integer else "a number"
        bounds = (f" {'>' if open_low else '>='} {low}" if low is not None else "") + (
            f" and <= {high}" if high is not None else "")
        raise ParameterError(key, f"expected {what}{bounds}{' (or null)' if optional else ''}, got {value!r}: "
                                  f"--set {key}=...")


def check_parameters(params: dict) -> None:
    """Every parameter's value, without touching data (raises :class:`ParameterError`)."""
    for key in CHOICES:
        if key in params:
            _choice(params, key)
    _number(params, "seed", low=0, integer=True)
    _number(params, "n_participants", low=1, integer=True)
    _number(params, "n_sessions", low=3, integer=True)
    _number(params, "reliability", low=0, high=0.999999, open_low=True, optional=True)
    _number(params, "rci_sd", low=0, open_low=True, optional=True)
    _number(params, "cutoff", low=0, open_low=True)
    _number(params, "k", low=0, open_low=True)
    _number(params, "repair_window", low=1, integer=True, optional=True)
    _number(params, "tolerance", low=0)
    _number(params, "min_sessions", low=2, integer=True)
    _number(params, "imaginal_start_session", low=1, integer=True)
    if "power_replications" in params:
        _number(params, "power_replications", low=1, integer=True)
    if "settings_replications" in params:  # a Monte-Carlo SE needs two trials
        _number(params, "settings_replications", low=2, integer=True, optional=True)
    if "settings_reference_n" in params:
        _number(params, "settings_reference_n", low=100, integer=True)
    sizes = params.get("power_sample_sizes", [60])
    if not (isinstance(sizes, list) and sizes and all(isinstance(n, int) and n >= 10 for n in sizes)):
        raise ParameterError("power_sample_sizes", f"expected a list of whole numbers >= 10, got {sizes!r}")


def check_exists(path: Path) -> None:
    """That a ``data_source`` exists (FileNotFoundError naming the parameter and a close name)."""
    if path.exists():
        return
    near = ""
    if path.parent.is_dir():
        close = difflib.get_close_matches(path.name, [p.name for p in path.parent.iterdir()], n=1)
        near = f"; did you mean {path.parent / close[0]}?" if close else ""
    raise FileNotFoundError(f"parameter 'data_source': {path} does not exist{near} "
                            "(--set data_source=<folder holding dataset.yaml, or the descriptor itself>)")


def check_trial(trial, params: dict, alliance, *, where: str) -> None:
    """What a notebook would otherwise fail on, checked on the loaded (or simulated) trial.

    Parameters
    ----------
    trial : helpers.contract.Trial
    params : dict
        The validated parameters.
    alliance : helpers.instruments.Instrument
        The alliance instrument (its reliability is the RCI's when ``reliability`` is null).
    where : str
        The descriptor or data source, for the messages.

    Raises
    ------
    ParameterError, helpers.contract.DataValidationError
    """
    ratings = trial.sessions["alliance"]
    if not ratings.notna().any():
        raise DataValidationError(where, "alliance", "no observed alliance rating: the rupture analyses need them "
                                                     "(check columns.alliance in the descriptor)")
    if needs_reliability(params["criterion"]) and params.get("reliability") is None and alliance.reliability is None:
        raise ParameterError("reliability", f"criterion {params['criterion']!r} needs the reliability of "
                                            f"{alliance.name}: declare instruments.alliance.reliability in {where}, "
                                            "or --set reliability=0.8")
    per_client = ratings.notna().groupby(trial.sessions["participant_id"]).sum()
    if per_client.max() < params["min_sessions"]:
        raise ParameterError("min_sessions", f"no client has {params['min_sessions']} observed alliance ratings "
                                             f"(at most {int(per_client.max())} in {where}): nobody could be "
                                             f"classified; --set min_sessions={int(per_client.max())}")
    n_sessions = int(trial.sessions["session"].max())
    if params["imaginal_start_session"] > n_sessions:
        raise ParameterError("imaginal_start_session", f"{params['imaginal_start_session']} is after the last "
                                                       f"session ({n_sessions}) of {where}")
    if params["criterion"] in ("rci", "sudden") and params.get("rci_sd") is None:
        first = trial.sessions.dropna(subset=["alliance"]).groupby("participant_id")["alliance"].first()
        if len(first) < 2 or not first.std() > 0:
            raise ParameterError("rci_sd", f"the RCI needs the SD of the clients' first alliance ratings, which "
                                           f"is undefined on {where} ({len(first)} clients with a rating, SD "
                                           f"{first.std():.3g}): --set rci_sd=<the instrument's SD>")
