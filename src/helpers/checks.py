"""Checks of a run's parameters and data before the first notebook starts.

A run that would fail in notebook 03 because of a typo in ``--set criterion=RCI`` or a
misspelt data folder should fail at once, with a message that names the parameter and the
``--set`` (or descriptor key) that fixes it. :func:`check_run` does every check that needs
no notebook: the value of each parameter, that the data exist, and that they load (the
descriptor and every rule of the data contract).
"""

from __future__ import annotations

import difflib
import numbers
from pathlib import Path


class ParameterError(ValueError):
    """A parameter's value is wrong; the message names the parameter and the fix."""

    def __init__(self, key, problem):
        self.key = key
        super().__init__(f"parameter {key!r}: {problem}")


#: Allowed values of the parameters that take a word.
CHOICES = {
    "criterion": ("absolute", "sd", "rci", "sudden"),
    "sd_scale": ("within", "between", "stricter"),
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
    sizes = params.get("power_sample_sizes", [60])
    if not (isinstance(sizes, list) and sizes and all(isinstance(n, int) and n >= 10 for n in sizes)):
        raise ParameterError("power_sample_sizes", f"expected a list of whole numbers >= 10, got {sizes!r}")


def check_data_source(params: dict):
    """That the data exist and load; returns the loaded Trial (None for simulated data).

    Raises FileNotFoundError naming ``data_source`` when the path does not exist, and the
    loader's own errors (DescriptorError, DataValidationError), which name file and key.
    """
    source = params.get("data_source", "simulate")
    if source == "simulate":
        return None
    path = Path(str(source))
    if not path.exists():
        near = ""
        if path.parent.is_dir():
            close = difflib.get_close_matches(path.name, [p.name for p in path.parent.iterdir()], n=1)
            near = f"; did you mean {path.parent / close[0]}?" if close else ""
        raise FileNotFoundError(f"parameter 'data_source': {source} does not exist{near} "
                                "(--set data_source=<folder holding dataset.yaml, or the descriptor itself>)")
    from helpers import dataset

    return dataset.load(source, params.get("participants_path"), warn=False)


def check_run(params: dict):
    """:func:`check_parameters`, then :func:`check_data_source`; returns the Trial or None."""
    check_parameters(params)
    return check_data_source(params)
