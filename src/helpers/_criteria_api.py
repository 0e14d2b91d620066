"""Interim: the criterion API that helpers.episodes will provide (registry, arguments, presets with
the run's reliability, the threshold applied). Replaced by episodes' own functions on merge."""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers import episodes

NEEDS_RELIABILITY = {"absolute": False, "sd": False, "rci": True, "sudden": True}


def needs_reliability(name: str) -> bool:
    return NEEDS_RELIABILITY[name]


def criterion_arguments(params: dict) -> dict:
    crit = params["criterion"]
    kw = {"criterion": crit, "repair_window": params.get("repair_window"), "tolerance": params.get("tolerance", 0.0)}
    if crit == "absolute":
        kw["cutoff"] = params["cutoff"]
    elif crit == "sd":
        kw.update(k=params["k"], scale=params["sd_scale"])
    else:
        kw.update(reliability=params["reliability"], sd=params.get("rci_sd"))
    return kw


def presets(reliability: float) -> dict:
    out = episodes.presets()
    for kw in out.values():
        if "reliability" in kw:
            kw["reliability"] = reliability
    return out


def threshold_summary(sessions: pd.DataFrame, **arguments) -> dict:
    eps = episodes.detect_episodes(sessions, **arguments)
    p = eps.attrs["params"]
    crit = arguments["criterion"]
    if crit == "absolute":
        return {"kind": "fixed", "value": float(arguments["cutoff"])}
    if crit in ("rci", "sudden"):
        return {"kind": "fixed", "value": float(p["rci"]), "sd": float(p["sd"]), "sd_source": p["sd_source"]}
    within = sessions.groupby("participant_id")["alliance"].std()
    between = p.get("between_sd", np.nan)
    scale = arguments["scale"]
    thr = (arguments["k"] * within if scale == "within" else
           pd.Series(arguments["k"] * between, index=within.index) if scale == "between" else
           arguments["k"] * np.maximum(within, between))
    thr = thr.dropna()
    return {"kind": "per_client" if scale != "between" else "fixed",
            "value": float(thr.median()) if len(thr) else None,
            "low": float(thr.min()) if len(thr) else None, "high": float(thr.max()) if len(thr) else None,
            "between_sd": float(between) if np.isfinite(between) else None}
