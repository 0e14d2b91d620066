"""The run specification: every parameter of a run, its dataset and its instruments, resolved once.

A run is asked for with parameters (``params/default.yaml``, ``--params FILE``, ``--set
key=value``). :func:`resolve` turns them, once, into a :class:`RunSpec`:

1. the parameters are validated (:func:`helpers.checks.check_parameters`);
2. the data are simulated (:mod:`helpers.simulate`) or loaded from the dataset's descriptor
   (:mod:`helpers.descriptor`) or from files in the contract's own names, and checked for
   everything a notebook would otherwise fail on (:func:`helpers.checks.check_trial`);
3. the instruments, by role: the simulator's (the paper's, for simulated data), the ones the
   dataset declares, or -- for a role a dataset does not declare -- the replication's default,
   marked ``"default"`` so that notebook 01 and the report say so;
4. the rupture criterion's arguments, with the alliance instrument's reliability and its source,
   and the threshold in the instrument's points; the multiverse's presets with the same
   reliability (so the row of the run's criterion equals the headline);
5. the outcome of the paper's regression that the data allow;
6. the pattern model's settings (:mod:`helpers.pattern_model`): the reliability and the
   smallest drop it implies in the alliance instrument's points, the repair templates, the
   imputations and their seed, the ``min_drop`` multiples of its sensitivity table -- or why
   it cannot be fitted (no reliability);
7. whether the trial has the paper's design, and where the outputs go.

:func:`prepare` writes it as ``data/processed/run.json`` beside the trial's tables under the
run's output root. Every notebook opens it (:func:`open_run`), and every table, figure and
report function takes names, ranges and parameters from it: nothing re-resolves a parameter,
re-reads the descriptor or reloads the data.

The runner (:mod:`helpers.pipeline`) calls :func:`prepare` before the first notebook and
points ``REPLICATION_RUN_SPEC`` at the file. A notebook run by hand (JupyterLab, nbval) opens
the run.json of the default output root; when its own parameters differ from that run's, it
resolves a new run whose outputs go to ``runs/<name>/`` (git-ignored), never over the
committed replication.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from helpers import available, checks, data, descriptor, episodes, instruments, paths, pattern_model, simulate
from helpers.contract import INSUFFICIENT, Trial
from helpers.instruments import Instrument
from helpers.markup import escape_markdown
from helpers.table_io import atomic_write_text, find_processed, read_processed, read_table

#: The run specification's file name, in ``data/processed/`` under the output root.
SPEC_FILE = "run.json"
#: Set by the runner: the run specification the notebooks must use.
ENV_SPEC = "REPLICATION_RUN_SPEC"
#: Version of run.json's layout (2: the pattern model's settings).
SCHEMA = 2
#: Parameters holding a user's file or folder.
PATH_PARAMS = ("data_source", "participants_path")
#: The paper's design (N, sessions): a simulated trial of this size is compared with it row by row.
PAPER_DESIGN = {"n_participants": 116, "n_sessions": 10}
#: Where an instrument of a role comes from.
ORIGINS = {"simulated": "the simulator's (the paper's instrument)",
           "declared": "declared in the dataset's descriptor",
           "default": "the replication's default: the dataset declares none"}


# ----------------------------------------------------------------------------- parameters
def read_params_file(path) -> dict:
    """A YAML mapping of parameter: value (``params/default.yaml`` or a ``--params`` file)."""
    with open(path, encoding="utf-8") as fh:
        loaded = yaml.safe_load(fh) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of parameter: value")
    return loaded


def default_params() -> dict:
    """``params/default.yaml``."""
    return read_params_file(paths.DEFAULT_PARAMS)


def load_params(params_file=None, overrides=None, *, defaults=None) -> dict:
    """Default parameters, updated from ``params_file`` and then ``overrides``.

    Parameters
    ----------
    params_file : path-like, optional
        A YAML file holding some of the keys of ``params/default.yaml``.
    overrides : list of str or dict, optional
        ``"key=value"`` strings (the value is parsed as YAML, so ``seed=3`` is an int and
        ``repair_window=null`` is None) or a dict.
    defaults : path-like, optional
        The defaults file; ``params/default.yaml`` unless given.

    Raises
    ------
    KeyError
        An override or params file names a key that the defaults do not have (a typo would
        otherwise be silently ignored).
    """
    params = read_params_file(defaults or paths.DEFAULT_PARAMS)
    for source, update in ((params_file, read_params_file(params_file) if params_file else {}),
                           ("--set", _parse_overrides(overrides))):
        unknown = sorted(set(update) - set(params))
        if unknown:
            hint = ("; a trial's column mapping, codes, sessions and instruments are declared in its dataset.yaml "
                    "(see data/README.md), then --set data_source=<its folder>"
                    if set(unknown) & {"mapping", "codes", "instruments", "columns", "sheet", "layout"} else "")
            raise KeyError(f"{source}: unknown parameter(s) {unknown}; known: {sorted(params)}{hint}")
        params.update(update)
    return params


def _parse_overrides(overrides) -> dict:
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        parsed[key.strip()] = yaml.safe_load(value)
    return parsed


def absolute_data_paths(params: dict, base=None) -> dict:
    """The user's data paths made absolute, relative to ``base`` (default: the working directory
    of the command; a notebook runs in notebooks/, where a relative path would point elsewhere)."""
    out = dict(params)
    for key in PATH_PARAMS:
        value = out.get(key)
        if isinstance(value, str) and value != "simulate" and not Path(value).is_absolute():
            out[key] = str((Path(base) if base else Path.cwd()) / value)
        if isinstance(out.get(key), str) and out[key] != "simulate":
            out[key] = str(Path(out[key]).resolve())
    return out


def portable_params(params: dict) -> dict:
    """Data paths inside the repository written relative to it (run.json must not hold this
    machine's folders)."""
    out = dict(params)
    for key in PATH_PARAMS:
        value = out.get(key)
        if isinstance(value, str) and value != "simulate" and Path(value).is_absolute():
            try:
                out[key] = Path(value).relative_to(paths.ROOT).as_posix()
            except ValueError:
                pass
    return out


def is_default(params: dict) -> bool:
    """Whether ``params`` are ``params/default.yaml``'s: only that run writes the committed outputs."""
    return portable_params(params) == default_params()


def run_name(params: dict, dataset_name: str | None = None) -> str:
    """The folder name of a non-default run under ``runs/``: the dataset's name, or the
    parameters that differ from the defaults."""
    if dataset_name is not None and params.get("data_source", "simulate") != "simulate":
        name = dataset_name
    else:
        defaults = default_params()
        changed = {k: v for k, v in portable_params(params).items() if defaults.get(k) != v}
        name = "simulated-" + "-".join(f"{k}-{v}" for k, v in sorted(changed.items()))
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-").lower() or "run"
    if len(name) > 60:
        name = name[:50] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


# ----------------------------------------------------------------------------- the specification
@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs to know, resolved once (see the module docstring).

    Attributes
    ----------
    params : dict
        The validated parameters (every key of ``params/default.yaml``); data paths absolute.
    dataset : dict or None
        name, description, simulated, has_truth, source (``"simulate"``, ``"descriptor"`` or
        ``"files"``), descriptor, n_participants, n_sessions, sessions (first and last observed),
        measures, absent, warnings, knobs (simulated), same_design. None for a run that uses no
        trial data (the simulation study alone).
    instruments : dict
        Role -> :class:`~helpers.instruments.Instrument`, for the roles the trial measured.
    origins : dict
        Role -> ``"simulated"``, ``"declared"`` or ``"default"`` (:data:`ORIGINS`).
    criterion : dict
        name, arguments (of :func:`helpers.episodes.detect_episodes`), reliability,
        reliability_source, threshold (the threshold applied, in the alliance instrument's
        points), min_sessions.
    presets : dict
        The multiverse's criteria: name -> arguments, with this run's reliability; ``default``
        names the one that is this run's criterion.
    outcome : dict
        requested, used, usable (outcomes with pre and post scores), note.
    pattern_model : dict
        The pattern model's settings (:func:`_pattern_model`): fitted (whether it can be),
        note (why not), reliability and its source, sd (SD of the first observed ratings),
        min_drop (the smallest drop, in the alliance instrument's points), repair_max,
        two_episodes, min_sessions, n_imputations, seed, min_drop_multiples.
    root : Path
        The output root (not stored in run.json: the file's place says it).
    """

    params: dict
    dataset: dict | None
    instruments: dict
    origins: dict
    criterion: dict
    presets: dict
    outcome: dict
    pattern_model: dict = field(default_factory=dict)
    root: Path = field(default_factory=paths.output_root, compare=False)

    # ---- where
    @property
    def out(self) -> paths.Outputs:
        return paths.Outputs(self.root)

    @property
    def default_run(self) -> bool:
        return is_default(self.params)

    # ---- the data
    @property
    def simulated(self) -> bool:
        return bool(self.dataset and self.dataset["simulated"])

    @property
    def has_truth(self) -> bool:
        return bool(self.dataset and self.dataset["has_truth"])

    @property
    def same_design(self) -> bool:
        """The replication's own simulated trial: the paper's design facts are compared row by row."""
        return bool(self.dataset and self.dataset["same_design"])

    @property
    def name(self) -> str:
        return self.dataset["name"] if self.dataset else "simulation study"

    @property
    def caption(self) -> str:
        """Appended to every figure title: simulated-data outputs say so."""
        return " · SIMULATED DATA" if self.simulated else ""

    @property
    def n_sessions(self) -> int:
        return int(self.dataset["n_sessions"] if self.dataset else self.params["n_sessions"])

    # ---- instruments
    def measure(self, column: str) -> Instrument:
        """The instrument that scores a contract column (``alliance``, ``pss_sr_pre``, ...)."""
        for role, cols in instruments.ROLE_COLUMNS.items():
            if column in cols or column in {c.rsplit("_", 1)[0] for c in cols if c.endswith(("_pre", "_post"))}:
                return self.instruments[role]
        raise KeyError(f"no instrument scores the column {column!r}")

    def axis_label(self, column: str) -> str:
        """Axis title of a scored column, e.g. ``"WAI-SR alliance (mean item score, 1-5)"``."""
        role = self.role_of(column)
        inst = self.instruments[role]
        construct = instruments.ROLE_CONSTRUCTS[role]
        return inst.label(construct) if role == "alliance" else f"{inst.name} {construct} ({inst.range_text})"

    @staticmethod
    def role_of(column: str) -> str:
        for role, cols in instruments.ROLE_COLUMNS.items():
            if column in cols or any(c.startswith(column + "_") for c in cols):
                return role
        raise KeyError(f"no instrument scores the column {column!r}")

    @property
    def defaulted(self) -> list[str]:
        """Roles measured in the data whose instrument is the replication's default."""
        return [role for role, origin in self.origins.items() if origin == "default"]

    # ---- text
    def instruments_markdown(self) -> str:
        """One line per measured role: the instrument's name, scores, range, reliability and origin."""
        absent = set(self.dataset["absent"]) if self.dataset else set()
        lines = []
        for role, inst in self.instruments.items():
            cols = [c for c in instruments.ROLE_COLUMNS[role] if c not in absent]
            if not cols:
                continue
            rel = f", reliability {fmt_r(inst.reliability)}" if inst.reliability is not None else ""
            lines.append(f"* {instruments.ROLE_CONSTRUCTS[role]}: **{escape_markdown(inst.name)}** "
                         f"({escape_markdown(inst.score)}, "
                         f"{inst.range_text}{rel}; columns {', '.join(f'`{c}`' for c in cols)}) — "
                         f"{ORIGINS[self.origins[role]]}")
        return "\n".join(lines)

    def criterion_markdown(self) -> str:
        """The rupture criterion as a reader needs it: name, threshold in the alliance
        instrument's points, reliability and its source, the repair rule, ``min_sessions`` and
        the number of sessions."""
        c = self.criterion
        alliance = self.instruments["alliance"]
        thr = c["threshold"]
        rule = thr["rule"]
        rel = (f"; reliability r = {fmt_r(c['reliability'])} ({escape_markdown(c['reliability_source'])})"
               if c["reliability"] is not None and episodes.needs_reliability(c["name"]) else "")
        window = c["arguments"].get("repair_window")
        repair = (f"repaired when a later rating within {window} session{'s' if window != 1 else ''}"
                  if window is not None else "repaired when any later rating")
        tol = c["arguments"].get("tolerance", 0.0)
        back = (f"is back to at least the pre-rupture level minus {tol:g} points" if tol else
                "is back to at least the pre-rupture level")
        return (f"Rupture criterion **`{c['name']}`**: a drop between consecutive observed "
                f"{escape_markdown(alliance.name)} ratings of at least {escape_markdown(rule)}{rel}; {repair} {back}. Clients with fewer than "
                f"{c['min_sessions']} observed alliance ratings are *insufficient data*; the trial has "
                f"{self.n_sessions} sessions.")

    def pattern_model_markdown(self) -> str:
        """The pattern model's settings as a reader needs them: the smallest drop in the alliance
        instrument's points and where it comes from, the templates, the imputations; or why it
        is not fitted on these data."""
        m = self.pattern_model
        alliance = self.instruments["alliance"]
        if not m.get("fitted"):
            return f"*Pattern model:* {escape_markdown(m.get('note', 'not fitted'))}."
        return (f"*Pattern model* (`helpers.pattern_model`, `docs/pattern_model.md`): each client's "
                f"{escape_markdown(alliance.name)} series is a person-level straight line plus normal noise with at most "
                f"two drops (episodes) of at least {escape_markdown(alliance.points(m['min_drop']))} (1.96 · SD₀ · √(1 − r), SD₀ = "
                f"{m['sd']:.2f} points of the clients' first observed ratings, r = {fmt_r(m['reliability'])}, "
                f"{escape_markdown(m['reliability_source'])}); a drop either climbs back within {m['repair_max']} "
                f"sessions (repaired) or stays (unrepaired); hyperparameters by empirical Bayes from the clients with at "
                f"least {m['min_sessions']} ratings (a random {m['max_fit_clients']:,} of them when there are more, seeded "
                f"with the run's seed). Each client's pattern probabilities are posterior probabilities "
                f"given those hyperparameters; the β is pooled over {m['n_imputations']} imputations of the patterns "
                f"(seed {m['seed']}).")

    def banner_markdown(self, what: str = "these results") -> str:
        """The simulated-data notice (or the dataset's name) as a Markdown block."""
        if self.simulated:
            return (f"> **Simulated data** ({escape_markdown(self.name)}; see notebook 01): {what} show what the pipeline finds in "
                    "simulated data; they are not evidence about real clients.")
        return f"> **Data: {escape_markdown(self.name)}.**"

    # ---- the trial's tables
    def tables(self) -> "RunTables":
        """The processed tables under this run's output root (patterns and episodes once notebook
        02 has written them)."""
        folder = self.out.processed
        for name in ("sessions", "participants"):
            if find_processed(folder, name) is None:
                raise FileNotFoundError(f"{folder}: no {name}.csv (or {name}.csv.gz): run notebook 01 (or the "
                                        "pipeline) first")
        return RunTables(*(read_processed(folder, name)
                           for name in ("sessions", "participants", "truth", "episodes", "patterns")))

    # ---- serialisation
    def to_json(self) -> str:
        doc = {
            "schema": SCHEMA,
            "params": portable_params(self.params),
            "dataset": self.dataset,
            "instruments": {role: {**instruments.as_dict({role: inst})[role], "origin": self.origins[role]}
                            for role, inst in self.instruments.items()},
            "criterion": self.criterion,
            # a list: JSON objects are written with sorted keys, and the criteria's order is the tables'
            "presets": {**self.presets, "criteria": [{"name": k, "arguments": v}
                                                     for k, v in self.presets["criteria"].items()]}
            if self.presets else {},
            "outcome": self.outcome,
            "pattern_model": self.pattern_model,
        }
        return json.dumps(_rounded(doc), indent=1, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, root) -> "RunSpec":
        doc = json.loads(text)
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"run.json schema {doc.get('schema')!r}; this code reads schema {SCHEMA}: re-run the "
                             "pipeline")
        roles = [r for r in instruments.ROLE_COLUMNS if r in doc["instruments"]]  # the roles' own order
        presets = doc["presets"]
        if presets:
            presets = {**presets, "criteria": {c["name"]: c["arguments"] for c in presets["criteria"]}}
        return cls(params=absolute_data_paths(doc["params"], paths.ROOT), dataset=doc["dataset"],
                   instruments={r: Instrument(**{k: v for k, v in doc["instruments"][r].items() if k != "origin"})
                                for r in roles},
                   origins={r: doc["instruments"][r]["origin"] for r in roles},
                   criterion=doc["criterion"], presets=presets, outcome=doc["outcome"],
                   pattern_model=doc["pattern_model"], root=Path(root))


@dataclass
class RunTables:
    """The processed tables of a run (:meth:`RunSpec.tables`)."""

    sessions: pd.DataFrame
    participants: pd.DataFrame
    truth: pd.DataFrame | None
    episodes: pd.DataFrame | None
    patterns: pd.DataFrame | None


def fmt_r(r: float) -> str:
    """A reliability as APA prints it: ``.83``."""
    return f"{r:.2f}".lstrip("0") if r is not None else "—"


def _rounded(obj):
    """Floats to 10 significant digits: run.json is an exact output, and the last bits of a
    threshold differ between machines."""
    if isinstance(obj, float):
        return float(f"{obj:.10g}") if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- resolving
def resolve(params: dict, *, root=None, load: bool = True) -> tuple[RunSpec, Trial | None]:
    """The run specification of ``params`` and the trial it runs on.

    Parameters
    ----------
    params : dict
        Every parameter (:func:`load_params`); data paths relative to the working directory
        are made absolute.
    root : path-like, optional
        The output root; default: the repository for the default run, ``runs/<name>/`` for
        any other.
    load : bool
        False for a run that uses no trial data (the simulation study alone): the parameters
        are validated, nothing is simulated or loaded.

    Raises
    ------
    helpers.checks.ParameterError, helpers.descriptor.DescriptorError,
    helpers.contract.DataValidationError, FileNotFoundError
        Whatever a notebook would otherwise fail on, with the parameter, key or column that
        fixes it.
    """
    params = absolute_data_paths(params)
    checks.check_parameters(params)
    if not load:
        spec = RunSpec(params, None, dict(instruments.DEFAULTS), {r: "default" for r in instruments.DEFAULTS},
                       {}, {}, {}, root=Path(root) if root else _default_root(params, None))
        return spec, None
    trial, desc = _load(params)
    insts, origins = _instruments(trial, desc)
    checks.check_trial(trial, params, insts["alliance"], where=_where(params, desc))
    criterion = _criterion(params, trial, insts["alliance"], origins["alliance"], desc)
    data = _dataset(params, trial, desc, insts)
    # only the instruments of what the trial measured: an absent role has no name to show
    measured = [r for r, cols in instruments.ROLE_COLUMNS.items() if set(cols) & set(data["measures"])]
    insts, origins = {r: insts[r] for r in measured}, {r: origins[r] for r in measured}
    spec = RunSpec(params=params, dataset=data, instruments=insts, origins=origins, criterion=criterion,
                   presets=_presets(criterion), outcome=_outcome(params, trial, insts),
                   pattern_model=_pattern_model(params, trial, criterion, insts["alliance"]),
                   root=Path(root) if root else _default_root(params, data["name"]))
    # as stored: the runner and every notebook see the same (rounded) numbers
    return RunSpec.from_json(spec.to_json(), spec.root), trial


def _default_root(params, dataset_name) -> Path:
    if is_default(params):
        return paths.output_root()
    return paths.runs_root() / run_name(params, dataset_name)


def _where(params, desc) -> str:
    return str(desc.path) if desc is not None else f"data_source {params['data_source']}"


def _load(params):
    """The trial (simulated or loaded) and its parsed descriptor (None without one)."""
    source = params["data_source"]
    if source == "simulate":
        trial = simulate.simulate_trial(n_participants=params["n_participants"], n_sessions=params["n_sessions"],
                                        seed=params["seed"])
        return trial, None
    path = Path(source)
    checks.check_exists(path)
    found = descriptor.find_descriptor(path)
    if found is not None:
        desc = descriptor.read_descriptor(found)
        return descriptor.load_dataset(desc, warn=False), desc
    return descriptor.load(path, params.get("participants_path"), warn=False), None


def _instruments(trial: Trial, desc) -> tuple[dict, dict]:
    if desc is None:
        origin = "simulated" if trial.truth is not None and "knobs" in trial.meta else "default"
        return dict(instruments.DEFAULTS), {role: origin for role in instruments.DEFAULTS}
    declared = set(desc.declared_roles)
    return dict(desc.instruments), {role: "declared" if role in declared else "default"
                                    for role in desc.instruments}


def _dataset(params, trial: Trial, desc, insts) -> dict:
    simulated_here = params["data_source"] == "simulate"
    tables = {"sessions": trial.sessions, "participants": trial.participants}
    measured = [c for t in tables.values() for c in t.columns if c not in ("participant_id", "session")]
    absent = sorted(c for c in measured if not available.has_column(
        tables["sessions"] if c in trial.sessions.columns else tables["participants"], c))
    observed = trial.sessions.loc[trial.sessions["alliance"].notna(), "session"]
    warnings = list(trial.meta.get("warnings", []))
    warnings += instruments.range_fit_warnings({**tables}, insts)
    n_sessions = int(trial.meta.get("n_sessions") or trial.sessions["session"].max())
    if simulated_here:
        name = f"simulated trial (seed {params['seed']})"
        description = (f"simulated by helpers.simulate: {params['n_participants']} clients, "
                       f"{params['n_sessions']} sessions, the paper's instruments")
    else:
        name = desc.name if desc is not None else Path(params["data_source"]).name
        description = desc.description if desc is not None else ""
    return {
        "name": name,
        "description": description,
        "simulated": bool(simulated_here or (desc is not None and desc.simulated) or trial.truth is not None),
        "has_truth": trial.truth is not None,
        "source": "simulate" if simulated_here else ("descriptor" if desc is not None else "files"),
        "descriptor": _portable(desc.path) if desc is not None else None,
        "n_participants": int(trial.participants.shape[0]),
        "n_sessions": n_sessions,
        "sessions": [int(observed.min()), int(observed.max())] if len(observed) else None,
        "measures": sorted(set(measured) - set(absent)),
        "absent": absent,
        "warnings": warnings,
        "knobs": trial.meta.get("knobs") if simulated_here else None,
        "same_design": bool(simulated_here and all(params[k] == v for k, v in PAPER_DESIGN.items())),
    }


def _portable(path) -> str:
    try:
        return Path(path).resolve().relative_to(paths.ROOT).as_posix()
    except ValueError:
        return str(path)


def _criterion(params, trial: Trial, alliance: Instrument, origin: str, desc) -> dict:
    """The criterion's arguments with the reliability resolved, and the threshold it applies."""
    name = params["criterion"]
    if params.get("reliability") is not None:
        reliability, source = float(params["reliability"]), "set as a parameter (--set reliability)"
    else:
        reliability = alliance.reliability
        source = alliance.reliability_source or (
            f"declared in {desc.path.name}" if origin == "declared" else "the instrument's")
    arguments = episodes.criterion_arguments({**params, "reliability": reliability})
    summary = episodes.threshold_summary(trial.sessions, **arguments)
    threshold = {key: summary[key] for key in ("per_client", "threshold", "min", "max", "n_clients", "sd",
                                               "sd_source")}
    threshold["rule"] = threshold_rule(arguments, threshold, alliance)
    return {"name": name, "arguments": arguments, "reliability": reliability,
            "reliability_source": source if reliability is not None else "",
            "threshold": threshold, "min_sessions": int(params["min_sessions"])}


#: The pattern model's fixed settings in every run (``docs/pattern_model.md``): repairs within
#: three sessions (the templates), two-episode templates, 20 imputations for the β, and the
#: multiples of the default smallest drop that its sensitivity table refits at; the
#: hyperparameters from at most 2,000 classifiable clients (a random sample seeded with the
#: run's seed on a larger trial: a registry of 100,000 clients fits in seconds, not minutes,
#: and the handful of hyperparameters is as precise; every client gets its probabilities).
PATTERN_MODEL = {"repair_max": 3, "two_episodes": True, "n_imputations": 20,
                 "min_drop_multiples": [0.5, 1.0, 1.5, 2.0], "max_fit_clients": 2000}


def _pattern_model(params, trial: Trial, criterion: dict, alliance: Instrument) -> dict:
    """The pattern model's settings on this trial: the reliability is the criterion's (the
    alliance instrument's unless set as a parameter), the smallest drop the one it implies
    (:func:`helpers.pattern_model.default_min_drop`), the imputations' seed the run's ``seed``."""
    reliability = criterion["reliability"]
    out = {**PATTERN_MODEL, "min_sessions": int(params["min_sessions"]), "seed": int(params["seed"]),
           "reliability": reliability, "reliability_source": criterion["reliability_source"], "sd": None,
           "min_drop": None, "fitted": reliability is not None, "note": ""}
    if reliability is None:
        out["note"] = (f"not fitted: its smallest drop is defined by the reliability of the alliance instrument, and "
                       f"{alliance.name} declares none (declare it in the dataset's descriptor, or --set reliability)")
        return out
    s = trial.sessions
    first = s.loc[s["alliance"].notna()].sort_values("session", kind="mergesort").groupby("participant_id")["alliance"].first()
    # default_min_drop reads each row's first observed rating: one column of first ratings is that
    out["min_drop"] = pattern_model.default_min_drop(first.to_numpy()[:, None], reliability)
    out["sd"] = float(first.std(ddof=1))
    return out


def threshold_rule(arguments: dict, threshold: dict, alliance: Instrument) -> str:
    """The threshold a criterion applied, in the alliance instrument's points, as a phrase."""
    crit = arguments["criterion"]
    pts = alliance.points
    if crit == "absolute":
        return f"{pts(threshold['threshold'])} (a fixed cutoff)"
    if crit in ("rci", "sudden"):
        sd_from = ("the SD of the clients' first observed ratings" if threshold["sd_source"] == "first_observed"
                   else "as given (--set rci_sd)")
        rci = (f"{pts(threshold['threshold'])} (the reliable change index 1.96 · SD · √(2 (1 − r)), SD = "
               f"{threshold['sd']:.2f} points, {sd_from})")
        if crit == "rci":
            return rci
        return (f"{rci}, a drop of at least 25% of the pre-rupture rating, and a mean difference between the "
                "sessions before and after (Tang & DeRubeis, 1999)")
    scale = {"within": "the client's own SD", "between": "the SD of all session-to-session changes",
             "stricter": "the larger of the client's own SD and the SD of all session-to-session changes"}
    k = f"{arguments['k']:g} × {scale[arguments['scale']]}"
    if not threshold["n_clients"]:
        return f"{k} (undefined on these data)"
    if not threshold["per_client"]:
        return f"{k} = {pts(threshold['threshold'])}"
    return (f"{k} (per client: median {pts(threshold['threshold'])}, range {threshold['min']:.2f} to "
            f"{threshold['max']:.2f})")


def _presets(criterion: dict) -> dict:
    """Every named criterion with this run's reliability; the run's own criterion is one of
    them (``default``), added under its name when it matches no preset (e.g. ``k = 1.5``)."""
    reliability = criterion["reliability"]
    everything = episodes.presets(0.5 if reliability is None else reliability)
    presets = {k: v for k, v in everything.items()
               if reliability is not None or not episodes.needs_reliability(v["criterion"])}
    mine = {k: v for k, v in criterion["arguments"].items() if k not in ("repair_window", "tolerance")}
    match = next((k for k, v in presets.items() if _same_criterion(v, mine)), None)
    if match is None:
        match = f"{criterion['name']} (this run)"
        presets[match] = mine
    return {"default": match, "criteria": presets,
            "left_out": sorted(set(everything) - set(presets))}


def _same_criterion(a: dict, b: dict) -> bool:
    def norm(d):
        return {k: v for k, v in d.items() if v is not None}
    return norm(a) == norm(b)


def _outcome(params, trial: Trial, insts) -> dict:
    """The paper's regression outcome the data allow, with a note in the instruments' names."""
    usable, used, _ = available.regression_outcomes(trial.participants, params["outcome"])
    role = {"pss_i": "interview", "pss_sr": "symptoms"}
    note = ""
    if not usable:
        note = ("no outcome with both pre- and post-treatment scores in the data: the paper's regression and the "
                "pre/post ANOVA cannot be estimated")
    elif used != params["outcome"]:
        note = (f"no pre- and post-treatment {instruments.ROLE_CONSTRUCTS[role[params['outcome']]]} scores in the "
                f"data (`{params['outcome']}_pre`, `{params['outcome']}_post`): the β is estimated on "
                f"{insts[role[used]].name}")
    return {"requested": params["outcome"], "used": used if usable else None, "usable": usable,
            "name": insts[role[used]].name if usable else None, "note": note}


# ----------------------------------------------------------------------------- writing and opening
def spec_path(root) -> Path:
    return paths.Outputs(Path(root)).processed / SPEC_FILE


def write(spec: RunSpec, trial: Trial | None) -> list[Path]:
    """run.json (and the trial's tables) under the spec's output root."""
    folder = spec.out.processed
    written = data.save_trial(trial, folder) if trial is not None else []
    return written + [atomic_write_text(folder / SPEC_FILE, spec.to_json())]


def prepare(params: dict, *, root=None, load: bool = True) -> RunSpec:
    """:func:`resolve`, then :func:`write`: what the runner does before the first notebook."""
    spec, trial = resolve(params, root=root, load=load)
    write(spec, trial)
    return spec


def load(root) -> RunSpec:
    """The run specification stored under an output root."""
    path = spec_path(root)
    return RunSpec.from_json(path.read_text(encoding="utf-8"), root)


#: In ``runs/``: the run a notebook run by hand last diverted to (git-ignored, like all of runs/),
#: so that the next notebook run by hand continues it rather than the published replication.
CURRENT = ".current"


def open_run(*, load_data: bool = True, fresh: bool = False, **notebook_params) -> RunSpec:
    """The run a notebook belongs to (call it right after the ``parameters`` cell).

    Under the runner: the run it prepared (``REPLICATION_RUN_SPEC``); the notebook's parameters
    must be that run's. Run by hand (JupyterLab, nbval): the current run -- the one a notebook
    run by hand last diverted to (``runs/.current``), else the published one -- when the
    notebook's parameters are that run's. When they differ, a new run is resolved: with the
    default parameters it is the published run; with any other, its outputs go to
    ``runs/<name>/`` (git-ignored; seeded with the current run's outputs, so that the
    notebooks after this one find their inputs), it becomes the current run, and a notice at the
    top of the notebook says so. The published replication is never written by a run whose
    parameters are not the defaults. ``fresh`` (notebook 01) resolves the data again rather than
    reusing stored tables; ``load_data=False`` (the simulation study) needs no trial.
    """
    given = absolute_data_paths(notebook_params, paths.ROOT)
    env = os.environ.get(ENV_SPEC)
    if env:
        spec = RunSpec.from_json(Path(env).read_text(encoding="utf-8"), Path(env).parents[2])
        differ = {k: v for k, v in given.items() if spec.params.get(k) != v}
        if differ:
            raise ValueError(f"the notebook's parameters {differ} are not the run's "
                             f"({ {k: spec.params.get(k) for k in differ} })")
        return spec
    published = paths.output_root()
    base = _current_run(published)
    # defaults first: a run recorded before a parameter existed had that parameter's default
    params = {**absolute_data_paths(default_params(), paths.ROOT), **(base.params if base is not None else {}),
              **given}
    usable = base is not None and (base.dataset is not None or not load_data)
    if usable and params == base.params and not fresh:
        return base
    if is_default(params):
        _set_current(None)
        return prepare(params, root=published, load=load_data or usable)
    spec, trial = resolve(params, load=load_data)
    if base is not None and not spec_path(spec.root).is_file():
        _seed(spec.root, base.root)
    write(spec, trial)
    _set_current(spec.root)
    print(f"Not the default parameters ({', '.join(f'{k} = {v!r}' for k, v in given.items() if v != base_value(base, k))}): "
          f"this run's outputs go to {_portable(spec.root)}/ (git-ignored), never over the published replication. "
          "The notebooks you run next by hand continue this run.")
    return spec


def base_value(spec: RunSpec | None, key: str):
    """A parameter's value in ``spec``, or its default."""
    return (spec.params if spec is not None else default_params()).get(key)


def _current_run(published: Path) -> RunSpec | None:
    pointer = paths.runs_root() / CURRENT
    if pointer.is_file():
        root = paths.ROOT / pointer.read_text(encoding="utf-8").strip()
        if spec_path(root).is_file():
            return load(root)
    return load(published) if spec_path(published).is_file() else None


def _set_current(root: Path | None) -> None:
    pointer = paths.runs_root() / CURRENT
    if root is None:
        pointer.unlink(missing_ok=True)
    else:
        atomic_write_text(pointer, _portable(root) + "\n")


def _seed(root: Path, base: Path) -> None:
    """The outputs of ``base`` copied under ``root``: the inputs of the notebooks that follow."""
    for rel in paths.OUTPUT_DIRS:
        if (base / rel).is_dir():
            shutil.copytree(base / rel, root / rel, dirs_exist_ok=True)


__all__ = ["RunSpec", "RunTables", "resolve", "prepare", "write", "load", "open_run", "load_params",
           "default_params", "is_default", "run_name", "INSUFFICIENT"]
